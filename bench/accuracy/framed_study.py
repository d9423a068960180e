"""The framed check (``verify_workers.framed_verdict``) on the pairs it is not tried for today: the last
`cli_score.py` run's pairs found by the pHash or the embedding alone that the workers refused `no_geometry`.

Until session 29 ``framed_candidate`` tried a picture against its framed copy (a mat or a border cut off, then ECC)
only for keeper pairs and pairs a trimmed variant found. A framed copy's keeper pair is often found first by the
embedding (a 20% mat keeps the picture's look); refused no_geometry there, it never reached the framed check, and as
the keeper pair it was not proposed again. Each pair is given ``framed_verdict`` from its files (the workers' pixels
and structure bar), and counted by whether it is a copy (truth.csv): the copies it verifies are the recall it
adds, the look-alikes the precision it costs. An embedding neighbour is tried only as the workers try it now (a
border recorded on either side, ``framed_candidate``); a pair only the pHash found, whatever its borders.
``--list`` names every pair it verifies.

Usage:
    .venv/bin/python bench/accuracy/framed_study.py [--set bench/out/accuracy] [--list]
"""

from __future__ import annotations

import os
from collections import Counter

from dbdedup import verify
from dbdedup.verify_workers import PairChecker, PendingPair, framed_candidate, framed_verdict
from structure_study import listing_study_rows, same_picture, worker_pairs_query


def main(argv: list[str] | None = None) -> int:
    found = listing_study_rows(argv, __doc__.split("\n\n")[0],
                               worker_pairs_query("p.verify_reason = 'no_geometry' AND p.transform IS NULL"),
                               "list every pair the framed check verifies")
    if found is None:
        return 1
    truth, rows, listing = found
    checker = PairChecker()
    counts: Counter = Counter()
    listed = []
    for row in rows:
        pair = PendingPair.from_row(row)
        found_by = "embedding" if pair.similarity is not None else "pHash"
        names = os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode())
        label = "copy" if same_picture(truth, *names) else "look-alike"
        if found_by == "embedding" and not framed_candidate(pair):
            counts[(found_by, label, "not tried: no border recorded on either side")] += 1
            continue
        try:
            pixels_a, pixels_b = checker._pixels(pair.a), checker._pixels(pair.b)
        except Exception:  # (a file the run could read: none expected)
            counts[(found_by, label, "unreadable")] += 1
            continue
        fa = verify.Features(pair.a.quality, pair.a.signature)
        fb = verify.Features(pair.b.quality, pair.b.signature)
        min_structure = verify.MIN_STRUCTURE_REALIGNED if pair.structure_failed else verify.MIN_STRUCTURE
        verdict = framed_verdict(fa, fb, pixels_a, pixels_b, min_structure)
        outcome = "no frame or not aligned" if verdict is None else \
            ("verified" if verdict.verified else f"refused {verdict.reason}")
        counts[(found_by, label, outcome)] += 1
        if verdict is not None and verdict.verified:
            listed.append((found_by, label, *names, round(verdict.score, 3)))
    print(f"{len(rows)} pairs found by the pHash or the embedding alone, refused no_geometry")
    print("| found by | pair | framed check | pairs |")
    print("| --- | --- | --- | --- |")
    for key in sorted(counts):
        print(f"| {' | '.join(key)} | {counts[key]} |")
    if listing:
        for item in listed:
            print(*item)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
