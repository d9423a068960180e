"""The keeper pairs the workers try from a ring turn (``verify.dense_match(turned=True)``): what the bar on ECC's
correlation, the keypoints' gate and the order of the two pictures give, on the last `cli_score.py` run.

The pairs are the run's keeper pairs through a member (transform 'linked') that nothing aligned unturned: every
such pair whose verdict is no_geometry, dense or structure is replayed from its files. A flat one (fewer than
``verify.DENSE_MAX_KEYPOINTS`` keypoints on a side) is skipped when ECC from the identity verifies it, as the
workers would. Each is then aligned from its ring turn (up to ``verify.DENSE_TURNED_MAX_DEGREES`` for one with
keypoints enough) with the two pictures in the stored order (image_a the template) and with the larger picture
(the keeper's side, unturned) the template, and judged by ``verify.dense_verdict`` (the workers' structure bar:
the realigned one when the pair's structure check failed) at several bars. A pair counts as a copy when both
files are copies of one original (truth.csv).

Usage:
    .venv/bin/python bench/accuracy/turned_study.py [--set bench/out/accuracy] [--csv OUT] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import OrderedDict
from pathlib import Path

from dbdedup import verify
from dbdedup.verify_workers import LINKED, PendingPair, pixels_of_file
from score import SET_DIR
from structure_study import last_run_rows, same_picture, worker_pairs_query

BARS = (0.97, 0.96, 0.95, 0.94, 0.93)


class PixelsSeen:
    """An image's working pixels and keypoint count, read from its file once (the last ``keep`` kept): the pairs
    come in the workers' order, an image's pairs together."""

    def __init__(self, keep: int = 600):
        self.cache: OrderedDict[int, tuple] = OrderedDict()
        self.keep = keep

    def __call__(self, info) -> tuple:
        if info.id not in self.cache:
            pixels = pixels_of_file(open(info.path, "rb").read())
            self.cache[info.id] = (pixels, len(verify.keypoints_of_pixels(pixels).points))
            while len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        return self.cache[info.id]


def larger_first(pair: PendingPair) -> bool:
    """Whether image_b was recorded larger than image_a (then b is the template)."""
    sizes = (pair.a.width, pair.a.height, pair.b.width, pair.b.height)
    return None not in sizes and pair.b.width * pair.b.height > pair.a.width * pair.a.height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--csv", type=Path, help="one row a pair")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    found = last_run_rows(args.set_dir, worker_pairs_query(
        "p.transform = 'linked' AND p.verify_reason IN ('no_geometry', 'dense', 'structure')", verdict=True))
    if found is None:
        return 1
    truth, rows = found
    seen = PixelsSeen()
    out = None
    if args.csv:
        out = csv.writer(open(args.csv, "w", newline=""))
        out.writerow(["a", "b", "copy", "run", "keypoints", "order", "correlation", "verdict_at_0.95"])
    results = []  # (copy, flat, verified in run, {order: (correlation, agrees)})
    for row in rows[:args.limit]:
        verified, reason, pair = row[0], row[1], PendingPair.from_row(row[2:])
        if not (pair.transform == LINKED and pair.a.status == pair.b.status == "ok"):
            continue
        if pair.a.quality is None or pair.b.quality is None or pair.a.signature is None or pair.b.signature is None:
            continue
        fa, fb = verify.Features(pair.a.quality, pair.a.signature), verify.Features(pair.b.quality, pair.b.signature)
        try:
            (pa, ka), (pb, kb) = seen(pair.a), seen(pair.b)
        except Exception:  # (a file gone since the run)
            continue
        flat = min(ka, kb) < verify.DENSE_MAX_KEYPOINTS
        min_structure = verify.MIN_STRUCTURE_REALIGNED if pair.structure_failed else verify.MIN_STRUCTURE
        if flat and verify.dense_verdict(fa, fb, verify.dense_match(pa, pb), min_structure=min_structure).verified:
            continue
        max_turn = None if flat else verify.DENSE_TURNED_MAX_DEGREES
        orders = {"stored": (pa, pb), "larger": (pb, pa) if larger_first(pair) else (pa, pb)}
        judged = {}
        for name, (x, y) in orders.items():
            match = verify.dense_match(x, y, turned=True, max_turn=max_turn)
            # (the bar apart: each bar's verdict is this one's with the correlation compared to it)
            agrees = verify.dense_verdict(fa, fb, match, min_structure=min_structure, min_correlation=-1.0).verified
            judged[name] = (match.correlation, agrees)
        copy = same_picture(truth, os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode()))
        results.append((copy, flat, bool(verified), judged))
        if out:
            for name, (correlation, agrees) in judged.items():
                out.writerow([os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode()), int(copy),
                              f"{verified}:{reason}", "flat" if flat else "many", name, correlation,
                              int(agrees and correlation is not None and correlation >= 0.95)])
    print(f"{len(results)} keeper pairs tried from a ring turn ({sum(r[0] for r in results)} copies), "
          f"{sum(r[1] for r in results)} of them flat")
    print("| keypoints | order | bar | copies verified | of them not verified in the run | look-alikes verified |")
    print("| --- | --- | --- | --- | --- | --- |")
    for flat in (True, False):
        for order in ("stored", "larger"):
            for bar in BARS:
                passed = [r for r in results if r[1] == flat and r[3][order][1] and r[3][order][0] >= bar]
                copies = [r for r in passed if r[0]]
                print(f"| {'flat' if flat else 'many'} | {order} | {bar} | {len(copies)} | "
                      f"{sum(not r[2] for r in copies)} | {len(passed) - len(copies)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
