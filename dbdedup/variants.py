"""pHashes of an image's flipped, rotated and border-trimmed variants, computed cheaply.

A mirrored or rotated copy of a photo has an unrelated pHash, and so does a copy
with a frame or letterbox bars added. ``compute_variants`` gives the pHashes the
image would have under each of the 7 non-identity orientations (``ORIENTATIONS``)
and, when the image has a uniform border, the pHash of the image without it (and
that crop's 7 orientations), so that matching can compare a stored pHash with
every variant of another image.

Orientations cost no extra resize or DCT. pHash is the sign pattern of the
low-frequency 8x8 block of the DCT-II of the 32x32 greyscale thumbnail, and the
DCT-II turns flips into sign changes: reversing the columns of the pixel array
multiplies coefficient column v by (-1)^v, reversing the rows multiplies row u
by (-1)^u, and transposing the array transposes the coefficients. So each
orientation's block is a signed permutation of the original block, and its hash
is exactly the hash of the numpy-flipped 32x32 thumbnail (same DCT, same median
threshold as imagehash). Against ``imagehash.phash(image.transpose(T))`` it can
differ: flips are bit-identical, the four transposing orientations are 0 or
2 bits apart (2 in 3% of 4,200 photo-like cases), because Pillow rounds between
its horizontal and vertical resize passes, whose order follows the orientation.

Cost: given the 8x8 DCT block the plain pHash was taken from (``low_block``), the
orientations are a gather and a sign flip, far cheaper than the hashes themselves;
images with a border to trim pay for a second 32x32 resize and DCT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .hashes import HASH_SIZE, PHASH_SIZE, low_frequency_block, phash_of_blocks
from .resample import grey_pixels

# The 7 non-identity orientations, named after PIL's Image.Transpose members
# (rotate_90 is Transpose.ROTATE_90: counter-clockwise).
ORIENTATIONS: tuple[str, ...] = (
    "flip_h", "flip_v", "rotate_90", "rotate_180", "rotate_270", "transpose", "transverse",
)

# Each orientation as an operation on the pixel array P (rows = y): transpose
# P first, then reverse its rows, then reverse its columns. ROTATE_90 is
# numpy.rot90(P) = P.T[::-1, :]; ROTATE_270 is P.T[:, ::-1]; TRANSVERSE is P.T[::-1, ::-1].
_PIXEL_OPERATIONS: dict[str, tuple[bool, bool, bool]] = {
    "flip_h": (False, False, True),
    "flip_v": (False, True, False),
    "rotate_90": (True, True, False),
    "rotate_180": (False, True, True),
    "rotate_270": (True, False, True),
    "transpose": (True, False, False),
    "transverse": (True, True, True),
}

# The same orientations as Pillow operations, to make a transformed copy of an image.
PIL_TRANSPOSE: dict[str, Image.Transpose] = {
    "flip_h": Image.Transpose.FLIP_LEFT_RIGHT,
    "flip_v": Image.Transpose.FLIP_TOP_BOTTOM,
    "rotate_90": Image.Transpose.ROTATE_90,
    "rotate_180": Image.Transpose.ROTATE_180,
    "rotate_270": Image.Transpose.ROTATE_270,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}

# A border is uniform when every pixel in it is within this many grey levels of the corners' colour
# (JPEG noise on a flat border stays well inside it).
BORDER_TOLERANCE = 10
# Trim only when some side loses at least this share of the image's width or height ...
MIN_TRIM_FRACTION = 0.02
# ... and the content left keeps at least this share of the area (a small object on a flat
# background is a different picture, not a framed one).
MIN_KEPT_AREA = 0.20


def _orientation_tables() -> tuple[np.ndarray, np.ndarray]:
    """Gather indices and signs (7, 64) that map the flattened 8x8 DCT block to each orientation's block."""
    u, v = np.mgrid[0:HASH_SIZE, 0:HASH_SIZE]
    indices, signs = [], []
    for name in ORIENTATIONS:
        transpose, flip_rows, flip_columns = _PIXEL_OPERATIONS[name]
        source = v * HASH_SIZE + u if transpose else u * HASH_SIZE + v
        sign = np.ones((HASH_SIZE, HASH_SIZE))
        if flip_rows:
            sign *= (-1.0) ** u
        if flip_columns:
            sign *= (-1.0) ** v
        indices.append(source.ravel())
        signs.append(sign.ravel())
    return np.array(indices), np.array(signs)


_INDICES, _SIGNS = _orientation_tables()


@dataclass(frozen=True)
class Variants:
    """pHashes (signed int64, imagehash's bit order) of an image's transformed variants.

    ``orientations``: 7 hashes, in the order of ``ORIENTATIONS``.
    ``trimmed``: the pHash of the image with its uniform border cut off, or None when it has none.
    ``trimmed_orientations``: the 7 orientations of that crop, or None when not trimmed.
    """

    orientations: tuple[int, ...]
    trimmed: int | None
    trimmed_orientations: tuple[int, ...] | None


def dct_block(grey: Image.Image) -> np.ndarray:
    """The 8x8 low-frequency DCT block pHash thresholds, computed as ``hashes.compute_hashes`` does."""
    return low_frequency_block(grey_pixels(grey.resize((PHASH_SIZE, PHASH_SIZE), Image.Resampling.LANCZOS)))


def block_hash(block: np.ndarray) -> int:
    """The pHash (signed int64) of an 8x8 DCT block: equals ``compute_hashes(...).phash`` for its image."""
    return phash_of_blocks(block.reshape(1, -1))[0]


