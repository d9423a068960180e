"""Window pHashes of a keeper: a candidate source for copies cropped to half or three quarters of the picture.

A crop keeps the same pixels at a larger scale, so its pHash is far from the whole original's (a 50%
crop at a pHash distance of about 30) and its embedding ranks other pictures first. Its pHash is close
to the pHash of the *window* of the original it was cut from. The stored 64x64 luma thumbnail
(``images.structure``, squashed square, so a crop keeping the aspect is a square window of it) gives
those windows without reading the file: squares of 45 pixels a side (half the area) at 5 x 5 offsets
and of 55 (three quarters) at 3 x 3, each resized to 32x32 with Pillow's Lanczos weights and hashed as
``dbdedup.hashes`` hashes a picture (8x8 DCT block, bits above the median). A window is at most 2.5
thumbnail pixels (4% of its side) off the place a crop was cut from.

``dbdedup.propose_keeper_pairs`` compares each probe's stored pHash with the windows of the keepers
of clusters of 4 or more (``WINDOWS`` a keeper, computed here for each report, never stored): the
nearest keeper within ``CROP_DISTANCE`` bits proposes its pair, which only the check by pixels (SIFT,
RANSAC, the overlap's colours) may verify. Measured on the accuracy set (10,800 files, 303 such
keepers, 3,522 probes; ``bench/accuracy`` run at d4b2b88): the original is within 12 bits of a window
for 0.86 of the crops to half the area and 0.92 of those to three quarters (10 bits: 0.65 / 0.82); the
nearest keeper within 12 bits made 899 pairs no other signal had, 126 of them a half-area crop and its
keeper (of the 165 such crops with no pair with their keeper), and the geometric check verifies about
two thirds of those.

Pure numpy; no database.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .hashes import PHASH_SIZE, low_frequency_block, phash_of_blocks
from .resample import resize_weights

THUMBNAIL_SIDE = 64  # images.structure (verify.STORED_STRUCTURE_SIDE)
# (window side, offsets along each axis): every offset pair of a side is a window
WINDOW_GRID: tuple[tuple[int, tuple[int, ...]], ...] = ((45, (0, 5, 10, 14, 19)), (55, (0, 4, 9)))
WINDOWS = sum(len(offsets) ** 2 for _, offsets in WINDOW_GRID)
# bits between a probe's pHash and a keeper's window that propose their pair: propose_keeper_pairs'
# crop_distance (tests/test_crop_windows.py holds the SQL to it)
CROP_DISTANCE = 12


def _window_boxes() -> list[tuple[int, int, int]]:
    return [(side, top, left) for side, offsets in WINDOW_GRID for top in offsets for left in offsets]


def window_phashes(thumbnails: np.ndarray) -> np.ndarray:
    """The ``WINDOWS`` window pHashes (signed int64, imagehash's bit order) of each of n stored 64x64
    luma thumbnails ((n, 64, 64) uint8) -> (n, WINDOWS) int64."""
    if thumbnails.ndim != 3 or thumbnails.shape[1:] != (THUMBNAIL_SIDE, THUMBNAIL_SIDE):
        raise ValueError(f"thumbnails must be (n, {THUMBNAIL_SIDE}, {THUMBNAIL_SIDE}), not {thumbnails.shape}")
    count = thumbnails.shape[0]
    out = np.empty((count, WINDOWS), dtype=np.int64)
    if count == 0:
        return out
    pixels = thumbnails.astype(np.float64)
    for index, (side, top, left) in enumerate(_window_boxes()):
        weights = resize_weights(side, PHASH_SIZE, Image.Resampling.LANCZOS)
        window = pixels[:, top:top + side, left:left + side]
        resized = weights @ window @ weights.T
        blocks = low_frequency_block(resized).reshape(count, -1)
        out[:, index] = phash_of_blocks(blocks)
    return out


def thumbnails_of(stored: list[bytes | None]) -> tuple[np.ndarray, list[int]]:
    """The stored thumbnails that are 64x64 as one (n, 64, 64) uint8 stack, and their positions in
    ``stored`` (images loaded before session 14 keep a 32x32 one: too coarse for a window)."""
    size = THUMBNAIL_SIDE * THUMBNAIL_SIDE
    kept = [i for i, data in enumerate(stored) if data is not None and len(data) == size]
    if not kept:
        return np.zeros((0, THUMBNAIL_SIDE, THUMBNAIL_SIDE), dtype=np.uint8), []
    stack = np.frombuffer(b"".join(bytes(stored[i]) for i in kept), dtype=np.uint8)
    return stack.reshape(len(kept), THUMBNAIL_SIDE, THUMBNAIL_SIDE), kept
