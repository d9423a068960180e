"""`dbdedup apply` and `dbdedup undo`: dry run, move/delete/hardlink exactly the non-keepers,
re-checks, protected reference paths, the manifest, and recovery from a crash half-way."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from test_report_sample import load, make_collection, members, run_cli, tree_state


def _non_keepers(dsn: str) -> set[bytes]:
    return {bytes(m["path_bytes"]) for m in members(dsn) if not m["is_keeper"] and not m["is_protected"]}


def _keepers(dsn: str) -> set[bytes]:
    return {bytes(m["path_bytes"]) for m in members(dsn) if m["is_keeper"]}


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def loaded(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    run_cli(db_dsn, "report", "--format", "json")  # clusters exist; apply would make them too
    return col


def test_dry_run_changes_nothing(db_dsn, tmp_path, loaded):
    before = tree_state(loaded.root)
    for args in (["--move-to", str(tmp_path / "removed")], ["--delete"], ["--hardlink"]):
        result = run_cli(db_dsn, "apply", *args)
        assert "dry run" in result.stdout and "add --yes" in result.stdout
    assert tree_state(loaded.root) == before
    assert not (tmp_path / "removed").exists()
    plan = run_cli(db_dsn, "apply", "--delete").stdout
    assert "cannot be undone" in plan
    for path in _non_keepers(db_dsn):
        assert os.fsdecode(path) in plan
    freed = sum(os.path.getsize(p) for p in _non_keepers(db_dsn))
    assert f"({freed:,} bytes)" in plan


def test_move_then_undo_restores_everything(db_dsn, tmp_path, loaded):
    before = tree_state(loaded.root)
    targets, keepers = _non_keepers(db_dsn), _keepers(db_dsn)
    assert len(targets) == 5
    manifest = tmp_path / "m.jsonl"
    moved_to = tmp_path / "removed"
    result = run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(manifest))
    assert "5 files done" in result.stdout and "dbdedup undo" in result.stdout
    after = tree_state(loaded.root)
    assert set(before) - set(after) == targets  # exactly the non-keepers left
    assert all(after[k] == before[k] for k in keepers)
    for path in targets:  # ... and sit under the move-to dir, unchanged
        placed = os.path.join(os.fsencode(moved_to), path.lstrip(b"/"))
        assert tree_state(moved_to)[placed] == before[path]
    events = _manifest(manifest)
    assert events[0]["manifest"] == "dbdedup-apply" and events[0]["event"] == "start"
    assert events[0]["action"] == "move"
    intents = [e for e in events if e.get("event") == "intent"]
    dones = [e for e in events if e.get("event") == "done"]
    assert {bytes.fromhex(e["path_bytes"]) for e in intents} == targets
    assert sorted(e["seq"] for e in dones) == sorted(e["seq"] for e in intents)
    # each done line comes after its intent line
    order = [(e.get("event"), e.get("seq")) for e in events]
    assert all(order.index(("intent", s)) < order.index(("done", s)) for s in (e["seq"] for e in dones))
    with psycopg.connect(db_dsn) as conn:
        gone = conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'missing'").fetchone()[0]
    assert gone == 5

    undone = run_cli(db_dsn, "undo", str(manifest))
    assert "5 restored" in undone.stdout
    assert tree_state(loaded.root) == before
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'missing'").fetchone()[0] == 0
    again = run_cli(db_dsn, "undo", str(manifest))  # harmless twice
    assert "0 restored" in again.stdout and tree_state(loaded.root) == before


def test_delete_removes_exactly_the_non_keepers(db_dsn, tmp_path, loaded):
    before = tree_state(loaded.root)
    targets = _non_keepers(db_dsn)
    manifest = tmp_path / "m.jsonl"
    result = run_cli(db_dsn, "apply", "--delete", "--yes", "--manifest", str(manifest))
    assert "cannot be undone" in result.stderr
    after = tree_state(loaded.root)
    assert set(before) - set(after) == targets and all(after[p] == before[p] for p in after)
    undo = run_cli(db_dsn, "undo", str(manifest))
    assert "5 cannot be undone" in undo.stdout


def test_hardlink_only_links_exact_duplicates(db_dsn, tmp_path, loaded):
    before = tree_state(loaded.root)
    copy = os.fsencode(loaded.near["o101_copy.jpg"][1])
    original = os.fsencode(loaded.originals["o101"])
    result = run_cli(db_dsn, "apply", "--hardlink", "--yes", "--manifest", str(tmp_path / "m.jsonl"))
    assert "1 files done" in result.stdout
    assert os.path.samefile(copy, original)
    after = tree_state(loaded.root)
    assert set(after) == set(before)
    assert all(after[p][0] == before[p][0] for p in before)  # no content changed anywhere
    # near-duplicates keep their own inode
    for name, (_, path) in loaded.near.items():
        if name != "o101_copy.jpg":
            assert os.stat(path).st_nlink == 1
    run_cli(db_dsn, "undo", str(tmp_path / "m.jsonl"))
    assert not os.path.samefile(copy, original) and Path(os.fsdecode(copy)).read_bytes() == Path(
        os.fsdecode(original)).read_bytes()


def test_hardlink_leaves_a_copy_whose_owner_or_mode_differs_from_its_keepers(db_dsn, tmp_path, loaded):
    # linked, the copy's path would take the keeper's owner and mode: readable by others, or no longer
    # its owner's to write
    copy = loaded.near["o101_copy.jpg"][1]
    original = loaded.originals["o101"]
    os.chmod(original, 0o644)
    os.chmod(copy, 0o600)
    reason = "has another owner, group or mode than its keeper"
    assert reason in run_cli(db_dsn, "apply", "--hardlink").stdout  # the dry run says so
    result = run_cli(db_dsn, "apply", "--hardlink", "--yes", "--manifest", str(tmp_path / "m1.jsonl"))
    assert "0 files done" in result.stdout and reason in result.stderr
    assert not os.path.samefile(copy, original) and os.stat(copy).st_mode & 0o777 == 0o600
    os.chmod(copy, 0o644)
    if os.geteuid() == 0:
        os.chown(copy, 65534, os.stat(copy).st_gid)  # another user's copy of root's picture
        result = run_cli(db_dsn, "apply", "--hardlink", "--yes", "--manifest", str(tmp_path / "m2.jsonl"))
        assert "0 files done" in result.stdout and reason in result.stderr
        assert not os.path.samefile(copy, original) and os.stat(copy).st_uid == 65534
        os.chown(copy, os.stat(original).st_uid, os.stat(original).st_gid)
    result = run_cli(db_dsn, "apply", "--hardlink", "--yes", "--manifest", str(tmp_path / "m3.jsonl"))
    assert "1 files done" in result.stdout and os.path.samefile(copy, original)


def test_a_file_changed_after_load_is_skipped(db_dsn, tmp_path, loaded):
    changed = loaded.near["o102_bright.jpg"][1]
    st = os.stat(changed)
    data = bytearray(changed.read_bytes())
    data[-3] ^= 0xFF  # same size, same mtime, different content: only the SHA-256 tells
    changed.write_bytes(bytes(data))
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    touched = loaded.near["o101_small.jpg"][1]
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # mtime only
    manifest = tmp_path / "m.jsonl"
    result = run_cli(db_dsn, "apply", "--delete", "--yes", "--manifest", str(manifest))
    assert changed.exists() and touched.exists()
    assert "3 files done" in result.stdout and "2 skipped" in result.stdout
    assert "changed since it was loaded (content)" in result.stderr
    assert "changed since it was loaded (modified time)" in result.stderr
    skips = {e["path"]: e["reason"] for e in _manifest(manifest) if e.get("event") == "skip"}
    assert set(skips) == {str(changed), str(touched)}


def test_reference_paths_are_never_touched(db_dsn, tmp_path, loaded):
    reference = loaded.root / "copies"
    before = tree_state(reference)
    result = run_cli(db_dsn, "apply", "--delete", "--yes", "--reference", str(reference),
                     "--manifest", str(tmp_path / "m.jsonl"))
    assert tree_state(reference) == before
    assert "files done" in result.stdout
    # with copies protected, the originals that are not keepers are the only ones removed
    events = _manifest(tmp_path / "m.jsonl")
    for e in events:
        if e.get("event") == "intent":
            assert not e["path"].startswith(str(reference) + "/")


def test_a_crash_half_way_is_recorded_and_undone(db_dsn, tmp_path, loaded, monkeypatch):
    """Kill the run between the link and the unlink of a move: the manifest has an intent with no
    done line, the file is in both places; undo puts everything back as it was."""
    from dbdedup import apply as ap

    before = tree_state(loaded.root)
    calls = {"n": 0}
    real_unlink = os.unlink

    def dying_unlink(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third file: linked into place, source not yet removed
            raise KeyboardInterrupt
        return real_unlink(path, *args, **kwargs)

    with psycopg.connect(db_dsn) as conn:
        plan = ap.plan_actions(conn, "move", move_to=tmp_path / "removed")
        monkeypatch.setattr(ap.os, "unlink", dying_unlink)
        with pytest.raises(KeyboardInterrupt):
            ap.execute_plan(conn, plan, tmp_path / "m.jsonl")
        monkeypatch.setattr(ap.os, "unlink", real_unlink)
    events = _manifest(tmp_path / "m.jsonl")
    assert [e["event"] for e in events] == ["start", "intent", "done", "intent", "done", "intent"]
    interrupted = bytes.fromhex(events[-1]["path_bytes"])
    assert os.path.exists(interrupted)  # untouched at its path
    result = run_cli(db_dsn, "undo", str(tmp_path / "m.jsonl"))
    assert "2 restored" in result.stdout and "1 interrupted actions rolled back" in result.stdout
    assert tree_state(loaded.root) == before
    # nothing left there but the note that dbdedup made the folder (scan.MARKER_NAME)
    assert [os.path.basename(p) for p in tree_state(tmp_path / "removed")] == [b".dbdedup-made-this-folder"]


def test_apply_needs_exactly_one_action(db_dsn, loaded):
    result = run_cli(db_dsn, "apply", "--delete", "--hardlink", ok=False)
    assert result.exit_code == 1 and "choose one action" in result.stderr


def test_apply_acts_on_the_clustering_last_reviewed(db_dsn, tmp_path, loaded):
    """`report --reference X --threshold 4` then a bare `apply`: the same clustering, X still protected."""
    reference = loaded.root / "copies"
    run_cli(db_dsn, "report", "--reference", str(reference), "--threshold", "4")
    before = tree_state(reference)
    result = run_cli(db_dsn, "apply", "--delete", "--yes", "--manifest", str(tmp_path / "m.jsonl"))
    assert "clustering: phash distance <= 4" in result.stderr and "1 reference path" in result.stderr
    assert tree_state(reference) == before
    assert "files done" in result.stdout


def test_move_across_file_systems_and_back(db_dsn, tmp_path, loaded):
    """--move-to on another file system: copied, fsynced, linked into place, then the source removed."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev or not os.access(shm, os.W_OK):
        pytest.skip("needs /dev/shm on a file system other than the temporary directory's")
    before = tree_state(loaded.root)
    targets = _non_keepers(db_dsn)
    moved_to = Path(tempfile.mkdtemp(dir=shm))
    try:
        result = run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(tmp_path / "m.jsonl"))
        assert "5 files done" in result.stdout
        moved = tree_state(moved_to)
        assert len(moved) == 5 and not any(name.startswith(b".dbdedup-") for name in map(os.path.basename, moved))
        for path in targets:
            assert not os.path.exists(path)
            assert moved[os.path.join(os.fsencode(moved_to), path.lstrip(b"/"))] == before[path]  # mtime kept
        run_cli(db_dsn, "undo", str(tmp_path / "m.jsonl"))
        assert tree_state(loaded.root) == before and tree_state(moved_to) == {}
    finally:
        shutil.rmtree(moved_to, ignore_errors=True)


