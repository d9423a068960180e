"""How the region check (``verify.region_agreements``) splits the pairs compared under a flip or a turn: copies against
look-alikes, keeper pairs apart.

Reads the database the last `cli_score.py` run left: every pair the structure check gave a region measure
(pairs.region, from the stored 64x64 thumbnails: the signature-verified pairs compared under a flip or a turn),
whatever its verdict since. For each bound at 64x64 it counts the copy and look-alike pairs below it (truth.csv),
and the keeper pairs among them (one side a 2x enlargement, the set's keeper). Then, for the pairs below today's
``verify.MIN_ORIENTED_REGION``, the measure the check by pixels takes (``verify.region_of_pixels`` of the files'
working pixels, at REGION_SIDE) against its bounds. Session 32 chose both bounds from this (by a scratch version
of it, on session 31's databases): 0.82 is what it takes to flag every keeper pair of tuxpaint's dreidel and its
mirror stamp (their JPEG copies reach 0.79-0.80), and 0.5 from the pixels refuses those and one copy's keeper
pair. ``--list`` names the look-alike pairs and the keeper pairs below the pixels' bound.

Usage:
    .venv/bin/python bench/accuracy/region_study.py [--set bench/out/accuracy] [--list]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

from dbdedup import verify
from dbdedup.verify_workers import PairChecker, PendingPair, orientation_of
from structure_study import parsed_study_rows, same_picture, worker_pairs_query

STORED_BOUNDS = (0.5, 0.6, 0.7, 0.82, 0.9)
PIXEL_BOUNDS = (0.3, 0.4, 0.5, 0.6, 0.7)
KEEPER_EDIT = "__upscale_200."


def print_split(measures: list[tuple[float, str, bool]], bounds: tuple[float, ...]) -> None:
    """A table of the pairs below each bound, ``measures`` (value, 'copy' or 'look-alike', keeper pair or not):
    copies (keeper pairs) and look-alikes (keeper pairs)."""
    print("| bound | copies | look-alikes |\n| --- | --- | --- |")
    for bound in bounds:
        below = Counter((label, keeper) for value, label, keeper in measures if value < bound)
        print(f"| {bound:.2f} | {below['copy', False] + below['copy', True]:,} ({below['copy', True]:,}) | "
              f"{below['look-alike', False] + below['look-alike', True]:,} ({below['look-alike', True]:,}) |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="name the look-alike pairs and the keeper pairs below "
                                                            "the pixels' bound")
    query = worker_pairs_query("p.region IS NOT NULL AND p.region <> 'NaN'")
    # (the workers' rows end with pairs.region: PendingPair.region)
    found = parsed_study_rows(parser, argv, query)
    if found is None:
        return 1
    args, truth, rows = found
    pairs = [PendingPair.from_row(row) for row in rows]
    labelled = []
    for pair in pairs:
        names = os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode())
        labelled.append((pair, names, "copy" if same_picture(truth, *names) else "look-alike",
                         any(KEEPER_EDIT in name for name in names)))
    kinds = Counter((label, keeper) for _, _, label, keeper in labelled)
    print(f"{len(labelled):,} pairs measured under a flip or a turn: {kinds['copy', False] + kinds['copy', True]:,} "
          f"copies ({kinds['copy', True]:,} keeper pairs), {kinds['look-alike', False] + kinds['look-alike', True]:,} "
          f"look-alikes ({kinds['look-alike', True]:,} keeper pairs)\n")
    print("below each bound at 64x64 (stored thumbnails): copies (keeper pairs) / look-alikes (keeper pairs)\n")
    print_split([(pair.region, label, keeper) for pair, _, label, keeper in labelled], STORED_BOUNDS)
    checker = PairChecker()
    measured = []
    for pair, names, label, keeper in labelled:
        orientation = orientation_of(pair)
        if pair.region >= verify.MIN_ORIENTED_REGION or orientation is None:
            continue
        pixels = verify.region_of_pixels(verify.orient_pixels(checker._pixels(pair.a), orientation),
                                         checker._pixels(pair.b))
        measured.append((pixels, names, label, keeper))
    print(f"\nof the {len(measured):,} below {verify.MIN_ORIENTED_REGION:.2f}, below each bound from the files at "
          f"{verify.REGION_SIDE}x{verify.REGION_SIDE}:\n")
    print_split([(value, label, keeper) for value, _, label, keeper in measured], PIXEL_BOUNDS)
    if args.list:
        print()
        for value, names, label, keeper in sorted(measured):
            if label == "look-alike" or (keeper and value < verify.MIN_ORIENTED_REGION_PIXELS):
                print(f"{value:.3f} {label}{' keeper' if keeper else ''}: {names[0]} {names[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
