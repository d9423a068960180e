"""How well ECC's 64-px stage foretells its 128-px one, on the pairs the dense alignment was tried on.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata): the pairs that ended `dense`
(verified) or no_geometry, found by a signal (no transform), through a keeper (linked) or a trimmed variant
(trim...), a seeded sample of each. Each is aligned by ``verify.dense_match`` as the workers try it: from
the identity (every such pair), from the ring turn (linked pairs) and framed (linked and trimmed pairs,
each side whose frame leaves the other's aspect), with the early stop after the 64-px stage turned off.
For each way it prints how many alignments reached DENSE_MIN_CORRELATION at 128 px, the lowest 64-px
correlation among those, and how many of all the alignments stay under each bound at 64 px: the share
``verify.DENSE_COARSE_MIN_CORRELATION`` spares its 128-px stage. Session 26 chose that bound from this.

Usage:
    .venv/bin/python bench/accuracy/coarse_study.py [--set bench/out/accuracy] [--sample 3000]
"""

from __future__ import annotations

import argparse
import math
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from dbdedup import verify, verify_workers
from score import SET_DIR
from structure_study import last_run_rows, same_picture

BOUNDS = (0.5, 0.6, 0.7, 0.8)


def _stages(pa, pb, **how) -> tuple[float, float] | None:
    """(64-px, 128-px) ECC correlations of one dense alignment; None when ECC did not run both stages."""
    import cv2

    seen: list[float] = []
    real = cv2.findTransformECC

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append(float(result[0]))
        return result

    cv2.findTransformECC = spy
    try:
        verify.dense_match(pa, pb, **how)
    finally:
        cv2.findTransformECC = real
    return (seen[0], seen[1]) if len(seen) == 2 else None


def measure(row: tuple) -> list[tuple[str, bool, float, float]]:
    """(way, same picture, 64-px correlation, 128-px correlation) of each way the workers would align one pair."""
    import cv2

    cv2.setNumThreads(1)
    verify.DENSE_COARSE_MIN_CORRELATION = -math.inf  # (measure the stage it would skip)
    same, path_a, path_b, transform = row
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        pa, pb = verify_workers.pixels_of_file(a.read()), verify_workers.pixels_of_file(b.read())
    ways = [("identity", pa, pb, {})] if transform in (None, verify_workers.LINKED) else []
    if transform == verify_workers.LINKED:
        ways.append(("turned", pa, pb, {"turned": True}))
    if transform == verify_workers.LINKED or (transform or "").startswith("trim"):
        for inner, other in ((verify_workers._trimmed_pixels(pa), pb), (pa, verify_workers._trimmed_pixels(pb))):
            if inner is None or other is None or min(inner.shape[:2]) < verify.GRID:
                continue
            aspect = inner.shape[1] * other.shape[0] / (inner.shape[0] * other.shape[1])
            if abs(math.log(aspect)) <= verify_workers.FRAMED_MAX_ASPECT:
                ways.append(("framed", inner, other, {"fine": True}))
    found = []
    for way, a, b, how in ways:
        stages = _stages(a, b, **how)
        if stages is not None:
            found.append((way, same, *stages))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--sample", type=int, default=3000, help="pairs sampled of each verdict and transform (seeded)")
    args = parser.parse_args(argv)
    found = last_run_rows(
        args.set_dir,
        "SELECT a.path, b.path, p.transform, p.verify_reason FROM dbdedup.pairs p "
        "JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b "
        "WHERE p.verify_reason IN ('dense', 'no_geometry') "
        "AND (p.transform IS NULL OR p.transform = 'linked' OR p.transform LIKE 'trim%%')")
    if found is None:
        return 2
    truth, rows = found
    groups: dict[tuple, list] = {}
    for a, b, transform, reason in rows:
        kind = "trim" if (transform or "").startswith("trim") else transform
        groups.setdefault((reason, kind), []).append(
            (same_picture(truth, os.path.basename(a), os.path.basename(b)), a, b, transform))
    chosen = []
    for key in sorted(groups, key=str):
        chosen += random.Random(7).sample(groups[key], min(args.sample, len(groups[key])))
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        results = [way for pair in pool.map(measure, chosen, chunksize=8) for way in pair]
    present = ", ".join(f"{reason} {kind or 'found'} {len(g):,}" for (reason, kind), g in sorted(groups.items(), key=str))
    print(f"{len(chosen):,} pairs sampled of {present}; DENSE_MIN_CORRELATION {verify.DENSE_MIN_CORRELATION}")
    print("| way | alignments | reached at 128 px (copies) | lowest 64-px of those (of a copy) | "
          + " | ".join(f"under {b} at 64 px (reached; copies)" for b in BOUNDS) + " |")
    print("| --- " * (4 + len(BOUNDS)) + "|")
    for way in ("identity", "turned", "framed"):
        mine = [(same, c64, c128) for w, same, c64, c128 in results if w == way]
        reached = [(same, c64) for same, c64, c128 in mine if c128 >= verify.DENSE_MIN_CORRELATION]
        copies = [c64 for same, c64 in reached if same]
        cells = [f"{sum(c64 < b for _, c64, _ in mine):,} ({sum(c < b for _, c in reached)}; {sum(c < b for c in copies)})"
                 for b in BOUNDS]
        lowest = (f"{min(c for _, c in reached):.3f} ({min(copies):.3f})" if copies else "-")
        print(f"| {way} | {len(mine):,} | {len(reached):,} ({len(copies):,}) | {lowest} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
