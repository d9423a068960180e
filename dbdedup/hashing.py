"""Decode an image file once and compute everything dbdedup stores about it.

Pure functions, no database. One read of the file's bytes gives the SHA-256 and
the decode; one greyscale image gives pHash, dHash and aHash with exactly the
operations ``imagehash`` uses (``convert('L')``, a LANCZOS resize,
``scipy.fftpack.dct``), so the values are bit-identical to
``imagehash.phash/dhash/average_hash`` applied to the decoded image.

Hashes are stored as signed 64-bit integers holding the same bits as
imagehash's hex string: ``int(str(imagehash.phash(img)), 16)`` read as uint64,
then reinterpreted as int64 (see ``hash_to_int64``/``int64_to_hex``).

Failures raise ``ImageError`` with a reason code from ``REASONS`` and a
readable detail; ``hash_file_result`` turns them into a plain result for the
loader's worker processes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import warnings
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image, ImageFile

from .scan import sniff_format

# Pillow's own default limit (about 89 million pixels): above it Pillow warns, above twice it raises.
DEFAULT_MAX_PIXELS: int = 89_478_485

# Why a file could not be loaded: reason code -> what it means.
REASONS: dict[str, str] = {
    "empty_file": "the file is empty (0 bytes)",
    "truncated": "the image data ends early (incomplete copy or download)",
    "not_an_image": "the content is not an image format dbdedup reads",
    "unsupported_format": "an image format that needs an optional plugin (pip install 'dbdedup[formats]')",
    "too_many_pixels": "more pixels than --max-pixels (a possible decompression bomb)",
    "decode_error": "the image header is readable but the pixel data is damaged",
    "permission_denied": "no permission to read the file or directory",
    "broken_symlink": "a symbolic link whose target does not exist",
    "symlink_loop": "a symbolic link that points to itself, directly or through other links",
    "unreadable": "the file system returned an error while reading",
    "worker_crashed": "the process hashing it died, twice (a decoder crash on this file, or out of memory)",
}

# Errors that depend on the environment rather than on the bytes: retried on every
# run even when the file's size and mtime did not change (chmod does not touch mtime).
RETRY_REASONS: tuple[str, ...] = ("permission_denied", "broken_symlink", "symlink_loop", "unreadable")

HASH_SIZE = 8
PHASH_SIZE = HASH_SIZE * 4  # imagehash's highfreq_factor=4
# JPEG draft decoding asks libjpeg for at least this many pixels a side (DCT scaling
# by up to 1/8): plenty for 32x32 pHash, and a 12 MP photo costs a fraction of a full decode.
WORKING_SIZE = 64
# Other images whose short side is at least 4x this are box-reduced to about this
# size before hashing; smaller ones are hashed as decoded (exactly imagehash's input).
REDUCE_TO = 128
# Files larger than this are hashed by streaming and decoded from the file instead
# of being held in memory whole.
IN_MEMORY_LIMIT = 256 * 1024 * 1024

_LANCZOS = Image.Resampling.LANCZOS

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
class Hashes:
    """The three 64-bit hashes of one image, as signed int64 with imagehash's bit order."""

    phash: int
    dhash: int
    ahash: int


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for hashing, plus what the loader stores about it.

    ``image`` is the greyscale (or RGB) image the hashes are computed from: the
    first frame, EXIF orientation applied, transparency flattened on white,
    16-bit data scaled to 8 bits, and large images reduced (JPEG draft mode or
    box reduction). ``width``/``height`` are the full size after orientation.
    """

    image: Image.Image
    format: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class Extras:
    """What a load computes from the decode besides the hashes (each optional).

    ``orientations``: the pHash of the 7 other orientations and of the image with uniform
    borders trimmed (``dbdedup.variants``); ``embedder``: an ``dbdedup.embedding.Embedder``
    whose raw descriptor is stored for the embedding vectors.
    """

    orientations: bool = False
    embedder: object | None = None


@dataclass(frozen=True)
class ImageInfo:
    """Everything dbdedup stores about a loaded image file."""

    sha256: bytes
    size_bytes: int
    mtime_ns: int
    device: int
    inode: int
    format: str
    width: int
    height: int
    frames: int
    phash: int
    dhash: int
    ahash: int
    phash_variants: list[int] | None = None  # 7 orientations, then trimmed + its 7 (when trimmed)
    embedder: str | None = None
    raw_descriptor: bytes | None = None


def _dct(pixels: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.fftpack.dct`` (imagehash's transform), imported on first use: the import costs
    about 0.2 s, which the loader's parent process and the other commands never need."""
    import scipy.fftpack

    return scipy.fftpack.dct(pixels, axis=axis)