def test_root_moving_another_users_files_across_file_systems_and_back_keeps_them_theirs(db_dsn, tmp_path, loaded):
    """A copy across file systems is a new file: made by root, it was root's, and so was the file undo put
    back. Like mv, apply gives the copy its source's owner and group."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if os.geteuid() != 0:
        pytest.skip("only root may give a file to another user")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a file system other than the temporary directory's")
    targets = _non_keepers(db_dsn)
    for path in targets:
        os.chown(path, 65534, 65534)  # nobody's, as files under /home are their users'
    moved_to = Path(tempfile.mkdtemp(dir=shm))
    try:
        result = run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(tmp_path / "m.jsonl"))
        assert "5 files done" in result.stdout
        for path in targets:
            moved = os.stat(os.path.join(os.fsencode(moved_to), path.lstrip(b"/")))
            assert (moved.st_uid, moved.st_gid) == (65534, 65534)
        run_cli(db_dsn, "undo", str(tmp_path / "m.jsonl"))
        for path in targets:
            assert (os.stat(path).st_uid, os.stat(path).st_gid) == (65534, 65534)
    finally:
        shutil.rmtree(moved_to, ignore_errors=True)


def test_a_load_of_the_parent_folder_leaves_out_what_apply_moved_away(db_dsn, tmp_path, loaded):
    """apply --move-to a new folder inside the loaded tree, then load the tree again: the duplicates moved
    away were loaded back as images of their own, clustered with their keepers again, and a later
    apply --delete could delete them, the copies undo needs."""
    from dbdedup.scan import MARKER_NAME

    moved_to = loaded.root / "dbdedup-removed"
    run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(tmp_path / "m.jsonl"))
    assert (moved_to / os.fsdecode(MARKER_NAME)).is_file()
    moved = sorted(p for p in tree_state(moved_to) if not p.endswith(MARKER_NAME))
    assert len(moved) == 5
    again = run_cli(db_dsn, "load", str(loaded.root))
    assert f"left out {moved_to}: dbdedup made it" in again.stderr
    with psycopg.connect(db_dsn) as conn:
        under = conn.execute("SELECT count(*) FROM dbdedup.images WHERE starts_with(path, %s)",
                             (str(moved_to) + "/",)).fetchone()[0]
    assert under == 0
    report = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)
    assert report["clusters"] == []
    # given itself, the folder loads
    run_cli(db_dsn, "load", str(moved_to))
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'ok' AND starts_with(path, %s)",
                            (str(moved_to) + "/",)).fetchone()[0] == 5
    # an existing folder the user names may hold other pictures: no marker is put there
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    run_cli(db_dsn, "apply", "--move-to", str(chosen), "--yes", "--manifest", str(tmp_path / "m2.jsonl"))
    assert not (chosen / os.fsdecode(MARKER_NAME)).exists()


def test_a_keeper_reached_through_a_bind_mount_is_never_removed(db_dsn, tmp_path):
    """A folder mounted twice (mount --bind) names one directory entry by two paths that realpath does not
    join: loaded through both, the keeper's other path was a "same file" duplicate, and deleting or moving it
    removed the keeper itself."""
    import subprocess

    from images import photo, resized, save

    if os.geteuid() != 0:
        pytest.skip("mount --bind needs root")
    first, second = tmp_path / "first", tmp_path / "second"
    save(photo(301), first / "big.jpg", quality=92)
    save(resized(photo(301), 0.5), first / "small.jpg", quality=85)
    second.mkdir()
    if subprocess.run(["mount", "--bind", str(first), str(second)], capture_output=True).returncode != 0:
        pytest.skip("mount --bind is not permitted here")
    try:
        load(db_dsn, first)
        load(db_dsn, second)  # a load of its own: one walk enters a folder once
        run_cli(db_dsn, "report", "--format", "json")
        assert len(members(db_dsn)) == 4
        keeper = next(m["path"] for m in members(db_dsn) if m["is_keeper"])
        alias = ({str(first / "big.jpg"), str(second / "big.jpg")} - {keeper}).pop()
        reason = "itself, reached through another mount of its folder"
        dry = run_cli(db_dsn, "apply", "--delete")
        line = next(line for line in dry.stdout.splitlines() if line.startswith(f"delete {alias} "))
        assert reason in line and keeper in line
        result = run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes",
                         "--manifest", str(tmp_path / "m.jsonl"))
        assert reason in result.stderr
        assert (first / "big.jpg").is_file() and (second / "big.jpg").is_file()
        assert not (first / "small.jpg").exists()  # the duplicate itself went, by one of its two paths
    finally:
        subprocess.run(["umount", str(second)], check=True)


def test_root_undoing_puts_a_users_emptied_folder_back_as_theirs(db_dsn, tmp_path, loaded):
    """apply moved every file out of a user's folder, the user removed the empty folder, root ran undo: the
    folder undo made again was root's, and the user could no longer add or remove files in it."""
    if os.geteuid() != 0:
        pytest.skip("only root may give a folder to another user")
    copies = loaded.root / "copies"
    targets = [p for p in _non_keepers(db_dsn) if os.path.dirname(p) == bytes(copies)]
    assert targets
    for path in [copies, *copies.iterdir()]:
        os.chown(path, 65534, 65534)
    run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes", "--manifest", str(tmp_path / "m.jsonl"))
    copies.rename(loaded.root / "copies.kept")  # the user tidies the folder away with what is left in it
    run_cli(db_dsn, "undo", str(tmp_path / "m.jsonl"))
    assert (copies.stat().st_uid, copies.stat().st_gid) == (65534, 65534)
    assert all((os.stat(p).st_uid, os.stat(p).st_gid) == (65534, 65534) for p in targets)


