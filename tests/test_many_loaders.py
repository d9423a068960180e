"""Several `dbdedup load` processes writing into one database at once (issue 13): other folders and
overlapping ones, and one of them killed. The result is the database one load of everything makes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from dbdedup.locks import LOAD_LOCK_KEY
from images import brighter, mirrored, photo, reencoded, resized, save

pytestmark = pytest.mark.slow


def collection(root: Path) -> dict[str, Path]:
    """Three folders whose images pair across folders (copies, resized, mirrored, brighter, re-encoded),
    with a broken file; returns the folders three loaders take: x, y, and the whole tree (overlapping both)."""
    (root / "z").mkdir(parents=True)
    for seed in range(60):
        base = photo(700 + seed, (128, 96))
        folder = "x" if seed < 36 else "y"
        save(base, root / folder / f"{seed:03d}.jpg", quality=92)
        if seed % 3 == 0:
            save(resized(base, 0.6), root / "x" / "small" / f"{seed:03d}.jpg", quality=88)
        if seed % 4 == 0:
            save(mirrored(base), root / "y" / "mirror" / f"{seed:03d}.jpg", quality=90)
        if seed % 5 == 0:
            shutil.copyfile(root / folder / f"{seed:03d}.jpg", root / "z" / f"copy{seed:03d}.jpg")
        if seed % 7 == 0:
            save(brighter(base, 1.15), root / "z" / f"bright{seed:03d}.jpg", quality=90)
            save(reencoded(base, 35), root / "y" / f"low{seed:03d}.png")
    (root / "z" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return {"x": root / "x", "y": root / "y", "all": root}


def start_load(dsn: str, folder: Path) -> subprocess.Popen:
    """`dbdedup load` as its own process (one worker: three loads share two cores)."""
    return subprocess.Popen([sys.executable, "-m", "dbdedup", "--db", dsn, "--lock-wait", "120", "load", str(folder),
                             "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return err


def dbdedup(dsn: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dbdedup", "--db", dsn, *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def image_rows(dsn: str) -> dict[str, tuple]:
    """Every stored file by path, with what was computed from it."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT path, status, sha256, format, width, height, phash, dhash, ahash, phash_variants, error "
            "FROM dbdedup.images").fetchall()
    paths = [row[0] for row in rows]
    assert len(paths) == len(set(paths)), "one row per path"
    return {row[0]: row[1:] for row in rows}


def clusters(dsn: str) -> set[tuple]:
    """The clusters of `dbdedup report --format json`, by path: keeper, members with distance and link."""
    report = json.loads(dbdedup(dsn, "report", "--format", "json"))
    return {(c["keeper"], tuple(sorted((m["path"], m["distance"], m["transform"], m["exact_duplicate"],
                                        None if m["similarity"] is None else round(m["similarity"], 3))
                                       for m in c["members"])))
            for c in report["clusters"]}


def same_as_one_load(concurrent_dsn: str, sequential_dsn: str, root: Path) -> None:
    """The rows, and the clusters once the embedding reduction is fitted on the same rows (each database
    fits it on what its first finished load stored), equal those of one load of the whole tree."""
    dbdedup(sequential_dsn, "load", str(root))
    assert image_rows(concurrent_dsn) == image_rows(sequential_dsn)
    for dsn in (concurrent_dsn, sequential_dsn):
        dbdedup(dsn, "embeddings", "refit")
    found = clusters(concurrent_dsn)
    assert found == clusters(sequential_dsn)
    assert any(any(m[2] == "flip_h" for m in members) for _, members in found)
    assert any(any(m[3] for m in members) for _, members in found), "byte-identical copies across folders cluster"


def loaders(dsn: str) -> int:
    """How many sessions are dbdedup loads holding the load lock (they name themselves so)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbdedup load'").fetchone()[0]


def runs(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, status, roots, started_at, finished_at FROM dbdedup.load_runs ORDER BY id").fetchall()


def waiting_for_the_load_lock(dsn: str) -> int:
    """How many dbdedup sessions are connected without the load lock (a load names its session 'dbdedup load'
    once it holds it): with the lock held elsewhere, the loads polling for it."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dbdedup' "
                            "AND datname = current_database()").fetchone()[0]


def three_loaders_at_once(dsn: str, folders: dict[str, Path]) -> None:
    """x, y and the whole tree loaded by three processes started together; each began while another ran.

    The load lock is held here, as a match holds it, until all three wait for it: processes merely started
    together did not always overlap, as the smallest load could end before the last process (started on a
    busy machine) had begun."""
    processes = []
    try:
        with psycopg.connect(dsn, autocommit=True) as gate:
            gate.execute("SELECT pg_advisory_lock(%s)", (LOAD_LOCK_KEY,))
            processes = [start_load(dsn, folders[name]) for name in ("x", "y", "all")]
            deadline = time.monotonic() + 120
            while waiting_for_the_load_lock(dsn) < 3:
                assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
                time.sleep(0.05)
            # none started while the lock was held (on a new database, the first to get it makes the schema)
            assert gate.execute("SELECT to_regclass('dbdedup.load_runs')").fetchone()[0] is None or runs(dsn) == []
            gate.execute("SELECT pg_advisory_unlock(%s)", (LOAD_LOCK_KEY,))
    except BaseException:
        for process in processes:  # (not left writing into the next test's database)
            process.kill()
            process.wait()
        raise
    for process in processes:
        finish(process)
    done = runs(dsn)
    assert [r[1] for r in done] == ["completed"] * 3
    # each began while another still ran: loads made to wait for one another would each begin after the last ended.
    # (Not all three at one moment: released together, the smallest load of a few files has ended 50 ms before a
    # busy machine let the last one record its start, on Citus more than once.)
    spans = sorted((r[3], r[4]) for r in done)
    assert all(start < max(end for _, end in spans[:i]) for i, (start, _) in enumerate(spans) if i), spans