def orientation_hashes(block: np.ndarray) -> tuple[int, ...]:
    """The 7 orientation pHashes of an image from its 8x8 DCT block, in the order of ``ORIENTATIONS``."""
    return tuple(phash_of_blocks(block.ravel()[_INDICES] * _SIGNS))


def orientation_hashes_many(blocks: np.ndarray) -> list[tuple[int, ...]]:
    """``orientation_hashes`` of n blocks ((n, 8, 8)) at once."""
    count = blocks.shape[0]
    flat = phash_of_blocks((blocks.reshape(count, -1)[:, _INDICES] * _SIGNS).reshape(count * len(ORIENTATIONS), -1))
    step = len(ORIENTATIONS)
    return [tuple(flat[k:k + step]) for k in range(0, len(flat), step)]


def corners_disagree(pixels: np.ndarray) -> np.ndarray:
    """For n greyscale images ((n, h, w) uint8): True where ``trim_box`` stops at the corners (no border)."""
    corners = pixels[:, [0, 0, -1, -1], [0, -1, 0, -1]].astype(np.int16)
    return corners.max(axis=1) - corners.min(axis=1) > BORDER_TOLERANCE


def _content_span(profile: np.ndarray, start: int, stop: int) -> tuple[int, int]:
    # On a reduced image (JPEG draft decoding, box reduction) the line where the frame meets the
    # content is a blend of both; keeping a line that is mostly frame shifts the crop by up to a
    # pixel, which costs 4-8 bits of pHash on an 80-pixel working image. Such a line deviates
    # from the border colour less than half as much as the next line in.
    if stop - start > 2 and profile[start] < profile[start + 1] / 2:
        start += 1
    if stop - start > 2 and profile[stop - 1] < profile[stop - 2] / 2:
        stop -= 1
    return start, stop


def trim_box(grey: Image.Image) -> tuple[int, int, int, int] | None:
    """The box (left, upper, right, lower) inside a uniform border of a greyscale image, or None.

    The border colour is the corners' grey level; all four corners must agree within
    BORDER_TOLERANCE. A row or column belongs to the border when its pixels differ from
    that colour by less than BORDER_TOLERANCE / 2 on average. None when the corners
    disagree, the image is flat, no side loses MIN_TRIM_FRACTION of its length, or the
    box keeps less than MIN_KEPT_AREA of the area.
    """
    width, height = grey.size
    corners = [grey.getpixel(xy) for xy in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1))]
    # most photos stop here: four equal corners are rare without a frame
    if max(corners) - min(corners) > BORDER_TOLERANCE:
        return None
    border = (max(corners) + min(corners)) // 2
    deviation = np.abs(grey_pixels(grey).astype(np.int16) - border)
    # An average, not any single pixel: JPEG ringing puts isolated pixels 20-40 levels off in the
    # border next to a sharp content edge, which would widen the box by up to a JPEG block.
    limit = BORDER_TOLERANCE / 2
    column_profile, row_profile = deviation.mean(axis=0), deviation.mean(axis=1)
    columns = np.flatnonzero(column_profile > limit)
    rows = np.flatnonzero(row_profile > limit)
    if columns.size == 0 or rows.size == 0:
        return None
    left, right = _content_span(column_profile, int(columns[0]), int(columns[-1]) + 1)
    upper, lower = _content_span(row_profile, int(rows[0]), int(rows[-1]) + 1)
    margins = (left / width, (width - right) / width, upper / height, (height - lower) / height)
    if max(margins) < MIN_TRIM_FRACTION:
        return None
    if (right - left) * (lower - upper) < MIN_KEPT_AREA * width * height:
        return None
    return left, upper, right, lower


def compute_variants(image: Image.Image, *, low_block: np.ndarray | None = None) -> Variants:
    """The orientation and border-trimmed pHash variants of a decoded working image ('L' or 'RGB').

    ``image`` is what ``hashes.compute_hashes`` gets; the result is deterministic.
    ``low_block``: the image's 8x8 DCT block (``dct_block``) when the caller already has it,
    which saves the 32x32 resize and the DCT, most of the cost.
    """
    grey = image if image.mode == "L" else image.convert("L")
    orientations = orientation_hashes(dct_block(grey) if low_block is None else low_block)
    box = trim_box(grey)
    if box is None:
        return Variants(orientations=orientations, trimmed=None, trimmed_orientations=None)
    block = dct_block(grey.crop(box))
    return Variants(orientations=orientations, trimmed=block_hash(block), trimmed_orientations=orientation_hashes(block))


def stored_variants(image: Image.Image, low_block: np.ndarray | None = None) -> list[int]:
    """The variants the loader stores: 7 orientations, then trimmed + its 7 orientations when trimmed.

    ``low_block``: the image's 8x8 DCT block when already computed (``hashes.hashes_and_dct_block``).
    """
    found = compute_variants(image, low_block=low_block)
    values = list(found.orientations)
    if found.trimmed is not None:
        values.append(found.trimmed)
        values.extend(found.trimmed_orientations or ())
    return values


def stored_variants_many(images: list[Image.Image], pixels: np.ndarray, blocks: np.ndarray) -> list[list[int]]:
    """``stored_variants`` of n greyscale images of one shape: their ``pixels`` ((n, h, w) uint8) and DCT blocks.

    The orientations are computed at once; an image whose corners agree (it may have a border
    to trim) goes through the full computation alone.
    """
    plain = corners_disagree(pixels)
    orientations = orientation_hashes_many(blocks)
    return [list(found) if keep else stored_variants(image, block)
            for image, block, found, keep in zip(images, blocks, orientations, plain)]
