"""What the SQL verification (dbdedup.verify_pairs) costs per pair, beside the same verdicts in Python.

A fresh database on an embedded server gets --images images with real colour signatures and hash
qualities (photo-like pictures made with Pillow and numpy, each edited a little: brightness,
resize, mirror, greyscale, another colour), inserted straight into dbdedup.images, and --pairs
candidate pairs among them, all aligned: each picture with its edit, the rest at random (a pHash
distance within 12, a quarter of them through an orientation variant), with no verdict: the pairs dbdedup.verify_pairs judges by their signatures
(the costly route; exact and weak-embedding pairs cost nothing). Then, in the same run:

- sql: SELECT * FROM dbdedup.verify_pairs(), every pair's verdict written to dbdedup.pairs;
- python: dbdedup.verify.signature_verdict on the same pairs, one at a time (numpy), the signatures
  already in memory (what a worker would do with them; nothing written).

Prints seconds per 10,000 pairs of each, best of --repeat runs (the SQL verdicts are cleared between
runs), the ratio, and whether both gave the same verdicts. Runs on one core; say how loaded the
machine was (uptime is printed).

With --before REV, the SQL verification of that git revision (every function of its
sql/verification.sql) is installed beside today's in schema "before" of the same database and both
are timed in the same run: signature_layout of every image (as it is and turned), signature_compare
of every pair's layouts (read from a table that keeps them in line, STORAGE PLAIN: the functions'
own cost), verify_pairs of every pair (end to end); each as the server process's CPU time (/proc,
when the server runs on this machine) and wall time, best of --repeat, and whether both give every
pair the same verdict, score and reason.

Usage:
    .venv/bin/python bench/verify_sql_bench.py [--images 2000] [--pairs 20000] [--repeat 3] [--before a458450]
        [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchdb import fresh_database  # noqa: E402

from dbdedup import db as dbmod  # noqa: E402
from dbdedup import verify  # noqa: E402

ORIENTATIONS = ("flip_h", "flip_v", "rotate_90", "rotate_180", "rotate_270", "transpose", "transverse")


def picture(rng: np.random.Generator, size=(96, 72)) -> Image.Image:
    """A photo-like image: a smooth random colour field with a few discs."""
    w, h = size
    field = Image.fromarray(rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8), "RGB").resize(size, Image.BICUBIC)
    pixels = np.asarray(field, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, 20)
        pixels[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, size=3)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def edited(image: Image.Image, k: int) -> Image.Image:
    return [lambda i: ImageEnhance.Brightness(i).enhance(1.25), lambda i: i.resize((64, 48)), ImageOps.mirror,
            ImageOps.grayscale, lambda i: Image.merge("RGB", i.split()[::-1])][k % 5](image)


def install_before(conn: psycopg.Connection, revision: str) -> None:
    """Create schema "before" with every function of ``revision``'s sql/verification.sql (calling each other there)."""
    text = subprocess.run(["git", "show", f"{revision}:sql/verification.sql"], check=True, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent).stdout
    names = set(re.findall(r"CREATE OR REPLACE FUNCTION dbdedup\.(\w+)", text))
    text = re.sub(r"\bdbdedup\.(" + "|".join(sorted(names)) + r")\b", r"before.\1", text)
    conn.execute("DROP SCHEMA IF EXISTS before CASCADE")
    conn.execute("CREATE SCHEMA before")
    with conn.cursor() as cur:
        cur.execute(text)
    conn.commit()


def backend_cpu(conn: psycopg.Connection) -> float | None:
    """CPU seconds used so far by the server process of ``conn`` (None when it is not on this machine)."""
    pid = conn.info.backend_pid
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def best_of(conn: psycopg.Connection, sql: str, repeat: int, before_each: str | None = None) -> tuple[float | None, float]:
    """(CPU seconds, wall seconds) of ``sql``, each the best of ``repeat`` runs (``before_each`` runs untimed first)."""
    cpu, wall = [], []
    for _ in range(repeat):
        if before_each:
            conn.execute(before_each)
            conn.commit()
        c, t = backend_cpu(conn), time.perf_counter()
        conn.execute(sql).fetchall()
        conn.commit()
        wall.append(time.perf_counter() - t)
        if c is not None:
            cpu.append(backend_cpu(conn) - c)
    return (min(cpu) if cpu else None), min(wall)