def test_three_loaders_at_once_give_the_database_of_one_load(db_dsn, empty_db_dsn, tmp_path):
    folders = collection(tmp_path / "photos")
    three_loaders_at_once(db_dsn, folders)
    same_as_one_load(db_dsn, empty_db_dsn, folders["all"])


def test_a_second_load_of_the_same_folder_waits_for_the_first(db_dsn, tmp_path):
    """One lock per root: the second load of a folder starts when the first ends and finds every file unchanged."""
    folder = tmp_path / "many"
    for seed in range(400):  # enough for the first load to outlast the second's start
        save(photo(2000 + seed, (160, 120)), folder / f"{seed:03d}.jpg", quality=90)
    first, second = start_load(db_dsn, folder), None
    try:
        deadline = time.monotonic() + 120
        while not [r for r in runs(db_dsn) if r[1] == "running"]:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        # the first load, holding its folder's lock, is suspended (as Ctrl-Z does) until the second one
        # has asked for that lock: a first load that ended before the second started would prove nothing
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = start_load(db_dsn, folder)
            while loaders(db_dsn) < 2:  # the second holds the load lock (shared): it is at the folder's lock
                assert time.monotonic() < deadline and second.poll() is None
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        err = finish(second)
        finish(first)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    assert "another load of it is running" in " ".join(err.split())
    (a, *_), (b, *_) = runs(db_dsn)
    with psycopg.connect(db_dsn) as conn:
        loaded, unchanged = conn.execute("SELECT loaded, unchanged FROM dbdedup.load_runs WHERE id = %s", (b,)).fetchone()
        assert loaded == 0 and unchanged > 0
        first_run = conn.execute("SELECT finished_at FROM dbdedup.load_runs WHERE id = %s", (a,)).fetchone()[0]
        second_started = conn.execute("SELECT started_at FROM dbdedup.load_runs WHERE id = %s", (b,)).fetchone()[0]
    assert second_started >= first_run


def test_a_loader_killed_mid_load_leaves_the_others_going_and_its_files_load_next_time(db_dsn, empty_db_dsn,
                                                                                        tmp_path):
    """kill -9 of one of three loaders once it has written rows: the other two complete (its run is not
    taken for dead while it lives), its run is found interrupted by the next load, which loads the rest
    of its folder; the database is then that of one load."""
    one_of_three_loaders_killed(db_dsn, empty_db_dsn, collection(tmp_path / "photos"))


def one_of_three_loaders_killed(db_dsn: str, empty_db_dsn: str, folders: dict[str, Path]) -> None:
    processes = {name: start_load(db_dsn, folders[name]) for name in ("x", "y", "all")}
    victim = processes["all"]
    try:
        deadline = time.monotonic() + 120
        while True:
            with psycopg.connect(db_dsn) as conn:
                # the victim has written rows, and the other two have begun their runs: a load that begins
                # after the kill finds the killed run interrupted at its start, as the next load below does
                written = conn.execute("SELECT to_regclass('dbdedup.load_runs') IS NOT NULL").fetchone()[0] and \
                    conn.execute("SELECT count(*) FROM dbdedup.load_runs r WHERE r.roots = %s AND r.loaded > 0",
                                 ([str(folders["all"])],)).fetchone()[0] and \
                    conn.execute("SELECT count(*) FROM dbdedup.load_runs r WHERE r.roots IN (%s, %s)",
                                 ([str(folders["x"])], [str(folders["y"])])).fetchone()[0] == 2
            if written:
                break
            assert time.monotonic() < deadline and victim.poll() is None, "the loader wrote nothing"
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)  # the loader's own PID, as a user would (its workers die with it)
        victim.wait(30)
        for name in ("x", "y"):
            finish(processes[name])
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    statuses = {tuple(r[2]): r[1] for r in runs(db_dsn)}
    assert statuses[(str(folders["x"]),)] == "completed" and statuses[(str(folders["y"]),)] == "completed"
    assert statuses[(str(folders["all"]),)] == "running"  # its session is gone; nobody has looked yet
    finish(start_load(db_dsn, folders["all"]))
    with psycopg.connect(db_dsn) as conn:
        killed = conn.execute("SELECT status FROM dbdedup.load_runs WHERE roots = %s ORDER BY id LIMIT 1",
                              ([str(folders["all"])],)).fetchone()[0]
    assert killed == "interrupted"
    same_as_one_load(db_dsn, empty_db_dsn, folders["all"])  # every file of the killed load's tree is there
