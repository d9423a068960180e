"""load_paths against the real embedded PostgreSQL: the zoo, incremental runs, missing files, interruption."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imagehash
import numpy as np
import psycopg
import pytest
from PIL import Image

from dbdedup import db as dbmod
from dbdedup.errors import DbdedupError
from dbdedup.hashes import hash_to_int64
from dbdedup.load import LoadProgress, load_paths
from dbdedup.locks import LOAD_LOCK_KEY
from images import jpeg_bytes, photo, same_picture_files, save
from test_hashing import bomb_png

# name -> expected error reason (None: loads fine)
ZOO_EXPECTED = {
    "good/a.jpg": None, "good/b.png": None, "good/c.webp": None, "good/copy_of_a.jpg": None,
    "bad/empty.jpg": "empty_file",
    "bad/cut.jpg": "truncated",
    "bad/cut.png": "truncated",
    "bad/text.jpg": "not_an_image",
    "bad/bomb.png": "too_many_pixels",
    "bad/dangling.jpg": "broken_symlink",
    "bad/self.jpg": "symlink_loop",
    "odd/sixteen.png": None, "odd/eight.png": None, "odd/cmyk.jpg": None, "odd/palette.png": None,
    "odd/anim.gif": None, "odd/la.png": None,
}


def make_zoo(root: Path) -> Path:
    """Good images, bad files and odd-but-valid images side by side."""
    save(photo(1), root / "good" / "a.jpg", quality=90)
    save(photo(2), root / "good" / "b.png")
    save(photo(3), root / "good" / "c.webp", quality=85)
    (root / "good" / "copy_of_a.jpg").write_bytes((root / "good" / "a.jpg").read_bytes())
    (root / "good" / "notes.txt").write_text("shot on holiday")
    (root / "good" / "a.jpg.xmp").write_text("<x:xmpmeta/>")
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    data = jpeg_bytes(photo(4))
    (bad / "cut.jpg").write_bytes(data[: len(data) // 2])
    buf = io.BytesIO()
    photo(5).save(buf, "PNG")
    (bad / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (bad / "text.jpg").write_text("definitely not a JPEG\n" * 10)
    (bad / "bomb.png").write_bytes(bomb_png(200_000, 200_000))
    (bad / "dangling.jpg").symlink_to(bad / "nowhere.jpg")
    (bad / "self.jpg").symlink_to(bad / "self.jpg")
    (bad / "loop").symlink_to(root)  # a directory loop: walked once, no error
    odd = root / "odd"
    grey8 = np.asarray(photo(6).convert("L"))
    save(Image.fromarray(grey8, "L"), odd / "eight.png")
    save(Image.fromarray(grey8.astype(np.uint16) * 257), odd / "sixteen.png")
    save(photo(7).convert("CMYK"), odd / "cmyk.jpg", quality=90)
    save(photo(8).convert("P", palette=Image.Palette.ADAPTIVE), odd / "palette.png", transparency=0)
    frames = [photo(9 + i, (96, 64)).convert("P") for i in range(3)]
    frames[0].save(odd / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    save(photo(12).convert("LA"), odd / "la.png")
    return root


def rows(conn, where: str = "true") -> dict[str, dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f"SELECT * FROM dbdedup.images WHERE {where}")
        return {r["path"]: r for r in cur.fetchall()}


def rel(root: Path, path: str) -> str:
    return os.path.relpath(path, root)


def hamming(a: int, b: int) -> int:
    return bin((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).count("1")


class RecordingProgress(LoadProgress):
    def __init__(self):
        self.found: list[tuple[int, bool]] = []
        self.done: list[tuple[int, int]] = []

    def files_found(self, found, scan_complete):
        self.found.append((found, scan_complete))

    def files_done(self, done, errors):
        self.done.append((done, errors))


def test_zoo_every_bad_file_is_one_error_row_and_every_good_one_loads(conn, tmp_path):
    root = make_zoo(tmp_path / "zoo")
    progress = RecordingProgress()
    summary = load_paths(conn, [root], workers=2, progress=progress)
    stored = {rel(root, p): r for p, r in rows(conn).items()}
    assert set(stored) == set(ZOO_EXPECTED)
    for name, reason in ZOO_EXPECTED.items():
        row = stored[name]
        if reason is None:
            assert row["status"] == "ok", (name, row["error"], row["error_detail"])
            assert row["phash"] is not None and row["sha256"] is not None and row["width"] > 0
        else:
            assert (row["status"], row["error"]) == ("error", reason), name
            assert row["error_detail"] and row["phash"] is None
    expected_errors = sorted(r for r in ZOO_EXPECTED.values() if r)
    assert summary.error_count == len(expected_errors)
    assert summary.loaded == len(ZOO_EXPECTED) - len(expected_errors)
    assert summary.ignored == 2 and summary.unchanged == 0 and summary.missing == 0
    assert summary.exact_duplicate_groups == 1
    assert sorted(r[0] for r in conn.execute("SELECT reason FROM dbdedup.load_errors")) == expected_errors
    assert conn.execute("SELECT count(*) FROM dbdedup.errors").fetchone()[0] == len(expected_errors)
    # odd but valid images decode sensibly
    assert hamming(stored["odd/sixteen.png"]["phash"], stored["odd/eight.png"]["phash"]) <= 2
    assert stored["odd/anim.gif"]["frames"] == 3
    assert stored["good/a.jpg"]["sha256"] == stored["good/copy_of_a.jpg"]["sha256"]
    # the stored pHash of a PNG is imagehash's value for that file, bit for bit
    with Image.open(root / "good" / "b.png") as im:
        assert stored["good/b.png"]["phash"] == hash_to_int64(imagehash.phash(im))
    run = conn.execute("SELECT status, files_seen, loaded, errors, ignored, versions, parameters "
                       "FROM dbdedup.load_runs").fetchone()
    assert run[:5] == ("completed", len(ZOO_EXPECTED), summary.loaded, summary.error_count, 2)
    assert {"dbdedup", "Pillow", "numpy", "scipy"} <= set(run[5]) and run[6]["workers"] == 2
    assert progress.found[-1] == (len(ZOO_EXPECTED), True)
    assert progress.done[-1] == (len(ZOO_EXPECTED), len(expected_errors))


def test_second_run_hashes_nothing_and_does_not_retry_bad_files(conn, tmp_path):
    root = make_zoo(tmp_path / "zoo")
    first = load_paths(conn, [root], workers=2)
    before = {p: (r["id"], r["change_seq"]) for p, r in rows(conn).items()}
    second = load_paths(conn, [root], workers=2)
    assert second.loaded == 0
    # content errors are not retried; link errors are re-checked (fixing a link does not touch its mtime)
    rechecked = {"broken_symlink", "symlink_loop"}
    assert second.errors == {r: 1 for r in rechecked}
    assert second.unchanged == first.files_seen - len(rechecked)
    after = {p: (r["id"], r["change_seq"]) for p, r in rows(conn).items()}
    unchanged = {p for p in before if not p.endswith(("dangling.jpg", "self.jpg"))}
    assert all(before[p] == after[p] for p in unchanged)


def test_changed_file_is_rehashed_and_deleted_file_marked_missing(conn, tmp_path):
    root = tmp_path / "photos"
    a = save(photo(1), root / "a.jpg")
    b = save(photo(2), root / "b.jpg")
    save(photo(3), root / "sub" / "c.png")
    load_paths(conn, [root])
    old = rows(conn)
    save(photo(20), a)  # new content
    os.utime(a, ns=(time.time_ns(), old[str(a)]["mtime_ns"] + 5_000_000_000))
    b.unlink()
    summary = load_paths(conn, [root])
    assert (summary.loaded, summary.unchanged, summary.missing) == (1, 1, 1)
    new = rows(conn)
    assert new[str(a)]["id"] == old[str(a)]["id"]
    assert new[str(a)]["phash"] != old[str(a)]["phash"]
    assert new[str(a)]["change_seq"] > old[str(a)]["change_seq"]
    assert new[str(b)]["status"] == "missing" and new[str(b)]["missing_since"] is not None
    assert new[str(b)]["phash"] == old[str(b)]["phash"]  # kept, never deleted
    # back again: loaded as ok
    save(photo(2), b)
    again = load_paths(conn, [root])
    assert again.loaded == 1 and rows(conn)[str(b)]["status"] == "ok"
    # a non-recursive load of the root does not call the sub-folder's files missing
    assert load_paths(conn, [root], recursive=False).missing == 0
    assert rows(conn)[str(root / "sub" / "c.png")]["status"] == "ok"


def test_paths_with_quotes_sql_and_non_utf8_bytes(conn, tmp_path):
    root = tmp_path / "names"
    nasty = "it's \"x\"; DROP TABLE dbdedup.images; --.jpg"
    save(photo(1), root / nasty)
    raw = os.path.join(bytes(root), b"caf\xe9 \xff.png")
    with open(raw, "wb") as handle:
        photo(2).save(handle, "PNG")
    summary = load_paths(conn, [root])
    assert summary.loaded == 2
    stored = {bytes(r[0]): r[1] for r in conn.execute("SELECT path_bytes, path FROM dbdedup.images")}
    assert stored[os.fsencode(root / nasty)] == str(root / nasty)
    assert stored[raw].endswith("caf\\xe9 \\xff.png")
    assert load_paths(conn, [root]).unchanged == 2  # bytes paths match exactly on the next run


def test_missing_root_is_a_user_error_before_anything(conn, tmp_path):
    with pytest.raises(DbdedupError) as info:
        load_paths(conn, [tmp_path / "nope"])
    assert "nope" in info.value.message and info.value.hint
    assert conn.execute("SELECT count(*) FROM dbdedup.load_runs").fetchone()[0] == 0


def test_two_loads_at_once_are_refused(conn, db_dsn, tmp_path):
    save(photo(1), tmp_path / "a.jpg")
    with psycopg.connect(db_dsn, autocommit=True, application_name="dbdedup load") as other:
        other.execute("SELECT pg_advisory_lock(%s)", (LOAD_LOCK_KEY,))
        pid = other.info.backend_pid
        started = time.monotonic()
        with pytest.raises(DbdedupError) as info:
            load_paths(conn, [tmp_path], lock_wait=0.5)
        assert 0.5 <= time.monotonic() - started < 5
    assert f"pid {pid}" in info.value.message and "another dbdedup load" in info.value.hint
    assert load_paths(conn, [tmp_path]).loaded == 1


def test_hash_only_server_without_pgvector(plain_pg_dsn, tmp_path):
    from conftest import dsn_for

    name = f"hashonly_{os.getpid()}"
    with psycopg.connect(plain_pg_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    dsn = dsn_for(plain_pg_dsn, name)
    dbmod.apply_migrations(dsn)
    make_zoo(tmp_path / "zoo")
    with psycopg.connect(dsn) as conn:
        assert not dbmod.has_pgvector(conn)
        summary = load_paths(conn, [tmp_path / "zoo"])
        assert summary.loaded == sum(1 for r in ZOO_EXPECTED.values() if r is None)
        assert load_paths(conn, [tmp_path / "zoo"]).loaded == 0


def test_a_worker_killed_mid_run_loses_nothing_and_the_run_completes(conn, tmp_path):
    import multiprocessing

    total = 1500
    root = same_picture_files(tmp_path / "many", total, photo(2, (640, 480)), quality=92)

    class KillAWorker(LoadProgress):
        killed = False

        def files_done(self, done: int, errors: int) -> None:
            if done and not self.killed:
                workers = multiprocessing.active_children()
                assert workers, "the pool's workers are children of this process"
                os.kill(workers[0].pid, signal.SIGKILL)  # what the OOM killer does
                self.killed = True

    progress = KillAWorker()
    summary = load_paths(conn, [root], workers=2, progress=progress)
    assert progress.killed
    # the chunks lost with the worker were hashed again, one file at a time: none of them is to blame
    assert summary.loaded == total and summary.errors == {}
    assert conn.execute("SELECT status FROM dbdedup.load_runs").fetchone()[0] == "completed"
    assert conn.execute("SELECT count(*), count(DISTINCT path_bytes) FROM dbdedup.images "
                        "WHERE status = 'ok'").fetchone() == (total, total)


def test_a_file_that_kills_its_worker_becomes_an_error_row_and_the_rest_loads(conn, tmp_path, monkeypatch):
    from dbdedup import fingerprint

    # A decoder that dies on two files, as the OOM killer or a segfault would: the workers are
    # forked from this process after the patch, so each runs it and kills itself, for real.
    tests_pid, real_file_records = os.getpid(), fingerprint.file_records

    def file_records(paths, *args, **kwargs):
        if os.getpid() != tests_pid and any(b"CRASHME" in os.path.basename(path) for path in paths):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_file_records(paths, *args, **kwargs)

    monkeypatch.setattr(fingerprint, "file_records", file_records)
    root = tmp_path / "crashy"
    root.mkdir()
    data = jpeg_bytes(photo(3, (160, 120)), quality=90)
    total = 400
    for i in range(total):
        name = f"{i:04d}-CRASHME.jpg" if i in (37, 290) else f"{i:04d}.jpg"
        (root / name).write_bytes(data + i.to_bytes(4, "big"))
    summary = load_paths(conn, [root], workers=2)
    assert summary.errors == {"worker_crashed": 2}
    assert summary.loaded == total - 2
    stored = rows(conn)
    crashed = sorted(os.path.basename(p) for p, r in stored.items() if r["status"] == "error")
    assert crashed == ["0037-CRASHME.jpg", "0290-CRASHME.jpg"]
    assert {r["error"] for r in stored.values() if r["status"] == "error"} == {"worker_crashed"}
    assert all(r["status"] == "ok" and r["phash"] is not None
               for p, r in stored.items() if "CRASHME" not in p) and len(stored) == total
    run = conn.execute("SELECT status, loaded, errors FROM dbdedup.load_runs").fetchone()
    assert run == ("completed", total - 2, 2)
    assert sorted(r[0] for r in conn.execute("SELECT reason FROM dbdedup.load_errors")) == ["worker_crashed"] * 2
    # not retried while the file is unchanged, like any error that comes from the bytes
    again = load_paths(conn, [root], workers=2)
    assert again.unchanged == total and again.loaded == 0 and again.errors == {}


def _count_images(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FROM dbdedup.images").fetchone()[0]


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started (its load workers), from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(t) for t in text)
    return found


def _gone(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")  # a zombie nobody has reaped yet is dead


@pytest.mark.slow
@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "kill"])
def test_killing_only_the_loader_stops_its_workers_and_a_new_load_resumes(db_dsn, tmp_path, kill_signal):
    """`kill -9 PID` or `kill PID` of a real `dbdedup load` (the parent only, as a user does): its workers
    die with it, its session and load lock go, and a new load starts at once and loads every file once."""
    total = 3000
    root = same_picture_files(tmp_path / "many", total, photo(1, (640, 480)), quality=92)
    command = [sys.executable, "-c", "from dbdedup.cli.main import main; main()", "--db", db_dsn, "-q", "load",
               "--workers", "2", str(root)]
    # stderr to a file, not a pipe: workers that outlived the loader would hold a pipe open forever
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        process = subprocess.Popen(command, start_new_session=True, stderr=err)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    try:
        while _count_images(db_dsn) == 0:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        workers = _children(process.pid)
        assert len(workers) >= 2, "the load's worker processes must be running"
    finally:
        if process.poll() is None:
            os.kill(process.pid, kill_signal)  # the parent only: what `kill` and `kill -9` do
        process.wait(timeout=30)
    stderr = log.read_text()
    assert "Traceback" not in stderr, stderr
    if kill_signal == signal.SIGTERM:
        assert process.returncode == 143 and "stopped" in stderr
    deadline = time.monotonic() + 10
    try:
        while not all(_gone(pid) for pid in workers):
            assert time.monotonic() < deadline, "the workers outlived their loader"
            time.sleep(0.1)
    finally:
        for pid in workers:  # when the test fails: no orphan is left running
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    partial = _count_images(db_dsn)
    assert 0 < partial < total, "the load must have been killed mid-run"
    with psycopg.connect(db_dsn) as conn:
        killed_run, status, loaded = conn.execute("SELECT id, status, loaded FROM dbdedup.load_runs").fetchone()
        # kill -9 leaves the run 'running' for the next load to mark; a plain kill records it itself,
        # with the rows it wrote (not those hashed and never written)
        assert status == ("running" if kill_signal == signal.SIGKILL else "interrupted")
        if kill_signal == signal.SIGTERM:
            assert loaded == partial
        else:  # status tells a killed run from a running one, and writes nothing
            from dbdedup.status import GONE_STATUS, collect_status

            deadline = time.monotonic() + 10
            while collect_status(conn).runs[0]["status"] != GONE_STATUS:
                assert time.monotonic() < deadline, "status shows the killed run as running"
                conn.rollback()
                time.sleep(0.1)
            assert conn.execute("SELECT status FROM dbdedup.load_runs").fetchone()[0] == "running"
            conn.rollback()
        # the lock is free within seconds: a load that would wait for it longer fails
        summary = load_paths(conn, [root], workers=2, lock_wait=5)
        assert summary.interrupted_runs == ([killed_run] if kill_signal == signal.SIGKILL else [])
        assert summary.unchanged == partial and summary.loaded == total - partial
        counts = conn.execute("SELECT count(*), count(DISTINCT path_bytes), count(*) FILTER (WHERE status = 'ok'), "
                              "count(DISTINCT phash) FROM dbdedup.images").fetchone()
        assert counts == (total, total, total, 1)
        runs = conn.execute("SELECT id, status, message FROM dbdedup.load_runs ORDER BY id").fetchall()
        assert [r[1] for r in runs] == ["interrupted", "completed"]
        if kill_signal == signal.SIGKILL:
            assert str(runs[1][0]) in runs[0][2]
        else:
            assert "SIGTERM" in runs[0][2]


def test_a_fifo_named_like_an_image_is_an_error_row_and_never_opened(conn, tmp_path):
    save(photo(1), tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading would block the load forever
    os.mkfifo(tmp_path / "notes.fifo")  # not named like an image: not ours to mention
    summary = load_paths(conn, [tmp_path], workers=1)
    assert summary.loaded == 1 and summary.errors == {"not_a_file": 1}
    stored = rows(conn)
    pipe = stored[str(tmp_path / "pipe.jpg")]
    assert pipe["status"] == "error" and pipe["error"] == "not_a_file" and "FIFO" in pipe["error_detail"]
    assert str(tmp_path / "notes.fifo") not in stored
    assert conn.execute("SELECT count(*) FROM dbdedup.load_errors WHERE reason = 'not_a_file'").fetchone()[0] == 1


@pytest.mark.timeout(120)
def test_a_file_swapped_for_a_fifo_or_a_device_after_the_walk_is_never_read(conn, tmp_path, monkeypatch):
    # the walk sees regular files; by the time a worker reads them one is a FIFO (a read would block
    # the load forever) and one a link to /dev/zero (a read would never end): on a big tree that is hours
    import dbdedup.load as load_module

    save(photo(1), tmp_path / "a.jpg")
    save(photo(2), tmp_path / "pipe.jpg")
    save(photo(3), tmp_path / "zero.jpg")
    walk = load_module.scan

    def walk_then_swap(*args, **kwargs):
        entries = list(walk(*args, **kwargs))
        (tmp_path / "pipe.jpg").unlink()
        os.mkfifo(tmp_path / "pipe.jpg")
        (tmp_path / "zero.jpg").unlink()
        (tmp_path / "zero.jpg").symlink_to("/dev/zero")
        yield from entries

    monkeypatch.setattr(load_module, "scan", walk_then_swap)
    summary = load_paths(conn, [tmp_path], workers=1)
    assert summary.loaded == 1 and summary.errors == {"not_a_file": 2}
    stored = rows(conn)
    assert "FIFO" in stored[str(tmp_path / "pipe.jpg")]["error_detail"]
    assert "device" in stored[str(tmp_path / "zero.jpg")]["error_detail"]
    assert stored[str(tmp_path / "a.jpg")]["status"] == "ok"


def test_a_file_refused_for_max_pixels_is_loaded_when_the_limit_is_raised(conn, tmp_path):
    save(photo(1, (300, 200)), tmp_path / "big.png")
    first = load_paths(conn, [tmp_path], workers=1, max_pixels=10_000)
    assert first.errors == {"too_many_pixels": 1}
    same = load_paths(conn, [tmp_path], workers=1, max_pixels=10_000)
    assert same.unchanged == 1 and same.errors == {}  # the same limit: not tried again
    raised = load_paths(conn, [tmp_path], workers=1, max_pixels=100_000)
    assert raised.loaded == 1 and raised.errors == {}
    row = rows(conn)[str(tmp_path / "big.png")]
    assert row["status"] == "ok" and row["error"] is None and (row["width"], row["height"]) == (300, 200)


# ---------------------------------------------------------------- folders that cannot be read


def _drop_root_file_powers() -> None:
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this process: root then meets a file's mode as
    its owner does (a chmod 000 folder denies it), as any user would, and keeps reaching its own files."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    keep = ~((1 << 1) | (1 << 2))  # CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2
    data[0].effective &= keep
    data[0].permitted &= keep
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _load_as_a_user(dsn: str, roots: list[Path]) -> dict:
    """``load_paths`` as a user whom a folder's mode can deny: as root (who reads every folder whatever its
    mode), in a forked child that drops root's power over file modes once its connection is open. Returns
    the summary's as_dict()."""
    if os.geteuid() != 0:
        with psycopg.connect(dsn) as conn:
            return load_paths(conn, roots, workers=1).as_dict()
    from conftest import result_of_child

    def load_denied() -> dict:
        with psycopg.connect(dsn) as conn:
            _drop_root_file_powers()
            return load_paths(conn, roots, workers=1).as_dict()

    return result_of_child(load_denied)


