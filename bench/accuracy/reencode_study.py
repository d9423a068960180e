"""How the re-encode check (dbdedup.verify.reencoded_verdict) splits the pairs a run refused that have a side saved
as a low-quality JPEG.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata): every pair verified false whose one
side is a JPEG file of estimated quality REENCODE_MAX_QUALITY or less (``verify.jpeg_encoding`` of the file).
For each such side, the other picture is read as the workers read it (``pixels_of_file`` at the JPEG's long
side), compressed with the JPEG's tables and compared (RMS, 99th percentile), as the workers' check does. The
pairs are labelled by the set's truth: copies of one picture (and among them those whose two sides are unedited
but for their size or format: the pairs this check is for) and look-alikes. Prints how many of each pass, and
the look-alikes closest to the limits.

Usage:
    .venv/bin/python bench/accuracy/reencode_study.py [--set bench/out/accuracy]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
from pathlib import Path

import numpy as np

from dbdedup import verify
from dbdedup.verify_workers import pixels_of_file

from score import SET_DIR
from structure_study import last_run_rows, same_picture

QUERY = """SELECT a.path, b.path, p.verify_reason FROM dbdedup.pairs p
    JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b
    WHERE p.verified = false AND 'JPEG' IN (a.format, b.format)"""
# the edits that leave the picture itself as it was (a copy of this kind against a low-quality JPEG of it is what
# the check is for)
UNEDITED = {"original", "jpeg_q10", "jpeg_q30", "jpeg_q75", "downscale_50", "upscale_200", "format_webp",
            "format_swap"}


def measure(job: tuple[str, str]) -> tuple[float, float] | None:
    """``verify.reencoding_difference`` of the other picture against the JPEG, both read as the workers read them."""
    other, jpeg = (Path(path).read_bytes() for path in job)
    encoding = verify.jpeg_encoding(jpeg)
    side = max(encoding.size)
    return verify.reencoding_difference(pixels_of_file(other, side), pixels_of_file(jpeg, side), encoding)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=SET_DIR, dest="set_dir")
    args = parser.parse_args()
    read = last_run_rows(args.set_dir, QUERY)
    if read is None:
        return
    truth, rows = read
    edit = {row["file"]: row["transform"] for row in csv.DictReader(open(args.set_dir / "truth.csv"))}
    low: dict[str, bool] = {}
    for path in {p for a, b, _ in rows for p in (a, b) if p.lower().endswith((".jpg", ".jpeg"))}:
        encoding = verify.jpeg_encoding(Path(path).read_bytes())
        low[path] = encoding is not None and encoding.compressed_again
    jobs, labels = [], []
    for a, b, _ in rows:
        for other, jpeg in ((a, b), (b, a)):
            if low.get(jpeg):
                names = (Path(other).name, Path(jpeg).name)
                same = same_picture(truth, *names)
                jobs.append((other, jpeg))
                labels.append(("copy, unedited" if all(edit.get(n) in UNEDITED for n in names) else "copy, edited")
                              if same else "look-alike")
    print(f"{len(rows):,} refused pairs with a JPEG side; {len(jobs):,} (pair, low-quality side) to measure")
    with cf.ProcessPoolExecutor(2) as pool:
        measured = list(pool.map(measure, jobs, chunksize=32))
    for label in ("copy, unedited", "copy, edited", "look-alike"):
        values = [m for m, l in zip(measured, labels) if l == label and m is not None]
        passed = sum(rms <= verify.REENCODE_MAX_RMS and p99 <= verify.REENCODE_MAX_P99 for rms, p99 in values)
        median = np.median([rms for rms, _ in values]) if values else float("nan")
        print(f"{label}: {len(values):,} measured, median RMS {median:.1f}; {passed:,} within "
              f"{verify.REENCODE_MAX_RMS} RMS and {verify.REENCODE_MAX_P99} at the 99th percentile")
    closest = sorted(((max(m[0] / verify.REENCODE_MAX_RMS, m[1] / verify.REENCODE_MAX_P99), job, m)
                      for job, m, l in zip(jobs, measured, labels) if l == "look-alike" and m is not None))[:8]
    print("look-alikes closest to the limits (RMS, 99th percentile):")
    for _, (other, jpeg), (rms, p99) in closest:
        print(f"  {Path(other).name} / {Path(jpeg).name}: {rms:.2f}, {p99:.0f}")


if __name__ == "__main__":
    main()
