"""What the geometric verification costs, and what cheaper keypoints lose, on the accuracy set's pending pairs.

The pairs are the accuracy set's candidates that the SQL step cannot settle and that
dbdedup.verify_workers checks by their pixels (bench/accuracy/verify_study.py's geometry pairs:
border-trimmed variants, embedding neighbours, aligned pairs the signature did not settle). A
seeded sample of image_a values is taken with all their pairs, as a worker receives them (one
image_a's pairs together). Every setting runs on the same pairs in the same process, one core:

- decode: dbdedup.decode.decode_colour of the file's bytes (the worker's decode);
- keypoints: dbdedup.verify.keypoints_of_pixels at the setting's working side and keypoint count;
- match: dbdedup.verify.geometric_match (ratio test, RANSAC, the colour warp only at >= MIN_INLIERS);
- verdict: dbdedup.verify.geometric_verdict with the stored quality and signature, at several
  inlier thresholds; a pair is positive when both files are copies of one original (truth.csv).

Prints ms an image and a pair, each as a ratio to the baseline (SIFT at 384 px, 400 keypoints)
measured in the same run, and precision / recall of the verdicts. Needs the set and the cache
that score.py and verify_study.py leave in bench/out/accuracy.

With --memory, the other claim: the parent process of dbdedup.verify_workers.verify_pending_pairs
grows only by the order it plans on the graph of pending pairs (about 40 bytes a pair, in batches of
100,000 rows as they are read; 117 -> 126 MiB from 7,800 to 79,800 pairs). A fresh database on an embedded server
gets --memory-images small images (loaded by the real loader) and every pair of them as a pending
embedding neighbour, once with a tenth of the pairs and once with all of them; each run is a new
process whose peak RSS (its own, not its workers') is printed beside the pairs per second. The pairs
are weak neighbours, which the workers settle without reading a file, so the run measures what
grows with the number of pairs: streaming them out, chunking, and writing the verdicts back.

With --e2e WORKERS, the sampled pairs go through verify_pending_pairs itself (files loaded by the
real loader into a fresh database on an embedded server): wall time, ms a pair, and precision and
recall of the verdicts it writes.

Usage:
    .venv/bin/python bench/verify_bench.py [--images 100] [--seed 3]
    .venv/bin/python bench/verify_bench.py --e2e 2 [--images 100] [--seed 3]
    .venv/bin/python bench/verify_bench.py --memory [--memory-images 400]
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent / "accuracy"))

from score import Truth  # noqa: E402
from verify_study import geometry_orientation  # noqa: E402

from dbdedup import verify  # noqa: E402
from dbdedup.decode import decode_colour  # noqa: E402
from dbdedup.verify_workers import CACHED_IMAGES  # noqa: E402

SET_DIR = Path(__file__).resolve().parent / "out" / "accuracy"
THRESHOLDS = (8, 12, 16, 24, 32)


@dataclass(frozen=True)
class Setting:
    method: str
    side: int
    keypoints: int

    @property
    def name(self) -> str:
        return f"{self.method} {self.side} px, {self.keypoints} keypoints"


SETTINGS = (Setting("sift", 384, 400), Setting("sift", 256, 300), Setting("sift", 256, 200),
            Setting("orb", 256, 500))


def sample(pairs, done: np.ndarray, images, truth: Truth, count: int, seed: int):
    """Every geometry pair of ``count`` image_a values drawn with ``seed``, with truth labels."""
    by_a = defaultdict(list)
    for k in np.nonzero(done)[0]:
        by_a[pairs[k][0]].append(int(k))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(sorted(by_a), size=min(count, len(by_a)), replace=False)
    index = {int(i): n for n, i in enumerate(images.ids)}
    group = lambda image_id: truth.group[images.files[index[image_id]]]
    picked = [k for a in sorted(int(x) for x in chosen) for k in by_a[a]]
    labels = np.array([group(pairs[k][0]) is not None and group(pairs[k][0]) == group(pairs[k][1]) for k in picked])
    return picked, labels, index


class _Run:
    """One setting's keypoint cache (as a worker's: CACHED_IMAGES, least recently used out) and timers."""

    def __init__(self, setting: Setting, decoded):
        self.setting = setting
        self.decoded = decoded
        self.cache: OrderedDict = OrderedDict()
        self.keypoint_seconds = self.match_seconds = 0.0
        self.computed = 0
        self.measures = []

    def keypoints_of(self, image_id: int, orientation: str) -> verify.Keypoints:
        key = (image_id, orientation)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        image = self.decoded(image_id)
        started = time.perf_counter()
        pixels = verify.working_pixels(image, self.setting.side)
        if orientation != "identity":
            pixels = verify.orient_pixels(pixels, orientation)
        found = verify.keypoints_of_pixels(pixels, max_keypoints=self.setting.keypoints, method=self.setting.method)
        self.keypoint_seconds += time.perf_counter() - started
        self.computed += 1
        self.cache[key] = found
        while len(self.cache) > CACHED_IMAGES:
            self.cache.popitem(last=False)
        return found

    def pair(self, pair) -> None:
        ka = self.keypoints_of(pair[0], geometry_orientation(pair))
        kb = self.keypoints_of(pair[1], "identity")
        started = time.perf_counter()
        match = verify.geometric_match(ka, kb)
        self.match_seconds += time.perf_counter() - started
        colour = match.colour
        if colour is None and THRESHOLDS[0] <= match.inliers < verify.MIN_INLIERS:
            # the lower thresholds need the aligned colours the deployed match skips (untimed; RANSAC is seeded)
            colour = verify.geometric_match(ka, kb, min_inliers=THRESHOLDS[0]).colour
        self.measures.append((match.inliers, match.scale, colour))


def run_settings(settings, picked, pairs, decoded) -> list[_Run]:
    """Every setting on every pair, interleaved pair by pair (the order rotating), so that a load
    that changes during the run weighs on every setting alike."""
    runs = [_Run(setting, decoded) for setting in settings]
    for n, k in enumerate(picked):
        for run in runs[n % len(runs):] + runs[:n % len(runs)]:
            run.pair(pairs[k])
        if n % 200 == 0:
            print(f"  {n}/{len(picked)} pairs", file=sys.stderr)
    return runs


def verdicts(measures, picked, pairs, index, features, min_inliers: int) -> np.ndarray:
    quality, signature = features
    out = []
    for (inliers, scale, colour), k in zip(measures, picked):
        a, b = index[pairs[k][0]], index[pairs[k][1]]
        fa = verify.Features(int(quality[a]), signature[a])
        fb = verify.Features(int(quality[b]), signature[b])
        match = verify.GeometricMatch(0, inliers, np.eye(2, 3) if inliers else None, scale, 0.0, colour)
        out.append(verify.geometric_verdict(fa, fb, match, min_inliers=min_inliers).verified)
    return np.array(out)


MEMORY_RUN = """
import resource, sys, time, psycopg
from dbdedup.verify_workers import verify_pending_pairs
dsn, keep = sys.argv[1], int(sys.argv[2])
with psycopg.connect(dsn) as conn:
    conn.execute("UPDATE dbdedup.pairs SET verified = NULL, verify_score = NULL, verify_reason = NULL")
    conn.execute("UPDATE dbdedup.pairs SET verified = false WHERE (image_a * 7919 + image_b) %% 10 >= %s", (keep,))
    conn.commit()
    started = time.perf_counter()
    summary = verify_pending_pairs(conn, workers=2)
    seconds = time.perf_counter() - started