def _kept(conn, path: Path) -> tuple:
    """What a load computed for ``path``, and whether its embedding is still stored."""
    return conn.execute("SELECT i.status, i.sha256, i.phash, i.change_seq, e.image_id IS NOT NULL "
                        "FROM dbdedup.images i LEFT JOIN dbdedup.image_embeddings e ON e.image_id = i.id "
                        "WHERE i.path = %s", (str(path),)).fetchone()


def test_a_folder_listed_but_not_entered_leaves_the_rows_under_it_as_they_were(db_dsn, tmp_path):
    # chmod 644 on a folder (r--: its names can be listed, nothing in it opened): its images were each
    # overwritten with a permission error, and those of its sub-folders marked gone from disk
    root = tmp_path / "q"
    try:
        files = [save(photo(1), root / "top" / "a.jpg"), save(photo(2), root / "top" / "inner" / "b.bmp"),
                 save(photo(3), root / "top" / "inner" / "deeper" / "c.jpg")]
        assert _load_as_a_user(db_dsn, [root])["loaded"] == 3
        with psycopg.connect(db_dsn) as conn:
            before = {p: _kept(conn, p) for p in files}
        assert all(row[0] == "ok" and row[4] for row in before.values())
        os.chmod(root / "top", 0o644)
        summary = _load_as_a_user(db_dsn, [root])
        assert (summary["missing"], summary["errors"], summary["loaded"]) == (0, {"permission_denied": 1}, 0)
        with psycopg.connect(db_dsn) as conn:
            assert {p: _kept(conn, p) for p in files} == before
            folder = conn.execute("SELECT path, status, error, error_detail FROM dbdedup.images "
                                  "WHERE status = 'error'").fetchall()
        assert folder == [(f"{root}/top/", "error", "permission_denied",
                           "no permission to read this directory: Permission denied")]
    finally:
        os.chmod(root / "top", 0o755)  # (for pytest to remove it)


