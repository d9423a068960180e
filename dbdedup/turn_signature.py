"""The turn signature: a picture's layout described so that turning it about its centre changes nothing.

A copy turned by 10-20 degrees (a scan, a straightened photo) is far from its original by every hash
and by the embedding, so no signal pairs it with its family, and it cannot join a cluster. Its
centre disc is the original's, turned. The signature samples the stored 64x64 luma thumbnail
(``images.structure``) on TURN_RINGS circles about the centre (inside the inscribed circle: a turned
copy's corners are new, filled or cut) at TURN_ANGLES points each, and keeps what a turn leaves
alone: each ring's mean (the radial profile) and the magnitudes of the first TURN_HARMONICS Fourier
terms around each ring. A mirror image has the same magnitudes too.

It is not a matching signal: ``dbdedup.propose_keeper_pairs`` searches its nearest neighbours (a
second pgvector index on ``dbdedup.image_embeddings.turn_signature``) for images in no large cluster,
and proposes their pairs with the keepers of the clusters those neighbours are in; every such pair
is checked by its pixels (SIFT finds a turned copy's keypoints again) before it can link anything.

Measured on bench/accuracy's set (10,800 files). On the clusters of a run before it (7ae058a), of the
copies left out of their original's cluster with no pair at all with its keeper, the keeper would be
proposed for 84 of 121 turned by 20 degrees, 28 of 37 by 10, 9 of 12 by 5, by 385 proposals that no
other signal made (5 nearest neighbours at a cosine similarity of 0.95 or more, from images in no
cluster of 4 or more). With it, recall per copy turned by 20 / 10 / 5 degrees went from 0.55 / 0.76 /
0.84 to 0.78 / 0.84 / 0.87 (bench/accuracy/cli_score.py; bench/accuracy/turn_study.py prints how
often the nearest signatures are the same picture, per kind of copy). Computed from the stored
thumbnail, so a database loaded before it gets it without reading a file.
"""

from __future__ import annotations

from functools import cache

import numpy as np

TURN_RINGS = 12
TURN_ANGLES = 64
TURN_HARMONICS = 10
TURN_SIGNATURE_DIM = TURN_RINGS * (TURN_HARMONICS + 1)  # 132
# the two blocks' weights once each is unit length, as in the study above (more weight on the
# harmonics, which tell drawings apart, than on the rings' means; not tuned further). 8 rings and 8
# harmonics found 92 of the 121 turned by 20 degrees for 760 proposals, 16 and 12 83 for 330.
_W_PROFILE = 0.6
_W_HARMONICS = 0.8
# A flat picture's signature (nothing varies around any ring, or no thumbnail): the first unit vector,
# far from any drawing's (zeros would make pgvector's cosine NaN)
FLAT_TURN_SIGNATURE = np.zeros(TURN_SIGNATURE_DIM, dtype=np.float32)
FLAT_TURN_SIGNATURE[0] = 1.0
FLAT_TURN_SIGNATURE.flags.writeable = False


_CHUNK = 256  # thumbnails sampled at a time: their gathered pixels stay in the CPU cache (8x faster than all at once)


def ring_points(side: int, rings: int, angles: int) -> tuple[np.ndarray, np.ndarray]:
    """Where ``rings`` circles about the centre of a side x side picture, evenly spaced inside its inscribed
    circle (a turned copy's corners are new), are sampled at ``angles`` points each, from the right of the
    centre on: rows and columns (rings, angles), float64. A turn about the centre moves a picture along its
    rings; the turn signature and ``verify.ring_turn`` both sample them here."""
    centre = (side - 1) / 2
    radii = (np.arange(rings) + 0.5) / rings * (centre - 0.5)
    theta = np.arange(angles) / angles * 2 * np.pi
    return centre + radii[:, None] * np.sin(theta)[None], centre + radii[:, None] * np.cos(theta)[None]


