"""pHash, dHash and aHash of a decoded image, bit-identical to ``imagehash``; pure functions.

One greyscale image gives all three with exactly the operations ``imagehash`` uses
(``convert('L')``, a LANCZOS resize, ``scipy.fftpack.dct``), so the values equal
``imagehash.phash/dhash/average_hash`` applied to that image; the resizes are Pillow's,
reproduced as matrices by ``dbdedup.resample``, and the DCT's 8 low frequencies are a
matrix product whose bits equal scipy's wherever rounding cannot decide them (below).

Hashes are stored as signed 64-bit integers holding the same bits as imagehash's hex
string: ``int(str(imagehash.phash(img)), 16)`` read as uint64, then reinterpreted as
int64 (see ``hash_to_int64``/``int64_to_hex``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .resample import grey_pixels, resize_grey_many, resize_many, stack_ready

HASH_SIZE = 8
PHASH_SIZE = HASH_SIZE * 4  # imagehash's highfreq_factor=4
# The three resizes (width, height): pHash's thumbnail, dHash's and aHash's.
HASH_SIZES: tuple[tuple[int, int], ...] = ((PHASH_SIZE, PHASH_SIZE), (HASH_SIZE + 1, HASH_SIZE), (HASH_SIZE, HASH_SIZE))
_MIDDLE = HASH_SIZE * HASH_SIZE // 2


@dataclass(frozen=True)
class Hashes:
    """The three 64-bit hashes of one image, as signed int64 with imagehash's bit order."""

    phash: int
    dhash: int
    ahash: int


# The 8 low-frequency rows of the DCT-II that ``scipy.fftpack.dct`` computes (type 2, no normalisation):
# X[k] = 2 sum_n x[n] cos(pi k (2n + 1) / 2N), N = 32.
LOW_DCT = 2 * np.cos(np.pi * np.arange(HASH_SIZE)[:, None] * (2 * np.arange(PHASH_SIZE)[None, :] + 1)
                     / (2 * PHASH_SIZE))
# Two coefficients whose magnitudes are this close (relative to the block's largest) may be ordered
# either way by rounding, and a pHash bit, of the image or of one of its orientations (which flip signs),
# may then depend on how the DCT was computed. The matrix product and scipy's FFT differ by about
# 2e-16 of the largest coefficient (the accuracy set's 1,080 sampled images); a natural picture has no
# two magnitudes within 1e-9 of each other, a flat or symmetric drawing has many at exactly zero.
_TIE = 1e-9