def test_a_folder_that_could_not_be_read_is_never_a_file_gone_from_disk(db_dsn, tmp_path):
    # its error row stayed once the folder could be read again, and was marked missing by every load after
    from dbdedup.status import collect_status

    root = tmp_path / "p"
    try:
        save(photo(1), root / "a.jpg")
        inside = save(photo(2), root / "locked" / "l.jpg")
        _load_as_a_user(db_dsn, [root])
        os.chmod(root / "locked", 0o000)
        locked = _load_as_a_user(db_dsn, [root])
        assert locked["errors"] == {"permission_denied": 1} and locked["missing"] == 0
        os.chmod(root / "locked", 0o755)
        again = _load_as_a_user(db_dsn, [root])
        assert (again["missing"], again["errors"], again["unchanged"]) == (0, {}, 2)
        with psycopg.connect(db_dsn) as conn:
            assert sorted(r[0] for r in conn.execute("SELECT path FROM dbdedup.images")) == [
                str(root / "a.jpg"), str(inside)]
            assert collect_status(conn).counts["missing"] == 0 and collect_status(conn).counts["errors"] == 0
        # unreadable again, then deleted whole: its file is gone from disk, the folder's row just goes
        os.chmod(root / "locked", 0o000)
        _load_as_a_user(db_dsn, [root])
        os.chmod(root / "locked", 0o755)
        shutil.rmtree(root / "locked")
        gone = _load_as_a_user(db_dsn, [root])
        assert gone["missing"] == 1
        with psycopg.connect(db_dsn) as conn:
            assert dict(conn.execute("SELECT path, status FROM dbdedup.images").fetchall()) == {
                str(root / "a.jpg"): "ok", str(inside): "missing"}
    finally:
        if (root / "locked").exists():
            os.chmod(root / "locked", 0o755)