@cache
def _sampling(side: int) -> tuple[np.ndarray, np.ndarray]:
    """The rings' bilinear sampling of a side x side thumbnail: the flat indices of the four pixels
    around each point (4 * TURN_RINGS * TURN_ANGLES) and their weights (4, TURN_RINGS * TURN_ANGLES)."""
    ys, xs = (points.ravel() for points in ring_points(side, TURN_RINGS, TURN_ANGLES))
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    fy, fx = ys - y0, xs - x0
    pixel = np.concatenate([y0 * side + x0, y0 * side + x0 + 1, (y0 + 1) * side + x0, (y0 + 1) * side + x0 + 1])
    weight = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]).astype(np.float32)
    return pixel, weight


@cache
def _fourier() -> tuple[np.ndarray, np.ndarray]:
    """The cosine and sine of Fourier terms 0..TURN_HARMONICS around a ring (TURN_ANGLES, TURN_HARMONICS + 1):
    the few terms kept, as two products (cheaper than a whole FFT of each ring)."""
    phase = np.outer(np.arange(TURN_ANGLES), np.arange(TURN_HARMONICS + 1)) * (2 * np.pi / TURN_ANGLES)
    return np.cos(phase).astype(np.float32), np.sin(phase).astype(np.float32)


def turn_signatures(thumbnails: np.ndarray) -> np.ndarray:
    """The unit turn signatures (n, TURN_SIGNATURE_DIM) float32 of square luma thumbnails (n, side, side).

    A flat thumbnail (nothing varies around any ring) has no direction; it gets FLAT_TURN_SIGNATURE.
    """
    thumbnails = np.asarray(thumbnails)
    count, side = thumbnails.shape[0], thumbnails.shape[-1]
    pixel, weight = _sampling(side)
    flat_pixels = thumbnails.reshape(count, side * side)
    rings = np.empty((count, TURN_RINGS * TURN_ANGLES), dtype=np.float32)
    for start in range(0, count, _CHUNK):
        around = np.take(flat_pixels[start:start + _CHUNK], pixel, axis=1).astype(np.float32)
        rings[start:start + _CHUNK] = (around.reshape(-1, 4, weight.shape[1]) * weight).sum(axis=1)
    rings = rings.reshape(count, TURN_RINGS, TURN_ANGLES)
    std = rings.std(axis=(1, 2), keepdims=True)
    flat = std.ravel() < 1.0  # under one grey level: nothing to describe (the embedding's rule too)
    rings = (rings - rings.mean(axis=(1, 2), keepdims=True)) / np.maximum(std, 1.0)
    cosine, sine = _fourier()
    spectrum = np.hypot(rings @ cosine, rings @ sine)  # (count, rings, terms): the magnitudes a turn keeps
    profile = spectrum[:, :, 0] - spectrum[:, :, 0].mean(axis=1, keepdims=True)
    harmonics = np.sqrt(spectrum[:, :, 1:]).reshape(count, -1)  # square roots: a few strong terms do not drown the rest
    signature = np.concatenate([_W_PROFILE * _units(profile), _W_HARMONICS * _units(harmonics)], axis=1)
    signature = _units(signature)
    flat |= np.linalg.norm(signature, axis=1) < 0.5
    signature[flat] = FLAT_TURN_SIGNATURE
    return signature.astype(np.float32)


def turn_signatures_of_thumbnails(stored: list[bytes | None]) -> list[np.ndarray | None]:
    """``turn_signatures`` of stored ``images.structure`` values (square luma, one byte a pixel, any side
    of 8 or more); None for an image with no thumbnail or one that is not square."""
    out: list[np.ndarray | None] = [None] * len(stored)
    by_side: dict[int, list[int]] = {}
    for index, value in enumerate(stored):
        if value is None:
            continue
        side = int(round(len(value) ** 0.5))
        if side >= 8 and side * side == len(value):
            by_side.setdefault(side, []).append(index)
    for side, members in by_side.items():
        stack = np.frombuffer(b"".join(bytes(stored[i]) for i in members), dtype=np.uint8).reshape(len(members), side, side)
        for i, signature in zip(members, turn_signatures(stack)):
            out[i] = signature
    return out


def _units(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.where(norms > 1e-9, rows / np.where(norms > 1e-9, norms, 1.0), 0.0)