# ---------------------------------------------------------------- hash encoding


def bits_to_int64(bits: np.ndarray) -> int:
    """64 booleans (row-major, first = most significant, as imagehash prints them) -> signed int64."""
    return int.from_bytes(np.packbits(bits).tobytes(), "big", signed=True)


def hash_to_int64(image_hash) -> int:
    """An ``imagehash.ImageHash`` (8x8) -> the signed int64 dbdedup stores."""
    return bits_to_int64(image_hash.hash)


def int64_to_hex(value: int) -> str:
    """The stored signed int64 -> imagehash's 16-digit hex string."""
    return f"{value & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def hex_to_int64(text: str) -> int:
    """imagehash's hex string -> the stored signed int64."""
    return int.from_bytes(int(text, 16).to_bytes(8, "big"), "big", signed=True)


# ---------------------------------------------------------------- hashes from an image


def _pixels(grey: Image.Image, rows: int, columns: int) -> np.ndarray:
    # the same uint8 array numpy.asarray(grey) gives, without the array-interface detour
    return np.frombuffer(grey.tobytes(), dtype=np.uint8).reshape(rows, columns)


# ---------------------------------------------------------------- Pillow's resize, in numpy

# Pillow's 8-bit resampling (libImaging/Resample.c): per output pixel, integer weights
# (the filter's normalised coefficients times 2**22, rounded away from zero) summed over
# the input pixels plus 2**21, shifted right by 22 and clipped to 0..255; one pass per
# axis, with rounding in between. The same integer sums in float64 are exact (|sum| < 2**40),
# so a matrix product per pass gives Pillow's bytes for a fraction of its call overhead on
# small images. Which axis Pillow resamples first depends on the shapes (and its version),
# so each (input, output, filter) shape is checked against Pillow on a random image before
# the matrices are used for it; a shape that cannot be matched keeps using Pillow.
_PRECISION_BITS = 22
_ROUND_HALF = float(1 << (_PRECISION_BITS - 1))
_UNSCALE = 1.0 / (1 << _PRECISION_BITS)
_SHAPES_KEPT = 512  # distinct (input, output, filter) shapes remembered per process
_WEIGHTS_KEPT = 64  # weight matrices kept (up to 32 x 1024 float64 each: 16 MB at most per cache)
_MATRIX_MAX_SIDE = 1024  # larger inputs keep Pillow's resize (their decode dwarfs it anyway)


