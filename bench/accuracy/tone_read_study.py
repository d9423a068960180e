"""Which aligned pairs the workers' own tone fit is worth reading the files for, by the signatures' cells.

The workers fit one brightness or contrast edit to the files' pixels of every aligned pair that neither the
signatures nor an alignment settled (verify_workers.PairChecker, the pairs with no pairs.tone_fit), since
session 26 only when the two signatures' 8x8 cells are within ``verify.TONE_READ_CELL_RESIDUAL`` and
``verify.TONE_READ_CELL`` of one edit. Reads the database a `cli_score.py` run left
(bench/out/accuracy/cli-pgdata): the aligned pairs with no tone_fit that ended `tone` or were refused for
anything but colour (a colour refusal of SQL's never reaches the workers), fits the cells both ways, and
prints how many of each pass the bounds of ``--bounds``; then times the workers' fit (at the working size, and
again at the smaller picture's own size, decoded for it) on a sample of the refused pairs the bounds leave out:
the CPU the gate saves.

Usage:
    .venv/bin/python bench/accuracy/tone_read_study.py [--set bench/out/accuracy] [--bounds 14,32 20,50] [--sample 300]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from dbdedup import pg_binary, verify
from dbdedup.verify_workers import own_size_side, pixels_of_file
from score import SET_DIR
from structure_study import last_run_rows

QUERY = """
SELECT a.path, b.path, array_send(a.colour_signature), array_send(b.colour_signature),
       dbdedup.aligned_orientation(p.transform, p.transform_distance, p.distance, s.aligned_variant),
       p.verify_reason, a.width, a.height, b.width, b.height
FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b,
     dbdedup.verify_settings() s
WHERE p.verify_reason IN ('tone', 'detail', 'layout', 'structure', 'no_geometry', 'turned', 'no_overlap')
  AND (p.tone_fit IS NULL OR p.tone_fit = 'NaN'::real)
  AND a.colour_signature IS NOT NULL AND b.colour_signature IS NOT NULL
"""


def cell_fits(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """(residual, window) of the closer of the two one-edit fits of each pair's signature cells
    (``verify.both_tone_fits``)."""
    fits = [verify.both_tone_fits(verify.signature_colours(pg_binary.float4_values(r[2]).astype(np.float64), r[4]),
                                  verify.signature_colours(pg_binary.float4_values(r[3]).astype(np.float64)))
            for r in rows]
    return (np.array([min(x.residual, y.residual) for x, y in fits]),
            np.array([min(x.window, y.window) for x, y in fits]))


def fit_seconds(row: tuple) -> float:
    """CPU seconds of the workers' tone fit of one refused pair, its working pixels already decoded."""
    path_a, path_b, _, _, orientation, _, width_a, height_a, width_b, height_b = row

    def read(path: str, side: int = verify.GEOMETRY_SIDE):
        with open(path, "rb") as f:
            return pixels_of_file(f.read(), side)

    pa, pb = read(path_a), read(path_b)
    started = time.process_time()
    side = own_size_side(SimpleNamespace(a=SimpleNamespace(width=width_a, height=height_a),
                                         b=SimpleNamespace(width=width_b, height=height_b)))
    if verify.tone_verdict(pa, pb, orientation) is None and side is not None:
        verify.tone_verdict(read(path_a, side), read(path_b, side), orientation)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--bounds", nargs="+", default=["14,32", "16,40", "18,45", "20,50"],
                        help="RMS,window bounds on the cells to compare")
    parser.add_argument("--sample", type=int, default=300, help="refused pairs left out by the last bounds, timed")
    args = parser.parse_args(argv)
    found = last_run_rows(args.set_dir, QUERY)
    if found is None:
        return 2
    _, rows = found
    rows = [r for r in rows if r[4] is not None]
    residual, window = cell_fits(rows)
    toned = np.array([r[5] == "tone" for r in rows])
    print(f"{len(rows):,} aligned pairs with no tone_fit: {int(toned.sum())} verified `tone`, "
          f"{int((~toned).sum()):,} refused (not for colour)")
    for k in np.flatnonzero(toned):
        if residual[k] > verify.TONE_MAX_CELL_RESIDUAL or window[k] > verify.TONE_MAX_CELL:
            print(f"  `tone` beyond the candidates' cells: {os.path.basename(rows[k][0])} {os.path.basename(rows[k][1])}"
                  f" {residual[k]:.1f} RMS, {window[k]:.1f} in a window")
    print("| bounds (RMS, window) | `tone` pairs within | refused pairs within (files read) |\n| --- | --- | --- |")
    bound = None
    for text in args.bounds:
        bound = tuple(float(x) for x in text.split(","))
        within = (residual <= bound[0]) & (window <= bound[1])
        print(f"| {bound[0]:g}, {bound[1]:g} | {int((toned & within).sum())} of {int(toned.sum())} | "
              f"{int((~toned & within).sum()):,} of {int((~toned).sum()):,} |")
    skipped = [rows[k] for k in np.flatnonzero(~toned & ~((residual <= bound[0]) & (window <= bound[1])))]
    sample = random.Random(3).sample(skipped, min(args.sample, len(skipped)))
    seconds = [fit_seconds(r) for r in sample]
    print(f"the workers' fit of {len(sample)} refused pairs left out at {bound[0]:g}, {bound[1]:g}: "
          f"{1000 * np.mean(seconds):.1f} ms of CPU a pair (median {1000 * np.median(seconds):.1f}); "
          f"about {np.mean(seconds) * len(skipped):.0f} s for the {len(skipped):,} left out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
