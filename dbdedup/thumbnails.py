"""Small JPEG thumbnails made with Pillow, for the HTML contact sheet."""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

from PIL import Image, ImageOps

from .file_access import ReadAccess, open_regular_file

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