def limit_blas_threads() -> bool:
    """Make numpy's BLAS (OpenBLAS in numpy's wheels) use one thread in this process; True if done.

    For the loader's worker processes: OpenBLAS splits a product of a few hundred rows over
    every core, and with one worker per core the threads fight for them (measured on this
    2-core machine: one 375x500 resize 2.5-5 ms instead of 0.37 ms). threadpoolctl does the
    same when installed; without it, the OpenBLAS library loaded in this process is asked directly.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(1, user_api="blas")
        return True
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            libraries = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return False
    done = False
    for library in sorted(libraries):
        try:
            handle = ctypes.CDLL(library)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            setter = getattr(handle, name, None)
            if setter is not None:
                setter(1)
                done = True
                break
    return done


def _lanczos(x: float) -> float:
    def sinc(t: float) -> float:
        if t == 0.0:
            return 1.0
        t = t * math.pi
        return math.sin(t) / t

    return sinc(x) * sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


def _bilinear(x: float) -> float:
    x = -x if x < 0.0 else x
    return 1.0 - x if x < 1.0 else 0.0


_FILTERS = {Image.Resampling.LANCZOS: (_lanczos, 3.0), Image.Resampling.BILINEAR: (_bilinear, 1.0)}


@functools.lru_cache(maxsize=_WEIGHTS_KEPT)
def _weights(in_size: int, out_size: int, resample: int) -> np.ndarray:
    """The (out_size, in_size) integer weights Pillow uses along one axis, as float64."""
    function, support = _FILTERS[resample]
    scale = filterscale = in_size / out_size
    filterscale = max(filterscale, 1.0)
    support *= filterscale
    inverse = 1.0 / filterscale
    weights = np.zeros((out_size, in_size))
    for out in range(out_size):
        centre = (out + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        count = min(int(centre + support + 0.5), in_size) - first
        taps = [function((x + first - centre + 0.5) * inverse) for x in range(count)]
        total = 0.0
        for tap in taps:  # summed in Pillow's order: the same float
            total += tap
        for x, tap in enumerate(taps):
            k = tap / total if total != 0.0 else tap
            weights[out, first + x] = int(k * (1 << _PRECISION_BITS) + (-0.5 if k < 0 else 0.5))
    return weights


def _pass(weights: np.ndarray, pixels: np.ndarray, axis: int) -> np.ndarray:
    # one resampling pass over rows (axis 1) or columns (axis 0), rounded and clipped as Pillow does
    out = pixels @ weights.T if axis == 1 else weights @ pixels
    out += _ROUND_HALF
    out *= _UNSCALE
    np.floor(out, out=out)
    np.maximum(out, 0.0, out=out)
    return np.minimum(out, 255.0, out=out)


def _numpy_resize(pixels: np.ndarray, size: tuple[int, int], resample: int, horizontal_first: bool) -> np.ndarray:
    height, width = pixels.shape[-2:]
    out = pixels.astype(np.float64)
    passes = [(1, width, size[0]), (0, height, size[1])]
    if not horizontal_first:
        passes.reverse()
    for axis, in_size, out_size in passes:
        if in_size != out_size:
            out = _pass(_weights(in_size, out_size, resample), out, axis)
    return out


# (height, width, out_width, out_height, resample) -> times seen, then True/False (horizontal
# pass first) once checked, or None when Pillow must be used
_resize_shapes: dict[tuple, object] = {}


def _check_shape(key: tuple) -> bool | None:
    height, width, out_width, out_height, resample = key
    rng = np.random.default_rng(len(_resize_shapes))
    for _ in range(3):
        probe = rng.integers(0, 256, (height, width), dtype=np.uint8)
        pillow = np.asarray(Image.fromarray(probe, "L").resize((out_width, out_height), resample))
        matches = [order for order in (True, False)
                   if np.array_equal(_numpy_resize(probe, (out_width, out_height), resample, order), pillow)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            return None
    return matches[0] if matches else None


def resize_grey(grey: Image.Image | None, pixels: np.ndarray, size: tuple[int, int],
                resample: int = Image.Resampling.LANCZOS) -> np.ndarray:
    """``numpy.asarray(grey.resize(size, resample))`` ('L' image, LANCZOS or BILINEAR) as float64.

    ``pixels`` is ``grey``'s uint8 array (``grey`` may be None: made from it when needed).
    Bit-identical to Pillow: a shape is resized with matrices only after it was seen once and
    checked against Pillow (see ``_check_shape``), and only up to _MATRIX_MAX_SIDE pixels a side.
    """
    height, width = pixels.shape
    key = (height, width, size[0], size[1], int(resample))
    state = _resize_shapes.get(key, 0)
    if state is True or state is False:
        return _numpy_resize(pixels, size, resample, state)
    if state is not None and (height, width) != (size[1], size[0]) and max(height, width) <= _MATRIX_MAX_SIDE:
        if len(_resize_shapes) >= _SHAPES_KEPT:
            _resize_shapes.clear()
        # a shape seen once may be a one-off: checking it costs more than a Pillow resize
        _resize_shapes[key] = _check_shape(key) if state >= 1 else state + 1
    if grey is None:
        grey = Image.fromarray(np.ascontiguousarray(pixels), "L")
    return _pixels(grey.resize(size, resample), size[1], size[0]).astype(np.float64)


def resize_stack(pixels: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray | None:
    """``resize_grey`` of each of n images of one shape ((n, h, w) uint8) at once, or None when
    that shape has not been checked against Pillow yet (resize them one by one then)."""
    state = _resize_shapes.get((pixels.shape[1], pixels.shape[2], size[0], size[1], int(resample)))
    if state is not True and state is not False:
        return None
    return _numpy_resize(pixels, size, resample, state)


@functools.lru_cache(maxsize=_WEIGHTS_KEPT)
def _stacked_weights(width: int, widths: tuple[int, ...], resample: int) -> np.ndarray:
    return np.concatenate([_weights(width, w, resample) for w in widths])


def resize_grey_many(grey: Image.Image, pixels: np.ndarray, sizes: tuple[tuple[int, int], ...],
                     resample: int = Image.Resampling.LANCZOS) -> list[np.ndarray]:
    """``resize_grey`` to each of ``sizes``; one horizontal pass serves them all when Pillow's order allows."""
    height, width = pixels.shape
    ready = all(_resize_shapes.get((height, width, w, h, int(resample))) is True and w != width and h != height
                for w, h in sizes)
    if not ready:
        return [resize_grey(grey, pixels, size, resample) for size in sizes]
    widths = tuple(w for w, _ in sizes)
    rows = _pass(_stacked_weights(width, widths, resample), pixels.astype(np.float64), 1)
    out, start = [], 0
    for w, h in sizes:
        out.append(_pass(_weights(height, h, resample), rows[:, start:start + w], 0))
        start += w
    return out


