"""What the review page costs as clusters grow: one cluster, one list page, one verdict.

    .venv/bin/python bench/review_bench.py                     # 10,000 and 100,000 synthetic images
    .venv/bin/python bench/review_bench.py --images 5000 50000

The collection is report_bench's synthetic rows (10% near-duplicates of another image, a third
of those byte-identical), so each size gives about a tenth as many clusters. The page's requests
go through the Flask app (its test client: no sockets, no thumbnails) on a real database. The
peer in the same run is reading every cluster (``results.iter_clusters``, what the report and
the static sheet do): the page should stay flat while that grows with the clusters.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE))

from benchdb import fresh_database, start_embedded, stop_started  # noqa: E402
from report_bench import synthetic_rows  # noqa: E402

from dbdedup import results  # noqa: E402
from dbdedup import review as rv  # noqa: E402
from dbdedup import verdicts as vd  # noqa: E402
from dbdedup.clusters import ClusterSettings, ensure_clusters, save_settings  # noqa: E402

TOKEN = "bench"


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


PGDATA = OUT / "review-pgdata"


def measure(n: int, repeat: int) -> dict[str, float]:
    dsn = fresh_database(start_embedded(PGDATA), f"review_bench_{n}")
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur, cur.copy(
            "COPY dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, sha256, format, width, height, "
            "frames, phash, dhash, ahash) FROM STDIN"
        ) as copy:
            for row in synthetic_rows(n):
                copy.write_row(row)
        conn.execute("ANALYZE dbdedup.images")
        conn.commit()
        save_settings(conn, ClusterSettings(threshold=8, rule="hash"))
        clustered = ensure_clusters(conn)
        ids = [r[0] for r in conn.execute(
            "SELECT DISTINCT cluster_id FROM dbdedup.cluster_assignments ORDER BY cluster_id").fetchall()]
        conn.commit()
        middle, last = ids[len(ids) // 2], ids[-1]
        client = rv.create_app(conn, rv.ReviewSettings(token=TOKEN)).test_client()

        def get(path: str) -> None:
            response = client.get(f"{path}?t={TOKEN}" if "?" not in path else f"{path}&t={TOKEN}")
            assert response.status_code == 200, (path, response.status_code)

        figures = {
            "clusters": float(clustered.clusters),
            "one cluster (first)": median_ms(lambda: get(f"/cluster/{ids[0]}"), repeat),
            "one cluster (middle)": median_ms(lambda: get(f"/cluster/{middle}"), repeat),
            "one cluster (last)": median_ms(lambda: get(f"/cluster/{last}"), repeat),
            "list page (first 50)": median_ms(lambda: get("/clusters"), repeat),
            "list page (after the middle)": median_ms(lambda: get(f"/clusters?after={middle}"), repeat),
            "peer: read every cluster": median_ms(lambda: sum(1 for _ in results.iter_clusters(conn)),
                                                  max(3, repeat // 5)),
        }
        member = conn.execute("SELECT image_id FROM dbdedup.cluster_members WHERE cluster_id = %s AND NOT is_keeper "
                              "LIMIT 1", (middle,)).fetchone()[0]
        image = vd.image_by_id(conn, member)

        def verdict_and_back() -> None:
            vd.add(conn, "not_in_cluster", image.sha256, by="bench")
            vd.recluster(conn)
            vd.remove_naming(conn, image.sha256)
            vd.recluster(conn)

        figures["a verdict + re-cluster (x2: add, remove)"] = median_ms(verdict_and_back, max(3, repeat // 5))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs=2, default=(10_000, 100_000), metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeat", type=int, default=20, help="requests per figure (median kept)")
    args = parser.parse_args()
    try:
        small, large = (measure(n, args.repeat) for n in args.images)
    finally:
        stop_started()
    print(f"{'milliseconds (median)':<42} {args.images[0]:>10,} {args.images[1]:>10,}   ratio")
    for key in small:
        if key == "clusters":
            print(f"{'clusters':<42} {int(small[key]):>10,} {int(large[key]):>10,}   {large[key] / small[key]:5.1f}x")
            continue
        print(f"{key:<42} {small[key]:>10.1f} {large[key]:>10.1f}   {large[key] / small[key]:5.1f}x")
    for label, figures in ((args.images[0], small), (args.images[1], large)):
        print(f"at {label:,} images one cluster page costs "
              f"{figures['one cluster (last)'] / figures['peer: read every cluster']:.4f} of reading every cluster")


if __name__ == "__main__":
    main()
