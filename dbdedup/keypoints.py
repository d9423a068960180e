"""Keypoint keys of a decoded image: a candidate source for crops and small rotations.

pHash, its orientation variants and the embedding see the whole frame, so a copy
cropped to half its area or turned by ten degrees lands far from its original.
Local features survive both: ORB (OpenCV, no model weights) finds corners on the
image scaled to ``WORKING_SIDE`` and describes each by 256 binary tests, which
are rotation-invariant and, across ORB's scale pyramid, scale-tolerant.

Each descriptor is cut into ``BANDS`` short keys of ``KEY_BITS`` bits (a
locality-sensitive hash by bit sampling: two descriptors of the same corner
differ in some 10-20% of their bits, so some bands agree exactly, while two
unrelated ones agree on a 24-bit band with probability about 2**-24). A key is
the band's number and its bits packed into one integer. The keys are visual
words without a trained vocabulary: an image's set of keys is stored as rows
(key, image id), and two images sharing at least ``MIN_SHARED`` keys are a
candidate pair, found in SQL by a self-join on the key (keys held by too many
images, the stop words, dropped). The pair is only a candidate: geometric
verification (``dbdedup.verify``) decides.

In the product the signal is opt-in (``dbdedup load --keypoints``): the loader stores each
image's ``image_keys`` in ``dbdedup.images.keypoint_keys`` (``LOADER_KEYS`` names the setting),
and ``dbdedup.match_keypoints`` (sql/keypoints.sql) finds the candidate pairs, which only the
geometric check may verify (``dbdedup.verify_workers``).

Pure functions of a decoded image; no database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

WORKING_SIDE = 320  # keypoints are found on the image scaled to this long side
MAX_KEYPOINTS = 150
PATCH = 31  # ORB's learned, decorrelated tests exist for this patch only (OpenCV draws random ones otherwise)
PAD = 16  # pixels of replicated edge added around the image, so that corners near its border are kept
FAST_THRESHOLD = 20  # OpenCV's default corner threshold ...
LOW_CONTRAST_THRESHOLD = 5  # ... and the one tried again on smooth pictures where it finds too few
MIN_KEYPOINTS = 30
BANDS = 6  # keys per keypoint (10 find <= 0.02 more of the crops and rotations for 1.7x the rows and 2x the join)
KEY_BITS = 24  # bits per key
MIN_SHARED = 5  # shared keys that make two images a candidate pair ...
TOP_K = 20  # ... when they are among the TOP_K partners (most shared keys) of either image
MAX_DF = 50  # keys held by more images than this are stop words
DESCRIPTOR_BITS = 256  # ORB's descriptor: 32 bytes
LOADER_KEYS = f"orb{WORKING_SIDE}-{MAX_KEYPOINTS}-{BANDS}x{KEY_BITS}"
"""The key setting a load stores (in load_runs.parameters): keys of other settings do not meet."""


@dataclass(frozen=True)
class Found:
    """ORB keypoints of one image at its working size."""

    points: np.ndarray  # (n, 2) float32: x, y at the working size
    descriptors: np.ndarray  # (n, 32) uint8
    size: tuple[int, int]  # (width, height) of the working image


def _cv2():
    import cv2  # imported on first use: hashing alone does not need OpenCV

    return cv2


def working_grey(image: Image.Image, side: int = WORKING_SIDE) -> np.ndarray:
    """The image in greyscale scaled to ``side`` on its long side (down with a box filter, up
    bicubically: small icons give corners only when enlarged), as (rows, columns) uint8."""
    grey = image if image.mode == "L" else image.convert("L")
    if max(grey.size) != side:
        scale = side / max(grey.size)
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
        grey = grey.resize(size, method)
    return np.asarray(grey, dtype=np.uint8)


def find_keypoints(image: Image.Image, *, side: int = WORKING_SIDE, max_keypoints: int = MAX_KEYPOINTS) -> Found:
    """At most ``max_keypoints`` ORB keypoints of ``image`` scaled to ``side``."""
    return keypoints_of_grey(working_grey(image, side), max_keypoints=max_keypoints)


def keypoints_of_grey(grey: np.ndarray, *, max_keypoints: int = MAX_KEYPOINTS) -> Found:
    """``find_keypoints`` of greyscale pixels already at their working size."""
    cv2 = _cv2()
    size = (grey.shape[1], grey.shape[0])
    padded = cv2.copyMakeBorder(np.ascontiguousarray(grey), PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    found, descriptors = _orb(cv2, padded, max_keypoints, FAST_THRESHOLD)
    if len(found) < MIN_KEYPOINTS:
        found, descriptors = _orb(cv2, padded, max_keypoints, LOW_CONTRAST_THRESHOLD)
    if descriptors is None or not found:
        return Found(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), size)
    points = np.array([k.pt for k in found], dtype=np.float32).reshape(-1, 2) - PAD
    return Found(points, descriptors, size)


def _orb(cv2, grey: np.ndarray, max_keypoints: int, threshold: int):
    detector = cv2.ORB_create(nfeatures=max_keypoints, patchSize=PATCH, edgeThreshold=PATCH, fastThreshold=threshold)
    found, descriptors = detector.detectAndCompute(grey, None)
    return found, descriptors


def descriptor_keys(descriptors: np.ndarray, *, bands: int = BANDS, bits: int = KEY_BITS) -> np.ndarray:
    """The distinct keys of (n, 32) uint8 ORB descriptors, sorted, as int64: band ``j`` of a
    descriptor is its bits ``j * bits`` to ``(j + 1) * bits - 1`` (ORB orders its tests so
    that neighbours are little correlated), and the key is ``j << bits | band value`` (below
    2**31 for up to 128 bands of 24 bits: a PostgreSQL ``integer``)."""
    if bands * bits > DESCRIPTOR_BITS:
        raise ValueError(f"{bands} bands of {bits} bits exceed the descriptor's {DESCRIPTOR_BITS} bits")
    if len(descriptors) == 0:
        return np.zeros(0, np.int64)
    unpacked = np.unpackbits(np.asarray(descriptors, dtype=np.uint8), axis=1)[:, :bands * bits]
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    values = unpacked.reshape(len(descriptors), bands, bits).astype(np.int64) @ weights
    keys = (np.arange(bands, dtype=np.int64) << bits)[None, :] | values
    return np.unique(keys)


def image_keys(image: Image.Image, *, side: int = WORKING_SIDE, max_keypoints: int = MAX_KEYPOINTS,
               bands: int = BANDS, bits: int = KEY_BITS) -> np.ndarray:
    """The keypoint keys of a decoded image (``descriptor_keys`` of its ORB keypoints); empty
    when the image has no corners (flat, one colour, tiny)."""
    found = find_keypoints(image, side=side, max_keypoints=max_keypoints)
    return descriptor_keys(found.descriptors, bands=bands, bits=bits)


def stored_keys(image: Image.Image) -> np.ndarray:
    """The keys the loader stores for an image (``image_keys`` with the defaults), as int32: the
    ``integer[]`` of dbdedup.images.keypoint_keys; empty when the image has no corners."""
    return image_keys(image).astype(np.int32)


def shared_keys(a: np.ndarray, b: np.ndarray) -> int:
    """How many keys two images' key sets (sorted, distinct) have in common."""
    return int(np.intersect1d(a, b, assume_unique=True).size)


