"""The aligned pairs whose signatures are apart only in their lightness layout, beyond ``verify.HOPELESS``: what
the last `cli_score.py` run's verdicts were for them, copies and look-alikes apart.

Until session 27 the SQL step refused these pairs (verify_reason layout) without reading a file. It now leaves
them to the geometric check: a copy turned by 5-10 degrees or cropped a little at a close pHash moves its layout
that far (its new corners, its cut edges). The pairs are found again from the stored signatures with the rule
the SQL step had (``refused_for_layout``: not agreeing, not apart in colour, lightness layout over
``verify.MAX_LIGHT`` and the worse measure over ``verify.HOPELESS``), and counted by the run's verdict (verified
and its reason, refused, or unchecked: the clusters did not need it). A pair counts as a copy when both files are
copies of one original (truth.csv). With --replay, every one of them is also checked by its pixels now
(``verify_workers.PairChecker``, one process), needed by the clusters or not.

Usage:
    .venv/bin/python bench/accuracy/layout_study.py [--set bench/out/accuracy] [--list N] [--replay]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

from dbdedup import verify
from dbdedup.verify_workers import PairChecker, PendingPair, closest_distance, orientation_of
from structure_study import parsed_study_rows, same_picture, worker_pairs_query


def refused_for_layout(a: verify.Features, b: verify.Features, orientation: str, closest: int) -> bool:
    """Whether the SQL step of sessions before 27 refused the aligned pair for its layout (as
    ``verify_workers.aligned_verdict`` then did)."""
    d = verify.compare_signatures(verify.orient_signature(a.signature, orientation), b.signature)
    if verify.agreement_verdict(d, closest) is not None:
        return False
    apart_in_colour = (d.chroma is not None and d.chroma > verify.MAX_CHROMA) or \
        (d.grey_light is not None and d.grey_light > verify.MAX_GREY_LIGHT) or d.gain > d.gain_limit
    return not apart_in_colour and d.light > verify.MAX_LIGHT and d.worst > verify.HOPELESS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", type=int, default=0, help="list up to N pairs of each outcome")
    parser.add_argument("--replay", action="store_true", help="check every such pair by its pixels too")
    found = parsed_study_rows(parser, argv, worker_pairs_query("p.verified IS NOT NULL AND p.verify_reason <> 'exact'",
                                                               verdict=True))
    if found is None:
        return 1
    args, truth, rows = found
    outcomes: Counter = Counter()
    replayed: Counter = Counter()
    checker = PairChecker() if args.replay else None
    listed: dict[tuple, list] = {}
    for row in rows:
        verified, reason, pair = row[0], row[1], PendingPair.from_row(row[2:])
        orientation = orientation_of(pair)
        if orientation is None or pair.a.quality is None or pair.b.quality is None \
                or pair.a.signature is None or pair.b.signature is None \
                or min(pair.a.quality, pair.b.quality) < verify.MIN_QUALITY:
            continue
        a, b = verify.Features(pair.a.quality, pair.a.signature), verify.Features(pair.b.quality, pair.b.signature)
        if not refused_for_layout(a, b, orientation, closest_distance(pair)):
            continue
        names = os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode())
        key = ("copy" if same_picture(truth, *names) else "look-alike",
               reason if reason == "unchecked" else f"{'verified' if verified else 'refused'} {reason}")
        outcomes[key] += 1
        listed.setdefault(key, []).append((*names, pair.transform or "", pair.distance))
        if checker is not None:
            again = checker.verdict(pair)
            replayed[(key[0], f"{'verified' if again.verified else 'refused'} {again.reason}")] += 1
    print(f"{sum(outcomes.values())} aligned pairs apart only in their layout, beyond HOPELESS, by the run's verdict:")
    print("| pair | verdict | pairs |")
    print("| --- | --- | --- |")
    for (kind, verdict), count in sorted(outcomes.items()):
        print(f"| {kind} | {verdict} | {count} |")
        for entry in listed[(kind, verdict)][:args.list]:
            print(f"|   | {' '.join(str(x) for x in entry)} | |")
    if checker is not None:
        print("\nEvery one of them checked by its pixels now:")
        print("| pair | verdict | pairs |")
        print("| --- | --- | --- |")
        for (kind, verdict), count in sorted(replayed.items()):
            print(f"| {kind} | {verdict} | {count} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
