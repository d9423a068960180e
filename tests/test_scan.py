"""The walk: images by name or content, exact bytes paths, symlinks without loops, errors not crashes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from dbdedup.fingerprint import file_record
from dbdedup.scan import CANDIDATE, ERROR, IGNORED, LEFT_OUT, display_path, scan, sniff_format, system_file_systems
from images import jpeg_bytes, photo, save


def by_path(root: Path, **kwargs) -> dict[bytes, object]:
    return {e.path: e for e in scan([root], **kwargs)}


def test_images_by_extension_or_content_and_the_rest_ignored(tmp_path):
    save(photo(1, (32, 32)), tmp_path / "a.JPG", "JPEG")
    save(photo(2, (32, 32)), tmp_path / "no_extension", "PNG")
    save(photo(3, (32, 32)), tmp_path / "wrong.dat", "WEBP")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "a.JPG.xmp").write_text("<x:xmpmeta/>")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "fake.png").write_text("not really")
    entries = by_path(tmp_path)
    kinds = {os.path.basename(p).decode(): e.kind for p, e in entries.items()}
    assert kinds == {"a.JPG": CANDIDATE, "no_extension": CANDIDATE, "wrong.dat": CANDIDATE,
                     "notes.txt": IGNORED, "a.JPG.xmp": IGNORED, "empty.txt": IGNORED, "fake.png": CANDIDATE}
    assert all(os.path.isabs(p) for p in entries)
    jpg = entries[bytes(tmp_path / "a.JPG")]
    assert jpg.size == (tmp_path / "a.JPG").stat().st_size
    assert jpg.mtime_ns == (tmp_path / "a.JPG").stat().st_mtime_ns


def test_sniff_signatures():
    assert sniff_format(jpeg_bytes(photo(1, (16, 16)))) == "JPEG"
    assert sniff_format(b"\x00\x00\x00\x1cftypheic\x00\x00") == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x1cftypavif\x00\x00") == "AVIF"
    assert sniff_format(b"II*\x00") == "TIFF"
    assert sniff_format(b"%PDF-1.4") is None


def test_recursive_and_not(tmp_path):
    save(photo(1, (16, 16)), tmp_path / "top.png")
    save(photo(2, (16, 16)), tmp_path / "a" / "b" / "deep.png")
    assert len(by_path(tmp_path)) == 2
    assert [os.path.basename(p) for p in by_path(tmp_path, recursive=False)] == [b"top.png"]


def test_non_utf8_name_is_kept_exactly(tmp_path):
    name = b"caf\xe9-\xff.png"  # latin-1 bytes: not valid UTF-8
    raw = os.path.join(bytes(tmp_path), name)
    with open(raw, "wb") as handle:
        handle.write(jpeg_bytes(photo(3, (16, 16))))
    (entry,) = scan([tmp_path])
    assert entry.path == raw and entry.kind == CANDIDATE
    assert display_path(entry.path).endswith("caf\\xe9-\\xff.png")


def test_symlinks_followed_without_loops(tmp_path):
    save(photo(1, (16, 16)), tmp_path / "album" / "one.png")
    other = tmp_path.parent / (tmp_path.name + "_elsewhere")
    save(photo(2, (16, 16)), other / "two.png")
    (tmp_path / "album" / "loop").symlink_to(tmp_path / "album")  # a directory loop
    (tmp_path / "album" / "up").symlink_to(tmp_path)  # another loop, through the parent
    (tmp_path / "linked").symlink_to(other)  # a symlinked folder outside the root: followed
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    entries = by_path(tmp_path)
    names = sorted(os.path.relpath(p, bytes(tmp_path)).decode() for p, e in entries.items() if e.kind == CANDIDATE)
    assert names == ["album/one.png", "linked/two.png"]
    errors = {os.path.basename(p).decode(): e.reason for p, e in entries.items() if e.kind == ERROR}
    assert errors == {"dangling.jpg": "broken_symlink", "self.jpg": "symlink_loop"}
    assert "gone.jpg" in entries[bytes(tmp_path / "dangling.jpg")].detail
    shutil.rmtree(other)


def test_scan_is_lazy(tmp_path):
    for i in range(50):
        (tmp_path / f"{i}.txt").write_text("x")
    iterator = scan([tmp_path])
    assert next(iterator).kind == IGNORED  # a generator: nothing listed up front


def _scan_and_read_as(user: str, root: Path) -> dict[str, str]:
    """Walk ``root`` and read every candidate in a forked child running as ``user``."""
    import pwd

    from conftest import result_of_child

    account = pwd.getpwnam(user)

    def walk_as_user() -> dict[str, str]:  # drop root, then do exactly what the loader does
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
        out = {}
        for e in scan([root]):
            if e.kind == CANDIDATE:
                out[os.fsdecode(e.path)] = file_record(e.path).reason or "ok"
            else:
                out[os.fsdecode(e.path)] = e.reason or e.kind
        return out

    return result_of_child(walk_as_user)


def test_permission_denied_as_another_user():
    """Root reads everything, so the walk and the reads run as user 'nobody' to meet a real EACCES."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to user nobody (as a normal user, chmod 000 already denies)")
    root = Path(tempfile.mkdtemp(prefix="dbdedup-perm-"))
    try:
        os.chmod(root, 0o755)
        save(photo(1, (32, 32)), root / "readable.png")
        locked_file = save(photo(2, (32, 32)), root / "locked.png")
        locked_dir = root / "private"
        save(photo(3, (32, 32)), locked_dir / "inside.png")
        for p in root.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(locked_file, 0o000)
        os.chmod(locked_dir, 0o000)
        seen = _scan_and_read_as("nobody", root)
        assert seen == {
            str(root / "readable.png"): "ok",
            str(root / "locked.png"): "permission_denied",
            str(root / "private"): "permission_denied",
        }
    finally:
        os.chmod(root / "private", 0o755)
        shutil.rmtree(root)