def test_undo_leaves_a_moved_file_that_changed(db_dsn, tmp_path, loaded):
    manifest = tmp_path / "m.jsonl"
    run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes", "--manifest", str(manifest))
    intent = next(e for e in _manifest(manifest) if e.get("event") == "intent")
    moved = bytes.fromhex(intent["destination_bytes"])
    with open(moved, "ab") as f:
        f.write(b"edited after the move")
    result = run_cli(db_dsn, "undo", str(manifest), ok=False)
    assert result.exit_code == 1 and "changed after it was moved" in result.stderr
    assert "4 restored" in result.stdout
    assert os.path.exists(moved) and not os.path.exists(bytes.fromhex(intent["path_bytes"]))


def test_kill_9_half_way_leaves_every_file_whole_and_undo_restores(db_dsn, tmp_path):
    """A real `dbdedup apply --yes` killed with SIGKILL while moving 400 copies: every file is at
    its path or fully moved (the manifest says which), and undo restores the tree exactly."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from images import photo, save

    root = tmp_path / "photos"
    for i in range(100):  # 100 pictures with 4 byte-identical copies each (few pairs, many files to move)
        first = save(photo(400 + i, (64, 48)), root / f"p{i:03d}.jpg", quality=90)
        for j in range(4):
            (root / f"copies{j}").mkdir(exist_ok=True)
            shutil.copy2(first, root / f"copies{j}" / f"p{i:03d}.jpg")
    load(db_dsn, root)
    assert json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)["summary"]["removable_images"] == 400
    before = tree_state(root)
    manifest, moved_to = tmp_path / "m.jsonl", tmp_path / "removed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbdedup", "--db", db_dsn, "apply", "--move-to", str(moved_to), "--yes",
         "--manifest", str(manifest)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count('"done"') >= 20:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "apply finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    from dbdedup.apply import read_manifest

    _, events = read_manifest(manifest)
    intents = {e["seq"]: e for e in events if e.get("event") == "intent"}
    done = {e["seq"] for e in events if e.get("event") == "done"}
    assert 20 <= len(done) < 399 and "end" not in [e.get("event") for e in events]
    for seq, e in intents.items():
        source, target = bytes.fromhex(e["path_bytes"]), bytes.fromhex(e["destination_bytes"])
        if seq in done:
            assert not os.path.exists(source) and os.path.exists(target)
        else:  # the one action the kill interrupted: not moved, moved, or linked in both places
            assert os.path.exists(source) or os.path.exists(target)
    untouched = {p for p in before} - {bytes.fromhex(e["path_bytes"]) for e in intents.values()}
    assert all(tree_state(root).get(p) == before[p] for p in untouched)

    result = run_cli(db_dsn, "undo", str(manifest))
    interrupted = len(intents) - len(done)  # 0 or 1: the action the kill cut short
    assert f"{len(done)} restored, {interrupted} interrupted actions rolled back" in result.stdout
    assert tree_state(root) == before


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_move_to_recreates_folders_with_their_sources_modes(db_dsn, tmp_path):
    """A file in a private folder stays private where it goes: each folder made under --move-to has
    the mode of the folder it mirrors, and undo re-creates a removed source folder the same way."""
    import shutil

    from images import photo, save

    root = tmp_path / "photos"
    first = save(photo(7, (64, 48)), root / "a" / "p.jpg", quality=90)
    (root / "b" / "private").mkdir(parents=True)
    shutil.copy2(first, root / "b" / "private" / "p.jpg")
    for folder, mode in ((root, 0o750), (root / "a", 0o700), (root / "b", 0o711), (root / "b" / "private", 0o700)):
        folder.chmod(mode)
    load(db_dsn, root)
    run_cli(db_dsn, "report", "--format", "json")
    before = tree_state(root)
    moved_to, manifest = tmp_path / "removed", tmp_path / "m.jsonl"
    run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(manifest))
    [moved] = [p for p in before if not os.path.exists(p)]
    source = Path(os.fsdecode(os.path.dirname(moved)))
    mirror = moved_to / str(source).lstrip("/")
    assert (mirror / "p.jpg").exists()
    assert _mode(moved_to) == 0o700  # the --move-to folder mirrors nothing: owner only
    folder = mirror
    while folder != moved_to:  # every level has its source folder's mode
        assert _mode(folder) == _mode(Path("/") / folder.relative_to(moved_to)), folder
        folder = folder.parent
    assert _mode(mirror) == 0o700

    source.rmdir()  # the user tidies the emptied folder away; undo brings it back, still private
    run_cli(db_dsn, "undo", str(manifest))
    assert tree_state(root) == before
    assert _mode(source) == 0o700


def test_move_to_keeps_a_shared_folders_sticky_bit_and_never_follows_a_planted_link(db_dsn, tmp_path):
    """A source folder like /tmp (1777) is mirrored with its sticky bit: without it, anyone who reaches the
    folder could rename or delete what apply put there. A folder under --move-to that apply did not make (a
    symbolic link planted where a mirror would go) is not followed: that file's move fails, named, and the
    file stays. The --move-to directory itself may be the user's own symbolic link."""
    from images import photo, resized, save

    root = tmp_path / "photos"
    save(photo(7, (128, 96)), root / "keep.jpg", quality=95)
    save(resized(photo(7, (128, 96)), 0.5), root / "shared" / "p.jpg", quality=90)
    planted_for = save(resized(photo(7, (128, 96)), 0.6), root / "other" / "r.jpg", quality=85)
    (root / "shared").chmod(0o1777)
    load(db_dsn, root)
    run_cli(db_dsn, "report", "--format", "json")
    assert {os.path.basename(p) for p in _non_keepers(db_dsn)} == {b"p.jpg", b"r.jpg"}

    real, moved_to = tmp_path / "real-removed", tmp_path / "removed"
    real.mkdir(mode=0o755)
    moved_to.symlink_to(real)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mirror_of_other = real / str(root / "other").lstrip("/")
    mirror_of_other.parent.mkdir(parents=True)
    mirror_of_other.symlink_to(elsewhere)  # planted where apply would make the folder for r.jpg

    result = run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes",
                     "--manifest", str(tmp_path / "m.jsonl"), ok=False)
    assert result.exit_code == 1, result.output
    planted = moved_to / str(root / "other").lstrip("/")
    assert f"failed  {planted_for}: {planted} is a symbolic link, not a folder apply made: not used" \
        in result.stderr
    assert planted_for.exists() and list(elsewhere.iterdir()) == []
    mirror_of_shared = real / str(root / "shared").lstrip("/")
    assert (mirror_of_shared / "p.jpg").exists() and not (root / "shared" / "p.jpg").exists()
    assert os.stat(mirror_of_shared).st_mode & 0o7777 == 0o1777


