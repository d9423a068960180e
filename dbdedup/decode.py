"""Open and decode an image file once, into the working image every hash is computed from.

Pure functions, no database. ``decode_image`` sniffs the format, checks the pixel count
from the header, decodes the first frame (JPEGs as small drafts), applies the
EXIF orientation and normalises the mode; large images are reduced, so the hashes run on
a few hundred pixels a side. Failures raise ``ImageError`` with a reason code from
``REASONS`` and a readable detail.

The same decode also gives a colour working image for the colour signature
(``dbdedup.verify``): a colour JPEG is drafted in YCbCr, whose Y channel is exactly
libjpeg's greyscale draft (the hashes do not change) and which converts to RGB.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, replace
from typing import Union

import numpy as np
from PIL import Image, ImageFile

from .reasons import DEFAULT_MAX_PIXELS, REASONS, RETRY_REASONS  # noqa: F401  (named here too)
from .scan import sniff_format

# JPEG draft decoding asks libjpeg for at least this many pixels a side (DCT scaling
# by up to 1/8): plenty for 32x32 pHash, and a 12 MP photo costs a fraction of a full decode.
WORKING_SIZE = 64
# Other images whose short side is at least 4x this are box-reduced to about this
# size before hashing; smaller ones are hashed as decoded (exactly imagehash's input).
REDUCE_TO = 128

_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_FORMAT_NAMES = {"MPO": "JPEG", "JPEG2000": "JPEG2000"}


class ImageError(Exception):
    """A file that cannot be loaded: ``reason`` (a key of REASONS) and a readable ``detail``."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for hashing, plus what the loader stores about it.

    ``image`` is the greyscale (or RGB) image the hashes are computed from: the
    first frame, EXIF orientation applied, transparency flattened on white,
    16-bit data scaled to 8 bits, and large images reduced (JPEG draft mode or
    box reduction). ``colour`` is the same picture in colour ('RGB', or 'L' when
    the file has no colour; often the same object as ``image``), about the same
    size, for the colour signature; None when decoded without it. ``width``/``height``
    are the full size after orientation.
    """

    image: Image.Image
    format: str
    width: int
    height: int
    frames: int
    colour: Image.Image | None = None
    detail: Image.Image | None = None  # greyscale, long side >= the detail_side asked (see decode_image)


def use_own_pixel_limit() -> None:
    """Turn off Pillow's process-wide pixel limit in a process of dbdedup's own (a loader or check
    worker, the command line): each decode here checks the header against its ``max_pixels``
    instead, so the limit is the one the user set (``--max-pixels``) and the message names it."""
    Image.MAX_IMAGE_PIXELS = None


def _open(source, format_hint: str | None = None) -> Image.Image:
    with warnings.catch_warnings():
        # We enforce our own pixel limit from the header (max_pixels), so Pillow's
        # warning is noise; its hard error is reported as too_many_pixels.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            if format_hint in Image.OPEN:
                # Pillow otherwise tries format plugins in turn: on small images
                # that probing costs about as much as the decode itself.
                try:
                    return Image.open(source, formats=[format_hint])
                except Image.DecompressionBombError:
                    raise
                except Exception:
                    if hasattr(source, "seek"):
                        source.seek(0)
            return Image.open(source)
        except Image.DecompressionBombError as exc:
            raise ImageError("too_many_pixels", str(exc)) from exc


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale -> 8-bit 'L', scaled (Pillow's convert clips)."""
    arr = np.asarray(image)
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        top = float(finite.max()) if finite.size else 1.0
        scale = 255.0 if top <= 1.0 else 255.0 / top if top > 255.0 else 1.0
        out = np.clip(np.nan_to_num(arr) * scale, 0, 255)
    else:
        arr = arr.astype(np.int64)
        if image.mode.startswith("I;16") or arr.max(initial=0) > 255:
            # 16-bit data (65535 = white): exact division keeps an 8-bit original's values.
            out = np.clip((arr + 128) // 257, 0, 255) if arr.max(initial=0) <= 65535 else arr * 255 // arr.max()
        else:
            out = np.clip(arr, 0, 255)
    return Image.fromarray(out.astype(np.uint8), "L")


def _flatten_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def normalise_mode(image: Image.Image) -> Image.Image:
    """Any decoded mode -> 'L' or 'RGB' that looks like what a viewer shows."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode.startswith("I") or mode == "F":
        return _to_8bit_grey(image)
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        return _flatten_on_white(image)
    if mode == "1":
        return image.convert("L")
    if mode in ("RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P"):
        return image.convert("RGB")
    return image.convert("RGB")


def _classify_decode_failure(exc: Exception, fmt: str) -> ImageError:
    text = str(exc) or exc.__class__.__name__
    lowered = text.lower()
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, EOFError) or "truncated" in lowered or "premature end" in lowered:
        return ImageError("truncated", f"{fmt} data ends early: {text}")
    if isinstance(exc, MemoryError):
        return ImageError("too_many_pixels", f"{fmt} image needs more memory than available")
    return ImageError("decode_error", f"{fmt} image could not be decoded: {text}")


def _checked_size(image: Image.Image, max_pixels: int) -> tuple[str, int, int]:
    """(format name, width, height) of an opened image; ImageError for an empty size or more than
    ``max_pixels`` pixels (0: no limit), read from the header before anything is decoded."""
    fmt = _FORMAT_NAMES.get(image.format or "", image.format or "unknown")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("decode_error", f"{fmt} header gives an empty size {width}x{height}")
    if max_pixels and width * height > max_pixels:
        raise ImageError("too_many_pixels",
                         f"{fmt} header says {width}x{height} = {width * height:,} pixels, "
                         f"above the limit of {max_pixels:,} (--max-pixels)")
    return fmt, width, height


def _first_frame(image: Image.Image) -> tuple[int, int]:
    """(frames, EXIF orientation 1-8) of an opened image, positioned on its first frame."""
    frames = int(getattr(image, "n_frames", 1) or 1)
    if frames > 1:
        image.seek(0)
    try:
        orientation = int(image.getexif().get(0x0112, 1) or 1)
    except Exception:
        orientation = 1  # a damaged EXIF block should not lose the image
    return frames, orientation


class _ColourDraftFailed(Exception):
    """libjpeg could not give this JPEG in YCbCr (its data is stored as RGB): decode it the old way."""


def decode_image(source: Union[bytes, str, os.PathLike, io.IOBase], *,
                 max_pixels: int = DEFAULT_MAX_PIXELS, colour: bool = True, detail_side: int = 0) -> DecodedImage:
    """Decode the first frame of an image (bytes, a path or a binary file) for hashing.

    Checks the pixel count from the header before decoding; raises ImageError. With ``colour``
    the result's ``colour`` is the colour working image too (the hashing image is the same
    either way). With ``detail_side``, ``detail`` is the same decode in greyscale before it is
    reduced for hashing (box-reduced to no less than ``detail_side`` on its long side, oriented),
    for keypoints; None when the decode itself was smaller than that (a JPEG drafted for the
    hashes) and the picture is larger.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        head = data[:32]
    else:
        data, head = None, b""
    known = sniff_format(head) if head else None
    try:
        return _decode(io.BytesIO(data) if data is not None else source, known, max_pixels,
                       "YCbCr" if colour else "L", colour, detail_side)
    except _ColourDraftFailed:
        pass
    # A JPEG whose data is RGB, not YCbCr (Adobe transform 0): libjpeg converts it to grey
    # itself for the hashes, as before, and a second draft in RGB gives the colour.

    def again():
        if data is not None:
            return io.BytesIO(data)
        if hasattr(source, "seek"):
            source.seek(0)
        return source

    decoded = _decode(again(), known, max_pixels, "L", False, detail_side)
    try:
        tint = _decode(again(), known, max_pixels, "RGB", True).colour
    except Exception:
        tint = None  # the hashes stand; the image only has no colour signature
    return replace(decoded, colour=tint)


