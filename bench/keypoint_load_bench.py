"""What `dbdedup load --keypoints` costs: worker CPU per file and end-to-end load time, with and without.

    nice .venv/bin/python bench/keypoint_load_bench.py                 # both parts
    nice .venv/bin/python bench/keypoint_load_bench.py --no-end-to-end # worker CPU only

1. Worker CPU per file (``fingerprint.file_records`` over chunks of 64 files in this process, best
   of --rounds rounds, the two settings alternating in every round so a busy moment hits both):
   the defaults of a load (orientations, the default embedder's descriptor, the verification
   signals) against the same plus the keypoint keys. Sets: a seeded sample of the accuracy set
   (bench/out/accuracy/images: real photos and clip-art, PNG/JPEG/WebP of 16-1,500 px), the
   128x128 JPEGs and the 12 MP JPEGs of bench/load_bench.py (bench/out/small, bench/out/large),
   each when present. The keypoint share is split into the second JPEG draft (drafted JPEGs
   only: the hashes' decode is smaller than the keypoints' 320 px) and ORB + keys.
2. End to end: `dbdedup load` (the real CLI, a subprocess, --workers 2) of the accuracy sample
   into a fresh database on a scratch embedded server, without and with --keypoints, alternating,
   best of --rounds; then `dbdedup match` of the --keypoints database (the keypoint step's time).

Prints the machine's load average beside the figures: the 2 cores are shared.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbdedup import fingerprint, keypoints  # noqa: E402
from dbdedup.decode import decode_colour, decode_image  # noqa: E402
from dbdedup.embedding import load_embedder  # noqa: E402
from dbdedup.resample import limit_blas_threads  # noqa: E402

OUT = ROOT / "bench" / "out"


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def accuracy_sample(count: int, seed: int) -> list[Path]:
    folder = OUT / "accuracy" / "images"
    if not folder.is_dir():
        return []
    names = sorted(os.listdir(folder))
    return [folder / n for n in random.Random(seed).sample(names, min(count, len(names)))]


def jpegs(folder: Path, count: int) -> list[Path]:
    return sorted(folder.rglob("*.jpg"))[:count] if folder.is_dir() else []


def worker_cpu(sets: list[tuple[str, list[Path]]], rounds: int) -> None:
    limit_blas_threads()  # as in a load worker
    import cv2

    cv2.setNumThreads(1)  # as in a load worker
    embedder = load_embedder("default")
    plain = fingerprint.Extras(orientations=True, embedder=embedder, signals=True)
    with_keys = fingerprint.Extras(orientations=True, embedder=embedder, signals=True, keypoints=True)
    print(f"\n## Worker CPU per file (chunks of 64, one process, best of {rounds} rounds; {load_line()})\n")
    print("| set | files | defaults us/file | + keypoints us/file | ratio | second JPEG draft us/file "
          "| ORB + keys us/file | keys/image (mean) | no keys |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, files in sets:
        if not files:
            continue
        paths = [str(p).encode() for p in files]
        chunks = [paths[i:i + 64] for i in range(0, len(paths), 64)]
        best = {"plain": float("inf"), "keys": float("inf"), "draft": float("inf"), "orb": float("inf")}
        for _ in range(rounds):
            for name, extras in (("plain", plain), ("keys", with_keys)):
                started = time.process_time()
                for chunk in chunks:
                    records = fingerprint.file_records(chunk, extras=extras)
                best[name] = min(best[name], (time.process_time() - started) / len(paths))
            # the keypoint part alone, split: the second draft of the JPEGs the hashes' decode drafted
            # below the working side, then ORB and the keys on the detail image
            draft = orb = 0.0
            for path in paths:
                data = open(path, "rb").read()
                decoded = decode_image(data, detail_side=keypoints.WORKING_SIDE)
                detail = decoded.detail
                if detail is None:
                    t0 = time.process_time()
                    detail = decode_colour(data, side=keypoints.WORKING_SIDE)
                    draft += time.process_time() - t0
                t0 = time.process_time()
                keypoints.stored_keys(detail)
                orb += time.process_time() - t0
            best["draft"] = min(best["draft"], draft / len(paths))
            best["orb"] = min(best["orb"], orb / len(paths))
        keys = [len(r.keypoint_keys) for r in records if r.keypoint_keys is not None]
        none = sum(1 for k in keys if k == 0)
        print(f"| {label} | {len(paths)} | {best['plain'] * 1e6:,.0f} | {best['keys'] * 1e6:,.0f} "
              f"| {best['keys'] / best['plain']:.2f}x | {best['draft'] * 1e6:,.0f} | {best['orb'] * 1e6:,.0f} "
              f"| {sum(keys) / max(1, len(keys)):.0f} | {none} |", flush=True)


def end_to_end(files: list[Path], rounds: int, workers: int) -> None:
    from dbdedup import db as dbmod
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    import psycopg

    folder = OUT / "keypoint-bench" / "files"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for p in files:
            os.symlink(p, folder / p.name)
    data_dir = OUT / "keypoint-bench" / "pgdata"
    admin = make_conninfo(dbmod.start_embedded(data_dir))
    params = conninfo_to_dict(admin)
    cli = [sys.executable, "-m", "dbdedup"]
    best = {False: float("inf"), True: float("inf")}
    runs = {False: [], True: []}
    print(f"\n## End to end: `dbdedup load --workers {workers}` of {len(files)} files, fresh database each "
          f"(start: {load_line()})\n")
    for _ in range(rounds):
        for keys in (False, True):
            name = f"kp_bench_{int(keys)}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {name}")
            dsn = make_conninfo(**{**params, "dbname": name})
            subprocess.run([*cli, "--db", dsn, "-q", "status"], check=True, capture_output=True)  # migrate first
            started = time.perf_counter()
            subprocess.run([*cli, "--db", dsn, "-q", "load", "--workers", str(workers),
                            *(["--keypoints"] if keys else []), str(folder)], check=True, capture_output=True)
            seconds = time.perf_counter() - started
            runs[keys].append(seconds)
            best[keys] = min(best[keys], seconds)
    for keys in (False, True):
        label = "defaults + --keypoints" if keys else "defaults"
        print(f"- {label}: best {best[keys]:.1f} s = {len(files) / best[keys]:.0f} files/s "
              f"(runs {', '.join(f'{s:.1f}' for s in runs[keys])})")
    print(f"- ratio: {best[True] / best[False]:.2f}x the load time ({load_line()})")
    dsn = make_conninfo(**{**params, "dbname": "kp_bench_1"})
    started = time.perf_counter()
    out = subprocess.run([*cli, "--db", dsn, "match"], check=True, capture_output=True, text=True)
    print(f"- `dbdedup match` of the --keypoints database: {time.perf_counter() - started:.1f} s in all; its lines:")
    for line in out.stderr.splitlines():
        if line.strip():
            print(f"    {line.strip()}")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_size_pretty(sum(pg_column_size(keypoint_keys))), "
                           "avg(cardinality(keypoint_keys)) FROM dbdedup.images").fetchone()
    print(f"- stored keys: {row[0]} in all, {float(row[1]):.0f} keys per image")
    dbmod.stop_embedded(data_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=640, help="accuracy-set sample size")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-end-to-end", action="store_true")
    args = parser.parse_args()
    sample = accuracy_sample(args.files, args.seed)
    sets = [("accuracy set sample", sample), ("128x128 JPEG", jpegs(OUT / "small", 640)),
            ("12 MP JPEG", jpegs(OUT / "large", 16))]
    print(f"# Keypoint keys at load ({keypoints.LOADER_KEYS})\n\nstart: {load_line()}")
    worker_cpu(sets, args.rounds)
    if not args.no_end_to_end and sample:
        end_to_end(sample, args.rounds, args.workers)
    print(f"\nend: {load_line()}")


if __name__ == "__main__":
    main()