def test_a_copy_reached_by_two_paths_frees_its_bytes_once(db_dsn, tmp_path):
    """Both paths of a hard-linked copy go (removing one frees nothing), and its bytes are counted once: in the
    report, the dry run and the result."""
    from images import photo, resized, save

    root = tmp_path / "photos"
    save(photo(5, (128, 96)), root / "keep.jpg", quality=95)
    copy = save(resized(photo(5, (128, 96)), 0.5), root / "a" / "copy.jpg", quality=90)
    (root / "b").mkdir()
    os.link(copy, root / "b" / "same.jpg")
    size = copy.stat().st_size
    load(db_dsn, root)
    report = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)
    assert report["summary"]["reclaimable_bytes"] == size and report["summary"]["removable_images"] == 2
    moved_to = tmp_path / "removed"
    plan = run_cli(db_dsn, "apply", "--move-to", str(moved_to)).stdout
    assert f"dry run: would move 2 files, freeing {size / 1024:.1f} KiB ({size:,} bytes)" in plan, plan
    done = run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(tmp_path / "m.jsonl")).stdout
    assert f"move: 2 files done, {size / 1024:.1f} KiB ({size:,} bytes) freed" in done, done
    assert not copy.exists() and not (root / "b" / "same.jpg").exists()


def test_manifest_is_readable_by_its_owner_only(db_dsn, tmp_path, loaded):
    new_folder = tmp_path / "state" / "manifests" / "m.jsonl"
    run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes", "--manifest", str(new_folder))
    assert _mode(new_folder) == 0o600
    assert _mode(new_folder.parent) == 0o700 and _mode(new_folder.parent.parent) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    shared.chmod(0o750)
    run_cli(db_dsn, "apply", "--delete", "--yes", "--manifest", str(shared / "m.jsonl"))
    assert _mode(shared / "m.jsonl") == 0o600
    assert _mode(shared) == 0o750  # an existing folder is left as it is


