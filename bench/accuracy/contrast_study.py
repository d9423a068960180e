"""Which grey ECC aligns by: luma, the pictures' colours' main axis where luma cannot see their edges (the rule,
``verify.contrast_greys``), or that axis for every pair of colour pictures; copies against look-alikes.

Reads the database the last `cli_score.py` run left: the pairs its workers refused `no_geometry` or verified
`dense` (the verdicts an alignment by pixels gives). Each is given its whole verdict again
(``verify_workers.PairChecker``) three ways, by ``verify.CONTRAST_MIN_GAIN``: infinite (luma only, as before
session 31), the rule's, and 0 (the axis whenever both pictures are in colour). For each way it counts the pairs
verified that luma leaves out and those luma verifies that it leaves out, as copy or look-alike pairs
(truth.csv). Session 31 chose the rule from this (by a scratch version of it): on seeds 5 and 6 the rule added 18
copy pairs and no look-alike pair and lost none; the axis everywhere added 35 and 4 and lost 2 copy pairs. A run
replays every pair three times (about 20 minutes for a set of 10,800 files); ``--sample N`` takes every Nth pair.
``--list`` names the pairs whose verdict changes.

Usage:
    .venv/bin/python bench/accuracy/contrast_study.py [--set bench/out/accuracy] [--sample 10] [--list]
"""

from __future__ import annotations

import argparse
import math
import os
from collections import Counter

from dbdedup import verify
from dbdedup.verify_workers import PairChecker, PendingPair
from structure_study import parsed_study_rows, same_picture, worker_pairs_query

WAYS = (("luma", math.inf), ("the rule", verify.CONTRAST_MIN_GAIN), ("the axis for every colour pair", 0.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=1, help="replay every Nth pair only")
    parser.add_argument("--list", action="store_true", help="name the pairs whose verdict changes")
    found = parsed_study_rows(parser, argv,
                              worker_pairs_query("p.verify_reason IN ('no_geometry', 'dense') AND NOT p.is_exact"))
    if found is None:
        return 1
    args, truth, rows = found
    rows = rows[::max(args.sample, 1)]
    checkers = {name: PairChecker() for name, _ in WAYS}  # (one each: what a checker caches is its own)
    changed: Counter = Counter()
    listed = []
    rule = verify.CONTRAST_MIN_GAIN
    try:
        for row in rows:
            pair = PendingPair.from_row(row)
            names = os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode())
            label = "copy" if same_picture(truth, *names) else "look-alike"
            verified = {}
            for name, gain in WAYS:
                verify.CONTRAST_MIN_GAIN = gain
                verified[name] = checkers[name].verdict(pair).verified
            for name, _ in WAYS[1:]:
                if verified[name] != verified["luma"]:
                    change = "verified, luma not" if verified[name] else "luma verified, not this"
                    changed[(name, change, label)] += 1
                    listed.append((name, change, label, *names))
    finally:
        verify.CONTRAST_MIN_GAIN = rule
    print(f"{len(rows)} pairs refused no_geometry or verified dense, replayed three ways")
    print("| grey | change against luma | pair | pairs |")
    print("| --- | --- | --- | --- |")
    for key in sorted(changed):
        print(f"| {' | '.join(key)} | {changed[key]} |")
    if not changed:
        print("| any | none | | 0 |")
    if args.list:
        for item in sorted(listed):
            print(*item)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
