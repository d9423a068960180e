"""The keypoints the verification workers found, kept on disk while a report (or `dbdedup verify`) runs.

Finding an image's SIFT keypoints (about 7 ms at the working size) and decoding it (2-4 ms) are most of
what the check by pixels costs, and the same image comes back: in the pairs another worker was given,
and in each round of keeper pairs after the first pass. On the accuracy set (10,800 files) one report's
checks read 17,900 images for 9,300 distinct ones. Each worker keeps a few hundred images in memory;
this store keeps the keypoints of every image checked (about 20 kB each: points as float32, SIFT's
descriptors, whole numbers 0-255, as bytes), so that any worker in any round finds them again without
the file. The pixels are read again only for a pair whose keypoints agree, to compare the overlap.

The store is a private directory (mode 0700, from ``tempfile.mkdtemp``) that lives as long as the
``KeypointStore`` object and is removed with it; the files are named by the image's id, the size and
mtime the loader recorded, and the orientation, so a file that changed is never mistaken for the
one found. Writes go to a temporary name and are renamed into place (two workers may find the same
image; a reader never sees half a file). It stops taking files at ``MAX_BYTES`` (the workers then
keep only their memory cache), and any failure to create, write or read it only costs the time it
would have saved. A store left behind by a process that was killed is removed by the next one.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (numpy and the verification module: imported by the workers, not by every report)
    from .verify import Keypoints

PREFIX = "dbdedup-keypoints-"
MAX_BYTES = 2 << 30  # the store's size on disk, all workers together (about 100,000 images)
_HEADER = struct.Struct("<4I")  # keypoints, working rows, working columns, descriptor width


def _name(image_id: int, size_bytes: int, mtime_ns: int, orientation: str) -> str:
    return f"{image_id}-{size_bytes}-{mtime_ns}-{orientation}"


def encode(found: Keypoints) -> bytes | None:
    """SIFT keypoints as the store's bytes (None for what it does not keep: ORB, or descriptors that
    are not whole numbers 0-255, which SIFT's always are)."""
    import numpy as np

    if found.method != "sift":
        return None
    descriptors = found.descriptors if found.descriptors is not None else np.zeros((0, 128), np.float32)
    packed = descriptors.astype(np.uint8)
    if not np.array_equal(packed, descriptors):
        return None
    rows, columns = found.size
    header = _HEADER.pack(len(found.points), rows, columns, packed.shape[1])
    return header + found.points.astype("<f4").tobytes() + packed.tobytes()


def decode(data: bytes) -> Keypoints:
    """The Keypoints ``encode`` wrote, without pixels (ValueError for bytes it did not write)."""
    import numpy as np

    from .verify import Keypoints

    if len(data) < _HEADER.size:
        raise ValueError("truncated keypoints")
    count, rows, columns, width = _HEADER.unpack_from(data)
    points_end = _HEADER.size + count * 8
    if len(data) != points_end + count * width:
        raise ValueError("keypoints of the wrong length")
    points = np.frombuffer(data, "<f4", count=count * 2, offset=_HEADER.size).reshape(count, 2).astype(np.float32)
    descriptors = np.frombuffer(data, np.uint8, offset=points_end).reshape(count, width).astype(np.float32)
    return Keypoints(points, descriptors if count else None, None, "sift", (rows, columns))


class KeypointStore:
    """A private directory of keypoints for one run, made by the first ``open()`` (nothing is made
    for a run with no pair to check) and removed by ``close()`` (or by leaving a ``with`` block)."""

    def __init__(self, parent: str | os.PathLike | None = None):
        self.parent = parent
        self.path: str | None = None
        self._failed = False

    def open(self) -> str | None:
        """The directory, made now if it was not yet; None when none could be made (the run goes on
        without the store)."""
        if self.path is None and not self._failed:
            remove_stale(self.parent)
            try:
                self.path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.parent)
            except OSError:
                self._failed = True
        return self.path

    def worker_budget(self, workers: int) -> int:
        """The bytes each of ``workers`` may add to the store now: what MAX_BYTES leaves beside the files
        earlier runs of this store wrote (the keeper rounds each start a pool), shared out."""
        used = 0
        if self.path is not None:
            try:
                used = sum(entry.stat(follow_symlinks=False).st_size for entry in os.scandir(self.path))
            except OSError:
                return 0
        return max(0, MAX_BYTES - used) // max(1, workers)

    def close(self) -> None:
        path, self.path = self.path, None
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> "KeypointStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoreAccess:
    """A worker's access to a store's directory, to read keypoints and add them (``load`` and ``save`` never
    raise). ``written`` counts the bytes this worker added; it stops adding at ``budget``."""

    def __init__(self, path: str | None, budget: int = MAX_BYTES):
        self.path = path
        self.budget = budget
        self.written = 0

    def load(self, image_id: int, size_bytes: int, mtime_ns: int, orientation: str) -> Keypoints | None:
        if self.path is None:
            return None
        try:
            with open(os.path.join(self.path, _name(image_id, size_bytes, mtime_ns, orientation)), "rb") as f:
                return decode(f.read())
        except (OSError, ValueError):
            return None

    def save(self, image_id: int, size_bytes: int, mtime_ns: int, orientation: str, found: Keypoints) -> None:
        if self.path is None or self.written >= self.budget:
            return
        data = encode(found)
        if data is None:
            return
        name = _name(image_id, size_bytes, mtime_ns, orientation)
        temporary = os.path.join(self.path, f".{name}.{os.getpid()}")
        try:
            with open(temporary, "xb") as f:
                f.write(data)
            os.replace(temporary, os.path.join(self.path, name))
            self.written += len(data)
        except OSError:
            # (a full disk, the directory removed under us): the run goes on without adding to it; what
            # is there is still read
            self.budget = 0
            try:
                os.unlink(temporary)
            except OSError:
                pass


def remove_stale(parent: str | os.PathLike | None = None) -> int:
    """Remove the stores a killed process left in ``parent`` (default: the temporary directory): a
    directory named as this module names them, owned by this user, not a symbolic link, whose process
    is gone. Returns how many it removed."""
    base = Path(parent or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        pid = entry.name[len(PREFIX):].partition("-")[0]
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process of that number: not ours to judge
    return True