def _decode(source, known: str | None, max_pixels: int, jpeg_mode: str, colour: bool,
            detail_side: int = 0) -> DecodedImage:
    """``decode_image`` with a JPEG drafted in ``jpeg_mode`` ('L', 'YCbCr' or 'RGB')."""
    try:
        image = _open(source, known)
    except ImageError:
        raise
    except Exception as exc:  # UnidentifiedImageError, SyntaxError from broken headers, ...
        if known in ("HEIF", "AVIF"):
            raise ImageError("unsupported_format",
                             f"{known} image, but no {known} plugin is installed "
                             "(pip install 'dbdedup[formats]')") from exc
        if known:
            raise ImageError("decode_error", f"{known} signature, but the header is damaged or cut short") from exc
        raise ImageError("not_an_image", "the content is not in an image format dbdedup reads") from exc

    with image:
        fmt, width, height = _checked_size(image, max_pixels)
        drafted_ycc = False
        try:
            frames, orientation = _first_frame(image)
            if fmt == "JPEG" and image.mode in ("RGB", "L", "YCbCr"):
                image.draft(jpeg_mode, (WORKING_SIZE, WORKING_SIZE))
                drafted_ycc = image.mode == "YCbCr"
            image.load()
            if drafted_ycc:
                # libjpeg's Y channel, bit for bit what it gives for a greyscale draft
                work = image.getchannel(0)
                tint = image.convert("RGB")
            else:
                work = normalise_mode(image)
                tint = work if colour else None
            detail = _detail(work, detail_side, max(width, height)) if detail_side else None
            factor = min(work.size) // REDUCE_TO
            if factor >= 4:
                # a large non-JPEG: box-reduce the greyscale image first, so the
                # LANCZOS resizes run on a few hundred pixels, not millions
                if tint is not None:
                    tint = tint.reduce(factor)
                work = work.convert("L").reduce(factor)
            transpose = _ORIENTATION_TRANSPOSE.get(orientation)
            if transpose is not None:
                shared = tint is work
                work = work.transpose(transpose)
                tint = work if shared else tint.transpose(transpose) if tint is not None else None
                detail = detail.transpose(transpose) if detail is not None else None
                if orientation >= 5:
                    width, height = height, width
            if work is image:
                work = image.copy()
            if tint is image:
                tint = work
        except ImageError:
            raise
        except Exception as exc:
            if drafted_ycc:
                raise _ColourDraftFailed() from exc
            raise _classify_decode_failure(exc, fmt) from exc
    return DecodedImage(image=work, format=fmt, width=width, height=height, frames=frames,
                        colour=tint if colour else None, detail=detail)


