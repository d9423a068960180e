"""How one tone edit (dbdedup.verify.tone_fits) splits the accuracy set's pairs rejected for colour.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata): every aligned pair that the
signatures rejected for colour (verify_reason colour, or a tone_fit measured: those the tone check looked
at since), labelled by the set's truth (the same picture: one original's group; look-alikes by their kind
of hard negative), colour and greyscale pairs apart. For each, both fits of one edit, out = clip(gain * in
+ offset), are computed again: on the colour signatures' 8x8 cells (the filter dbdedup.structure_check
applies, ``ToneFit.cells_agree``) and on the files' working pixels as the geometric check's verdict fits
them (``verify.agreeing_tone_fit``: at each of verify.TONE_SIDES, or at ``--side`` only; read here for
every pair, not only those the filter passed, unless ``--cells-only``). Prints how many copies and
look-alikes pass each, and both, and which look-alikes pass the pixels' fit; then what the pairs that
passed the filter ended as in the run (verified tone, rejected colour, or unchecked: not needed by the
clusters).

Usage:
    .venv/bin/python bench/accuracy/tone_study.py [--set bench/out/accuracy] [--workers 2] [--side 64] [--cells-only]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from dbdedup import verify
from dbdedup.decode import ImageError, decode_colour

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


def working_pixels(path: str) -> np.ndarray | None:
    """The file's working pixels, read as the geometric check's workers read them (``decode_colour``, then
    ``verify.working_pixels``: EXIF orientation and transparency on white as they have them)."""
    try:
        return verify.working_pixels(decode_colour(Path(path).read_bytes(), side=verify.GEOMETRY_SIDE, max_pixels=0))
    except (OSError, ImageError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--side", type=int, default=None,
                        help="fit at this side only (default: the product's, each of verify.TONE_SIDES in turn)")
    parser.add_argument("--cells-only", action="store_true",
                        help="only the pairs whose signatures' cells agree (those the product fits to the pixels)")
    args = parser.parse_args(argv)
    if args.side is not None:
        verify.TONE_SIDES = (args.side,)  # read by verify.agreeing_tone_fit at each call
    found = last_run_rows(args.set_dir, QUERY)
    if found is None:
        return 2
    truth, rows = found
    pairs = []
    for path_a, path_b, sig_a, sig_b, orientation, verified, reason, tone_fit in rows:
        sig_a, sig_b = np.asarray(sig_a, dtype=np.float64), np.asarray(sig_b, dtype=np.float64)
        grey = min(verify.chroma(sig_a), verify.chroma(sig_b)) < verify.GREY_CHROMA
        cells = verify.both_tone_fits(verify.signature_colours(sig_a, orientation), verify.signature_colours(sig_b))
        cells_agree = any(f.cells_agree() for f in cells)
        if args.cells_only and not cells_agree:
            continue
        pairs.append((path_a, path_b, orientation, grey, cells_agree, verified, reason, tone_fit))
    paths = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
    print(f"{len(pairs):,} aligned pairs rejected for colour; reading {len(paths):,} files", file=sys.stderr)
    with cf.ProcessPoolExecutor(args.workers) as pool:
        pixels = dict(zip(paths, pool.map(working_pixels, paths, chunksize=64)))
    table = Counter()
    passing_lookalikes = Counter()
    ended = Counter()
    for path_a, path_b, orientation, grey, cells_agree, verified, reason, tone_fit in pairs:
        a, b = os.path.basename(path_a), os.path.basename(path_b)
        same = same_picture(truth, a, b)
        x, y = pixels[path_a], pixels[path_b]
        rgb_agrees = x is not None and y is not None and verify.agreeing_tone_fit(x, y, orientation) is not None
        table[(grey, same, cells_agree, rgb_agrees)] += 1
        if rgb_agrees and not same:
            passing_lookalikes[(truth.hard_kind.get(a) or truth.hard_kind.get(b) or "photo-like")
                               + (" (greyscale)" if grey else "")] += 1
        if tone_fit is not None and tone_fit == tone_fit:
            ended[(same, verified, reason)] += 1
    print(f"fitted at {'x'.join(map(str, verify.TONE_SIDES))}")
    print("| pairs | all | cells agree | pixels agree | both |")
    print("| --- | --- | --- | --- | --- |")
    for grey in (False, True):
        for same, label in ((True, "copies"), (False, "look-alikes")):
            counts = [sum(n for (g, s, c, r), n in table.items() if g == grey and s == same and want(c, r))
                      for want in (lambda c, r: True, lambda c, r: c, lambda c, r: r, lambda c, r: c and r)]
            print(f"| {label}{', greyscale' if grey else ''} | " + " | ".join(f"{n:,}" for n in counts) + " |")
    print(f"\nlook-alikes the pixels' fit passes, by kind: {dict(passing_lookalikes) or 'none'}")
    print("\nthe pairs the cells sent to the geometric check, as the run ended them (verified, reason):")
    for (same, verified, reason), n in sorted(ended.items(), key=lambda item: -item[1]):
        print(f"  {'copy' if same else 'look-alike':10s} {str(verified):5s} {reason}: {n:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
