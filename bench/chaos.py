"""Chaos: break dbdedup the ways a user's machine does, and show that nothing is lost.

Each scenario runs the real `dbdedup` command line on images drawn with Pillow, breaks it, runs it
again, and compares what is on disk with what the database holds:

1. kill -9 the loader's process (its PID only, as a user does): its workers must die with it, and the
   next load must take the lock at once and load every file once;
2. kill the database server (SIGKILL to the postmaster) in the middle of a load: the load must stop
   with one line and a hint, and the next one (the embedded server starts again) must finish;
3. run `dbdedup match` while a load runs: both must finish (the match waits for the load), and an
   incremental match must then find what a full one finds;
4. fill a small tmpfs under `apply --move-to` (root only): the moves that do not fit fail, no
   temporary file is left, and `undo` brings every moved file back byte for byte;
5. a second local user (root only: a throwaway system user, with runuser) tries to open the
   embedded server with psql at the owner's URL: it must be refused.

Run: .venv/bin/python bench/chaos.py [--images N] [--keep]. Exits 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from images import jpeg_bytes, mirrored, photo, resized, save  # noqa: E402

CLI = [sys.executable, "-c", "from dbdedup.cli.main import main; main()"]
PROBE_USER = "dbdedup-chaos"
failures: list[str] = []


def say(text: str) -> None:
    print(text, flush=True)


def check(ok: bool, what: str) -> None:
    say(f"    {'ok  ' if ok else 'LOST'} {what}")
    if not ok:
        failures.append(what)


def dbdedup(data_dir: Path, *args: str, stderr=None, wait: bool = True):
    command = [*CLI, "--data-dir", str(data_dir), *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    return subprocess.run(command, capture_output=True, text=True)


_urls: dict[Path, str] = {}


def url(data_dir: Path) -> str:
    """The owner's URL of the embedded server in ``data_dir`` (started, and the schema made, on first use)."""
    if data_dir not in _urls:
        made = dbdedup(data_dir, "migrate")
        assert made.returncode == 0, made.stderr
        _urls[data_dir] = dbdedup(data_dir, "db", "url").stdout.strip()
    return _urls[data_dir]


def rows(data_dir: Path, sql: str) -> list[tuple]:
    with psycopg.connect(url(data_dir)) as conn:
        return conn.execute(sql).fetchall()


def stored(data_dir: Path) -> tuple[int, int]:
    """(ok rows, distinct ok paths) in dbdedup.images."""
    return rows(data_dir, "SELECT count(*), count(DISTINCT path_bytes) FROM dbdedup.images WHERE status = 'ok'")[0]


def many_files(root: Path, count: int) -> Path:
    """``count`` distinct JPEG files of one picture (bytes after the end marker differ): slow enough to kill."""
    root.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes(photo(1, (640, 480)), quality=92)
    for i in range(count):
        (root / f"{i:05d}.jpg").write_bytes(data + i.to_bytes(4, "big"))
    return root


