"""`dbdedup db url|psql|stop`, `dbdedup migrate` and `dbdedup embeddings refit`, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from click.testing import CliRunner

from dbdedup import db as dbmod
from dbdedup.cli.main import cli
from dbdedup.load import load_paths
from images import photo, save

LIBPQ_TARGETS = ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE", "PGPORT")


def dbdedup(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The command line in its own process (``db psql`` replaces its process with psql)."""
    return subprocess.run([sys.executable, "-m", "dbdedup", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_line_error(result, *, code: int = 1) -> str:
    """The error a user sees: exit ``code``, no traceback, an error line and a hint."""
    assert result.exit_code == code, result.output
    err = result.stderr
    assert "Traceback" not in err and err.startswith("dbdedup: error: ") and "\nhint: " in err, err
    return err


@pytest.fixture
def own_embedded_env(tmp_path):
    """The environment of a user whose embedded server lives in its own data dir (stopped afterwards)."""
    data_dir = tmp_path / "pgdata"
    env = {k: v for k, v in os.environ.items() if k not in ("DBDEDUP_DATABASE_URL", *LIBPQ_TARGETS)}
    env["DBDEDUP_DATA_DIR"] = str(data_dir)
    yield env, data_dir
    dbmod.stop_embedded(data_dir)


def can_connect(uri: str) -> bool:
    try:
        with psycopg.connect(uri, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_db_url_psql_and_stop_on_a_separate_embedded_server(own_embedded_env):
    env, data_dir = own_embedded_env
    url = dbdedup("db", "url", env=env)
    assert url.returncode == 0, url.stderr
    uri = url.stdout.strip()
    assert uri.count("\n") == 0 and (data_dir / "PG_VERSION").exists()
    assert can_connect(uri)
    assert dbdedup("db", "url", env=env).stdout.strip() == uri  # running: the same server

    migrated = dbdedup("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"embedded PostgreSQL in {data_dir}" in migrated.stderr and "(was empty;" in migrated.stderr

    # extra arguments go to psql, which runs on the same database
    psql = dbdedup("db", "psql", "-At", "-c", "SELECT count(*) FROM dbdedup.images", env=env)
    assert (psql.returncode, psql.stdout.strip()) == (0, "0"), psql.stderr
    bad = dbdedup("db", "psql", "-At", "-c", "SELECT * FROM no_such_table", env=env)
    assert bad.returncode != 0 and "no_such_table" in bad.stderr

    stopped = dbdedup("db", "stop", env=env)
    assert stopped.returncode == 0 and f"stopped the embedded server in {data_dir}" in stopped.stderr
    assert not can_connect(uri)
    again = dbdedup("db", "stop", env=env)
    assert again.returncode == 0 and "was not running" in again.stderr

    # the next command starts it again, with the data kept
    uri = dbdedup("db", "url", env=env).stdout.strip()
    with psycopg.connect(uri) as conn:
        assert dbmod.current_revision(conn) == dbmod.head_revision()


def test_db_stop_refuses_an_external_server_in_one_line(db_dsn):
    err = one_line_error(run("--db", db_dsn, "db", "stop"))
    assert "embedded server only" in err
    assert can_connect(db_dsn)
    # and db url prints the external DSN as given
    result = run("--db", db_dsn, "db", "url")
    assert result.exit_code == 0 and result.stdout.strip() == db_dsn


def test_migrate_creates_then_keeps_then_steps_down_and_up(empty_db_dsn):
    head = dbmod.head_revision()
    first = run("--db", empty_db_dsn, "migrate")
    assert first.exit_code == 0, first.output
    assert f"schema dbdedup at {head} (was empty; newest {head})" in first.stderr
    assert first.stdout == ""  # notes go to stderr
    again = run("--db", empty_db_dsn, "migrate")
    assert again.exit_code == 0 and f"at {head} (was {head};" in again.stderr

    revisions = dbmod.revisions()
    assert revisions[-1] == head == dbmod.alembic_head_revision()
    if len(revisions) > 2:  # one step down (the baseline itself cannot be left), then back up
        below = revisions[-2]
        down = run("--db", empty_db_dsn, "migrate", "--to", below)
        assert down.exit_code == 0, down.output
        with psycopg.connect(empty_db_dsn) as conn:
            assert dbmod.current_revision(conn) == below
        up = run("--db", empty_db_dsn, "migrate")
        assert up.exit_code == 0 and f"at {head} (was {below};" in up.stderr
    # a revision this dbdedup does not have (0001-0003 were squashed into the baseline): one line
    err = one_line_error(run("--db", empty_db_dsn, "migrate", "--to", "0003"))
    assert "no migration '0003'" in err and f"give one of {', '.join(revisions)}" in err
    err = one_line_error(run("--db", empty_db_dsn, "migrate", "--to", "9999"))
    assert "no migration '9999'" in err
    with psycopg.connect(empty_db_dsn) as conn:
        assert dbmod.current_revision(conn) == head  # a refused step leaves the schema as it was


def test_migrate_on_a_server_without_pgvector_says_hash_only(plain_pg_dsn):
    from conftest import dsn_for

    name = f"climigrate_{os.getpid()}"
    with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    result = run("--db", dsn_for(plain_pg_dsn, name), "migrate")
    assert result.exit_code == 0, result.output
    assert dbmod.HASH_ONLY_MESSAGE in result.stderr


def test_embeddings_refit_fits_on_every_stored_descriptor(db_dsn, tmp_path):
    err = one_line_error(run("--db", db_dsn, "embeddings", "refit"))
    assert "no embeddings are stored yet" in err

    root = tmp_path / "photos"
    for seed in range(1, 5):
        save(photo(seed), root / f"p{seed}.jpg", quality=92)
    with psycopg.connect(db_dsn) as conn:
        assert load_paths(conn, [root], workers=1).embedded == 4
        for seed in range(5, 8):
            save(photo(seed), root / f"p{seed}.jpg", quality=92)
        # 7 rows are not yet twice the 4 the reduction was fitted on: the load only projects them
        assert load_paths(conn, [root], workers=1).embedded == 3
        assert conn.execute("SELECT fitted_rows FROM dbdedup.embedding_reductions").fetchone() == (4,)

    result = run("--db", db_dsn, "embeddings", "refit")
    assert result.exit_code == 0, result.output
    assert "refitted grey-v1 on 7 descriptors, re-projected 7 vectors, index hnsw" in result.stderr
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT fitted_rows, index_method FROM dbdedup.embedding_reductions").fetchone() == (
            7, "ivfflat")
        assert conn.execute("SELECT count(embedding) FROM dbdedup.image_embeddings").fetchone() == (7,)

    # another index kind is remembered (the default, ivfflat, needs 1,000 vectors to train: hnsw stood in)
    result = run("--db", db_dsn, "embeddings", "refit", "--index", "hnsw", "--embedder", "grey-v1")
    assert result.exit_code == 0, result.output
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT index_method FROM dbdedup.embedding_reductions").fetchone() == ("hnsw",)


def test_embeddings_refit_on_a_server_without_pgvector_is_one_line(plain_pg_dsn):
    from conftest import dsn_for

    name = f"clirefit_{os.getpid()}"
    with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    err = one_line_error(run("--db", dsn_for(plain_pg_dsn, name), "embeddings", "refit"))
    assert "pgvector" in err


def test_a_folder_of_photos_given_as_the_data_dir_is_left_alone(own_embedded_env, tmp_path):
    # a slip of --data-dir ~/Pictures: neither initialised nor claimed, in one line, the folder as it was
    env, _ = own_embedded_env
    photos = tmp_path / "Pictures"
    save(photo(1), photos / "holiday.jpg", quality=90)
    before = sorted((p.name, p.stat().st_mode, p.stat().st_uid) for p in [photos, *photos.iterdir()])
    env = {**env, "DBDEDUP_DATA_DIR": str(photos)}
    for command in (["status"], ["db", "url"]):
        result = dbdedup(*command, env=env)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"dbdedup: error: {photos} holds other files and no embedded server: "
                                         "it is not used, nothing was written\nhint: "), result.stderr
    assert sorted((p.name, p.stat().st_mode, p.stat().st_uid) for p in [photos, *photos.iterdir()]) == before