def compute_hashes(image: Image.Image) -> Hashes:
    """pHash, dHash and aHash of ``image``, bit-identical to imagehash's functions on it.

    One ``convert('L')`` serves all three (imagehash converts in each function);
    the resizes and the DCT are the very operations imagehash performs.
    """
    return hashes_and_dct_block(image)[0]


def hashes_and_dct_block(image: Image.Image) -> tuple[Hashes, np.ndarray]:
    """``compute_hashes`` and the 8x8 low-frequency DCT block the pHash was taken from.

    The block gives the other orientations' pHash for a few microseconds (``variants``).
    """
    grey = image if image.mode == "L" else image.convert("L")
    full = _pixels(grey, grey.height, grey.width)

    pixels, dpixels, apixels = resize_grey_many(
        grey, full, ((PHASH_SIZE, PHASH_SIZE), (HASH_SIZE + 1, HASH_SIZE), (HASH_SIZE, HASH_SIZE)))
    dct = _dct(_dct(pixels, axis=0), axis=1)
    low = dct[:HASH_SIZE, :HASH_SIZE]
    # numpy.median of 64 values is the mean of the two middle ones: same float, a fraction of the cost
    middle = np.sort(low, axis=None)[HASH_SIZE * HASH_SIZE // 2 - 1: HASH_SIZE * HASH_SIZE // 2 + 1]
    phash = bits_to_int64(low > (middle[0] + middle[1]) / 2)

    dhash = bits_to_int64(dpixels[:, 1:] > dpixels[:, :-1])
    ahash = bits_to_int64(apixels > np.mean(apixels))
    return Hashes(phash=phash, dhash=dhash, ahash=ahash), low


# ---------------------------------------------------------------- decoding


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


def decode_image(source: Union[bytes, str, os.PathLike, io.IOBase], *,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode the first frame of an image (bytes, a path or a binary file) for hashing.

    Checks the pixel count from the header before decoding; raises ImageError.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:32])
        source = io.BytesIO(source)
    else:
        head = b""
    known = sniff_format(head) if head else None
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
        fmt = _FORMAT_NAMES.get(image.format or "", image.format or "unknown")
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError("decode_error", f"{fmt} header gives an empty size {width}x{height}")
        if max_pixels and width * height > max_pixels:
            raise ImageError("too_many_pixels",
                             f"{fmt} header says {width}x{height} = {width * height:,} pixels, "
                             f"above the limit of {max_pixels:,} (--max-pixels)")
        try:
            frames = int(getattr(image, "n_frames", 1) or 1)
            if frames > 1:
                image.seek(0)
            orientation = 1
            try:
                orientation = int(image.getexif().get(0x0112, 1) or 1)
            except Exception:
                orientation = 1  # a damaged EXIF block should not lose the image
            if fmt == "JPEG" and image.mode in ("RGB", "L", "YCbCr"):
                image.draft("L", (WORKING_SIZE, WORKING_SIZE))
            image.load()
            work = normalise_mode(image)
            factor = min(work.size) // REDUCE_TO
            if factor >= 4:
                # a large non-JPEG: box-reduce the greyscale image first, so the
                # LANCZOS resizes run on a few hundred pixels, not millions
                work = work.convert("L").reduce(factor)
            transpose = _ORIENTATION_TRANSPOSE.get(orientation)
            if transpose is not None:
                work = work.transpose(transpose)
                if orientation >= 5:
                    width, height = height, width
            if work is image:
                work = image.copy()
        except ImageError:
            raise
        except Exception as exc:
            raise _classify_decode_failure(exc, fmt) from exc
    return DecodedImage(image=work, format=fmt, width=width, height=height, frames=frames)


