"""Walk the roots and sniff files: which are images, which are not, which cannot be read.

No decoding happens here. Paths stay ``bytes`` from start to end, so names that
are not valid UTF-8 are kept exactly as the file system has them. The walk is
lazy (a generator over ``os.scandir``), follows directory symlinks without ever
entering a directory twice, and turns unreadable directories and broken links
into error entries instead of stopping.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, Union

from .file_access import file_type, open_regular_file

IMAGE_EXTENSIONS = frozenset(
    b"." + ext
    for ext in (
        b"jpg", b"jpeg", b"jpe", b"jfif", b"png", b"gif", b"webp", b"bmp", b"dib",
        b"tif", b"tiff", b"heic", b"heif", b"hif", b"avif", b"mpo",
    )
)

# Bytes needed to recognise every signature in sniff_format.
SNIFF_BYTES = 32

CANDIDATE, IGNORED, ERROR, LEFT_OUT, LINKED = "candidate", "ignored", "error", "left_out", "linked_folder"

# A file apply --move-to and export put at the top of the folders they fill. A walk that meets it
# inside a root leaves that folder out, so a later load of a parent folder does not take the
# duplicates apply moved away (or the copies an export made) back in as images of their own.
MARKER_NAME = b".dbdedup-made-this-folder"
MADE_HERE = "dbdedup made it (apply --move-to or export)"
MARKER_TEXT = (
    "dbdedup made this folder: the duplicates `dbdedup apply --move-to` moved here (`dbdedup undo MANIFEST`\n"
    "puts them back), or the copies `dbdedup export` made. `dbdedup load` leaves it out when it walks a\n"
    "parent folder, so that they are not loaded again as images of their own; give this folder itself\n"
    "to `dbdedup load` to load it.\n"
)


def mark_as_made(folder: bytes | str) -> None:
    """Put the marker in ``folder`` (made by dbdedup) unless it is there; an unwritable folder is left as it is."""
    path = os.path.join(os.fsencode(folder), MARKER_NAME)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError:  # there already (or a link planted in its place), or a folder this user cannot write
        return
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(MARKER_TEXT)


@dataclass(frozen=True, slots=True)
class ScanEntry:
    """One thing found by the walk.

    ``kind`` is CANDIDATE (an image by name or content: to be hashed), IGNORED
    (a regular file that is not an image: sidecars, text, ...; only counted),
    ERROR (``reason``/``detail`` say why it could not be read), LEFT_OUT (a
    folder the walk does not enter: ``detail`` says why) or LINKED (a symbolic link
    to a folder, inside a root, that the walk enters). ``size``, ``mtime_ns`` and
    ``inode`` come from stat (lstat for broken links and errors; no inode then).
    """

    path: bytes
    kind: str
    size: int = 0
    mtime_ns: int = 0
    reason: str | None = None
    detail: str | None = None
    is_dir: bool = False
    inode: int | None = None


def sniff_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF"
    return None


def display_path(path: bytes) -> str:
    """A readable text form of a path: exact when valid UTF-8, else with \\xNN escapes."""
    return path.decode("utf-8", "backslashreplace")


def normalise_root(root: Union[str, bytes, os.PathLike]) -> bytes:
    """An absolute bytes path for ``root`` (symlinks kept as given, not resolved)."""
    return os.path.abspath(os.fsencode(root))


def _has_image_extension(name: bytes) -> bool:
    dot = name.rfind(b".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def _sniff_file(path: bytes) -> str | None:
    try:
        with open_regular_file(path) as handle:
            return sniff_format(handle.read(SNIFF_BYTES))
    except OSError:
        # Unreadable files without an image extension: we cannot tell what they
        # are, and they are most likely not photos; leave them alone.
        return None


def _error_for(path: bytes, exc: OSError, *, is_dir: bool = False) -> ScanEntry:
    try:
        st = os.lstat(path)
        size, mtime = (0 if is_dir else st.st_size), st.st_mtime_ns
    except OSError:
        size, mtime = 0, 0
    what = "directory" if is_dir else "file"
    if isinstance(exc, PermissionError):
        return ScanEntry(path, ERROR, size, mtime, "permission_denied",
                         f"no permission to read this {what}: {exc.strerror}", is_dir)
    if exc.errno == errno.ELOOP:
        return ScanEntry(path, ERROR, size, mtime, "symlink_loop",
                         "the symbolic link leads back to itself", is_dir)
    if isinstance(exc, FileNotFoundError) and os.path.islink(path):
        try:
            target = os.fsdecode(os.readlink(path))
        except OSError:
            target = "?"
        return ScanEntry(path, ERROR, size, mtime, "broken_symlink",
                         f"symbolic link to {target!r}, which does not exist", is_dir)
    return ScanEntry(path, ERROR, size, mtime, "unreadable",
                     f"cannot read this {what}: {exc.strerror or exc}", is_dir)


def _classify_file(path: bytes, name: bytes, st: os.stat_result) -> ScanEntry:
    if not stat.S_ISREG(st.st_mode):
        # fifos, sockets, devices: never opened (a read could block forever); one named like an
        # image is an error the user should see, anything else is not ours to mention
        if _has_image_extension(name):
            return ScanEntry(path, ERROR, 0, st.st_mtime_ns, "not_a_file",
                             f"a {file_type(st.st_mode)}, not a regular file: never opened")
        return ScanEntry(path, IGNORED, 0, st.st_mtime_ns)
    if _has_image_extension(name) or _sniff_file(path) is not None:
        return ScanEntry(path, CANDIDATE, st.st_size, st.st_mtime_ns, inode=st.st_ino)
    return ScanEntry(path, IGNORED, st.st_size, st.st_mtime_ns)


def scan(roots: Sequence[Union[str, bytes, os.PathLike]], *, recursive: bool = True) -> Iterator[ScanEntry]:
    """Walk ``roots`` lazily and yield a ScanEntry per file (and per unreadable directory).

    A root may be a directory or a single file. Directory symlinks are followed
    (each one entered is a LINKED entry before the files under it), but each
    directory (by device and inode) is entered once, so loops end. A folder
    dbdedup made (``MARKER_NAME`` in it) and the kernel's own file systems (/proc,
    /sys, /dev: ``SYSTEM_FILE_SYSTEMS``) are left out, unless they are a root. A
    folder that cannot be listed, or can be listed but not entered (``r--``, no
    search permission), is one ERROR entry with ``is_dir`` set, and nothing under
    it is yielded. Each path comes once, even a file given twice or given with
    its folder.
    """
    visited: set[tuple[int, int]] = set()
    system = system_file_systems()
    paths = [normalise_root(root) for root in roots]
    # A file given as a root may come again: given twice, or also found in a folder given too. Only
    # these paths are remembered (a walk yields every other path once), so memory stays flat.
    once = _Once(frozenset(paths))
    for root in paths:
        yield from _walk_root(root, recursive, visited, system, once)


class _Once:
    """Lets each of ``watched`` (the roots) through once; every other path always."""

    def __init__(self, watched: frozenset[bytes]):
        self.watched = watched
        self.passed: set[bytes] = set()

    def first_time(self, path: bytes) -> bool:
        if path not in self.watched:
            return True
        if path in self.passed:
            return False
        self.passed.add(path)
        return True


# The kernel's own file systems (processes, devices, its settings): they hold no photos, and a walk of them may
# never end (/proc changes as it is read, and lists every process's files again) or block on a read (/sys,
# debugfs). A walk leaves them out unless one is a root: `dbdedup load /` then walks the disks only, as czkawka's
# default excluded folders (/proc, /dev, /sys) do.
SYSTEM_FILE_SYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs", "cgroup", "cgroup2", "pstore",
    "bpf", "configfs", "fusectl", "mqueue", "binfmt_misc", "efivarfs", "hugetlbfs", "rpc_pipefs", "nsfs",
})


def system_file_systems(mountinfo: str = "/proc/self/mountinfo") -> dict[int, str]:
    """Device number -> type of each mounted file system of the kernel's own (``SYSTEM_FILE_SYSTEMS``), read from
    ``mountinfo`` (none where it cannot be read: another system)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        fields = line.split()
        try:
            kind = fields[fields.index("-") + 1]
            major, minor = fields[2].split(":")
        except (ValueError, IndexError):
            continue
        if kind in SYSTEM_FILE_SYSTEMS:
            found[os.makedev(int(major), int(minor))] = kind
    return found


