"""What the signatures' cell gates let through: the overlay's (``verify.overlay_cells_agree``) at other one-way
shares, and the tone edit's (``ToneFit.cells_agree``) at other limits, with the pixels' fit of the pairs a wider
tone gate adds.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata), labels the pairs by the set's
truth (copies of one picture, look-alikes), and prints:

- overlay: of the unturned pairs refused for colour, layout, detail or structure, how many pass the cells at
  each one-way share of ``--shares`` (the pairs whose files the workers then read for the overlay check);
- tone: of the aligned pairs refused for colour, how many pass the cells at today's limits and at ``--tone``
  (RMS, window), then the workers' tone verdict (``verify.tone_verdict`` at the working size, and again at the
  smaller picture's own size as the workers do) on the pairs the wider limits add.

Usage:
    .venv/bin/python bench/accuracy/gate_study.py [--shares 0.95,0.85] [--tone 14,32]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from dbdedup import verify
from dbdedup.verify_workers import orientation_of, own_size_side, pixels_of_file

from score import SET_DIR
from structure_study import last_run_rows, same_picture

OVERLAY_QUERY = """SELECT a.path, b.path, a.colour_signature, b.colour_signature
    FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b
    WHERE p.verified = false AND p.verify_reason IN ('colour', 'layout', 'detail', 'structure')
      AND (p.transform IS NULL OR p.transform IN ('linked', 'keypoints'))
      AND a.colour_signature IS NOT NULL AND b.colour_signature IS NOT NULL"""
TONE_QUERY = """SELECT a.path, b.path, a.colour_signature, b.colour_signature, p.transform, p.distance,
        p.transform_distance, a.width, a.height, b.width, b.height
    FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b
    WHERE p.verified = false AND p.verify_reason = 'colour'
      AND a.colour_signature IS NOT NULL AND b.colour_signature IS NOT NULL"""


def overlay(set_dir: Path, shares: list[float]) -> None:
    truth, rows = last_run_rows(set_dir, OVERLAY_QUERY)
    a = np.array([r[2] for r in rows], np.float32)
    b = np.array([r[3] for r in rows], np.float32)
    same = np.array([same_picture(truth, Path(r[0]).name, Path(r[1]).name) for r in rows])
    print(f"overlay: {len(rows):,} unturned pairs refused for colour, layout, detail or structure "
          f"({int(same.sum()):,} of copies)")
    today = verify.OVERLAY_CELL_ONE_WAY
    try:
        for share in shares:
            verify.OVERLAY_CELL_ONE_WAY = share
            passed = verify.overlay_cells_agree_many(a, b, ["identity"] * len(rows))
            print(f"  one way {share}: {int(passed.sum()):,} pass the cells ({int((passed & same).sum()):,} copies, "
                  f"{int((passed & ~same).sum()):,} look-alikes)")
    finally:
        verify.OVERLAY_CELL_ONE_WAY = today


def _pair(row) -> SimpleNamespace:
    """What ``verify_workers.orientation_of`` and ``own_size_side`` read of a pending pair, from a TONE_QUERY row."""
    return SimpleNamespace(transform=row[4], distance=row[5], transform_distance=row[6],
                           a=SimpleNamespace(width=row[7], height=row[8]), b=SimpleNamespace(width=row[9], height=row[10]))


def _orientation(row) -> str | None:
    """The pair's orientation when its hashes aligned it, else None (as the workers decide it)."""
    return orientation_of(_pair(row))


def _toned(job) -> bool:
    """The workers' tone verdict of a pair: at the working size, then at the smaller picture's own size."""
    path_a, path_b, orientation, side = job
    data_a, data_b = Path(path_a).read_bytes(), Path(path_b).read_bytes()
    if verify.tone_verdict(pixels_of_file(data_a), pixels_of_file(data_b), orientation) is not None:
        return True
    return side is not None and \
        verify.tone_verdict(pixels_of_file(data_a, side), pixels_of_file(data_b, side), orientation) is not None


def tone(set_dir: Path, limits: tuple[float, float]) -> None:
    truth, rows = last_run_rows(set_dir, TONE_QUERY)
    rows = [r for r in rows if _orientation(r) is not None]
    cells_a = verify.signatures_colours(np.array([r[2] for r in rows], np.float64))
    cells_b = verify.signatures_colours(np.array([r[3] for r in rows], np.float64))
    cells_a = np.stack([verify.orient_pixels(cells_a[k], _orientation(rows[k])) for k in range(len(rows))])
    fits = list(zip(verify.tone_fits(cells_a, cells_b), verify.tone_fits(cells_b, cells_a)))
    same = np.array([same_picture(truth, Path(r[0]).name, Path(r[1]).name) for r in rows])

    def passing(residual: float, window: float) -> np.ndarray:
        return np.array([any(f.residual <= residual and f.window <= window for f in pair) for pair in fits])

    today = passing(verify.TONE_MAX_CELL_RESIDUAL, verify.TONE_MAX_CELL)
    wider = passing(*limits)
    added = np.flatnonzero(wider & ~today)
    print(f"tone: {len(rows):,} aligned pairs refused for colour; the cells at {verify.TONE_MAX_CELL_RESIDUAL:g} / "
          f"{verify.TONE_MAX_CELL:g} pass {int(today.sum()):,} ({int((today & same).sum()):,} copies), at "
          f"{limits[0]:g} / {limits[1]:g} {int(wider.sum()):,} ({len(added):,} more, {int(same[added].sum()):,} copies)")
    jobs = [(rows[k][0], rows[k][1], _orientation(rows[k]), own_size_side(_pair(rows[k]))) for k in added]
    with cf.ProcessPoolExecutor(2) as pool:
        toned = list(pool.map(_toned, jobs, chunksize=16))
    verified = [k for k, ok in zip(added, toned) if ok]
    print(f"  of those, the pixels' fit verifies {len(verified):,}: {sum(bool(same[k]) for k in verified):,} copies, "
          f"{sum(not same[k] for k in verified):,} look-alikes")
    for k in verified:
        print(f"  {'copy' if same[k] else 'look-alike'}: {Path(rows[k][0]).name} / {Path(rows[k][1]).name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=SET_DIR, dest="set_dir")
    parser.add_argument("--shares", default="0.95,0.9,0.85,0.8", help="the overlay cells' one-way shares to count")
    parser.add_argument("--tone", default="14,32", help="wider tone cells' limits: RMS,window")
    args = parser.parse_args()
    overlay(args.set_dir, [float(x) for x in args.shares.split(",")])
    residual, window = (float(x) for x in args.tone.split(","))
    tone(args.set_dir, (residual, window))


if __name__ == "__main__":
    main()