def _read_file(path) -> tuple[bytes | None, str, os.stat_result]:
    """Read a file's bytes (or only hash them when huge); returns (data or None, sha256 hex, stat)."""
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            if st.st_size > IN_MEMORY_LIMIT:
                digest = hashlib.sha256()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                return None, digest.digest(), st
            data = handle.read()
            return data, hashlib.sha256(data).digest(), st
    except PermissionError as exc:
        raise ImageError("permission_denied", f"cannot read the file: {exc.strerror}") from exc
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise ImageError("broken_symlink", "the symbolic link's target does not exist") from exc
        raise ImageError("unreadable", "the file disappeared while loading") from exc
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise ImageError("symlink_loop", "the symbolic link leads back to itself") from exc
        raise ImageError("unreadable", f"read error: {exc.strerror or exc}") from exc


def phash_variants(image: Image.Image, low_block: np.ndarray | None = None) -> list[int]:
    """The stored variants of an image's pHash: 7 orientations, then trimmed + its 7 orientations when trimmed.

    ``low_block``: the image's 8x8 DCT block when already computed (``hashes_and_dct_block``).
    """
    from .variants import compute_variants  # variants builds on this module

    found = compute_variants(image, low_block=low_block)
    values = list(found.orientations)
    if found.trimmed is not None:
        values.append(found.trimmed)
        values.extend(found.trimmed_orientations or ())
    return values


def _raw_descriptor(embedder, image: Image.Image) -> bytes | None:
    from .embedding import raw_to_bytes

    try:
        return raw_to_bytes(embedder.describe(image))
    except Exception:
        # a model that fails on one image must not lose the image's hashes; the next
        # load tries again (the file has no descriptor yet)
        return None


def hash_image_file(path: Union[str, bytes, os.PathLike], *, max_pixels: int = DEFAULT_MAX_PIXELS,
                    extras: Extras | None = None) -> ImageInfo:
    """Read ``path`` once and return its SHA-256, size, format, hashes and ``extras``; raise ImageError."""
    data, digest, st = _read_file(path)
    if st.st_size == 0:
        raise ImageError("empty_file", "the file is empty (0 bytes)")
    decoded = decode_image(data if data is not None else path, max_pixels=max_pixels)
    hashes, low_block = hashes_and_dct_block(decoded.image)
    variants = phash_variants(decoded.image, low_block) if extras and extras.orientations else None
    embedder = extras.embedder if extras else None
    raw = _raw_descriptor(embedder, decoded.image) if embedder is not None else None
    return ImageInfo(
        sha256=digest, size_bytes=st.st_size, mtime_ns=st.st_mtime_ns, device=st.st_dev, inode=st.st_ino,
        format=decoded.format, width=decoded.width, height=decoded.height, frames=decoded.frames,
        phash=hashes.phash, dhash=hashes.dhash, ahash=hashes.ahash, phash_variants=variants,
        embedder=embedder.name if raw is not None else None, raw_descriptor=raw,
    )


