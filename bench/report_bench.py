"""Time of the report side on a large collection: report formats, apply planning, calibrate, HTML export.

    .venv/bin/python bench/report_bench.py                 # 100k synthetic images, 300 real for HTML
    .venv/bin/python bench/report_bench.py --images 20000  # smaller

The collection is synthetic rows in dbdedup.images (random 64-bit hashes; 10% of the images
are near-duplicates of another, 0-4 bits flipped, a third of those byte-identical), copied in
with COPY, so the figures are about the database and rendering, not decoding. Matching
(dbdedup.clusters.ensure_clusters) runs first and is timed apart. The HTML export needs real
files: it is timed on real generated photos (thumbnails made with Pillow).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE.parent / "tests"))

from dbdedup import apply as ap  # noqa: E402
from dbdedup import calibrate as cal  # noqa: E402
from dbdedup import export as exp  # noqa: E402
from dbdedup import report as rep  # noqa: E402
from dbdedup import results  # noqa: E402
from dbdedup.clusters import ClusterSettings, ensure_clusters  # noqa: E402
from benchdb import fresh_database, start_embedded, stop_started  # noqa: E402


def synthetic_rows(n: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, size=(n, 3), dtype=np.int64)  # phash, dhash, ahash
    sha = rng.bytes(32 * n)
    shas = [sha[i * 32:(i + 1) * 32] for i in range(n)]
    dup = rng.choice(n, size=n // 10, replace=False)
    for j, i in enumerate(dup):
        base = int(rng.integers(0, n))
        if base == i:
            continue
        h = int(hashes[base, 0])
        for bit in rng.choice(64, size=int(rng.integers(0, 5)), replace=False):
            h ^= 1 << int(bit)
        hashes[i, 0] = np.int64(np.uint64(h & (2**64 - 1)).astype(np.int64))
        if j % 3 == 0:
            hashes[i] = hashes[base]
            shas[i] = shas[base]
    for i in range(n):
        path = f"/synthetic/{i // 1000:04d}/img{i:07d}.jpg"
        yield (path, path.encode(), 100_000 + i, 1_700_000_000_000_000_000 + i, "ok", shas[i], "JPEG",
               640, 480, 1, int(hashes[i, 0]), int(hashes[i, 1]), int(hashes[i, 2]))


def timed(label: str, fn, *args, **kwargs):
    t = time.perf_counter()
    result = fn(*args, **kwargs)
    print(f"{label:<52} {time.perf_counter() - t:8.2f} s", flush=True)
    return result


def bench_database(n: int) -> None:
    dsn = fresh_database(start_embedded(OUT / "report-pgdata"), "report_bench")
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
            "COPY dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, sha256, format, width, height, "
            "frames, phash, dhash, ahash) FROM STDIN"
        ) as copy:
            for row in synthetic_rows(n):
                copy.write_row(row)
        conn.execute("ANALYZE dbdedup.images")
        conn.commit()
        print(f"{f'COPY {n:,} synthetic images':<52} {time.perf_counter() - t:8.2f} s")
        settings = ClusterSettings(threshold=8)
        result = timed("ensure_clusters (matching + clustering, not mine)", ensure_clusters, conn, settings)
        print(f"  {result.clusters:,} clusters, {result.members:,} members")
        timed("ensure_clusters again (current: a couple of queries)", ensure_clusters, conn, settings)
        summary = timed("summary", results.collect_summary, conn)
        print(f"  {summary}")
        sink = io.StringIO()
        timed("report --format json (every cluster)", lambda: rep.write_json(
            settings, summary, results.iter_clusters(conn), sink))
        print(f"  {len(sink.getvalue()) / 1e6:.1f} MB of JSON")
        timed("report --format csv (every cluster)", lambda: rep.write_csv(results.iter_clusters(conn), io.StringIO()))
        timed("report table (20 largest clusters + histogram)", lambda: rep.render_terminal(
            settings, summary, results.iter_clusters(conn, limit=20), results.neighbour_histogram(conn),
            io.StringIO(), limit=20, color=False))
        timed("pairs --format csv (every pair <= 8)", lambda: rep.write_pairs(
            results.iter_pairs(conn, ClusterSettings(threshold=8)), "csv", io.StringIO()))
        plan = timed("apply plan (--delete, before re-checks)", ap.plan_actions, conn, "delete")
        print(f"  {len(plan.actions):,} actions")
        for sample in (None, 1000):
            label = "calibrate (default sample)" if sample is None else f"calibrate --sample {sample}"
            c = timed(label, cal.calibrate, conn, sample=sample)
            print(f"  suggested {c.suggestion.threshold} (near mode ends {c.suggestion.near_mode_end}, "
                  f"unrelated from {c.suggestion.unrelated_start}); exact up to {c.exact_up_to}, then "
                  f"{c.sampled_hashes:,} of {c.beyond_hashes:,} values measured")


def bench_html(count: int) -> None:
    from images import photo, resized, save
    from test_report_sample import load

    dsn = fresh_database(start_embedded(OUT / "report-pgdata"), "report_bench_html")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        for i in range(count // 2):
            base = photo(5000 + i, (1024, 768))
            save(base, root / f"{i:04d}.jpg", quality=90)
            save(resized(base, 0.5), root / "small" / f"{i:04d}.jpg", quality=80)
        load(dsn, root)
        with psycopg.connect(dsn) as conn:
            settings = ensure_clusters(conn, ClusterSettings(threshold=8)).settings
            summary = results.collect_summary(conn)
            out = Path(tmp) / "sheet.html"
            timed(f"export HTML, {summary.images_in_clusters} thumbnails of 1024x768 JPEGs",
                  exp.export_html, settings, summary, results.iter_clusters(conn), out)
            print(f"  {out.stat().st_size / 1e6:.1f} MB of HTML")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--html-images", type=int, default=300)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    bench_database(args.images)
    bench_html(args.html_images)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_started()
