"""The keypoint alignments of the last `cli_score.py` run, replayed: how far each aligned overlap differs in shape
(``verify.shape_change``), copies against look-alikes, by the alignment's turn.

The pairs are those the run's workers verified `geometry` or refused `structure`. Each is given its verdict again
through ``verify_workers.PairChecker`` (the same keypoints, mirror and inlier bar as the run) without the shape
bar, and of those verified `geometry` so, the last overlap the keypoints aligned is measured: the share of its
inner box where the two pictures' stretched greys differ by more than half their range, in blobs an opening keeps.
Copies and look-alikes come from truth.csv. A bar between the copies' largest value and the look-alikes' smallest
refuses the look-alikes with no copy lost.

Usage:
    .venv/bin/python bench/accuracy/shape_study.py [--set bench/out/accuracy] [--list]
"""

from __future__ import annotations

import os
from collections import defaultdict

from dbdedup import verify
from dbdedup.verify_workers import PairChecker, PendingPair
from structure_study import listing_study_rows, same_picture, worker_pairs_query

TURNS = ((0.0, "under 1"), (1.0, "1-10"), (10.0, "10-30"), (30.0, "30 or more"))


def main(argv: list[str] | None = None) -> int:
    found = listing_study_rows(argv, __doc__.split("\n\n")[0],
                               worker_pairs_query("p.verify_reason IN ('geometry', 'structure')"),
                               "list every look-alike pair with its measure")
    if found is None:
        return 1
    truth, rows, listing = found
    aligned = []
    measure = verify._aligned_colour

    def kept(pa, pb, transform):
        result = measure(pa, pb, transform)
        aligned.append((transform, result[4]))
        return result

    verify._aligned_colour = kept  # (the study's hooks: the overlap of each alignment the checker makes, and no bar)
    bar, verify.MAX_SHAPE_CHANGE = verify.MAX_SHAPE_CHANGE, float("inf")
    checker = PairChecker()
    values: dict[tuple[str, bool], list[float]] = defaultdict(list)
    look_alikes = []
    for row in rows:
        pair = PendingPair.from_row(row)
        aligned.clear()
        if checker.verdict(pair).reason != "geometry" or not aligned or aligned[-1][1] is None:
            continue
        transform, change = aligned[-1]
        turn = abs(verify.warp_turn(transform))
        names = os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode())
        copy = same_picture(truth, *names)
        label = [name for low, name in TURNS if turn >= low][-1]
        values[(label, copy)].append(change)
        if not copy:
            look_alikes.append((round(change, 5), *names, round(turn, 1)))
    print(f"{sum(len(v) for v in values.values())} keypoint alignments replayed; shape change over the bar "
          f"{bar} (applied under {verify.SHAPE_MAX_TURN} degrees)")
    print("| turn, degrees | copy pairs | largest | over the bar | look-alike pairs | smallest over the bar "
          "| over the bar |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for _, label in TURNS:
        copies, others = values.get((label, True), []), values.get((label, False), [])
        over = [v for v in others if v > bar]
        print(f"| {label} | {len(copies)} | {max(copies, default=0):.4f} | "
              f"{sum(v > bar for v in copies)} | {len(others)} | "
              f"{min(over, default=float('nan')):.4f} | {len(over)} |")
    if listing:
        for item in sorted(look_alikes, reverse=True):
            print(*item)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