# ---------------------------------------------------------------- undo obeys only what apply recorded


def _write_manifest(path: Path, events: list[dict]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def _craft_edited_path(events, victim, tmp_path):
    intent = next(e for e in events if e.get("event") == "intent")
    intent["path"], intent["path_bytes"] = str(victim), os.fsencode(victim).hex()


def _craft_edited_destination(events, victim, tmp_path):
    intent = next(e for e in events if e.get("event") == "intent")
    intent["destination"], intent["destination_bytes"] = str(victim), os.fsencode(victim).hex()


def _craft_added_entry(events, victim, tmp_path):
    # the old undo deleted `victim`: a path and destination naming one file read as a move cut short
    template = next(e for e in events if e.get("event") == "intent")
    forged = dict(template, seq=999, path=str(victim), path_bytes=os.fsencode(victim).hex(),
                  destination=str(victim), destination_bytes=os.fsencode(victim).hex())
    events.extend([forged, {"event": "done", "seq": 999}])


def _craft_other_run(events, victim, tmp_path):
    import uuid

    events[0]["run_id"] = str(uuid.uuid4())  # a run this database never recorded (another database's, say)


def _craft_no_run(events, victim, tmp_path):
    del events[0]["run_id"]  # as a manifest of the previous version, which nothing recorded


def _craft_edited_partial(events, victim, tmp_path):
    intent = next(e for e in events if e.get("event") == "intent")
    intent["partial_bytes"] = os.fsencode(victim).hex()


CRAFTS = {
    "edited path": _craft_edited_path,
    "edited destination": _craft_edited_destination,
    "edited temporary name": _craft_edited_partial,
    "added entry": _craft_added_entry,
    "unrecorded run": _craft_other_run,
    "no run": _craft_no_run,
}


@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_undo_refuses_a_crafted_manifest_and_changes_nothing(db_dsn, tmp_path, loaded, craft):
    manifest, moved_to = tmp_path / "m.jsonl", tmp_path / "removed"
    run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(manifest))
    victim = tmp_path / "elsewhere" / ".dbdedup-victim.txt"
    victim.parent.mkdir()
    victim.write_text("not dbdedup's to touch")
    events = _manifest(manifest)
    CRAFTS[craft](events, victim, tmp_path)
    _write_manifest(manifest, events)
    before = (tree_state(loaded.root), tree_state(moved_to), tree_state(victim.parent), manifest.read_bytes())

    result = run_cli(db_dsn, "undo", str(manifest), ok=False)

    assert victim.read_text() == "not dbdedup's to touch"
    assert (tree_state(loaded.root), tree_state(moved_to), tree_state(victim.parent), manifest.read_bytes()) == before
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("dbdedup: error: ") and "nothing was undone" in lines[0]
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_undo_checks_against_the_database_apply_used(db_dsn, empty_db_dsn, tmp_path, loaded):
    """The same manifest, genuine, is refused by a database that did not record its run."""
    manifest = tmp_path / "m.jsonl"
    run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes", "--manifest", str(manifest))
    before = tree_state(loaded.root)
    other = run_cli(empty_db_dsn, "undo", str(manifest), ok=False)
    assert other.exit_code == 1 and "is not recorded in this database" in other.stderr
    assert tree_state(loaded.root) == before
    assert "5 restored" in run_cli(db_dsn, "undo", str(manifest)).stdout