def test_folder_rows_an_older_loader_left_are_dropped_once_the_folder_is_walked(conn, tmp_path):
    # before folder rows ended in '/', a folder's row had its plain path; the loads since marked it missing
    save(photo(1), tmp_path / "box" / "a.jpg")
    load_paths(conn, [tmp_path], workers=1)
    with conn.transaction():
        conn.execute("INSERT INTO dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, error, "
                     "error_detail) VALUES (%s, %s, 0, 0, 'missing', 'permission_denied', "
                     "'no permission to read this directory: Permission denied')",
                     (str(tmp_path / "box"), bytes(tmp_path / "box")))
    summary = load_paths(conn, [tmp_path], workers=1)
    assert summary.missing == 0
    assert [r[0] for r in conn.execute("SELECT path FROM dbdedup.images")] == [str(tmp_path / "box" / "a.jpg")]


# ---------------------------------------------------------------- counts


def test_a_file_given_twice_or_with_its_folder_is_counted_and_hashed_once(conn, tmp_path):
    one = save(photo(1), tmp_path / "dup1" / "ok4.jpg")
    save(photo(2), tmp_path / "dup1" / "x.bmp")
    progress = RecordingProgress()
    summary = load_paths(conn, [one, tmp_path / "dup1", one], workers=1, progress=progress)
    assert (summary.files_seen, summary.loaded, summary.unchanged) == (2, 2, 0)
    assert progress.found[-1] == (2, True) and progress.done[-1] == (2, 0)
    again = load_paths(conn, [tmp_path / "dup1", one, one], workers=1)
    assert (again.files_seen, again.loaded, again.unchanged) == (2, 0, 2)
    assert conn.execute("SELECT files_seen, loaded, unchanged FROM dbdedup.load_runs ORDER BY id").fetchall() == [
        (2, 2, 0), (2, 0, 2)]