print(summary.pending, summary.done, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(images: int) -> int:
    """Peak RSS of the verifying parent with a tenth of the pending pairs and with all of them."""
    import shutil
    import subprocess
    import tempfile

    from benchdb import fresh_database
    from PIL import Image

    from dbdedup import db as dbmod
    from dbdedup.load import load_paths

    root = Path(tempfile.mkdtemp(prefix="dbdedup-verify-bench-"))
    admin = dbmod.start_embedded(root / "pgdata")
    try:
        dsn = fresh_database(admin, "verify_memory_bench")
        rng = np.random.default_rng(0)
        for k in range(images):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / f"{k:05d}.png")
        with psycopg.connect(dsn) as conn:
            load_paths(conn, [root], workers=2, embedder=None)
            conn.execute(open(Path(__file__).parent / "verify_bench.sql").read())  # every pair, pending
            conn.commit()
        print(f"## Parent memory of verify_pending_pairs ({images} images; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores)\n")
        print("| pending pairs | checked | seconds | pairs / s | parent peak RSS (MiB) | x the small run |")
        print("| --- | --- | --- | --- | --- | --- |")
        first = None
        for keep in (1, 10):
            out = subprocess.run([sys.executable, "-c", MEMORY_RUN, dsn, str(keep)], capture_output=True, text=True,
                                 check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()
            pending, done, seconds, rss = int(out[0]), int(out[1]), float(out[2]), int(out[3]) / 1024
            first = first or rss
            print(f"| {pending:,} | {done:,} | {seconds:.1f} | {done / seconds:,.0f} | {rss:.0f} | {rss / first:.2f} |")
    finally:
        dbmod.stop_embedded(root / "pgdata")
        shutil.rmtree(root, ignore_errors=True)
    return 0


def end_to_end(picked, labels, pairs, images, index, workers: int) -> int:
    """The sampled pairs checked by dbdedup.verify_workers.verify_pending_pairs itself: their files
    copied to a temporary folder and loaded by the real loader into a fresh database on an embedded
    server, the pairs inserted as pending, then one run with ``workers`` processes."""
    import shutil
    import tempfile

    from benchdb import fresh_database

    from dbdedup import db as dbmod
    from dbdedup.load import load_paths
    from dbdedup.verify_workers import verify_pending_pairs

    root = Path(tempfile.mkdtemp(prefix="dbdedup-verify-bench-"))
    admin = dbmod.start_embedded(root / "pgdata")
    try:
        dsn = fresh_database(admin, "verify_e2e_bench")
        needed = sorted({i for k in picked for i in pairs[k][:2]})
        files = []
        for image_id in needed:  # named and loaded in the order of the set's ids: pairs keep image_a < image_b
            source = Path(images.paths[index[image_id]])
            target = root / "files" / f"{image_id:07d}{source.suffix}"
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(source, target)
            files.append(target)
        with psycopg.connect(dsn) as conn:
            started = time.perf_counter()
            load_paths(conn, files, workers=1, embedder=None, orientations=False)
            load_seconds = time.perf_counter() - started
            new_id = {int(Path(p).stem): i for p, i in conn.execute(
                "SELECT path, id FROM dbdedup.images WHERE status = 'ok'").fetchall()}
            kept = [(n, k) for n, k in enumerate(picked) if new_id[pairs[k][0]] < new_id[pairs[k][1]]]
            with conn.cursor() as cur, cur.copy("COPY dbdedup.pairs (image_a, image_b, hash_kind, distance, is_exact, "
                                                "transform, transform_distance, similarity) FROM STDIN") as copy:
                for _, k in kept:
                    a, b, distance, transform, transform_distance, similarity, exact = pairs[k]
                    copy.write_row((new_id[a], new_id[b], "phash", distance, exact, transform, transform_distance,
                                    similarity))
            conn.commit()
            summary = verify_pending_pairs(conn, workers=workers)
            got = {(a, b): (v, r) for a, b, v, r in conn.execute(
                "SELECT image_a, image_b, verified, verify_reason FROM dbdedup.pairs")}
        verified = np.array([got[(new_id[pairs[k][0]], new_id[pairs[k][1]])][0] for _, k in kept])
        truth = labels[[n for n, _ in kept]]
        tp = int((verified & truth).sum())
        print(f"\n## End to end: verify_pending_pairs, {workers} workers, on {len(kept):,} of the pairs "
              f"({len(picked) - len(kept)} dropped: their load order reversed them), {len(needed):,} images\n")
        print(f"load (real loader, 1 worker, no embeddings): {load_seconds:.1f} s. verify: {summary.seconds:.1f} s wall, "
              f"{summary.seconds * 1000 / max(1, summary.done):.1f} ms a pair wall, "
              f"{summary.seconds * workers * 1000 / max(1, summary.done):.1f} ms a pair of one core; "
              f"{summary.images_read:,} image reads ({summary.images_read / max(1, len(needed)):.2f} per image); "
              f"{summary.backfilled:,} signatures stored. Reasons: {summary.reasons}.\n")
        print(f"precision {tp / max(1, int(verified.sum())):.3f}, recall {tp / max(1, int(truth.sum())):.3f} "
              f"({int(verified.sum()) - tp} false links of {int(verified.sum())}; {int(truth.sum())} pairs are the same "
              f"picture). Load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    finally:
        dbmod.stop_embedded(root / "pgdata")
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import cv2

    cv2.setNumThreads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--images", type=int, default=100, help="image_a values sampled (all their pairs)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="measure the parent's memory instead (see above)")
    parser.add_argument("--memory-images", type=int, default=400)
    parser.add_argument("--e2e", type=int, metavar="WORKERS", default=0,
                        help="run verify_pending_pairs itself on the sampled pairs with WORKERS processes instead")
    args = parser.parse_args(argv)
    if args.memory:
        return memory(args.memory_images)
    cache_dir = args.set_dir / "verify-cache"
    images, pairs = pickle.loads((cache_dir / "candidates.pkl").read_bytes())
    done = np.load(cache_dir / "pairs.npz")["geo_done"]
    stored = np.load(cache_dir / "features.npz")
    features = (stored["quality"], stored["signature"])
    truth = Truth.read(args.set_dir / "truth.csv")
    picked, labels, index = sample(pairs, done, images, truth, args.images, args.seed)
    needed = sorted({i for k in picked for i in pairs[k][:2]})
    print(f"{len(picked)} pending-kind pairs of {args.images} image_a values ({labels.sum()} same picture), "
          f"{len(needed)} images; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
    if args.e2e:
        return end_to_end(picked, labels, pairs, images, index, args.e2e)

    decode_seconds = 0.0
    decoded_cache = {}
    for image_id in needed:  # decoded once, kept: the settings are compared on keypoints and matching
        data = Path(images.paths[index[image_id]]).read_bytes()
        started = time.perf_counter()
        decoded_cache[image_id] = decode_colour(data, side=verify.GEOMETRY_SIDE)
        decode_seconds += time.perf_counter() - started
    decode_ms = decode_seconds / len(needed) * 1000

    rows = []
    for run in run_settings(SETTINGS, picked, pairs, decoded_cache.__getitem__):
        quality = {}
        for threshold in THRESHOLDS:
            verified = verdicts(run.measures, picked, pairs, index, features, threshold)
            tp = int((verified & labels).sum())
            precision = tp / max(1, int(verified.sum()))
            recall = tp / max(1, int(labels.sum()))
            quality[threshold] = (precision, recall, int(verified.sum()) - tp)
        rows.append((run.setting, run.keypoint_seconds / run.computed * 1000, run.computed,
                     run.match_seconds / len(picked) * 1000,
                     (run.keypoint_seconds + run.match_seconds) / len(picked) * 1000, quality))

    base = rows[0]
    print(f"\n## Geometric verification: cost and verdicts on {len(picked)} pending-kind pairs of the accuracy set "
          f"({int(labels.sum())} same picture; {len(needed)} images; seed {args.seed})\n")
    print(f"decode (decode.decode_colour): {decode_ms:.1f} ms an image. Load average at the end: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; one core used.\n")
    print("| keypoints | ms / image | x base | ms / pair (match) | x base | ms / pair (keypoints + match, "
          "cached as a worker) | x base | " + " | ".join(f"P / R at {t} inliers" for t in THRESHOLDS) + " |")
    print("| --- " * (7 + len(THRESHOLDS)) + "|")
    for setting, image_ms, computed, pair_ms, total_ms, quality in rows:
        cells = [setting.name, f"{image_ms:.1f}", f"{image_ms / base[1]:.2f}", f"{pair_ms:.2f}",
                 f"{pair_ms / base[3]:.2f}", f"{total_ms:.1f}", f"{total_ms / base[4]:.2f}"]
        cells += [f"{p:.3f} / {r:.3f} ({fp} false)" for p, r, fp in (quality[t] for t in THRESHOLDS)]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