def dct(pixels: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.fftpack.dct`` (imagehash's transform) along ``axis``, bit for bit: scipy's own routine
    (``_pocketfft_dct``), or ``scipy.fftpack`` itself where that cannot be loaded alone."""
    transform = _pocketfft_dct()
    if transform is not None:
        return transform(pixels, axis)
    import scipy.fftpack

    return scipy.fftpack.dct(pixels, axis=axis)


_POCKETFFT = "scipy.fft._pocketfft.pypocketfft"


@functools.cache
def _pocketfft_dct() -> Callable[[np.ndarray, int], np.ndarray] | None:
    """The routine ``scipy.fftpack.dct`` ends in (type 2, no normalisation: scipy's pocketfft extension,
    called as scipy.fft's ``_r2r`` calls it), loaded by itself; None when this scipy does not have it there, or it
    does not compute a DCT-II (then ``dct`` imports scipy.fftpack). Importing scipy.fftpack takes 0.2-0.3 s
    (scipy.special, the array API layer) in each loader worker that meets a block with ties; the extension alone,
    about 1 ms (session 45: 8% of the workers' time on 10,000 small photos went to that import)."""
    try:
        import importlib.machinery
        import importlib.util

        import scipy

        folder = Path(scipy.__file__).parent / "fft" / "_pocketfft"
        found = [folder / f"pypocketfft{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
        found = [path for path in found if path.is_file()]
        if not found:
            return None
        loader = importlib.machinery.ExtensionFileLoader(_POCKETFFT, str(found[0]))
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(_POCKETFFT, loader))
        loader.exec_module(module)
        routine = module.dct

        def transform(pixels: np.ndarray, axis: int) -> np.ndarray:
            # (input as scipy's _asfarray leaves float64; norm 0, no output array, 1 thread, no orthogonalisation)
            return routine(np.asarray(pixels, dtype=np.float64), 2, (axis,), 0, None, 1, None)

        # (a routine that no longer takes these arguments, or means other things by them, is not used)
        probe = np.arange(1.0, PHASH_SIZE + 1)[None, :] ** 1.5
        if not np.allclose(transform(probe, -1)[0, :HASH_SIZE], LOW_DCT @ probe[0], rtol=1e-12, atol=1e-9):
            return None
        return transform
    except Exception:  # any other layout or behaviour of scipy's internals: scipy.fftpack, as imagehash uses it
        return None


def _tied(blocks: np.ndarray) -> np.ndarray:
    # (n, 8, 8) -> True where two coefficients' magnitudes are within _TIE of the largest
    magnitudes = np.sort(np.abs(blocks.reshape(blocks.shape[0], HASH_SIZE * HASH_SIZE)), axis=1)
    largest = np.maximum(magnitudes[:, -1], 1.0)
    return np.diff(magnitudes, axis=1).min(axis=1) <= _TIE * largest


def low_frequency_block(pixels: np.ndarray) -> np.ndarray:
    """The 8x8 low-frequency block of the 2-D DCT-II of a 32x32 array, or of each of a stack (n, 32, 32).

    Columns first, then rows, as imagehash does. A matrix product of the 8 rows it needs; a block
    with two coefficients of nearly the same magnitude (``_TIE``) is computed by imagehash's own
    transform instead, so that every pHash bit equals imagehash's.
    """
    values = np.asarray(pixels, dtype=np.float64)
    stack = values.reshape(-1, PHASH_SIZE, PHASH_SIZE)
    blocks = LOW_DCT @ stack @ LOW_DCT.T
    tied = _tied(blocks)
    if tied.any():
        blocks[tied] = dct(dct(stack[tied], axis=-2), axis=-1)[..., :HASH_SIZE, :HASH_SIZE]
    return blocks.reshape(values.shape[:-2] + (HASH_SIZE, HASH_SIZE))


def phash_of_blocks(blocks: np.ndarray) -> list[int]:
    """Rows of 64 DCT coefficients ((n, 64)) -> the pHash of each (signed int64).

    A bit is set where the coefficient is above the median: the mean of the two middle
    values, as ``numpy.median`` gives for 64 values.
    """
    middle = np.sort(blocks, axis=1)[:, _MIDDLE - 1:_MIDDLE + 1]
    return packed_int64(blocks > ((middle[:, 0] + middle[:, 1]) / 2)[:, None])


# ---------------------------------------------------------------- hash encoding


def bits_to_int64(bits: np.ndarray) -> int:
    """64 booleans (row-major, first = most significant, as imagehash prints them) -> signed int64."""
    return int.from_bytes(np.packbits(bits).tobytes(), "big", signed=True)


def packed_int64(bits: np.ndarray) -> list[int]:
    """Rows of 64 booleans ((n, 64)) -> a signed int64 each, as ``bits_to_int64``."""
    return np.packbits(bits, axis=1).view(">i8").ravel().tolist()


def hash_to_int64(image_hash) -> int:
    """An ``imagehash.ImageHash`` (8x8) -> the signed int64 dbdedup stores."""
    return bits_to_int64(image_hash.hash)


def int64_to_hex(value: int) -> str:
    """The stored signed int64 -> imagehash's 16-digit hex string."""
    return f"{value & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def hex_to_int64(text: str) -> int:
    """imagehash's hex string -> the stored signed int64."""
    return int.from_bytes(int(text, 16).to_bytes(8, "big"), "big", signed=True)


# ---------------------------------------------------------------- hashes of an image, or of a stack


def _hashes_of_resized(thumbs: np.ndarray, dpixels: np.ndarray, apixels: np.ndarray) -> tuple[list[Hashes], np.ndarray]:
    # n images' three resizes ((n, 32, 32), (n, 8, 9), (n, 8, 8)) -> their hashes and 8x8 DCT blocks
    count = thumbs.shape[0]
    low = low_frequency_block(thumbs)
    phash = phash_of_blocks(low.reshape(count, HASH_SIZE * HASH_SIZE))
    dhash = packed_int64((dpixels[:, :, 1:] > dpixels[:, :, :-1]).reshape(count, -1))
    # the mean of 64 integers is exact in any summation order: the same threshold as numpy.mean of one
    ahash = packed_int64((apixels > apixels.mean(axis=(1, 2))[:, None, None]).reshape(count, -1))
    return [Hashes(phash=p, dhash=d, ahash=a) for p, d, a in zip(phash, dhash, ahash)], low


def compute_hashes(image: Image.Image) -> Hashes:
    """pHash, dHash and aHash of ``image``, bit-identical to imagehash's functions on it.

    One ``convert('L')`` serves all three (imagehash converts in each function);
    the resizes and the DCT are the very operations imagehash performs.
    """
    return hashes_and_dct_block(image)[0]


def hashes_and_dct_block(image: Image.Image) -> tuple[Hashes, np.ndarray]:
    """``compute_hashes`` and the 8x8 low-frequency DCT block the pHash was taken from.

    The block gives the other orientations' pHash without another resize (``dbdedup.variants``).
    """
    grey = image if image.mode == "L" else image.convert("L")
    thumb, dpixels, apixels = resize_grey_many(grey, grey_pixels(grey), HASH_SIZES)
    hashes, blocks = _hashes_of_resized(thumb[None], dpixels[None], apixels[None])
    return hashes[0], blocks[0]


def stackable(height: int, width: int) -> bool:
    """True when (height, width) greyscale images can be hashed together by ``hashes_of_stack``."""
    return stack_ready(height, width, HASH_SIZES)


def hashes_of_stack(pixels: np.ndarray) -> tuple[list[Hashes], np.ndarray]:
    """``hashes_and_dct_block`` of n greyscale images of one ``stackable`` shape ((n, h, w) uint8) at once.

    The same resize matrices and the same DCT, applied to the stack: the values are those of
    one image at a time, bit for bit (sums of integers are exact in any order, and the DCT
    transforms each line alike), without the per-call overhead of each image.
    """
    resized = resize_many(pixels, HASH_SIZES)
    if resized is None:
        raise ValueError(f"images of {pixels.shape[1]}x{pixels.shape[2]} pixels are not stackable yet")
    return _hashes_of_resized(*resized)