def _detail(decoded: Image.Image, side: int, full_side: int) -> Image.Image | None:
    """The decoded pixels in greyscale for keypoints, box-reduced to no less than ``side``; None
    when the decode is below ``side`` but the picture is not (drafted for the hashes)."""
    if max(decoded.size) < min(side, full_side):
        return None
    grey = decoded if decoded.mode == "L" else decoded.convert("L")
    factor = max(grey.size) // side
    if factor >= 2:
        grey = grey.reduce(factor)
    return grey.copy() if grey is decoded else grey


def decode_colour(data: bytes, *, side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The first frame of an image file's bytes in colour ('RGB' or 'L'), EXIF orientation applied and
    transparency on white as ``decode_image`` gives it, but no smaller than ``side`` on its long side
    where the file is larger (JPEGs draft-decoded at the smallest DCT scale that keeps that): what
    the geometric verification matches keypoints on. ``max_pixels`` 0: no limit. Raises ImageError."""
    try:
        image = _open(io.BytesIO(data), sniff_format(data[:32]))
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError("not_an_image", "the content is not in an image format dbdedup reads") from exc
    with image:
        fmt, width, height = _checked_size(image, max_pixels)
        try:
            _, orientation = _first_frame(image)
            if fmt == "JPEG" and image.mode in ("RGB", "YCbCr", "CMYK"):
                scale = max(1, max(width, height) // side)
                image.draft("RGB", (max(1, width // scale), max(1, height // scale)))
            image.load()
            work = normalise_mode(image)
            transpose = _ORIENTATION_TRANSPOSE.get(orientation)
            if transpose is not None:
                work = work.transpose(transpose)
            return work.copy() if work is image else work
        except ImageError:
            raise
        except Exception as exc:
            raise _classify_decode_failure(exc, fmt) from exc


def register_optional_formats() -> list[str]:
    """Register HEIC/AVIF openers when pillow-heif / pillow-avif-plugin are installed; return what was added."""
    added = []
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
        added.append("HEIF")
    except ImportError:
        pass
    if "AVIF" not in Image.registered_extensions().values():
        try:
            import pillow_avif  # noqa: F401  (registers itself on import)

            added.append("AVIF")
        except ImportError:
            pass
    return added


# Truncated files must fail loudly, not load as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False
register_optional_formats()
