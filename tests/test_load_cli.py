"""The load/status/errors commands, through click with a real database."""

from __future__ import annotations

import csv
import io
import json
import os
import time

import psycopg
from click.testing import CliRunner

from dbdedup import db as dbmod
from dbdedup.cli.main import cli
from test_load import ZOO_EXPECTED, make_zoo


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_load_then_status_and_errors(db_dsn, tmp_path):
    root = make_zoo(tmp_path / "zoo")
    result = run("--db", db_dsn, "load", "--workers", "2", str(root))
    assert result.exit_code == 0, result.output  # bad files do not fail the run
    bad = sorted(r for r in ZOO_EXPECTED.values() if r)
    good = len(ZOO_EXPECTED) - len(bad)
    assert f"loaded {good:,} images" in result.stderr
    assert "errors by reason: " in result.stderr and "truncated 2" in result.stderr
    assert "exact duplicates: 1 group" in result.stderr
    assert result.stdout == ""  # notes go to stderr

    again = run("--db", db_dsn, "load", str(root))
    assert f"loaded 0 images, skipped {len(ZOO_EXPECTED) - 2:,} unchanged" in again.stderr

    status = run("--db", db_dsn, "status", "--format", "json")
    payload = json.loads(status.stdout)
    assert payload["counts"]["images"] == good and payload["counts"]["errors"] == len(bad)
    assert payload["counts"]["exact_duplicate_groups"] == 1
    assert [r["status"] for r in payload["last_runs"]] == ["completed", "completed"]
    table = run("--db", db_dsn, "status")
    assert "images loaded (ok)" in table.stdout and "last load runs" in table.stdout

    errors = run("--db", db_dsn, "errors", "--format", "csv")
    listed = list(csv.DictReader(io.StringIO(errors.stdout)))
    assert sorted(r["reason"] for r in listed) == bad
    assert all(r["detail"] and os.path.isabs(r["path"]) for r in listed)
    only = run("--db", db_dsn, "errors", "--reason", "too_many_pixels", "--format", "json")
    (bomb,) = json.loads(only.stdout)
    assert bomb["path"].endswith("bomb.png") and "200000x200000" in bomb["detail"]


def test_missing_path_is_one_line_and_a_hint(db_dsn, tmp_path):
    result = run("--db", db_dsn, "load", str(tmp_path), str(tmp_path / "typo"))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("dbdedup: error: no such file or folder") and "typo" in lines[0]
    assert lines[1].startswith("hint:") and len(lines) == 2
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.load_runs").fetchone()[0] == 0


def test_quiet_load_prints_nothing(db_dsn, tmp_path):
    make_zoo(tmp_path / "zoo")
    result = run("--db", db_dsn, "-q", "load", str(tmp_path / "zoo"))
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""


def test_hash_only_note_once(plain_pg_dsn, tmp_path):
    from conftest import dsn_for

    name = f"clihashonly_{os.getpid()}"
    with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    make_zoo(tmp_path / "zoo")
    result = run("--db", dsn_for(plain_pg_dsn, name), "load", str(tmp_path / "zoo"))
    assert result.exit_code == 0, result.output
    assert result.stderr.count(dbmod.HASH_ONLY_MESSAGE) == 1
    assert "loaded " in result.stderr


def _start_run(conn: psycopg.Connection, root: str) -> int:
    """What a load's first transaction leaves: its run row 'running', and the run's lock held by its session."""
    from dbdedup import locks

    with conn.transaction():
        run_id = conn.execute("INSERT INTO dbdedup.load_runs (roots) VALUES (%s) RETURNING id", ([root],)).fetchone()[0]
        locks.hold_run(conn, run_id)
    return run_id


def test_status_shows_a_run_whose_loader_is_gone_as_interrupted_and_writes_nothing(db_dsn, tmp_path):
    # after kill -9 of a loader, status said its run was 'running' until the next load marked it
    from dbdedup import locks

    make_zoo(tmp_path / "zoo")
    assert run("--db", db_dsn, "-q", "load", str(tmp_path / "zoo")).exit_code == 0
    with psycopg.connect(db_dsn) as live_loader, psycopg.connect(db_dsn) as watcher:
        with psycopg.connect(db_dsn) as killed_loader:
            killed = _start_run(killed_loader, "/killed")
        live = _start_run(live_loader, "/running")
        deadline = time.monotonic() + 10
        while killed in locks.live_runs(watcher):  # its session ends as the killed process's does
            assert time.monotonic() < deadline
            watcher.rollback()
            time.sleep(0.05)
        payload = json.loads(run("--db", db_dsn, "status", "--format", "json").stdout)
        assert [(r["run"], r["status"]) for r in payload["last_runs"]] == [
            (live, "running"), (killed, "interrupted (its loader is gone)"), (1, "completed")]
        table = run("--db", db_dsn, "status").stdout
        assert "interrupted (its loader is gone)" in table and "running" in table
        stored = dict(watcher.execute("SELECT id, status FROM dbdedup.load_runs").fetchall())
        assert stored == {1: "completed", killed: "running", live: "running"}  # the next load marks it
