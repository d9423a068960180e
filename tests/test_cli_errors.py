"""Database failures and user mistakes are one line and a hint, never a traceback (issue 9, item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest
from click.testing import CliRunner

from dbdedup.cli.main import cli
from images import photo, same_picture_files, save
from test_concurrency import hash_only_db  # noqa: F401  (fixture)
from test_report_sample import load, make_collection


def _one_line_error(result, *words: str) -> None:
    """Exit 1; stderr is `dbdedup: error: ...` plus `hint: ...`, with the words, and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith(("dbdedup: error:", "hint:"))]
    assert len(lines) == 2 and lines[0].startswith("dbdedup: error:") and lines[1].startswith("hint:"), result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def test_a_malformed_dsn_is_one_line_and_v_shows_the_traceback():
    result = CliRunner().invoke(cli, ["--db", "not a dsn", "status"])
    _one_line_error(result, "connection string is not valid", "postgresql://")
    verbose = CliRunner().invoke(cli, ["-v", "--db", "not a dsn", "status"])
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr


def test_status_with_a_table_missing_is_one_line(db_dsn):
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE dbdedup.load_runs CASCADE")
    _one_line_error(CliRunner().invoke(cli, ["--db", db_dsn, "status"]), "schema is damaged", "load_runs")


@pytest.mark.parametrize("command", [["report"], ["match"], ["load", "PHOTOS"]])
def test_a_read_only_role_that_must_write_gets_one_line(hash_only_db, tmp_path, command):  # noqa: F811
    dsn, analyst_dsn, role = hash_only_db
    col = make_collection(tmp_path / "photos")
    load(dsn, col.root)  # loaded by the owner; not matched yet, so report and match must write
    args = [str(col.root) if a == "PHOTOS" else a for a in command]
    result = CliRunner().invoke(cli, ["--db", analyst_dsn, *args])
    _one_line_error(result, "permission denied", "grant_read_access")


@pytest.mark.parametrize("sqlstate, message, words", [
    ("disk_full", 'could not extend file "base/1/2": No space left on device', ["disk is full", "free space"]),
    ("deadlock_detected", "deadlock detected", ["deadlock", "run the same command again"]),
])
@pytest.mark.parametrize("arriving", ["as_they_come", "all_at_once"])
def test_a_database_failure_in_mid_load_is_one_line(db_dsn, tmp_path, monkeypatch, sqlstate, message, words,
                                                    arriving):
    """The server fails the load's third batch with a full disk or a deadlock (raised by a trigger with that
    SQLSTATE, as PostgreSQL raises them): one line, a hint; the batches before it are kept. Also when every
    result is there before the first write (the pool hands over all the chunks that finished in one
    collection, as on a busy machine): the rows are still written a batch a transaction."""
    for i in range(30):
        save(photo(i, (64, 48)), tmp_path / "photos" / f"{i:03d}.png")
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION pg_temp_fail() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF (SELECT count(*) FROM dbdedup.images) >= 20 THEN
                    RAISE EXCEPTION '{message}' USING ERRCODE = '{sqlstate}';
                END IF;
                RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER fail BEFORE INSERT ON dbdedup.images FOR EACH ROW EXECUTE FUNCTION pg_temp_fail()")
    import dbdedup.load as loader

    monkeypatch.setattr(loader, "CHUNK_FILES", 5)
    monkeypatch.setattr(loader, "WRITE_ROWS", 10)  # batches of 10 rows
    if arriving == "all_at_once":
        write_if_due = loader._Loader.write_if_due
        monkeypatch.setattr(loader._Loader, "write_if_due",
                            lambda self, force=False: write_if_due(self, force) if force else None)
    result = CliRunner().invoke(cli, ["--db", db_dsn, "load", "--workers", "1", str(tmp_path / "photos")])
    _one_line_error(result, *words)
    with psycopg.connect(db_dsn) as conn:
        # earlier batches kept: at most 10 rows a transaction, however many results came in at once, so the
        # first batch never reaches the trigger's 20 and the one holding the 21st row is the first lost
        assert 10 <= conn.execute("SELECT count(*) FROM dbdedup.images").fetchone()[0] <= 20
        assert conn.execute("SELECT status FROM dbdedup.load_runs").fetchone()[0] == "failed"


