"""How one tone edit (dbdedup.verify.tone_fits) splits the accuracy set's pairs rejected for colour.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata): every aligned pair of two
colour pictures that the signatures rejected for colour (verify_reason colour, or a tone_fit measured:
those the tone check looked at since), labelled by the set's truth (the same picture: one original's
group; look-alikes by their kind of hard negative). For each, both fits of one edit, out = clip(gain * in
+ offset), are computed again: on the colour signatures' 8x8 cells (the filter dbdedup.structure_check
applies, ``ToneFit.cells_agree``) and on the files' RGB pixels at 64x64 (the geometric check's verdict,
``ToneFit.agrees``; read here for every pair, not only those the filter passed). Prints how many copies
and look-alikes pass each, and both, and which look-alikes pass the RGB fit; then what the pairs that
passed the filter ended as in the run (verified tone, rejected colour, or unchecked: not needed by the
clusters).

Usage:
    .venv/bin/python bench/accuracy/tone_study.py [--set bench/out/accuracy] [--workers 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from dbdedup import verify

from score import SET_DIR
from structure_study import last_run_rows, same_picture

QUERY = """
SELECT a.path, b.path, a.colour_signature, b.colour_signature,
       dbdedup.aligned_orientation(p.transform, p.transform_distance, p.distance, s.aligned_variant),
       p.verified, p.verify_reason, p.tone_fit
FROM dbdedup.pairs p CROSS JOIN dbdedup.verify_settings() s
JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b
WHERE (p.verify_reason = 'colour' OR p.tone_fit IS NOT NULL)
  AND coalesce(p.transform NOT LIKE 'trim%', true)
  AND (p.distance <= s.aligned_distance
       OR dbdedup.aligned_orientation(p.transform, p.transform_distance, p.distance, s.aligned_variant) <> 'identity')
  AND a.colour_signature IS NOT NULL AND b.colour_signature IS NOT NULL
"""


def rgb_thumbnail(path: str) -> np.ndarray | None:
    """The file's RGB pixels at 64x64 (as verify.tone_thumbnail makes them from a worker's pixels)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (4 * verify.TONE_SIDE, 4 * verify.TONE_SIDE))
            return verify.tone_thumbnail(np.asarray(image.convert("RGB")))
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    found = last_run_rows(args.set_dir, QUERY)
    if found is None:
        return 2
    truth, rows = found
    pairs = []
    for path_a, path_b, sig_a, sig_b, orientation, verified, reason, tone_fit in rows:
        sig_a, sig_b = np.asarray(sig_a, dtype=np.float64), np.asarray(sig_b, dtype=np.float64)
        if min(verify.chroma(sig_a), verify.chroma(sig_b)) < verify.GREY_CHROMA:
            continue
        cells = verify.both_tone_fits(verify.signature_colours(sig_a, orientation), verify.signature_colours(sig_b))
        pairs.append((path_a, path_b, orientation, any(f.cells_agree() for f in cells), verified, reason, tone_fit))
    paths = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
    print(f"{len(pairs):,} aligned pairs of colour pictures rejected for colour; reading {len(paths):,} files",
          file=sys.stderr)
    with cf.ProcessPoolExecutor(args.workers) as pool:
        thumbnails = dict(zip(paths, pool.map(rgb_thumbnail, paths, chunksize=64)))
    table = Counter()
    passing_lookalikes = Counter()
    ended = Counter()
    chroma_errors = []
    for path_a, path_b, orientation, cells_agree, verified, reason, tone_fit in pairs:
        a, b = os.path.basename(path_a), os.path.basename(path_b)
        same = same_picture(truth, a, b)
        x, y = thumbnails[path_a], thumbnails[path_b]
        fits = [] if x is None or y is None else verify.both_tone_fits(verify.orient_pixels(x, orientation), y)
        rgb_agrees = any(f.agrees() for f in fits)
        # the chroma error of the fits that pass every other limit: how much the hue limit costs
        chroma_errors.extend((same, f.chroma_error) for f in fits
                             if f.agrees() or replace(f, chroma_error=0.0).agrees())
        table[(same, cells_agree, rgb_agrees)] += 1
        if rgb_agrees and not same:
            passing_lookalikes[truth.hard_kind.get(a) or truth.hard_kind.get(b) or "photo-like"] += 1
        if tone_fit is not None and tone_fit == tone_fit:
            ended[(same, verified, reason)] += 1
    print("| pairs | all | cells agree | RGB agrees | both |")
    print("| --- | --- | --- | --- | --- |")
    for same, label in ((True, "copies"), (False, "look-alikes")):
        counts = [sum(n for (s, c, r), n in table.items() if s == same and want(c, r))
                  for want in (lambda c, r: True, lambda c, r: c, lambda c, r: r, lambda c, r: c and r)]
        print(f"| {label} | " + " | ".join(f"{n:,}" for n in counts) + " |")
    print(f"\nlook-alikes the RGB fit passes, by kind: {dict(passing_lookalikes) or 'none'}")
    for same, label in ((True, "copies"), (False, "look-alikes")):
        values = np.array([c for s, c in chroma_errors if s == same])
        if len(values):
            print(f"chroma error of the {label}' fits within the other limits ({len(values):,}): "
                  f"quantiles 0.5 / 0.9 / 0.99 / max {np.quantile(values, [0.5, 0.9, 0.99, 1]).round(3).tolist()}, "
                  "over " + ", ".join(f"{t}: {int((values > t).sum())}" for t in (0.1, 0.12, 0.16, 0.2, 0.25)))
    print("\nthe pairs the cells sent to the geometric check, as the run ended them (verified, reason):")
    for (same, verified, reason), n in sorted(ended.items(), key=lambda item: -item[1]):
        print(f"  {'copy' if same else 'look-alike':10s} {str(verified):5s} {reason}: {n:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