def hash_file_result(path: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, extras: Extras | None = None) -> tuple:
    """``hash_image_file`` for worker processes: never raises for a bad file.

    Returns ``(path, size, mtime_ns, device, inode, sha256, format, width,
    height, frames, phash, dhash, ahash, phash_variants, embedder, raw_descriptor,
    reason, detail)``; on failure the image fields are None and ``reason``/``detail``
    say why (size and mtime from stat, or lstat for links, when known).
    """
    try:
        info = hash_image_file(path, max_pixels=max_pixels, extras=extras)
    except Exception as exc:  # also a decoder bug: it must not stop the load, only this file
        if isinstance(exc, ImageError):
            reason, detail = exc.reason, exc.detail
        else:
            reason, detail = "decode_error", f"unexpected {exc.__class__.__name__}: {exc}"
        size = mtime = device = inode = None
        for stat_function in (os.stat, os.lstat):
            try:
                st = stat_function(path)
            except OSError:
                continue
            size, mtime, device, inode = st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino
            break
        return (path, size or 0, mtime or 0, device, inode,
                None, None, None, None, None, None, None, None, None, None, None, reason, detail)
    return (path, info.size_bytes, info.mtime_ns, info.device, info.inode, info.sha256, info.format,
            info.width, info.height, info.frames, info.phash, info.dhash, info.ahash,
            info.phash_variants, info.embedder, info.raw_descriptor, None, None)


# ---------------------------------------------------------------- many files at once (the loader's workers)