def compare_before(conn: psycopg.Connection, repeat: int) -> list[str]:
    """Time today's verification functions against schema "before"'s on the bench database; the lines to print."""
    conn.execute("SET max_parallel_workers_per_gather = 0")  # one process: its CPU time is the whole cost
    conn.execute("DROP TABLE IF EXISTS bench_layout")
    conn.execute("CREATE TABLE bench_layout (id bigint PRIMARY KEY, layout double precision[])")
    conn.execute("ALTER TABLE bench_layout ALTER COLUMN layout SET STORAGE PLAIN")
    conn.execute("INSERT INTO bench_layout SELECT id, dbdedup.signature_layout(colour_signature) FROM dbdedup.images")
    conn.commit()
    n_images = conn.execute("SELECT count(*) FROM dbdedup.images").fetchone()[0]
    n_pairs = conn.execute("SELECT count(*) FROM dbdedup.pairs").fetchone()[0]
    compare = ("SELECT sum(d.light + coalesce(d.chroma, 0) + d.gain + d.detail + coalesce(d.grey_light, 0)) "
               "FROM dbdedup.pairs p JOIN bench_layout a ON a.id = p.image_a JOIN bench_layout b ON b.id = p.image_b "
               "CROSS JOIN LATERAL (SELECT * FROM {schema}.signature_compare(a.layout, b.layout) OFFSET 0) d")
    reset = "UPDATE dbdedup.pairs SET verified = NULL, verify_score = NULL, verify_reason = NULL"
    steps = [
        (f"signature_layout, {n_images:,} images", "SELECT sum(cardinality({schema}.signature_layout(colour_signature))) "
                                                    "FROM dbdedup.images", None),
        (f"signature_layout turned (rotate_90), {n_images:,} images",
         "SELECT sum(cardinality({schema}.signature_layout(colour_signature, 'rotate_90'))) FROM dbdedup.images", None),
        (f"signature_compare, {n_pairs:,} pairs", compare, None),
        (f"verify_pairs, {n_pairs:,} pairs", "SELECT * FROM {schema}.verify_pairs()", reset),
    ]
    lines = []
    verdicts = {}
    for label, sql, before_each in steps:
        figures = {}
        for schema in ("before", "dbdedup"):
            figures[schema] = best_of(conn, sql.format(schema=schema), repeat, before_each)
            if before_each:
                verdicts[schema] = conn.execute("SELECT image_a, image_b, verified, verify_score, verify_reason "
                                                "FROM dbdedup.pairs ORDER BY 1, 2").fetchall()
        (cpu_b, wall_b), (cpu_n, wall_n) = figures["before"], figures["dbdedup"]
        cpu = f"cpu {cpu_b:.2f} -> {cpu_n:.2f} s ({cpu_b / cpu_n:.1f}x), " if cpu_b and cpu_n else ""
        lines.append(f"{label}: {cpu}wall {wall_b:.2f} -> {wall_n:.2f} s ({wall_b / wall_n:.1f}x)")
    same = sum(x == y for x, y in zip(verdicts["before"], verdicts["dbdedup"]))
    lines.append(f"verify_pairs: the same verdict, score and reason for {same:,} of {n_pairs:,} pairs")
    conn.execute("DROP TABLE bench_layout")
    conn.commit()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent / "out" / "verify-sql-pgdata"))
    parser.add_argument("--db", help="admin DSN of a server to use instead of the embedded one")
    parser.add_argument("--before", metavar="REV",
                        help="also time the SQL verification of this git revision against today's, in the same run")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    started = time.perf_counter()
    features = []
    for k in range(args.images):
        original = picture(np.random.default_rng((args.seed, k - k % 2)))
        image = original if k % 2 == 0 else edited(original, k)
        features.append(verify.Features.of(image))
    print(f"{args.images} images' signatures computed in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    # each picture with its edit (an aligned pair: the mirror through flip_h), then random pairs
    rows = []
    for k in range(1, args.images, 2):
        distance = int(rng.integers(0, 7))
        if k % 5 == 2:
            rows.append((k, k + 1, 30, "flip_h", distance))
        else:
            rows.append((k, k + 1, distance, None, None))
    seen = {(a, b) for a, b, *_ in rows}
    while len(rows) < args.pairs:
        a, b = sorted(int(x) + 1 for x in rng.integers(0, args.images, size=2))
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        distance = int(rng.integers(0, 13))
        if rng.random() < 0.25:
            rows.append((a, b, 20, ORIENTATIONS[int(rng.integers(0, 7))], distance))
        else:
            rows.append((a, b, distance, None, None))

    admin = args.db or dbmod.start_embedded(Path(args.data_dir))
    try:
        dsn = fresh_database(admin, "verify_sql_bench")
        with psycopg.connect(dsn) as conn:
            with conn.cursor() as cur, cur.copy("COPY dbdedup.images (id, path, path_bytes, size_bytes, mtime_ns, status, "
                                                "sha256, width, height, phash, dhash, ahash, quality, colour_signature) "
                                                "FROM STDIN") as copy:
                for k, f in enumerate(features):
                    path = f"/bench/{k}.png"
                    copy.write_row((k + 1, path, path.encode(), 1000, 0, "ok", os.urandom(32), 96, 72, k, k, k,
                                    f.quality, [float(x) for x in f.signature]))
            with conn.cursor() as cur, cur.copy("COPY dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, "
                                                "transform, transform_distance) FROM STDIN") as copy:
                for a, b, distance, transform, transform_distance in rows:
                    copy.write_row(("phash", a, b, distance, False, transform, transform_distance))
            conn.execute("ANALYZE dbdedup.images")
            conn.execute("ANALYZE dbdedup.pairs")
            conn.commit()
            sql_seconds = []
            for _ in range(args.repeat):
                conn.execute("UPDATE dbdedup.pairs SET verified = NULL, verify_score = NULL, verify_reason = NULL")
                conn.commit()
                t = time.perf_counter()
                result = conn.execute("SELECT * FROM dbdedup.verify_pairs()").fetchone()
                conn.commit()
                sql_seconds.append(time.perf_counter() - t)
            sql_verdicts = {(a - 1, b - 1): v for a, b, v in conn.execute(
                "SELECT image_a, image_b, verify_reason = 'signature' FROM dbdedup.pairs WHERE verified IS NOT NULL")}
            before_lines = []
            if args.before:
                install_before(conn, args.before)
                before_lines = compare_before(conn, args.repeat)
    finally:
        if not args.db:
            dbmod.stop_embedded(Path(args.data_dir))

    python_seconds = []
    python_verdicts = {}
    for _ in range(args.repeat):
        t = time.perf_counter()
        for a, b, distance, transform, transform_distance in rows:
            # routed as verify_pairs routes them: the variant's orientation only when it is closer and
            # within aligned_variant; otherwise the plain pHash within aligned_distance; else pending
            through_variant = transform is not None and transform_distance <= verify.ALIGNED_VARIANT \
                and transform_distance < distance
            if not through_variant and distance > verify.ALIGNED_DISTANCE:
                python_verdicts[(a - 1, b - 1)] = False
                continue
            closest = min(distance, 64 if transform_distance is None else transform_distance)
            verdict = verify.signature_verdict(features[a - 1], features[b - 1],
                                               transform if through_variant else "identity", closest)
            python_verdicts[(a - 1, b - 1)] = verdict is not None and verdict.verified
        python_seconds.append(time.perf_counter() - t)
    agree = sum(python_verdicts[k] == v for k, v in sql_verdicts.items() if v)  # verified by both
    verified_python = sum(python_verdicts.values())
    per = 10_000 / len(rows)
    best_sql, best_python = min(sql_seconds), min(python_seconds)
    print(f"machine: {os.popen('uptime').read().strip()}")
    print(f"{len(rows):,} aligned pairs among {args.images:,} images; dbdedup.verify_pairs: {result[1]:,} verified, "
          f"{result[2]:,} rejected, {result[3]:,} pending")
    print(f"sql    (dbdedup.verify_pairs, verdicts written): {best_sql * per:.2f} s per 10k pairs "
          f"(runs: {', '.join(f'{s:.2f}' for s in sql_seconds)} s)")
    print(f"python (verify.signature_verdict, one pair at a time, nothing written): {best_python * per:.2f} s per 10k pairs "
          f"(runs: {', '.join(f'{s:.2f}' for s in python_seconds)} s)")
    print(f"sql / python time: {best_sql / best_python:.2f}")
    print(f"verified by the signature: sql {sum(sql_verdicts.values()):,}, python {verified_python:,}, "
          f"both {agree:,}")
    if before_lines:
        print(f"sql verification of {args.before} -> this checkout (same database, same run; machine: "
              f"{os.popen('uptime').read().strip()}):")
        for line in before_lines:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