def test_an_interrupted_run_records_the_rows_it_wrote_not_those_it_hashed(conn, db_dsn, tmp_path, monkeypatch):
    # Ctrl-C (SIGINT to the loader) as the results of a chunk wait to be written: the run said it loaded
    # them, though they were never stored. The signal is sent as the loader is about to write a batch when an
    # earlier one is stored: however the workers' results arrive (one collection or many), some rows are then
    # written and others hashed but not (in session 50's first CI runs, on a faster machine, every result arrived in
    # one collection, and a trigger on the progress bar's counts never fired)
    import dbdedup.load as load_module

    monkeypatch.setattr(load_module, "WRITE_SECONDS", 0.0)  # each chunk written as it comes: some are stored
    monkeypatch.setattr(load_module, "WRITE_ROWS", 50)  # and in batches of 50 rows at most
    total = 300
    root = same_picture_files(tmp_path / "many", total, photo(4, (320, 240)), quality=90, digits=4)
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")

    class Stored:
        value = None

    with psycopg.connect(db_dsn, autocommit=True) as watcher:
        real = load_module._Loader._write_with_retries

        def write_or_ctrl_c(self, rows):
            stored = watcher.execute("SELECT count(*) FROM dbdedup.images").fetchone()[0]
            if Stored.value is None and stored > 0:  # some written, these rows not yet
                Stored.value = stored
                os.kill(os.getpid(), signal.SIGINT)
            return real(self, rows)

        monkeypatch.setattr(load_module._Loader, "_write_with_retries", write_or_ctrl_c)
        # Ctrl-C as in a terminal: a test run started in the background by sh (`pytest &`) inherits SIGINT
        # ignored, and Python then installs no handler of its own (the cause of session 50's red CI runs)
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with pytest.raises(KeyboardInterrupt):
                load_paths(conn, [root], workers=1)
        finally:
            signal.signal(signal.SIGINT, previous)
        monkeypatch.setattr(load_module._Loader, "_write_with_retries", real)
    assert Stored.value
    stored = conn.execute("SELECT count(*), count(*) FILTER (WHERE status = 'ok') FROM dbdedup.images").fetchone()
    run = conn.execute("SELECT status, loaded, errors FROM dbdedup.load_runs").fetchone()
    assert run == ("interrupted", stored[1], stored[0] - stored[1]) and stored[0] == Stored.value
    summary = load_paths(conn, [root], workers=1)
    assert summary.loaded + summary.error_count == total + 1 - stored[0] and summary.unchanged == stored[0]


