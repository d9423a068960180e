"""Window pHashes: a candidate source for copies cropped to half or three quarters of the picture.

A crop keeps the same pixels at a larger scale, so its pHash is far from the whole original's (a 50%
crop at a pHash distance of about 30) and its embedding ranks other pictures first. Its pHash is close
to the pHash of the *window* of the original it was cut from. The stored 64x64 luma thumbnail
(``images.structure``, squashed square, so a crop keeping the aspect is a square window of it) gives
those windows without reading the file: squares of 45 pixels a side (half the area) at 5 x 5 offsets
and of 55 (three quarters) at 3 x 3, each resized to 32x32 with Pillow's Lanczos weights and hashed as
``dbdedup.hashes`` hashes a picture (8x8 DCT block, bits above the median). A window is at most 2.5
thumbnail pixels (4% of its side) off the place a crop was cut from.

Two searches use them, and either only proposes a pair, which the check by pixels (SIFT, RANSAC, the
overlap's colours; a flat picture's window match) alone may verify:

- Each image keeps its ``WINDOWS`` windows beside its embedding (``image_embeddings.crop_windows``:
  computed by the loader's workers, or after the load from the stored thumbnail), and
  ``dbdedup.match_embeddings`` compares each image's pHash with the windows of its 3 nearest embedding
  neighbours, within 8 bits (10 for the nearest: a crop cut between two windows' places, session 47), both
  ways (pairs.transform ``crop_window``): a photo and its one crop. On
  the accuracy set cut to one copy an original (``bench/accuracy/cli_score.py --lone-copies``, session 46)
  crops of 25% / 50% of the area were found 0.57 / 0.00 and 0.67 / 0.03 of the time in two draws without
  it, 0.80 / 0.17 and 0.77 / 0.27 with it; with exact neighbours, 10,000 unrelated small photos give no
  such pair.
- ``dbdedup.propose_keeper_pairs`` compares each probe's stored pHash with the windows of the keepers of
  clusters of 4 or more (computed here for each report, ``clusters.keeper_crop_windows``), within
  ``CROP_DISTANCE`` bits: the nearest keeper proposes its pair. Measured on the accuracy set (10,800
  files, 303 such keepers, 3,522 probes; ``bench/accuracy`` run at d4b2b88): the original is within 12
  bits of a window for 0.86 of the crops to half the area and 0.92 of those to three quarters (10 bits:
  0.65 / 0.82); the nearest keeper within 12 bits made 899 pairs no other signal had, 126 of them a
  half-area crop and its keeper (of the 165 such crops with no pair with their keeper), and the
  geometric check verifies about two thirds of those.

Pure numpy; no database.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from .hashes import HASH_SIZE, LOW_DCT, PHASH_SIZE, phash_of_blocks
from .resample import resize_weights

THUMBNAIL_SIDE = 64  # images.structure (verify.STORED_STRUCTURE_SIDE)
# (window side, offsets along each axis): every offset pair of a side is a window
WINDOW_GRID: tuple[tuple[int, tuple[int, ...]], ...] = ((45, (0, 5, 10, 14, 19)), (55, (0, 4, 9)))
WINDOWS = sum(len(offsets) ** 2 for _, offsets in WINDOW_GRID)
# bits between a probe's pHash and a keeper's window that propose their pair: propose_keeper_pairs'
# crop_distance (tests/test_crop_windows.py holds the SQL to it)
CROP_DISTANCE = 12


# images transformed at a time: their arrays stay in the CPU's caches (64 a chunk: 27 us an image, 256: 26, the
# whole 1,024 at once: more), in float32 (half the memory traffic of float64; on 1,024 small photos the same hashes)
_CHUNK = 64


@functools.cache
def _window_rows() -> tuple[tuple[int, np.ndarray], ...]:
    """For each window side: its offsets' count and the matrix (count * 8, 64) whose rows, applied to a thumbnail
    from the left, give each offset's window resized to 32 rows with Pillow's Lanczos weights and taken through the
    8 low-frequency rows of pHash's DCT (the same from the right does the columns: both at once, about 20x fewer
    operations than resizing each window and transforming it)."""
    groups = []
    for side, offsets in WINDOW_GRID:
        low = LOW_DCT @ resize_weights(side, PHASH_SIZE, Image.Resampling.LANCZOS)  # (8, side)
        rows = np.zeros((len(offsets) * HASH_SIZE, THUMBNAIL_SIDE))
        for k, offset in enumerate(offsets):
            rows[k * HASH_SIZE:(k + 1) * HASH_SIZE, offset:offset + side] = low
        groups.append((len(offsets), rows.astype(np.float32)))
    return tuple(groups)


def window_phashes(thumbnails: np.ndarray) -> np.ndarray:
    """The ``WINDOWS`` window pHashes (signed int64, imagehash's bit order) of each of n stored 64x64
    luma thumbnails ((n, 64, 64) uint8) -> (n, WINDOWS) int64: for each side of WINDOW_GRID, the windows
    at every (top, left) pair of its offsets, tops first. (A window's 8x8 block is the one its resized
    32x32 picture has, computed in another order and precision: a block whose coefficients nearly tie at
    the median, as a flat window's do, may differ in those bits.)"""
    if thumbnails.ndim != 3 or thumbnails.shape[1:] != (THUMBNAIL_SIDE, THUMBNAIL_SIDE):
        raise ValueError(f"thumbnails must be (n, {THUMBNAIL_SIDE}, {THUMBNAIL_SIDE}), not {thumbnails.shape}")
    out = np.empty((thumbnails.shape[0], WINDOWS), dtype=np.int64)
    for start in range(0, thumbnails.shape[0], _CHUNK):
        chunk = thumbnails[start:start + _CHUNK]
        count = chunk.shape[0]
        pixels = chunk.astype(np.float32)
        column = 0
        for offsets, rows in _window_rows():
            # the columns of each thumbnail, then its rows: one product of the same shape a thumbnail, so that its
            # float32 rounding is the same whatever else the chunk holds (one product over the whole chunk rounded
            # a flat window's near-zero coefficients otherwise by the chunk's size: another hash for the same
            # thumbnail at load and when its windows are written again from the store)
            columns = np.matmul(pixels, rows.T)
            blocks = np.matmul(rows, columns).reshape(count, offsets, HASH_SIZE, offsets, HASH_SIZE)
            hashes = phash_of_blocks(blocks.transpose(0, 1, 3, 2, 4).reshape(count * offsets * offsets,
                                                                            HASH_SIZE * HASH_SIZE))
            out[start:start + count, column:column + offsets * offsets] = np.array(hashes, dtype=np.int64).reshape(
                count, offsets * offsets)
            column += offsets * offsets
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


def crop_windows_of_thumbnails(stored: list[bytes | None]) -> list[list[int]]:
    """The window pHashes of each stored thumbnail, as image_embeddings.crop_windows keeps them: ``WINDOWS``
    signed int64 each, or none (an empty list) for a thumbnail that is not 64x64 (missing, or older)."""
    thumbnails, kept = thumbnails_of(stored)
    out: list[list[int]] = [[] for _ in stored]
    for position, windows in zip(kept, window_phashes(thumbnails).tolist()):
        out[position] = windows
    return out
