"""Which pairs the colour rule of the structure check refuses (``verify.tones_apart_many``), with and without its
hue-turn bound: copies against look-alikes, keeper pairs apart.

Reads the database the last `cli_score.py` run left: every unturned or oriented (not trimmed) pair the structure
check measured (pairs.structure set), whatever its verdict since, whose two pictures are in colour. For each, the
rule as it was before session 33 (the cells over SIGNATURE_MAX_TONE_RESIDUAL off one tone edit, sorted over
SIGNATURE_MAX_SORTED_TONE_RESIDUAL) and today's (also: every hue turned one way by over SIGNATURE_HUE_TURN, with the
SIGNATURE_HUE_TURN_* bounds), on the stored signatures in the orientation they were compared in; it counts the copy
and look-alike pairs each refuses (truth.csv), and the keeper pairs among them (one side a 2x enlargement, the
set's keeper). Session 33 chose the bounds from a scratch version of this run on session 32's databases (the
pairs still verified by signature there): 229 of 479 look-alike pairs refused, 57 of them keeper pairs, and 27 copy
pairs, none a keeper pair. On a run made with the rule, the pairs it refused are in the count too (their
structure was measured when they were refused). ``--list`` names the pairs today's rule adds, with their hue turn.

Usage:
    .venv/bin/python bench/accuracy/hue_turn_study.py [--set bench/out/accuracy] [--list]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

import numpy as np

from dbdedup import pg_binary, verify
from structure_study import parsed_study_rows, same_picture

KEEPER_EDIT = "__upscale_200."
QUERY = """
SELECT a.path, b.path, array_send(a.colour_signature), array_send(b.colour_signature),
       dbdedup.aligned_orientation(p.transform, p.transform_distance, p.distance, s.aligned_variant)
FROM dbdedup.pairs p CROSS JOIN dbdedup.verify_settings() s
JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b
WHERE p.structure IS NOT NULL AND NOT coalesce(p.transform LIKE 'trim%', false)
  AND a.colour_signature IS NOT NULL AND b.colour_signature IS NOT NULL
"""


def refused(a: np.ndarray, b: np.ndarray, orientations: list[str], hue_turn: float) -> np.ndarray:
    """``verify.tones_apart_many`` with SIGNATURE_HUE_TURN at ``hue_turn`` (360: the rule without it)."""
    kept = verify.SIGNATURE_HUE_TURN
    verify.SIGNATURE_HUE_TURN = hue_turn
    try:
        return verify.tones_apart_many(a, b, orientations)
    finally:
        verify.SIGNATURE_HUE_TURN = kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="name the pairs today's rule adds")
    found = parsed_study_rows(parser, argv, QUERY)
    if found is None:
        return 1
    args, truth, rows = found
    names = [(os.path.basename(os.fsdecode(bytes(a) if not isinstance(a, str) else a)),
              os.path.basename(os.fsdecode(bytes(b) if not isinstance(b, str) else b))) for a, b, *_ in rows]
    a = np.stack([pg_binary.float4_values(row[2]) for row in rows]) if rows else np.zeros((0, 0))
    b = np.stack([pg_binary.float4_values(row[3]) for row in rows]) if rows else np.zeros((0, 0))
    coloured = np.minimum(verify.chromas(a), verify.chromas(b)) >= verify.MIN_CHROMA if rows else np.zeros(0, bool)
    orientations = [row[4] for row in rows]
    before = refused(a, b, orientations, 360.0)
    today = refused(a, b, orientations, verify.SIGNATURE_HUE_TURN)
    labels = [("copy" if same_picture(truth, x, y) else "look-alike", KEEPER_EDIT in x or KEEPER_EDIT in y)
              for x, y in names]
    print(f"{int(coloured.sum()):,} pairs of colour pictures measured by the structure check (not trimmed), "
          f"{sum(1 for (label, _), c in zip(labels, coloured) if c and label == 'look-alike'):,} of them look-alikes")
    print("| rule | copies refused (keeper pairs) | look-alikes refused (keeper pairs) |\n| --- | --- | --- |")
    for name, apart in (("before session 33", before), ("today (hue turn)", today)):
        counts = Counter(label for label, flag in zip(labels, apart) if flag)
        print(f"| {name} | {counts['copy', False] + counts['copy', True]:,} ({counts['copy', True]:,}) | "
              f"{counts['look-alike', False] + counts['look-alike', True]:,} ({counts['look-alike', True]:,}) |")
    if args.list:
        added = np.flatnonzero(today & ~before)
        turns = verify.hue_turns(a[added], b[added], [orientations[k] for k in added]) if len(added) else []
        for k, turn in zip(added, turns):
            label, keeper = labels[k]
            print(f"{label}{' (keeper pair)' if keeper else ''}: {names[k][0]} {names[k][1]} hue turn {turn:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