def test_a_signal_as_a_batch_commits_leaves_the_run_counting_that_batch(conn, tmp_path, monkeypatch):
    # `kill PID` or Ctrl-C while the loader waits for COMMIT's reply: the server has stored the batch, the
    # loader raises before its own count of them grows. The run must still count them (the kill test saw
    # 'loaded' 0 with 448 rows stored).
    import contextlib
    import inspect

    import dbdedup.load as load_module

    monkeypatch.setattr(load_module, "WRITE_SECONDS", 0.0)
    monkeypatch.setattr(load_module, "WRITE_ROWS", 20)
    root = same_picture_files(tmp_path / "many", 90, photo(3, (160, 120)), quality=90, digits=3)
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    real = conn.transaction
    batches = []

    @contextlib.contextmanager
    def transaction_then_signal(*args, **kwargs):
        with real(*args, **kwargs) as tx:
            yield tx
        if inspect.stack()[2].function == "_write_batch":
            batches.append(1)
            if len(batches) == 2:
                raise load_module.Terminated()  # what the CLI's SIGTERM handler raises

    monkeypatch.setattr(conn, "transaction", transaction_then_signal)
    with pytest.raises(load_module.Terminated):
        load_paths(conn, [root], workers=1)
    monkeypatch.setattr(conn, "transaction", real)
    ok, failed = conn.execute("SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status = 'error') "
                              "FROM dbdedup.images").fetchone()
    assert ok + failed == 40, "two batches of 20 stored"
    assert conn.execute("SELECT status, loaded, errors FROM dbdedup.load_runs").fetchone() == ("interrupted", ok, failed)
