"""How the structure check (dbdedup/structure_check.py) splits the accuracy set's signature-verified pairs.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata): every pair the check
measured (pairs.structure, a number: the pairs the colour signatures verified, not found through a
trimmed variant), labelled by the set's truth (the same picture: one original's group). Both measures
are computed again from the stored thumbnails (images.structure), in the orientation the pair's
signatures were compared in: the 32x32 one (5th percentile) and, where both thumbnails are 64x64, the
64x64 one (10th percentile). Prints, for a grid of the two thresholds, how many copies and how many
look-alikes the check would send to the geometric check, then what the pairs below today's thresholds
(verify_settings.min_signature_structure, min_signature_fine_structure) ended as after it.

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

COARSE_THRESHOLDS = (0.4, 0.6, 0.7, 0.8)
FINE_THRESHOLDS = (None, 0.2, 0.3, 0.4, 0.5)


def same_picture(truth: Truth, a: str, b: str) -> bool:
    group_a, group_b = truth.group.get(a), truth.group.get(b)
    return a == b or (group_a is not None and group_a == group_b)


def measures(a: bytes, b: bytes, orientation: str) -> tuple[float, float | None]:
    """The 32x32 and the 64x64 structure agreement of two stored thumbnails (None: not both 64x64)."""
    coarse = verify.structure_agreement(verify.structure_pixels(a, orientation), verify.structure_pixels(b))
    fine_a = verify.structure_pixels(a, orientation, verify.FINE_STRUCTURE_SIDE)
    fine_b = verify.structure_pixels(b, "identity", verify.FINE_STRUCTURE_SIDE)
    if fine_a is None or fine_b is None:
        return coarse, None
    return coarse, verify.structure_agreement(fine_a, fine_b, verify.FINE_STRUCTURE_PERCENTILE)


def fails(coarse: float, fine: float | None, t_coarse: float, t_fine: float | None) -> bool:
    return coarse < t_coarse or (t_fine is not None and fine is not None and fine < t_fine)


def parsed_study_rows(parser: argparse.ArgumentParser, argv: list[str] | None,
                      query: str) -> tuple[argparse.Namespace, Truth, list[tuple]] | None:
    """A study's command line, ``parser`` with ``--set`` (the set's folder) added, parsed, and ``last_run_rows``
    of that set: the arguments, the truth and the rows; None, said on stderr, when the set has no run."""
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    args = parser.parse_args(argv)
    found = last_run_rows(args.set_dir, query)
    return None if found is None else (args, *found)


def study_rows(argv: list[str] | None, description: str, query: str) -> tuple[Truth, list[tuple]] | None:
    """A study's command line (``--set``, the set's folder) and ``last_run_rows`` of that set."""
    found = parsed_study_rows(argparse.ArgumentParser(description=description), argv, query)
    return None if found is None else found[1:]


def listing_study_rows(argv: list[str] | None, description: str, query: str,
                       list_help: str) -> tuple[Truth, list[tuple], bool] | None:
    """``study_rows`` with a ``--list`` flag too (``list_help`` says what it lists): the truth, the rows and
    whether to list."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--list", action="store_true", help=list_help)
    found = parsed_study_rows(parser, argv, query)
    return None if found is None else (*found[1:], found[0].list)


def worker_pairs_query(where: str, verdict: bool = False) -> str:
    """The workers' pending-pairs query (each pair with what a worker reads of its two images, the rows that
    ``verify_workers.PendingPair.from_row`` takes) for the pairs ``where`` selects, whatever their verdict;
    with ``verdict``, each row starts with the pair's verified and verify_reason."""
    from dbdedup.verify_workers import stored_pairs_query  # (OpenCV: only for the studies that replay pairs)

    body = stored_pairs_query(where)
    return body.replace("SELECT p.hash_kind,", "SELECT p.verified, p.verify_reason, p.hash_kind,", 1) if verdict else body


def last_run_rows(set_dir: Path, query: str) -> tuple[Truth, list[tuple]] | None:
    """The set's truth and ``query``'s rows from the database the last `cli_score.py` run left (its embedded
    server stopped after); None, said on stderr, when there is none."""
    data_dir = (set_dir / "cli-pgdata").resolve()
    if not data_dir.exists():
        print(f"no {data_dir}: run cli_score.py first", file=sys.stderr)
        return None
    try:
        with connect(None, data_dir) as conn:
            rows = conn.execute(query).fetchall()
    finally:
        stop_embedded(data_dir)
    return Truth.read(set_dir / "truth.csv"), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    args = parser.parse_args(argv)
    found = last_run_rows(
        args.set_dir,
        "SELECT a.path, b.path, a.structure, b.structure, "
        "       dbdedup.aligned_orientation(p.transform, p.transform_distance, p.distance, s.aligned_variant), "
        "       p.verified, p.verify_reason "
        "FROM dbdedup.pairs p CROSS JOIN dbdedup.verify_settings() s "
        "JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b "
        "WHERE p.structure IS NOT NULL AND p.structure <> 'NaN' "
        "  AND a.structure IS NOT NULL AND b.structure IS NOT NULL")
    if found is None:
        return 2
    truth, rows = found
    measured = [(same_picture(truth, os.path.basename(pa), os.path.basename(pb)),
                 *measures(bytes(ta), bytes(tb), orientation), verified, reason)
                for pa, pb, ta, tb, orientation, verified, reason in rows]
    copies = sum(1 for same, *_ in measured if same)
    with_fine = sum(1 for _, _, fine, *_ in measured if fine is not None)
    print(f"{len(measured):,} pairs measured: {copies:,} copies, {len(measured) - copies:,} look-alikes; "
          f"{with_fine:,} with both thumbnails at 64x64\n")
    print("copies / look-alikes below (32x32 threshold, rows; 64x64 threshold, columns):\n")
    print("| 32x32 | " + " | ".join("64x64 off" if t is None else f"64x64 {t:.2f}" for t in FINE_THRESHOLDS) + " |")
    print("| --- |" + " --- |" * len(FINE_THRESHOLDS))
    for t_coarse in COARSE_THRESHOLDS:
        cells = []
        for t_fine in FINE_THRESHOLDS:
            below = Counter(same for same, coarse, fine, *_ in measured if fails(coarse, fine, t_coarse, t_fine))
            cells.append(f"{below[True]:,} / {below[False]:,}")
        print(f"| {t_coarse:.2f} | " + " | ".join(cells) + " |")
    print(f"\nbelow {verify.MIN_SIGNATURE_STRUCTURE:.2f} at 32x32 or {verify.MIN_SIGNATURE_FINE_STRUCTURE:.2f} at 64x64, "
          "after the geometric check (verified, reason):")
    ended = Counter((same, verified, reason) for same, coarse, fine, verified, reason in measured
                    if fails(coarse, fine, verify.MIN_SIGNATURE_STRUCTURE, verify.MIN_SIGNATURE_FINE_STRUCTURE))
    for (same, verified, reason), n in sorted(ended.items(), key=lambda item: -item[1]):
        print(f"  {'copy' if same else 'look-alike':10s} {str(verified):5s} {reason}: {n:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