def candidate_pairs(keys: list[np.ndarray], *, max_df: int = MAX_DF, min_shared: int = MIN_SHARED,
                    top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs of a collection from its images' keys (``keys[i]``: image i's distinct
    keys), as the SQL self-join finds them: (a, b, shared) arrays with a < b, over keys held by 2 to
    ``max_df`` images, pairs sharing >= ``min_shared`` of them that are among the ``top_k`` partners
    (most shared keys, then the lower index) of either image; ``top_k`` 0 keeps them all. A
    reference for the SQL and for studies; a load does this in the database."""
    n = len(keys)
    owners = np.concatenate([np.full(len(k), i, dtype=np.int64) for i, k in enumerate(keys)] or [np.zeros(0, np.int64)])
    flat = np.concatenate([np.asarray(k, dtype=np.int64) for k in keys] or [np.zeros(0, np.int64)])
    codes, shared = _shared_counts(flat, owners, n, max_df)
    keep = shared >= min_shared
    codes, shared = codes[keep], shared[keep]
    a, b = codes // max(n, 1), codes % max(n, 1)
    if top_k:
        chosen = np.zeros(len(codes), dtype=bool)
        for mine, other in ((a, b), (b, a)):
            order = np.lexsort((other, -shared, mine))
            ordered = mine[order]
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(order) else np.zeros(0, np.int64)
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            chosen[order[rank < top_k]] = True
        a, b, shared = a[chosen], b[chosen], shared[chosen]
    return a, b, shared


def _shared_counts(keys: np.ndarray, owners: np.ndarray, n: int, max_df: int) -> tuple[np.ndarray, np.ndarray]:
    # (pair codes a * n + b with a < b, shared key count) over the keys held by 2..max_df images
    order = np.lexsort((owners, keys))
    keys, owners = keys[order], owners[order]
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    df = np.diff(np.r_[starts, len(keys)])
    codes = []
    for d in range(2, max_df + 1):
        chosen = starts[df == d]
        if len(chosen):
            members = owners[chosen[:, None] + np.arange(d)[None, :]]
            ia, ib = np.triu_indices(d, 1)
            codes.append((members[:, ia] * n + members[:, ib]).ravel())
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.unique(np.concatenate(codes), return_counts=True)