def wait_for_rows(data_dir: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while stored(data_dir)[0] == 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the load ended before it could be broken: use more --images")
        time.sleep(0.05)


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(t) for t in (task / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the scenarios


def kill_the_loader(base: Path, images: int) -> None:
    say("1. kill -9 the `dbdedup load` process (its PID only) in the middle of a load")
    data_dir, photos = base / "pg1", many_files(base / "photos1", images)
    url(data_dir)
    process = dbdedup(data_dir, "-q", "load", "--workers", "2", str(photos), stderr=subprocess.DEVNULL, wait=False)
    wait_for_rows(data_dir, process)
    workers = children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = stored(data_dir)[0]
    say(f"    tried: killed pid {process.pid} after {partial} of {images} files were stored; "
        f"its {len(workers)} workers: {sorted(workers)}")
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    check(not any(alive(w) for w in workers), "the workers died with the loader (within 10 s)")
    started = time.monotonic()
    again = dbdedup(data_dir, "--lock-wait", "5", "-q", "load", "--workers", "2", str(photos))
    check(again.returncode == 0, f"a new load took the lock and finished ({time.monotonic() - started:.1f} s): "
                                 f"{again.stderr.strip() or 'no error'}")
    check(stored(data_dir) == (images, images), f"files on disk {images}, rows {stored(data_dir)} (ok, distinct)")
    runs = [r[0] for r in rows(data_dir, "SELECT status FROM dbdedup.load_runs ORDER BY id")]
    check(runs == ["interrupted", "completed"], f"load runs: {runs}")


def kill_the_server(base: Path, images: int) -> None:
    say("2. kill the database server (SIGKILL to the postmaster) in the middle of a load")
    data_dir, photos = base / "pg2", many_files(base / "photos2", images)
    url(data_dir)
    log = base / "load2.err"
    with open(log, "w") as err:
        process = dbdedup(data_dir, "-q", "load", "--workers", "2", str(photos), stderr=err, wait=False)
    wait_for_rows(data_dir, process)
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    code = process.wait(timeout=60)
    say(f"    tried: killed the postmaster (pid {postmaster}); the load exited {code}")
    message = log.read_text()
    check(code == 1 and "Traceback" not in message and "hint:" in message,
          "the load said so in one line and a hint: " + " / ".join(message.strip().splitlines()[-2:]))
    time.sleep(2)  # the old server's other processes exit when they see the postmaster gone
    again = dbdedup(data_dir, "-q", "load", "--workers", "2", str(photos))
    check(again.returncode == 0, f"the next load started the server again and finished: {again.stderr.strip() or 'ok'}")
    check(stored(data_dir) == (images, images), f"files on disk {images}, rows {stored(data_dir)} (ok, distinct)")


def match_during_a_load(base: Path, images: int) -> None:
    say("3. `dbdedup match` while a load runs")
    data_dir, photos = base / "pg3", base / "photos3"
    for seed in range(max(60, images // 5)):
        picture = photo(700 + seed, (200, 150))
        save(picture, photos / "o" / f"{seed:04d}.jpg", quality=92)
        save(resized(picture, 0.6), photos / "small" / f"{seed:04d}.jpg", quality=85)
        if seed % 3 == 0:
            save(mirrored(picture), photos / "mirror" / f"{seed:04d}.jpg", quality=90)
    first = dbdedup(data_dir, "-q", "load", str(photos / "o"))
    assert first.returncode == 0, first.stderr
    dbdedup(data_dir, "-q", "match")
    before = stored(data_dir)[0]
    log = base / "load3.err"
    with open(log, "w") as err:
        load = dbdedup(data_dir, "-q", "load", "--workers", "2", str(photos), stderr=err, wait=False)
    while stored(data_dir)[0] == before and load.poll() is None:
        time.sleep(0.02)
    match = dbdedup(data_dir, "--lock-wait", "300", "match")
    load.wait(timeout=300)
    load_err = log.read_text()
    waited = [line for line in match.stderr.splitlines() if "waiting" in line]
    say(f"    tried: a match started once the load of {sum(1 for _ in photos.rglob('*.jpg'))} files had written "
        f"its first batch; it said: {waited[0] if waited else '(no wait: the load had finished)'}")
    check(load.returncode == 0 and "Traceback" not in load_err, f"the load finished: {load_err.strip() or 'ok'}")
    check(match.returncode == 0, "the match finished: " + (match.stderr.strip().splitlines() or ["ok"])[-1])
    status = rows(data_dir, "SELECT status FROM dbdedup.load_runs ORDER BY id DESC LIMIT 1")[0][0]
    check(status == "completed", f"the load's run is {status}")
    without = rows(data_dir, "SELECT count(*) FROM dbdedup.images i WHERE status = 'ok' AND NOT EXISTS "
                             "(SELECT 1 FROM dbdedup.image_embeddings e WHERE e.image_id = i.id "
                             "AND e.embedding IS NOT NULL)")[0][0]
    check(without == 0, f"images without an embedding vector: {without}")
    dbdedup(data_dir, "-q", "match")
    pairs_sql = "SELECT image_a, image_b, distance, round(similarity::numeric, 3) FROM dbdedup.pairs ORDER BY 1, 2"
    clusters_sql = "SELECT count(*), count(DISTINCT cluster_id) FROM dbdedup.cluster_members"
    incremental = (rows(data_dir, pairs_sql), rows(data_dir, clusters_sql))
    dbdedup(data_dir, "-q", "match", "--full")
    full = (rows(data_dir, pairs_sql), rows(data_dir, clusters_sql))
    check(incremental == full, f"incremental match = full match ({len(full[0])} pairs, "
                               f"{full[1][0][1]} clusters of {full[1][0][0]} images)")


def full_disk_under_move_to(base: Path) -> None:
    say("4. `apply --move-to` onto a 20 KiB tmpfs")
    if os.geteuid() != 0:
        say("    skipped: mounting a tmpfs needs root")
        return
    data_dir, photos = base / "pg4", base / "photos4"
    for seed in range(6):
        picture = photo(900 + seed, (256, 192))
        save(picture, photos / "o" / f"{seed}.jpg", quality=92)
        save(resized(picture, 0.7), photos / "copies" / f"{seed}.jpg", quality=90)
    dbdedup(data_dir, "-q", "load", str(photos))
    before = tree(photos)
    target = base / "tmpfs"
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20k", "tmpfs", str(target)],
                      capture_output=True).returncode:
        say("    skipped: cannot mount a tmpfs here")
        return
    try:
        applied = dbdedup(data_dir, "apply", "--move-to", str(target), "--yes", "--manifest", str(base / "m.jsonl"))
        say(f"    tried: {applied.stdout.strip().splitlines()[0] if applied.stdout.strip() else applied.stderr.strip()}")
        leftovers = [str(p) for p in target.rglob(".dbdedup-*")]
        check(not leftovers, f"temporary files left on the full disk: {leftovers or 'none'}")
        undone = dbdedup(data_dir, "undo", str(base / "m.jsonl"))
        check(undone.returncode == 0, f"undo: {undone.stdout.strip()}")
        check(tree(photos) == before, f"every file is back, byte for byte ({len(before)} files)")
        check(not [p for p in target.rglob("*") if p.is_file()], "nothing left on the tmpfs")
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


def second_local_user(base: Path) -> None:
    say("5. a second local user opens the embedded server with psql at the owner's URL")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        say("    skipped: acting as another local user needs root and runuser")
        return
    data_dir = base / ("p" * 90) / "pgdata"  # a long path: the socket goes outside the data directory
    data_dir.parent.mkdir(parents=True)
    uri = url(data_dir)
    made = False
    try:
        pwd.getpwnam(PROBE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PROBE_USER],
                       check=True, capture_output=True)
        made = True
    try:
        from dbdedup import embedded

        psql = str(embedded.bin_path("psql"))
        for user in (None, "postgres"):
            target = uri if user is None else make_conninfo(uri, user=user)
            probe = subprocess.run(["runuser", "-u", PROBE_USER, "--", psql, target, "-Atc", "SELECT current_user"],
                                   capture_output=True, text=True, cwd="/")
            refused = probe.returncode != 0
            check(refused, f"{PROBE_USER} refused ({user or 'as the URL says'}): "
                           + (probe.stderr.strip().splitlines() or ["connected!"])[-1])
    finally:
        if made:
            subprocess.run(["userdel", PROBE_USER], capture_output=True)
        dbdedup(data_dir, "db", "stop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="files per load scenario (enough to kill mid-load)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dbdedup-chaos-"))
    say(f"work folder: {base}")
    try:
        kill_the_loader(base, args.images)
        kill_the_server(base, args.images)
        match_during_a_load(base, args.images)
        full_disk_under_move_to(base)
        second_local_user(base)
    finally:
        for data_dir in base.glob("pg*"):
            dbdedup(data_dir, "db", "stop")
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    say("")
    say("nothing lost" if not failures else f"LOST OR BROKEN: {len(failures)}: " + "; ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