@pytest.mark.slow
def test_the_server_ending_the_load_session_is_one_line_and_the_next_load_carries_on(db_dsn, tmp_path):
    total = 1500
    root = same_picture_files(tmp_path / "many", total, photo(1, (640, 480)), quality=92)
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        process = subprocess.Popen([sys.executable, "-c", "from dbdedup.cli.main import main; main()", "--db", db_dsn,
                                    "-q", "load", "--workers", "1", str(root)], stderr=err)
    deadline = time.monotonic() + 60
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        while admin.execute("SELECT count(*) FROM dbdedup.images").fetchone()[0] == 0:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ended = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND application_name = 'dbdedup load'").fetchall()
        assert ended == [(True,)]
    assert process.wait(timeout=60) == 1
    stderr = log.read_text()
    assert "Traceback" not in stderr
    assert "dbdedup: error: lost the connection to the database" in stderr and "hint:" in stderr
    assert "carries on where it stopped" in stderr
    result = CliRunner().invoke(cli, ["--db", db_dsn, "-q", "load", "--workers", "2", str(root)])
    assert result.exit_code == 0, result.output
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT path_bytes) FROM dbdedup.images "
                            "WHERE status = 'ok'").fetchone() == (total, total)
        assert [r[0] for r in conn.execute("SELECT status FROM dbdedup.load_runs ORDER BY id")] == [
            "interrupted", "completed"]
    os.remove(log)


def test_more_workers_than_the_machine_takes_is_a_usage_error(db_dsn, tmp_path, monkeypatch):
    # `--workers 500` on two cores started 500 processes for five files; now it is refused before any starts
    from dbdedup import worker_pool

    monkeypatch.setattr(worker_pool, "default_workers", lambda: 2)
    save(photo(1), tmp_path / "p.jpg", quality=90)
    for command in (["load", str(tmp_path)], ["verify"]):
        refused = CliRunner().invoke(cli, ["--db", db_dsn, *command, "--workers", "33"])
        assert refused.exit_code == 2 and "33 is more than 32, the most this machine takes" in refused.stderr
        assert "Traceback" not in refused.output
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.load_runs").fetchone() == (0,)
    monkeypatch.setattr(worker_pool, "default_workers", lambda: 16)  # four a core past 32
    assert CliRunner().invoke(cli, ["--db", db_dsn, "load", str(tmp_path), "--workers", "33"]).exit_code == 0


def test_an_output_path_that_cannot_be_written_is_one_line(db_dsn, tmp_path):
    # each of these went out as a FileNotFoundError or NotADirectoryError traceback
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for command, where in (
        (["report", "--format", "json", "-o", str(blocker / "report.json")], str(blocker)),
        (["pairs", "--format", "csv", "-o", str(blocker / "pairs.csv")], str(blocker)),
        (["export", str(blocker / "sheet.html")], f"cannot write {blocker / 'sheet.html'}: {blocker} exists"),
        (["export", str(blocker / "folders"), "--layout", "folders"], str(blocker)),
        (["verdicts", "export", str(blocker / "verdicts.json")], str(blocker / "verdicts.json")),
    ):
        result = CliRunner().invoke(cli, ["--db", db_dsn, *command], catch_exceptions=False)
        _one_line_error(result, where, "not a folder")


def test_an_empty_path_is_a_usage_error_not_this_folder(db_dsn, tmp_path, monkeypatch):
    # `dbdedup load "$PHOTOS"` with the variable unset loaded the current folder, and `apply --move-to "$DEST"`
    # planned moves under it
    save(photo(1), tmp_path / "here" / "p.jpg", quality=90)
    monkeypatch.chdir(tmp_path / "here")
    for command in (["load", ""], ["apply", "--move-to", ""], ["export", ""], ["report", "-o", ""],
                    ["--data-dir", "", "status"]):
        result = CliRunner().invoke(cli, ["--db", db_dsn, *command], catch_exceptions=False)
        assert result.exit_code == 2 and "an empty path (an unset shell variable?)" in result.stderr, command
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.load_runs").fetchone() == (0,)


@pytest.mark.parametrize("given", ["option", "environment"])
def test_a_database_url_given_as_the_data_dir_is_one_line_and_starts_no_server(tmp_path, monkeypatch, given):
    # (session 51 ran a script that passed a URL where the library takes a data dir: it started a server in a new
    # folder named 'postgresql:' under the current one)
    from dbdedup import db as dbmod

    for name in ("DBDEDUP_DATABASE_URL", "DBDEDUP_DATA_DIR", "PGHOST", "PGDATABASE", "PGSERVICE", "PGPORT", "PGUSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    url = "postgresql://someone@db.example/photos"
    args = ["--data-dir", url] if given == "option" else []
    if given == "environment":
        monkeypatch.setenv("DBDEDUP_DATA_DIR", url)
    with pytest.raises(dbmod.DbdedupError) as refused:
        dbmod.resolve_target(None, url if given == "option" else None)
    assert "database URL" in refused.value.message and "--db" in refused.value.hint
    _one_line_error(CliRunner().invoke(cli, [*args, "status"]), "is a database URL", "with --db")
    assert list(tmp_path.iterdir()) == []