def _stacked_hashes(pixels: np.ndarray) -> tuple[list[Hashes], np.ndarray]:
    """``hashes_and_dct_block`` of n greyscale images of one shape (uint8, (n, h, w)) at once.

    The same resize matrices and the same DCT, applied to the stack: the values are those of
    one image at a time, bit for bit (sums of integers are exact in any order, and pocketfft
    transforms each line alike), for a fraction of the per-call overhead.
    """
    count, height, width = pixels.shape
    sizes = ((PHASH_SIZE, PHASH_SIZE), (HASH_SIZE + 1, HASH_SIZE), (HASH_SIZE, HASH_SIZE))
    rows = _pass(_stacked_weights(width, tuple(w for w, _ in sizes), _LANCZOS), pixels.astype(np.float64), 1)
    thumbs = _pass(_weights(height, PHASH_SIZE, _LANCZOS), rows[:, :, :PHASH_SIZE], 0)
    small = _pass(_weights(height, HASH_SIZE, _LANCZOS), rows[:, :, PHASH_SIZE:], 0)
    dpixels, apixels = small[:, :, :HASH_SIZE + 1], small[:, :, HASH_SIZE + 1:]
    low = _dct(_dct(thumbs, axis=1), axis=2)[:, :HASH_SIZE, :HASH_SIZE]
    flat = low.reshape(count, HASH_SIZE * HASH_SIZE)
    middle = np.sort(flat, axis=1)[:, HASH_SIZE * HASH_SIZE // 2 - 1: HASH_SIZE * HASH_SIZE // 2 + 1]
    phash = _packed(flat > ((middle[:, 0] + middle[:, 1]) / 2)[:, None])
    dhash = _packed((dpixels[:, :, 1:] > dpixels[:, :, :-1]).reshape(count, -1))
    ahash = _packed((apixels > apixels.mean(axis=(1, 2))[:, None, None]).reshape(count, -1))
    return [Hashes(phash=p, dhash=d, ahash=a) for p, d, a in zip(phash, dhash, ahash)], low


def _packed(bits: np.ndarray) -> list[int]:
    # rows of 64 booleans -> signed int64 each, as bits_to_int64
    return np.packbits(bits, axis=1).view(">i8").ravel().tolist()


def _stackable(decoded: DecodedImage) -> tuple | None:
    # images that can share the stacked computation: greyscale working images whose shape
    # was already checked to resize exactly with matrices, horizontal pass first
    image = decoded.image
    if image.mode != "L":
        return None
    width, height = image.size
    for w, h in ((PHASH_SIZE, PHASH_SIZE), (HASH_SIZE + 1, HASH_SIZE), (HASH_SIZE, HASH_SIZE)):
        if w == width or h == height or _resize_shapes.get((height, width, w, h, int(_LANCZOS))) is not True:
            return None
    return (height, width)


def hash_files(paths: list[bytes], max_pixels: int = DEFAULT_MAX_PIXELS, extras: Extras | None = None) -> list[tuple]:
    """``hash_file_result`` of each path, the same tuples; images of one shape are hashed together.

    Small images of a common size (a folder of thumbnails, a camera's photos) spend most of
    their time in per-call overhead of the resizes, DCT and descriptor; stacking them pays
    it once per group.
    """
    results: list[tuple | None] = [None] * len(paths)
    groups: dict[tuple, list[int]] = {}
    decoded: dict[int, tuple] = {}
    for index, path in enumerate(paths):
        try:
            data, digest, st = _read_file(path)
            if st.st_size == 0:
                raise ImageError("empty_file", "the file is empty (0 bytes)")
            image = decode_image(data if data is not None else path, max_pixels=max_pixels)
        except Exception:
            results[index] = hash_file_result(path, max_pixels, extras)  # the same error tuple
            continue
        decoded[index] = (digest, st, image)
        key = _stackable(image)
        if key is None:
            key = ("alone", index)
        groups.setdefault(key, []).append(index)
    embedder = extras.embedder if extras else None
    for key, members in groups.items():
        images = [decoded[i][2].image for i in members]
        try:
            if key[0] == "alone" or len(members) == 1:
                computed = [hashes_and_dct_block(image) for image in images]
                hashes, blocks = [h for h, _ in computed], [b for _, b in computed]
                variants = ([phash_variants(image, block) for image, block in zip(images, blocks)]
                            if extras and extras.orientations else [None] * len(members))
            else:
                stack = np.stack([_pixels(im, *key) for im in images])
                hashes, blocks = _stacked_hashes(stack)
                variants = (_stacked_variants(images, stack, blocks)
                            if extras and extras.orientations else [None] * len(members))
            raws = _raw_descriptors(embedder, images) if embedder is not None else [None] * len(members)
        except Exception:
            for i in members:
                results[i] = hash_file_result(paths[i], max_pixels, extras)
            continue
        for i, h, v, raw in zip(members, hashes, variants, raws):
            digest, st, image = decoded[i]
            results[i] = (paths[i], st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, digest, image.format,
                          image.width, image.height, image.frames, h.phash, h.dhash, h.ahash, v,
                          embedder.name if raw is not None else None, raw, None, None)
    return results


def _stacked_variants(images: list[Image.Image], stack: np.ndarray, blocks: np.ndarray) -> list[list[int]]:
    # phash_variants of a stack: the orientations at once; an image whose corners agree (it may
    # have a border to trim) goes through the full computation alone
    from .variants import corners_disagree, orientation_hashes_many

    plain = corners_disagree(stack)
    orientations = orientation_hashes_many(blocks)
    return [list(found) if keep else phash_variants(image, block)
            for image, block, found, keep in zip(images, blocks, orientations, plain)]


def _raw_descriptors(embedder, images: list[Image.Image]) -> list[bytes | None]:
    from .embedding import raw_to_bytes

    describe_many = getattr(embedder, "describe_many", None)
    if describe_many is not None and len(images) > 1:
        try:
            return [raw_to_bytes(vector) for vector in describe_many(images)]
        except Exception:
            pass  # one image at a time, so only the one that fails loses its descriptor
    return [_raw_descriptor(embedder, image) for image in images]


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