def _can_search(entry: os.DirEntry) -> bool:
    """Whether the folder holding ``entry`` can be entered: its entries' own lstat needs nothing else."""
    try:
        entry.stat(follow_symlinks=False)
    except PermissionError:
        return False
    except OSError:
        pass
    return True


def _walk_root(root: bytes, recursive: bool, visited: set[tuple[int, int]],
               system: dict[int, str], once: _Once) -> Iterable[ScanEntry]:
    try:
        st = os.stat(root)
    except OSError as exc:
        if once.first_time(root):
            yield _error_for(root, exc)
        return
    if not stat.S_ISDIR(st.st_mode):
        if once.first_time(root):
            yield _classify_file(root, os.path.basename(root), st)
        return
    visited_key = (st.st_dev, st.st_ino)
    if visited_key in visited:
        return
    visited.add(visited_key)
    stack = [root]
    while stack:
        directory = stack.pop()
        if directory != root and os.path.lexists(os.path.join(directory, MARKER_NAME)):
            yield ScanEntry(directory, LEFT_OUT, detail=MADE_HERE, is_dir=True)
            continue
        try:
            iterator = os.scandir(directory)
        except OSError as exc:
            yield _error_for(directory, exc, is_dir=True)
            continue
        subdirs = []
        with iterator:
            while True:
                try:
                    entry = next(iterator)
                except StopIteration:
                    break
                except OSError as exc:  # an I/O error part-way through a listing
                    yield _error_for(directory, exc, is_dir=True)
                    break
                path = entry.path
                try:
                    entry_st = entry.stat()  # follows symlinks
                except OSError as exc:
                    if isinstance(exc, PermissionError) and not _can_search(entry):
                        # a folder that can be listed but not entered (r--): nothing in it can be
                        # read, so it is the folder that cannot be read, not each of its files
                        yield _error_for(directory, exc, is_dir=True)
                        break
                    if once.first_time(path):
                        yield _error_for(path, exc)
                    continue
                if stat.S_ISDIR(entry_st.st_mode):
                    if not recursive:
                        continue
                    if entry_st.st_dev in system:
                        yield ScanEntry(path, LEFT_OUT, detail=f"the kernel's own file system ({system[entry_st.st_dev]})",
                                        is_dir=True)
                        continue
                    key = (entry_st.st_dev, entry_st.st_ino)
                    if key not in visited:
                        visited.add(key)
                        subdirs.append(path)
                        if entry.is_symlink():
                            # the files under it are recorded by the link's path, not by where it leads
                            yield ScanEntry(path, LINKED, is_dir=True)
                    continue
                if once.first_time(path):
                    yield _classify_file(path, entry.name, entry_st)
        # reversed, so that popping from the stack walks directories in listing order
        stack.extend(reversed(subdirs))
