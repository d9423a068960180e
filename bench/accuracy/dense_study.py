"""Which pairs the dense alignment (verify.dense_match, for flat pictures) would verify among those the
geometric check left no_geometry.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata): every pair whose verdict is
no_geometry, labelled by the set's truth (one original's group), all the copies and a seeded sample of
the look-alikes; aligns each by its pixels (ECC, as the workers do) and prints how many copies and
look-alikes the dense verdict's limits would verify, with and without the bound on keypoints
(verify.DENSE_MAX_KEYPOINTS), by the pair's transform. Session 14 widened verify_workers.dense_candidate
from this.

Usage:
    .venv/bin/python bench/accuracy/dense_study.py [--set bench/out/accuracy] [--sample 3000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from dbdedup import verify
from score import SET_DIR
from structure_study import last_run_rows, same_picture


def measure(row: tuple) -> tuple:
    """(same, transform, fewest keypoints, dense verdict verified) of one pair."""
    same, path_a, path_b, transform = row
    with Image.open(path_a) as a, Image.open(path_b) as b:
        ia, ib = a.convert("RGB"), b.convert("RGB")
    keypoints = min(len(verify.keypoints(ia).points), len(verify.keypoints(ib).points))
    match = verify.dense_match(verify.working_pixels(ia), verify.working_pixels(ib))
    verdict = verify.dense_verdict(verify.Features.of(ia), verify.Features.of(ib), match)
    return same, transform, keypoints, verdict.verified


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--sample", type=int, default=3000, help="look-alike pairs sampled (seeded)")
    args = parser.parse_args(argv)
    found = last_run_rows(
        args.set_dir,
        "SELECT a.path, b.path, p.transform FROM dbdedup.pairs p "
        "JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b "
        "WHERE p.verify_reason = 'no_geometry'")
    if found is None:
        return 2
    truth, rows = found
    labelled = [(same_picture(truth, os.path.basename(a), os.path.basename(b)), a, b, t) for a, b, t in rows]
    copies = [r for r in labelled if r[0]]
    others = [r for r in labelled if not r[0]]
    sample = random.Random(5).sample(others, min(args.sample, len(others)))
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        measured = list(pool.map(measure, copies + sample, chunksize=16))
    print(f"{len(rows):,} no_geometry pairs: {len(copies):,} copies, {len(others):,} look-alikes "
          f"({len(sample):,} sampled)\n")
    print("| keypoints | copies verified | look-alikes verified (of the sample) |")
    print("| --- | --- | --- |")
    for label, bound in ((f"fewer than {verify.DENSE_MAX_KEYPOINTS} on a side", verify.DENSE_MAX_KEYPOINTS),
                         ("any", None)):
        hit = Counter(same for same, _, kp, ok in measured if ok and (bound is None or kp < bound))
        print(f"| {label} | {hit[True]:,} | {hit[False]:,} |")
    by_transform = Counter(t for same, t, kp, ok in measured if same and ok and kp < verify.DENSE_MAX_KEYPOINTS)
    print("\ncopies verified with few keypoints, by the pair's transform:",
          ", ".join(f"{t or 'none'} {n:,}" for t, n in by_transform.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