# ---------------------------------------------------------------- only the files the load recorded


def _pictures_with_byte_copies(root: Path) -> Path:
    """Two pictures under root/orig, a byte copy of each (same bytes and modified time) under root/copies."""
    import shutil

    from images import photo, save

    for i in range(2):
        first = save(photo(500 + i, (96, 64)), root / "orig" / f"p{i}.jpg", quality=90)
        (root / "copies").mkdir(exist_ok=True)
        shutil.copy2(first, root / "copies" / f"p{i}.jpg")
    return root


def _loaded_copies(db_dsn, tmp_path) -> tuple[Path, Path, Path]:
    """Loaded and clustered: (root, the folder of the duplicates, the folder of their keepers)."""
    root = _pictures_with_byte_copies(tmp_path / "s4")
    load(db_dsn, root)
    run_cli(db_dsn, "report", "--format", "json")
    [duplicates] = {os.path.dirname(p) for p in _non_keepers(db_dsn)}
    [keepers] = {os.path.dirname(p) for p in _keepers(db_dsn)}
    assert duplicates != keepers
    return root, Path(os.fsdecode(duplicates)), Path(os.fsdecode(keepers))


def _same_files_elsewhere(folder: Path, elsewhere: Path) -> Path:
    """A copy of ``folder`` at ``elsewhere`` (cp -p: same names, bytes, sizes and modified times; other inodes)."""
    import shutil

    shutil.copytree(folder, elsewhere)
    return elsewhere


@pytest.mark.parametrize("swapped", ["duplicates", "keepers"])
def test_apply_never_follows_a_folder_swapped_for_a_symbolic_link_after_the_load(db_dsn, tmp_path, swapped):
    """A loaded folder renamed and replaced by a symbolic link to a folder of the same files (cp -p): apply
    deleted the files there, which no load recorded."""
    root, duplicates, keepers = _loaded_copies(db_dsn, tmp_path)
    folder = duplicates if swapped == "duplicates" else keepers
    outside = _same_files_elsewhere(folder, tmp_path / "outside" / folder.name)
    folder.rename(folder.with_name(folder.name + ".real"))
    folder.symlink_to(outside)
    before = (tree_state(root), tree_state(outside))
    reason = f"reached through {folder}, a symbolic link no load walked through"

    dry = run_cli(db_dsn, "apply", "--delete").stdout
    assert dry.count(reason) == 2, dry
    result = run_cli(db_dsn, "apply", "--delete", "--yes", "--manifest", str(tmp_path / "m.jsonl"))
    assert "0 files done" in result.stdout and result.stderr.count(reason) == 2, result.stderr
    assert (tree_state(root), tree_state(outside)) == before
    assert len(os.listdir(outside)) == 2


