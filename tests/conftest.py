"""Test fixtures: a real embedded PostgreSQL for the session, one fresh database per test.

The session server is started once (about a second); a template database has
the migrations applied, and each test gets ``CREATE DATABASE ... TEMPLATE`` of
it, so tests are independent and fast.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbdedup import db as dbmod

TEMPLATE_DB = "dbdedup_template"
_counter = itertools.count()


def result_of_child(work):
    """``work()`` run in a forked child (one that drops root's powers over file modes, or becomes another user, for
    a test of what a user is denied), its result handed back as JSON; the child's traceback goes to stderr."""
    import json

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            result = work()
            with os.fdopen(write_end, "w") as handle:
                json.dump(result, handle)
            status = 0
        except BaseException:
            import traceback

            traceback.print_exc()  # (pytest shows it with the failure)
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as handle:
        text = handle.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and text, "the child failed"
    return json.loads(text)


def dsn_for(base_dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(base_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """The embedded server for this test session: (admin DSN, data dir)."""
    data_dir = tmp_path_factory.mktemp("embedded") / "pgdata"
    uri = dbmod.start_embedded(data_dir)
    admin = make_conninfo(uri)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    dbmod.apply_migrations(dsn_for(admin, TEMPLATE_DB))
    yield admin, data_dir
    dbmod.stop_embedded(data_dir)


def _fresh_database(admin: str, template: str) -> tuple[str, str]:
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name, dsn_for(admin, name)


def _drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_dsn(pg_server):
    """DSN of a fresh, migrated database on the embedded server."""
    admin, _ = pg_server
    name, dsn = _fresh_database(admin, TEMPLATE_DB)
    yield dsn
    _drop_database(admin, name)


@pytest.fixture
def empty_db_dsn(pg_server):
    """DSN of a fresh database with nothing of dbdedup in it."""
    admin, _ = pg_server
    name, dsn = _fresh_database(admin, "template0")
    yield dsn
    _drop_database(admin, name)


@pytest.fixture
def conn(db_dsn):
    """An open connection to a fresh migrated database (pgvector types registered)."""
    with psycopg.connect(db_dsn) as connection:
        dbmod.register_vector_if_present(connection)
        yield connection


# ---------------------------------------------------------------- a server without pgvector


def _system_pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def plain_pg_dsn(tmp_path_factory):
    """DSN of Debian's PostgreSQL (no pgvector installed): the hash-only case and an older major.

    Skipped when that server is not installed, unless DBDEDUP_REQUIRE_SYSTEM_PG=1
    (as in .ci/run, which installs it), where its absence fails the test.
    """
    bindir = _system_pg_bin()
    if bindir is None:
        if os.environ.get("DBDEDUP_REQUIRE_SYSTEM_PG") == "1":
            pytest.fail("Debian's postgresql package is required (DBDEDUP_REQUIRE_SYSTEM_PG=1) but not installed")
        pytest.skip("Debian's postgresql package is not installed")
    root = tmp_path_factory.mktemp("plainpg")
    if os.geteuid() == 0:
        # a folder of its own that the postgres account can reach, rather than opening pytest's
        root = Path(tempfile.mkdtemp(prefix="dbdedup-plainpg-", dir="/tmp"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres"
        pwd.getpwnam(user)
        for p in (root, sock):
            shutil.chown(p, user)
        os.chmod(root, 0o755)
        prefix = ["runuser", "-u", user, "--"]
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
                    "-o", f"-k {sock} -h ''", "start"], check=True, capture_output=True)
    admin = f"host={sock} dbname=postgres user=postgres"
    yield admin
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop"],
                   capture_output=True)
    if os.geteuid() == 0:
        shutil.rmtree(root, ignore_errors=True)
