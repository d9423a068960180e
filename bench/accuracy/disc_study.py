"""Flat pairs that ECC aligned unturned (``verify.dense_match``, correlation ``verify.DENSE_MIN_CORRELATION`` or
more) whose whole squares disagree: the same alignment compared over the centre disc only, by the warp's turn.

A copy turned by a few degrees is aligned by ECC started unturned (the affine warp takes up the turn), and brings
new corners into the square, which differ from the keeper's. The pairs are the last `cli_score.py` run's pairs
that the workers would try so (``verify_workers.dense_candidate``, fewer than ``verify.DENSE_MAX_KEYPOINTS``
keypoints on a side) and whose verdict was no_geometry, dense or structure; each is aligned again from its files,
and counted by the warp's turn (``verify.warp_turn``), by whether it is a copy (truth.csv), and by whether the disc
verifies what the whole square did not.

Usage:
    .venv/bin/python bench/accuracy/disc_study.py [--set bench/out/accuracy] [--list]
"""

from __future__ import annotations

import os
from collections import Counter

from dbdedup import verify
from dbdedup.verify_workers import PendingPair, dense_candidate, orientation_of
from structure_study import listing_study_rows, same_picture, worker_pairs_query
from turned_study import PixelsSeen

BINS = ((0.0, "under 1"), (1.0, "1-3"), (3.0, "3-8"), (8.0, "8 or more"))


def main(argv: list[str] | None = None) -> int:
    found = listing_study_rows(argv, __doc__.split("\n\n")[0],
                               worker_pairs_query("p.verify_reason IN ('no_geometry', 'dense', 'structure')"),
                               "list the look-alike pairs the disc verifies")
    if found is None:
        return 1
    truth, rows, listing = found
    seen = PixelsSeen()
    counts: Counter = Counter()
    look_alikes = []
    # the disc whatever the turn, to count what each bin of turns would give
    verify.DENSE_DISC_MIN_TURN = 0.0
    for row in rows:
        pair = PendingPair.from_row(row)
        if pair.a.status != "ok" or pair.b.status != "ok" or None in (pair.a.quality, pair.b.quality) \
                or pair.a.signature is None or pair.b.signature is None:
            continue
        if not dense_candidate(pair, orientation_of(pair)):
            continue
        (pa, keys_a), (pb, keys_b) = seen(pair.a), seen(pair.b)
        if min(keys_a, keys_b) >= verify.DENSE_MAX_KEYPOINTS:
            continue
        fa, fb = verify.Features(pair.a.quality, pair.a.signature), verify.Features(pair.b.quality, pair.b.signature)
        min_structure = verify.MIN_STRUCTURE_REALIGNED if pair.structure_failed else verify.MIN_STRUCTURE
        whole = verify.dense_match(pa, pb)
        if whole.correlation is None or not whole.correlation >= verify.DENSE_MIN_CORRELATION \
                or verify.dense_verdict(fa, fb, whole, min_structure=min_structure).verified:
            continue
        turn = abs(whole.turn)
        disc = verify.dense_match(pa, pb, disc_if_turned=True)
        verified = verify.dense_verdict(fa, fb, disc, min_structure=min_structure).verified
        names = os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode())
        copy = same_picture(truth, *names)
        label = [name for low, name in BINS if turn >= low][-1]
        counts[(label, "copy" if copy else "look-alike", verified)] += 1
        if verified and not copy:
            look_alikes.append((*names, pair.transform, round(turn, 2)))
    print(f"{sum(counts.values())} flat pairs aligned unturned at {verify.DENSE_MIN_CORRELATION} or more whose "
          "whole squares disagree")
    print("| warp's turn, degrees | pair | pairs | verified over the disc |")
    print("| --- | --- | --- | --- |")
    for _, label in BINS:
        for kind in ("copy", "look-alike"):
            total = counts[(label, kind, True)] + counts[(label, kind, False)]
            print(f"| {label} | {kind} | {total} | {counts[(label, kind, True)]} |")
    if listing:
        for entry in look_alikes:
            print("look-alike verified over the disc:", *entry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