def test_apply_refuses_a_file_that_is_another_one_than_the_one_loaded(db_dsn, tmp_path):
    """The loaded folder moved away and a real folder of the same files (cp -p) moved to its name: same path,
    size, modified time and bytes, another inode. Not what the load recorded: left alone."""
    root, duplicates, _ = _loaded_copies(db_dsn, tmp_path)
    other = _same_files_elsewhere(duplicates, tmp_path / "other")
    duplicates.rename(tmp_path / "moved-away")
    other.rename(duplicates)
    before = tree_state(root)
    reason = "is another file than the one loaded (inode)"
    result = run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes",
                     "--manifest", str(tmp_path / "m.jsonl"))
    assert "0 files done" in result.stdout and result.stderr.count(reason) == 2, result.stderr
    assert tree_state(root) == before


def test_a_file_replaced_by_a_copy_with_its_size_and_time_is_loaded_again_and_then_acted_on(db_dsn, tmp_path):
    """A folder restored from a backup (cp -p, rsync -a): the same sizes and times, other inodes. apply refuses
    them as not the files loaded; the next load reads them again (their inode changed), and apply acts."""
    root, duplicates, _ = _loaded_copies(db_dsn, tmp_path)
    other = _same_files_elsewhere(duplicates, tmp_path / "restored")
    duplicates.rename(tmp_path / "moved-away")
    other.rename(duplicates)
    reason = "is another file than the one loaded (inode)"
    assert run_cli(db_dsn, "apply", "--delete").stdout.count(reason) == 2
    from dbdedup.load import load_paths

    with psycopg.connect(db_dsn) as conn:
        summary = load_paths(conn, [root], workers=1)
    assert summary.loaded == 2 and summary.unchanged > 0
    dry_run = run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"))
    assert reason not in dry_run.stdout and "will be skipped" not in dry_run.stdout, dry_run.stdout


def test_apply_acts_through_the_symbolic_links_the_load_walked(db_dsn, tmp_path):
    """A root given by a symbolic link, and a linked folder inside it that the walk entered, are how the
    load named the files: apply acts on them; re-pointed at other files since, the link is refused."""
    real = _pictures_with_byte_copies(tmp_path / "real")
    target = tmp_path / "linked-target"
    (real / "copies").rename(target)
    (real / "copies").symlink_to(target)
    root = tmp_path / "photos"
    root.symlink_to(real)
    load(db_dsn, root)
    run_cli(db_dsn, "report", "--format", "json")
    assert len(_non_keepers(db_dsn)) == 2
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT linked_folders FROM dbdedup.load_runs").fetchone()[0] == [str(root / "copies")]
    assert "will be skipped" not in run_cli(db_dsn, "apply", "--delete").stdout

    # the recorded link now leads to other files with the same names, bytes and times
    elsewhere = _same_files_elsewhere(target, tmp_path / "elsewhere")
    (real / "copies").unlink()
    (real / "copies").symlink_to(elsewhere)
    if {os.path.dirname(p) for p in _non_keepers(db_dsn)} == {os.fsencode(root / "copies")}:
        reason = "is another file than the one loaded (inode)"
    else:
        reason = "its keeper is another file than the one loaded (inode)"
    result = run_cli(db_dsn, "apply", "--delete", "--yes", "--manifest", str(tmp_path / "m1.jsonl"))
    assert "0 files done" in result.stdout and result.stderr.count(reason) == 2, result.stderr
    assert len(os.listdir(elsewhere)) == 2

    (real / "copies").unlink()
    (real / "copies").symlink_to(target)
    result = run_cli(db_dsn, "apply", "--delete", "--yes", "--manifest", str(tmp_path / "m2.jsonl"))
    assert "2 files done" in result.stdout, result.output
    assert len(os.listdir(elsewhere)) == 2


@pytest.mark.parametrize("swap", ["symbolic link", "other folder"])
def test_undo_never_puts_a_file_back_into_a_folder_swapped_in_since(db_dsn, tmp_path, swap):
    """After apply --move-to, the duplicates' folder replaced by a symbolic link to another folder (or by
    another folder renamed to its name): undo wrote the moved files into that other folder."""
    root, duplicates, _ = _loaded_copies(db_dsn, tmp_path)
    manifest, moved_to = tmp_path / "m.jsonl", tmp_path / "removed"
    result = run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(manifest))
    assert "2 files done" in result.stdout
    other = tmp_path / "other"
    other.mkdir()
    duplicates.rename(tmp_path / "tidied-away")
    if swap == "symbolic link":
        duplicates.symlink_to(other)
        reason = "now leads to another place than when apply acted"
    else:
        other.rename(duplicates)
        other = duplicates
        reason = "is another folder than when apply acted (inode)"
    moved = tree_state(moved_to)

    undone = run_cli(db_dsn, "undo", str(manifest), ok=False)
    assert undone.exit_code == 1 and "0 restored" in undone.stdout
    assert undone.stderr.count(reason) == 2, undone.stderr
    assert os.listdir(other) == [] and tree_state(moved_to) == moved

    # the folder back where it was, undo puts the files back
    duplicates.unlink() if duplicates.is_symlink() else duplicates.rmdir()
    (tmp_path / "tidied-away").rename(duplicates)
    assert "2 restored" in run_cli(db_dsn, "undo", str(manifest)).stdout
    assert len(os.listdir(duplicates)) == 2


# ---------------------------------------------------------------- undo given a file that is not a manifest


