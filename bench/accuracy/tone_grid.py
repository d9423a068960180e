"""The tone check's limits on a grid: which copies and look-alikes each setting of the cells' gate and the
pixels' fit would pass, from one reading of the pairs.

Reads the database a `cli_score.py` run left (as ``tone_study.py``: every aligned pair the signatures
rejected for colour), fits one tone edit to each pair's colour-signature cells and to the workers' pixels
at 64, 128 and 256 (``verify.tone_fits`` both ways, every fit kept), caches the fits in
bench/out/accuracy/tone_grid.pkl (``--again`` to recompute: 10-15 minutes on 2 cores for 86,000 pairs), then
prints, for each setting, how many copy and look-alike pairs pass the cells (the pairs whose files the
workers read), the pixels' fit at the sides given (each later side fitted only after a fit near the limits,
as ``verify.agreeing_tone_fit`` does), and both; and which pairs the product's current setting gains over
session 18's (cells 10 / 25, sides 64 and 256).

Usage:
    .venv/bin/python bench/accuracy/tone_grid.py [--again]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import pickle
import sys
import time
from collections import Counter

import numpy as np

from dbdedup import verify

from score import SET_DIR
from structure_study import last_run_rows, same_picture
from tone_study import QUERY, working_pixels

SIDES = (64, 128, 256)
CACHE = SET_DIR / "tone_grid.pkl"


def fit_everything() -> dict:
    """Every pair's labels and fits: cells (residual, window) both ways; per side (gain, offset, residual,
    window, chroma_error) both ways."""
    found = last_run_rows(SET_DIR, QUERY)
    if found is None:
        sys.exit(2)
    truth, rows = found
    paths = sorted({r[0] for r in rows} | {r[1] for r in rows})
    started = time.perf_counter()
    with cf.ProcessPoolExecutor(2) as pool:
        pixels = dict(zip(paths, pool.map(working_pixels, paths, chunksize=64)))
    print(f"{len(rows):,} pairs, {len(paths):,} files read in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows = [r for r in rows if pixels[r[0]] is not None and pixels[r[1]] is not None]
    thumbnails: dict[tuple, np.ndarray] = {}

    def thumbnail(path: str, orientation: str | None, side: int) -> np.ndarray:
        key = (path, orientation, side)
        if key not in thumbnails:
            oriented = verify.orient_pixels(pixels[path], orientation) if orientation else pixels[path]
            step = side // verify.TONE_SIDE
            thumbnails[key] = verify.tone_thumbnail(oriented, side)[::step, ::step].astype(np.float32)
        return thumbnails[key]

    fits: dict = {"same": [], "grey": [], "names": [], "cells": []}
    for path_a, path_b, sig_a, sig_b, orientation, _, _, _ in rows:
        sig_a, sig_b = np.asarray(sig_a, dtype=np.float64), np.asarray(sig_b, dtype=np.float64)
        a, b = os.path.basename(path_a), os.path.basename(path_b)
        fits["same"].append(same_picture(truth, a, b))
        fits["grey"].append(min(verify.chroma(sig_a), verify.chroma(sig_b)) < verify.GREY_CHROMA)
        fits["names"].append((a, b))
        cells = verify.both_tone_fits(verify.signature_colours(sig_a, orientation), verify.signature_colours(sig_b))
        fits["cells"].append([(f.residual, f.window) for f in cells])
    for side in SIDES:
        started = time.perf_counter()
        fits[side] = []
        for start in range(0, len(rows), 512):
            chunk = rows[start:start + 512]
            x = np.stack([thumbnail(r[0], r[4], side) for r in chunk]).astype(np.float64)
            y = np.stack([thumbnail(r[1], None, side) for r in chunk]).astype(np.float64)
            for one, other in zip(verify.tone_fits(x, y), verify.tone_fits(y, x)):
                fits[side].append([(f.gain, f.offset, f.residual, f.window, f.chroma_error) for f in (one, other)])
        print(f"side {side}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--again", action="store_true", help="fit again instead of reading the cache")
    args = parser.parse_args(argv)
    if args.again or not CACHE.exists():
        CACHE.write_bytes(pickle.dumps(fit_everything()))
    fits = pickle.loads(CACHE.read_bytes())
    same = np.array(fits["same"])
    cells = np.array(fits["cells"])

    def cells_pass(residual: float, window: float) -> np.ndarray:
        return ((cells[:, :, 0] <= residual) & (cells[:, :, 1] <= window)).any(axis=1)

    def pixels_pass(sides: tuple[int, ...], residual: float, window: float) -> np.ndarray:
        passed, going = np.zeros(len(same), dtype=bool), np.ones(len(same), dtype=bool)
        for side in sides:
            f = np.array(fits[side])
            gain, offset, res, win, chroma = (f[:, :, i] for i in range(5))
            agrees = ((gain >= 1 / verify.TONE_MAX_GAIN) & (gain <= verify.TONE_MAX_GAIN)
                      & (np.abs(offset) <= verify.TONE_MAX_OFFSET) & (res <= residual) & (win <= window)
                      & (chroma <= verify.TONE_MAX_CHROMA_ERROR)).any(axis=1)
            passed |= going & agrees
            going &= (res <= verify.TONE_NEAR_RESIDUAL).any(axis=1)
        return passed

    def counts(mask: np.ndarray) -> str:
        return f"{int((mask & same).sum()):,} / {int((mask & ~same).sum()):,}"

    print(f"{len(same):,} aligned pairs rejected for colour: {int(same.sum()):,} copy pairs, "
          f"{int((~same).sum()):,} look-alike pairs; each cell below: copies / look-alikes\n")
    print("| cells within (RMS, cell) | sides | pixels within (RMS, window) | cells pass | pixels pass | both |")
    print("| --- | --- | --- | --- | --- | --- |")
    for cell_limits in ((10, 25), (12, 30), (14, 35), (np.inf, np.inf)):
        gate = cells_pass(*cell_limits)
        for sides in ((64, 256), SIDES):
            for pixel_limits in ((verify.TONE_MAX_RESIDUAL, verify.TONE_MAX_WINDOW), (7, 12), (8, 14)):
                fitted = pixels_pass(sides, *pixel_limits)
                print(f"| {cell_limits} | {sides} | {pixel_limits} | {counts(gate)} | {counts(fitted)} | "
                      f"{counts(gate & fitted)} |")
    before = cells_pass(10, 25) & pixels_pass((64, 256), verify.TONE_MAX_RESIDUAL, verify.TONE_MAX_WINDOW)
    now = cells_pass(verify.TONE_MAX_CELL_RESIDUAL, verify.TONE_MAX_CELL) \
        & pixels_pass(verify.TONE_SIDES, verify.TONE_MAX_RESIDUAL, verify.TONE_MAX_WINDOW)
    edits = Counter()
    for i in np.where(now & ~before)[0]:
        edits[" + ".join(sorted(n.split("__")[1].rsplit(".", 1)[0] if "__" in n else "original"
                                for n in fits["names"][i]))] += 1
    print(f"\nthe product's limits against session 18's: {counts(now)} against {counts(before)}; "
          f"lost {int((before & ~now).sum())}; gained, by the pair's two kinds of copy: {dict(edits.most_common())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
