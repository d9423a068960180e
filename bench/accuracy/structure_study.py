"""How the structure check (dbdedup/structure_check.py) splits the accuracy set's signature-verified pairs.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata): every pair the check
measured (pairs.structure, a number: the pairs the colour signatures verified, not found through a
trimmed variant), labelled by the set's truth (the same picture: one original's group), and prints,
for a few thresholds, how many copies and how many look-alikes fall below it, then what the pairs
below today's threshold (verify_settings.min_structure) ended as after the geometric check.

Usage:
    .venv/bin/python bench/accuracy/structure_study.py [--set bench/out/accuracy]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import Counter
from pathlib import Path

from dbdedup import verify
from dbdedup.db import connect, stop_embedded

from score import SET_DIR, Truth

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)


def same_picture(truth: Truth, a: str, b: str) -> bool:
    group_a, group_b = truth.group.get(a), truth.group.get(b)
    return a == b or (group_a is not None and group_a == group_b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    args = parser.parse_args(argv)
    truth = Truth.read(args.set_dir / "truth.csv")
    data_dir = (args.set_dir / "cli-pgdata").resolve()
    if not data_dir.exists():
        print(f"no {data_dir}: run cli_score.py first", file=sys.stderr)
        return 2
    try:
        with connect(None, data_dir) as conn:
            rows = conn.execute(
                "SELECT a.path, b.path, p.structure, p.verified, p.verify_reason FROM dbdedup.pairs p "
                "JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b "
                "WHERE p.structure IS NOT NULL AND p.structure <> 'NaN'").fetchall()
    finally:
        stop_embedded(data_dir)
    measured = [(same_picture(truth, os.path.basename(a), os.path.basename(b)), s, v, r) for a, b, s, v, r in rows
                if not math.isnan(s)]
    copies = sum(1 for same, *_ in measured if same)
    print(f"{len(measured):,} pairs measured: {copies:,} copies, {len(measured) - copies:,} look-alikes\n")
    print("| threshold | copies below | look-alikes below |")
    print("| --- | --- | --- |")
    for threshold in THRESHOLDS:
        below = Counter(same for same, s, *_ in measured if s < threshold)
        print(f"| {threshold:.2f} | {below[True]:,} | {below[False]:,} |")
    print(f"\nbelow {verify.MIN_STRUCTURE:.2f}, after the geometric check (verified, reason):")
    ended = Counter((same, verified, reason) for same, s, verified, reason in measured if s < verify.MIN_STRUCTURE)
    for (same, verified, reason), n in sorted(ended.items(), key=lambda item: -item[1]):
        print(f"  {'copy' if same else 'look-alike':10s} {str(verified):5s} {reason}: {n:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