def test_the_kernels_own_file_systems_are_left_out_unless_given(tmp_path):
    # `dbdedup load /` walked /proc, which lists every process's files again as it is read: a load of it ran for
    # minutes with no end in sight (stopped after 120 s)
    if "proc" not in system_file_systems().values():
        pytest.skip("no /proc mounted as proc here")
    save(photo(1, (32, 32)), tmp_path / "a.jpg")
    (tmp_path / "proc").symlink_to("/proc")  # as / holds it
    entries = by_path(tmp_path)
    assert entries[bytes(tmp_path / "proc")].kind == LEFT_OUT
    assert entries[bytes(tmp_path / "proc")].detail == "the kernel's own file system (proc)"
    assert [e.kind for p, e in entries.items() if p != bytes(tmp_path / "proc")] == [CANDIDATE]
    # given itself, it is walked (not recursively here, to keep the test short)
    assert any(e.kind != LEFT_OUT for e in scan(["/proc/self"], recursive=False))


def test_mountinfo_lines_name_the_kernels_file_systems(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n"
        "23 1 0:22 / /sys rw shared:6 - sysfs sysfs rw\n"
        "24 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n"
        "25 24 0:45 / /mnt/nas rw - nfs4 nas:/photos rw\n"
        "broken line\n")
    assert system_file_systems(str(info)) == {os.makedev(0, 21): "proc", os.makedev(0, 22): "sysfs"}
    assert system_file_systems(str(tmp_path / "none")) == {}


def test_a_folder_that_can_be_listed_but_not_entered_is_one_folder_error():
    # a folder of mode r-- lists its names, but nothing in it can be opened or stat'ed: each of its files and
    # folders was an error of its own before, so the files under its sub-folders were taken for gone
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to user nobody")
    root = Path(tempfile.mkdtemp(prefix="dbdedup-perm-"))
    try:
        save(photo(1, (32, 32)), root / "top" / "a.jpg")
        save(photo(2, (32, 32)), root / "top" / "inner" / "b.bmp")
        save(photo(3, (32, 32)), root / "other.png")
        for p in [root, *root.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chmod(root / "top", 0o644)
        assert _scan_and_read_as("nobody", root) == {str(root / "other.png"): "ok",
                                                     str(root / "top"): "permission_denied"}
    finally:
        os.chmod(root / "top", 0o755)
        shutil.rmtree(root)


def test_each_path_comes_once_though_given_twice_or_with_its_folder(tmp_path):
    one = save(photo(1, (32, 32)), tmp_path / "dup" / "one.jpg")
    save(photo(2, (32, 32)), tmp_path / "dup" / "two.bmp")
    (tmp_path / "dup" / "notes.txt").write_text("x")
    for roots in ([one, tmp_path / "dup", one], [tmp_path / "dup", one, str(one)], [one, one],
                  [tmp_path / "dup" / ".." / "dup" / "one.jpg", tmp_path / "dup"]):
        paths = [e.path for e in scan(roots)]
        assert sorted(paths) == sorted(set(paths)), roots
    assert sorted(os.path.basename(e.path) for e in scan([one, tmp_path / "dup", one])) == [
        b"notes.txt", b"one.jpg", b"two.bmp"]
    # a file not given as a root is not remembered: two folders walked are still walked whole
    assert len(list(scan([tmp_path / "dup", tmp_path]))) == 3
