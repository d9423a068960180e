"""Small JPEG thumbnails made with Pillow, for the HTML contact sheet."""

from __future__ import annotations

import base64
import io
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

from PIL import Image, ImageOps

from .scan import open_regular_file

DEFAULT_THUMBNAIL_SIZE = 200


def thumbnail_jpeg(path: bytes | str | os.PathLike, size: int = DEFAULT_THUMBNAIL_SIZE, quality: int = 80) -> bytes:
    """A JPEG of the image at ``path`` that fits in ``size`` x ``size`` pixels, EXIF orientation applied.

    ``path`` may be the exact bytes the file system uses (dbdedup.images.path_bytes),
    so names that are not UTF-8 work. Raises OSError (or PIL's errors) when it cannot be read, and
    NotARegularFile for a FIFO or a device put where the file was.
    """
    with open_regular_file(path) as handle, Image.open(handle) as im:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale: much faster for big photos
        im.draft("RGB", (size * 2, size * 2))
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            # 16-bit greyscale: convert("RGB") would clip it to near-white, so scale it down first
            import numpy as np

            scaled = np.asarray(im, dtype=np.float64) / 257.0
            im = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
        if im.mode in ("RGBA", "LA", "P", "PA"):
            rgba = im.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (255, 255, 255))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            im = canvas
        elif im.mode != "RGB":
            im = im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality, optimize=True)
        return buf.getvalue()


def data_uri(jpeg: bytes) -> str:
    """``data:image/jpeg;base64,...`` for embedding in HTML."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _one(path: bytes, size: int) -> tuple[bytes, bytes | None, str | None]:
    try:
        return path, thumbnail_jpeg(path, size), None
    except Exception as exc:  # an unreadable file gets a placeholder, not a failed export
        return path, None, f"{exc.__class__.__name__}: {exc}"


GROUP_AND_OTHERS_READ = stat.S_IRGRP | stat.S_IROTH


class ReadAccess:
    """Who else may read a set of files: the group and others read bits that every file grants, each
    through folders that grant its search bit all the way down. A page that shows the files' pictures
    and paths is then made no more readable than they are."""

    def __init__(self) -> None:
        self.bits = GROUP_AND_OTHERS_READ
        self._folders: dict[bytes, int] = {}

    def _folder_bits(self, folder: bytes) -> int:
        if folder not in self._folders:
            parent = os.path.dirname(folder)
            try:
                mode = os.stat(folder).st_mode
                own = (stat.S_IRGRP if mode & stat.S_IXGRP else 0) | (stat.S_IROTH if mode & stat.S_IXOTH else 0)
            except OSError:
                own = 0
            self._folders[folder] = own & (self._folder_bits(parent) if parent != folder else GROUP_AND_OTHERS_READ)
        return self._folders[folder]

    def add(self, path: bytes) -> None:
        """Narrow ``bits`` to what ``path`` (as the page names it) and its folders grant; of a file that is
        gone (shown with no picture) only its folders count."""
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = GROUP_AND_OTHERS_READ
        # through the folders of the path shown and, for a symbolic link, those of the file it leads to
        self.bits &= (mode & self._folder_bits(os.path.dirname(os.path.abspath(path)))
                      & self._folder_bits(os.path.dirname(os.path.realpath(path))))


class ThumbnailMaker:
    """Makes thumbnails on a few threads (Pillow releases the GIL while decoding); use as a context manager."""

    def __init__(self, size: int = DEFAULT_THUMBNAIL_SIZE, workers: int | None = None) -> None:
        self.size = size
        self.access = ReadAccess()  # who else may read the files thumbnailed so far
        self._pool = ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1))

    def __enter__(self) -> "ThumbnailMaker":
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def make(self, paths: Iterable[bytes]) -> Iterator[tuple[bytes, bytes | None, str | None]]:
        """(path, jpeg bytes or None, error or None) for each path, in order; ``access`` then counts
        each path."""
        for path, jpeg, error in self._pool.map(lambda p: _one(p, self.size), paths):
            self.access.add(path)
            yield path, jpeg, error
