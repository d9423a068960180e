"""How far the colour signatures' verdicts of the same picture sit from one tone edit: copies against look-alikes.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata): every pair verified by its colour
signatures (or refused for colour by the structure check's tone rule since session 26: verify_reason colour with
a structure measured), not found through a trimmed variant, both pictures in colour. For each it fits one
brightness or contrast edit to the two signatures' 8x8 cells both ways (``verify.tone_fits``, as
``verify.tones_apart_many`` does), in place and with each channel's cells sorted, and prints, for copies and
look-alikes (the set's truth), how many sit more than each bound off the closer line, and the copy pairs
farthest off. With ``--pixels R`` it also tries the workers'
tone fit on the files' pixels (``verify.tone_verdict``, at the working size and at the smaller picture's own
size) for every pair over R. Session 26 chose ``verify.SIGNATURE_MAX_TONE_RESIDUAL`` from this.

Usage:
    .venv/bin/python bench/accuracy/tones_apart_study.py [--set bench/out/accuracy] [--pixels 12]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from dbdedup import pg_binary, verify
from dbdedup.verify_workers import own_size_side
from gate_study import _toned as toned
from score import SET_DIR
from structure_study import last_run_rows, same_picture

BOUNDS = (8, 10, 12, 14, 16, 20)
QUERY = """
SELECT a.path, b.path, array_send(a.colour_signature), array_send(b.colour_signature),
       dbdedup.aligned_orientation(p.transform, p.transform_distance, p.distance, s.aligned_variant),
       a.width, a.height, b.width, b.height
FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b,
     dbdedup.verify_settings() s
WHERE (p.verified AND p.verify_reason = 'signature' OR p.verify_reason = 'colour' AND p.structure IS NOT NULL)
  AND coalesce(p.transform, '') NOT LIKE 'trim%%'
  AND a.colour_signature IS NOT NULL AND b.colour_signature IS NOT NULL
"""


def residuals(signatures_a: np.ndarray, signatures_b: np.ndarray, orientations: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The closer of the two one-line fits' residuals (levels RMS) of each pair's cells in place, and of each
    channel's cells sorted (the measures of ``verify.tones_apart_many``)."""
    cells_a = np.stack([verify.signature_colours(s, o) for s, o in zip(signatures_a, orientations)])
    cells_b = verify.signatures_colours(signatures_b)
    return (verify.closer_tone_residuals(cells_a, cells_b),
            verify.closer_tone_residuals(verify.channels_sorted(cells_a), verify.channels_sorted(cells_b)))


def pixels_verify(row: tuple) -> bool:
    """Whether the workers' tone fit on the files' pixels verifies the pair (working size, then own size)."""
    path_a, path_b, _, _, orientation, width_a, height_a, width_b, height_b = row
    sizes = SimpleNamespace(a=SimpleNamespace(width=width_a, height=height_a),
                            b=SimpleNamespace(width=width_b, height=height_b))
    return toned((path_a, path_b, orientation, own_size_side(sizes)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--pixels", type=float, default=None, help="fit the files' pixels of the pairs over this")
    args = parser.parse_args(argv)
    found = last_run_rows(args.set_dir, QUERY)
    if found is None:
        return 2
    truth, rows = found
    rows = [r for r in rows if r[4] is not None]
    signatures_a = np.stack([pg_binary.float4_values(r[2]).astype(np.float64) for r in rows])
    signatures_b = np.stack([pg_binary.float4_values(r[3]).astype(np.float64) for r in rows])
    coloured = np.minimum(verify.chromas(signatures_a), verify.chromas(signatures_b)) >= verify.GREY_CHROMA
    keep = np.flatnonzero(coloured)
    rows = [rows[k] for k in keep]
    residual, ordered = residuals(signatures_a[keep], signatures_b[keep], [r[4] for r in rows])
    same = np.array([same_picture(truth, os.path.basename(r[0]), os.path.basename(r[1])) for r in rows])
    print(f"{len(rows):,} pairs of colour pictures verified by their signatures: {int(same.sum()):,} copies, "
          f"{int((~same).sum()):,} look-alikes (SIGNATURE_MAX_TONE_RESIDUAL {verify.SIGNATURE_MAX_TONE_RESIDUAL}, "
          f"SIGNATURE_MAX_SORTED_TONE_RESIDUAL {verify.SIGNATURE_MAX_SORTED_TONE_RESIDUAL})")
    for k in np.argsort(-residual * same)[:3]:
        print(f"  a copy pair far off one line: {os.path.basename(rows[k][0])} {os.path.basename(rows[k][1])}: "
              f"{residual[k]:.2f} in place, {ordered[k]:.2f} sorted")
    sorted_bound = verify.SIGNATURE_MAX_SORTED_TONE_RESIDUAL
    print(f"| over (in place) | copies | look-alikes | and over {sorted_bound} sorted: copies | look-alikes |")
    print("| --- | --- | --- | --- | --- |")
    for bound in BOUNDS:
        far, both = residual > bound, (residual > bound) & (ordered > sorted_bound)
        print(f"| {bound} | {int((same & far).sum()):,} | {int((~same & far).sum()):,} | "
              f"{int((same & both).sum()):,} | {int((~same & both).sum()):,} |")
    if args.pixels is not None:
        over = np.flatnonzero(residual > args.pixels)
        verified = np.array([pixels_verify(rows[k]) for k in over], dtype=bool)
        print(f"over {args.pixels}: the pixels' tone fit verifies {int((verified & same[over]).sum())} of "
              f"{int(same[over].sum())} copies and {int((verified & ~same[over]).sum())} of "
              f"{int((~same[over]).sum())} look-alikes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
