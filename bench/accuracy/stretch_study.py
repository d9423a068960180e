"""How far the dense alignments of the last `cli_score.py` run's verified pairs are from a turn and one scale
(``verify.warp_stretch``), copies against look-alikes, by the warp's turn; and what the stretch bar takes.

The pairs are those the run's workers verified `dense`. Each is aligned again from its files both ways a dense
alignment starts (ECC from the identity, the centre disc compared once the warp turns; and from the turn the
rings show, ``verify.ring_turn``), with the stretch bar off; the alignments that verify are counted by turn
(under or over ``verify.DENSE_STRETCH_MIN_TURN``) and stretch, as copy or look-alike pairs (truth.csv). Then each
pair is given its whole verdict again (``verify_workers.PairChecker``) with the bar on, and the dense verdicts it
no longer gives are counted: the copies the bar costs and the look-alikes it refuses. ``--list`` names the pairs
turned past the bar's turn.

Usage:
    .venv/bin/python bench/accuracy/stretch_study.py [--set bench/out/accuracy] [--list]
"""

from __future__ import annotations

import math
import os
from collections import Counter

from dbdedup import verify
from dbdedup.verify_workers import PairChecker, PendingPair
from structure_study import listing_study_rows, same_picture, worker_pairs_query

STRETCHES = (1.1, 1.2, 1.3, 1.5)


def main(argv: list[str] | None = None) -> int:
    found = listing_study_rows(argv, __doc__.split("\n\n")[0], worker_pairs_query("p.verify_reason = 'dense'"),
                               "name every pair aligned past the bar's turn")
    if found is None:
        return 1
    truth, rows, listing = found
    bar = verify.DENSE_MAX_STRETCH
    checker = PairChecker()
    counts: Counter = Counter()
    lost: Counter = Counter()
    listed = []
    for row in rows:
        pair = PendingPair.from_row(row)
        names = os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode())
        label = "copy" if same_picture(truth, *names) else "look-alike"
        pa, pb = checker._pixels(pair.a), checker._pixels(pair.b)
        fa = verify.Features(pair.a.quality, pair.a.signature)
        fb = verify.Features(pair.b.quality, pair.b.signature)
        verify.DENSE_MAX_STRETCH = math.inf
        for path, match, correlation in (
                ("from the identity", verify.dense_match(pa, pb, disc_if_turned=True), verify.DENSE_MIN_CORRELATION),
                ("from the rings' turn", verify.dense_match(pa, pb, turned=True), verify.DENSE_TURNED_MIN_CORRELATION)):
            if not verify.dense_verdict(fa, fb, match, min_correlation=correlation).verified:
                continue
            past = abs(match.turn) >= verify.DENSE_STRETCH_MIN_TURN
            above = next((f"over {s}" for s in reversed(STRETCHES) if match.stretch > s), f"{STRETCHES[0]} or less")
            counts[(path, "turned past the bar's turn" if past else "less turned", label, above)] += 1
            if past:
                listed.append((label, path, round(match.turn, 1), round(match.stretch, 3), *names))
        verify.DENSE_MAX_STRETCH = bar
        verdict = checker.verdict(pair)
        if not (verdict.verified and verdict.reason == "dense"):
            lost[(label, verdict.reason)] += 1
    print(f"{len(rows)} pairs verified dense; their alignments that verify with no stretch bar:")
    print("| started | turn | pair | stretch | alignments |")
    print("| --- | --- | --- | --- | --- |")
    for key in sorted(counts):
        print(f"| {' | '.join(key)} | {counts[key]} |")
    print(f"\nwith the bar ({bar} past {verify.DENSE_STRETCH_MIN_TURN} degrees), dense verdicts no longer given:",
          dict(lost) or "none")
    if listing:
        for item in sorted(listed):
            print(*item)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