def _png_file(path: Path) -> bytes:
    from images import photo, save

    return save(photo(3, (32, 24)), path.with_suffix(".png")).read_bytes()


NOT_MANIFESTS = {
    "a picture": lambda events: None,
    "a JSON array": lambda events: "[1, 2]\n",
    "a JSON string": lambda events: '"hello"\n',
    "an event that is an array": lambda events: [events[0], [1, 2], *events[1:]],
    "a seq that is an array": lambda events: [dict(e, seq=[e["seq"]]) if e.get("event") == "intent" else e
                                              for e in events],
    "a seq that is true": lambda events: [dict(e, seq=True) if e.get("event") == "done" else e for e in events],
}


@pytest.mark.parametrize("content", sorted(NOT_MANIFESTS))
def test_undo_given_a_file_that_is_not_a_manifest_says_so(db_dsn, tmp_path, loaded, content):
    manifest, moved_to = tmp_path / "m.jsonl", tmp_path / "removed"
    run_cli(db_dsn, "apply", "--move-to", str(moved_to), "--yes", "--manifest", str(manifest))
    made = NOT_MANIFESTS[content](_manifest(manifest))
    given = tmp_path / "given.jsonl"
    if made is None:
        given = given.with_suffix(".png")
        given.write_bytes(_png_file(given))
    elif isinstance(made, str):
        given.write_text(made)
    else:
        _write_manifest(given, made)
    before = (tree_state(loaded.root), tree_state(moved_to), given.read_bytes())

    result = run_cli(db_dsn, "undo", str(given), ok=False)

    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"dbdedup: error: {given} is not a dbdedup apply manifest (")
    assert lines[1].startswith("hint: ") and "manifest" in lines[1]
    assert (tree_state(loaded.root), tree_state(moved_to), given.read_bytes()) == before


# ---------------------------------------------------------------- undo of --hardlink


def test_undo_of_hardlink_gives_the_file_back_its_own_modified_time_and_mode(db_dsn, tmp_path):
    """Linked, the copy shared its keeper's inode and so its times and mode; undo gave it its own bytes again
    but kept the keeper's modified time, and the next apply found it "changed since it was loaded"."""
    from dbdedup import apply as ap

    col = make_collection(tmp_path / "photos")
    copy = col.near["o101_copy.jpg"][1]
    st = os.stat(copy)
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns - 86_400 * 10**9))  # a day older than its original
    for path in (copy, col.originals["o101"]):
        os.chmod(path, 0o640)
    load(db_dsn, col.root)
    run_cli(db_dsn, "report", "--format", "json")
    manifest = tmp_path / "m.jsonl"
    assert "1 files done" in run_cli(db_dsn, "apply", "--hardlink", "--yes", "--manifest", str(manifest)).stdout
    [intent] = [e for e in _manifest(manifest) if e.get("event") == "intent"]
    linked, keeper = bytes.fromhex(intent["path_bytes"]), bytes.fromhex(intent["keeper_bytes"])
    assert {linked, keeper} == {os.fsencode(copy), os.fsencode(col.originals["o101"])}
    assert os.path.samefile(linked, keeper) and os.stat(linked).st_mtime_ns != intent["mtime_ns"]
    os.chmod(keeper, 0o600)  # the shared inode's mode changed after the link

    result = run_cli(db_dsn, "undo", str(manifest))
    assert "1 restored" in result.stdout
    assert not os.path.samefile(linked, keeper)
    assert os.stat(linked).st_mtime_ns == intent["mtime_ns"]  # its own, as loaded
    assert os.stat(linked).st_mode & 0o7777 == 0o640
    os.chmod(keeper, 0o640)
    with psycopg.connect(db_dsn) as conn:
        plan = ap.plan_actions(conn, "hardlink")
    [item] = [a for a in plan.actions if a.path_bytes == linked]
    assert ap.quick_check(item) is None
    again = run_cli(db_dsn, "apply", "--hardlink", "--yes", "--manifest", str(tmp_path / "m2.jsonl"))
    assert "1 files done" in again.stdout, again.output


def test_a_keeper_that_is_a_symbolic_link_to_a_loaded_file_does_not_hold_its_cluster_back(db_dsn, tmp_path):
    """A link to a picture in the tree, loaded (the walk follows links) under a name that made it the keeper: every
    duplicate was skipped, "its keeper is a symbolic link". The link keeps the bytes as well as the file it leads to,
    which is left as the keeper's own file; the other copies go."""
    root = _pictures_with_byte_copies(tmp_path / "s8")
    (root / "copies" / "aaa_link.jpg").symlink_to(root / "orig" / "p0.jpg")
    load(db_dsn, root)
    run_cli(db_dsn, "report", "--format", "json")
    assert bytes(root / "copies" / "aaa_link.jpg") in _keepers(db_dsn)
    result = run_cli(db_dsn, "apply", "--move-to", str(tmp_path / "removed"), "--yes",
                     "--manifest", str(tmp_path / "m.jsonl"))
    assert "its keeper is a symbolic link" not in result.stdout + result.stderr
    assert "is the keeper's own file under another path" in result.stderr
    assert (root / "orig" / "p0.jpg").is_file() and (root / "copies" / "aaa_link.jpg").read_bytes()
    assert not (root / "copies" / "p0.jpg").exists()  # the byte copy of the linked picture went
    assert (tmp_path / "removed" / str(root / "copies" / "p0.jpg").lstrip("/")).is_file()
