"""One-image lookups ("is this picture already in the collection?") on synthetic hash collections.

For each size: n random 64-bit hashes with 5% planted near-duplicates (match_bench's generator),
COPYed into dbdedup.images. Query hashes: half are a stored hash with k random bits flipped
(k uniform in 0..threshold, so every lookup has at least one hit), half are random. For each
threshold and method, every query runs once, timed at the client (round trip over the Unix
socket, planning included: no prepared statements), and its image ids are compared with a numpy
brute force over all the rows (the truth):

``scan``
    the query of ``dbdedup.similar_to_hash`` before issue 15: a (parallel) sequential scan of every row.
``similar_to_hash``
    the shipped ``dbdedup.similar_to_hash``: multi-index hashing. The 64 bits in 4 interleaved
    16-bit blocks (``dbdedup.interleaved_mask(4, b)``), one partial expression btree per block on
    ``((phash & mask), phash) WHERE status = 'ok'`` (sql/tables.sql). A hit within t differs from
    the query in at most r_b bits of some block b when sum(r_b + 1) = t + 1 (pigeonhole, radii as
    even as possible), so each block is probed with the query's Hamming ball of radius r_b
    (``= ANY(array)``), candidates are re-checked exactly from the index tuple (index-only scan),
    and the values within t are joined back to the images by ``images_phash_ok_idx``. Its upkeep
    row covers the 8 shipped indexes (4 on the pHash, 4 partial ones on the trimmed pHash).
``mih3``
    the same with 3 blocks of 21-22 bits (fewer candidates, larger balls; radius 4 at t = 12).
``mih4-bitmap``
    the shipped indexes read as one BitmapOr with a heap re-check (every candidate's row is read).
``hnsw``
    pgvector's HNSW index on ``phash::bit(64)`` (bit_hamming_ops): the k = --hnsw-k nearest by
    Hamming distance, then the ones within t. Approximate: recall against the truth is printed.

Also printed: the plan of one lookup per method (EXPLAIN ANALYZE), each index's size and build
time (one core: parallel maintenance workers off), and the cost of keeping the index current:
rows/s of a COPY of --load-rows more rows into the same table with and without the method's
indexes (the loader's upsert pays the same index inserts).

Usage::

    python bench/lookup_bench.py                          # 1M rows, thresholds 4, 8, 12, every method
    python bench/lookup_bench.py --sizes 10000000 --methods scan,mih4,mih3
    python bench/lookup_bench.py --db postgresql://...    # another server (default: embedded in /tmp)
"""

from __future__ import annotations

import argparse
import itertools
import re
import os
import sys
import time
from math import comb
from pathlib import Path

import numpy as np
import psycopg

from benchdb import fresh_database
from match_bench import load, synthetic

from dbdedup import db as dbmod

ALL_METHODS = ("scan", "similar_to_hash", "mih4-bitmap", "mih3", "hnsw")


# ---------------------------------------------------------------- multi-index hashing


def interleaved_masks(conn: psycopg.Connection, blocks: int) -> list[int]:
    return [conn.execute("SELECT dbdedup.interleaved_mask(%s, %s)", (blocks, i)).fetchone()[0] for i in range(blocks)]


def radii(threshold: int, blocks: int) -> list[int]:
    """Per-block radius, sum(r + 1) = threshold + 1 spread evenly (pigeonhole); -1 = block not probed."""
    units = threshold + 1
    return [units // blocks + (1 if i < units % blocks else 0) - 1 for i in range(blocks)]


def _signed(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def ball(query: int, mask: int, radius: int) -> list[int]:
    """The block keys (query & mask) with at most `radius` of the mask's bits flipped."""
    bits = [1 << b for b in range(64) if (mask >> b) & 1] if mask >= 0 else \
        [1 << b for b in range(64) if ((mask + (1 << 64)) >> b) & 1]
    key = (query & mask) & ((1 << 64) - 1)
    out = []
    for r in range(radius + 1):
        for combo in itertools.combinations(bits, r):
            f = 0
            for b in combo:
                f |= b
            out.append(_signed(key ^ f))
    return out


def shipped_indexes() -> list[str]:
    """The CREATE INDEX statements of the lookup indexes, as sql/tables.sql has them."""
    from dbdedup.sqlfiles import read_sql

    text = "\n".join(line for line in read_sql("tables.sql").splitlines() if not line.startswith("--"))
    statements = [st.strip() for st in text.split(";")]
    return [st for st in statements if st.startswith(("CREATE INDEX images_phash_block", "CREATE INDEX images_trimmed_block"))]


def index_sql(masks: list[int], prefix: str) -> list[str]:
    return [f"CREATE INDEX {prefix}_{i} ON dbdedup.images ((phash & ({m})::bigint), phash) WHERE status = 'ok'"
            for i, m in enumerate(masks)]


def mih_query(masks: list[int], query: int, threshold: int, bitmap: bool) -> tuple[str, list]:
    """SQL and parameters of one multi-index lookup (the masks are literals, as in the index expressions)."""
    rs = radii(threshold, len(masks))
    probes = [(m, ball(query, m, r)) for m, r in zip(masks, rs) if r >= 0]
    near = "bit_count((phash # %s::bigint)::bit(64)) <= %s"
    if bitmap:
        ors = " OR ".join(f"(phash & ({m})::bigint) = ANY(%s::bigint[])" for m, _ in probes)
        sql = f"SELECT id FROM dbdedup.images WHERE status = 'ok' AND ({ors}) AND {near}"
        return sql, [p for _, p in probes] + [query, threshold]
    parts = " UNION ".join(
        f"SELECT phash FROM dbdedup.images WHERE status = 'ok' AND (phash & ({m})::bigint) = ANY(%s::bigint[]) AND {near}"
        for m, _ in probes)
    # the values within t (few) as an array: images by the existing images_phash_ok_idx, whatever the estimates
    sql = f"SELECT i.id FROM dbdedup.images i WHERE i.status = 'ok' AND i.phash = ANY(ARRAY({parts}))"
    params: list = []
    for _, p in probes:
        params += [p, query, threshold]
    return sql, params


def ball_size(bits: int, radius: int) -> int:
    return sum(comb(bits, k) for k in range(radius + 1))


# ---------------------------------------------------------------- the methods


class Method:
    """A lookup method: the indexes it needs and the SQL of one lookup."""

    def __init__(self, name: str, conn: psycopg.Connection, hnsw_k: int, ef_search: int):
        self.name = name
        self.hnsw_k = hnsw_k
        self.ef_search = ef_search
        self.masks = interleaved_masks(conn, 4 if name.startswith("mih4") else 3) if name.startswith("mih") else []

    def indexes(self) -> list[str]:
        if self.name in ("similar_to_hash", "mih4-bitmap"):
            return shipped_indexes()
        if self.name == "mih3":
            return index_sql(self.masks, "lookup_" + self.name.replace("-", "_"))
        if self.name == "hnsw":
            return ["CREATE INDEX lookup_hnsw ON dbdedup.images USING hnsw ((phash::bit(64)) bit_hamming_ops) "
                    "WHERE status = 'ok'"]
        return []

    def index_names(self) -> list[str]:
        return [s.split()[2] for s in self.indexes()]

    def query(self, value: int, threshold: int) -> tuple[str, list]:
        if self.name == "scan":
            return ("SELECT id FROM dbdedup.images WHERE status = 'ok' AND bit_count((phash # %s::bigint)::bit(64)) <= %s",
                    [value, threshold])
        if self.name == "similar_to_hash":
            return "SELECT image_id FROM dbdedup.similar_to_hash(%s::bigint, %s)", [value, threshold]
        if self.name == "hnsw":
            return ("SELECT id FROM (SELECT id, phash::bit(64) <~> (%s::bigint)::bit(64) AS d FROM dbdedup.images "
                    "WHERE status = 'ok' ORDER BY phash::bit(64) <~> (%s::bigint)::bit(64) LIMIT %s) n WHERE d <= %s",
                    [value, value, self.hnsw_k, threshold])
        return mih_query(self.masks, value, threshold, bitmap=self.name.endswith("bitmap"))


# ---------------------------------------------------------------- measuring


def make_queries(values: np.ndarray, count: int, threshold: int, seed: int) -> list[int]:
    """Half stored values with 0..threshold bits flipped, half random values (signed)."""
    rng = np.random.default_rng(seed)
    out = []
    for j in range(count):
        if j % 2 == 0:
            v = int(values[rng.integers(len(values))])
            for b in rng.choice(64, size=int(rng.integers(0, threshold + 1)), replace=False):
                v ^= 1 << int(b)
        else:
            v = int(rng.integers(0, 2**64 - 1, dtype=np.uint64, endpoint=True))
        out.append(_signed(v))
    return out


def truth(ids: np.ndarray, values: np.ndarray, query: int, threshold: int) -> set[int]:
    d = np.bitwise_count(values ^ np.uint64(query & ((1 << 64) - 1)))
    return set(ids[d <= threshold].tolist())


def timed_lookups(conn: psycopg.Connection, method: Method, queries: list[int], threshold: int,
                  ids: np.ndarray, values: np.ndarray) -> tuple[list[float], int, int, int, int]:
    """Per-lookup seconds, and exactness counts: lookups equal to the truth, hits found / expected, extra hits."""
    times, exact, found, expected, extra = [], 0, 0, 0, 0
    for q in queries:
        sql, params = method.query(q, threshold)
        started = time.perf_counter()
        rows = conn.execute(sql, params, prepare=False).fetchall()
        times.append(time.perf_counter() - started)
        got = {r[0] for r in rows}
        want = truth(ids, values, q, threshold)
        exact += got == want
        found += len(got & want)
        expected += len(want)
        extra += len(got - want)
    return times, exact, found, expected, extra


def explain(conn: psycopg.Connection, method: Method, query: int, threshold: int) -> str:
    sql, params = method.query(query, threshold)
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY OFF) " + sql, params, prepare=False).fetchall()
    return "\n".join("#     " + re.sub(r"'\{[^}]{60,}\}'", lambda m: f"'{{{m.group(0).count(',') + 1} values}}'", r[0])
                      for r in rows)


def copy_rate(conn: psycopg.Connection, start: int, rows: int) -> float:
    """Rows/s of a COPY of `rows` new random hashes into dbdedup.images (committed)."""
    values, _ = synthetic(rows, seed=1000 + start, share=0)
    started = time.perf_counter()
    load_rows(conn, values, start)
    return rows / (time.perf_counter() - started)


def load_rows(conn: psycopg.Connection, values: np.ndarray, start: int) -> None:
    import io

    signed = values.view(np.int64)
    buf = io.StringIO()
    for i, h in enumerate(signed.tolist(), start):
        path = f"/bench/extra/{i}.jpg"
        buf.write(f"{path}\t\\\\x{path.encode().hex()}\t{1000 + i}\t{10**18 + i}\tok\t\\\\x{os.urandom(32).hex()}"
                  f"\t100\t100\t{h}\t{h}\t{h}\n")
    with conn.cursor() as cur, cur.copy("COPY dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, sha256, "
                                        "width, height, phash, dhash, ahash) FROM STDIN") as copy:
        copy.write(buf.getvalue())
    conn.commit()


def index_bytes(conn: psycopg.Connection, names: list[str]) -> int:
    return sum(conn.execute("SELECT pg_relation_size(%s::regclass)", ("dbdedup." + n,)).fetchone()[0] for n in names)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


def narrow(admin: str, n: int, thresholds: list[int], n_queries: int, n_scan: int) -> None:
    """The shipped pHash block indexes on a narrow table of n hashes: lookups vs a scan (numpy truth)."""
    import io

    dsn = fresh_database(admin, "lookup_bench_narrow")
    values, _ = synthetic(n)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET max_parallel_maintenance_workers = 0")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("CREATE TABLE narrow (id bigint, status text, phash bigint)")
        started = time.perf_counter()
        for start in range(0, n, 1_000_000):
            buf = io.StringIO()
            for i, h in enumerate(values[start:start + 1_000_000].view(np.int64).tolist(), start + 1):
                buf.write(f"{i}\tok\t{h}\n")
            with conn.cursor().copy("COPY narrow FROM STDIN") as copy:
                copy.write(buf.getvalue())
        copy_s = time.perf_counter() - started
        started = time.perf_counter()
        names = []
        for st in shipped_indexes()[:4] + ["CREATE INDEX images_phash_ok_idx ON dbdedup.images (phash) WHERE status = 'ok'"]:
            st = st.replace("ON dbdedup.images", "ON narrow").replace("CREATE INDEX images_", "CREATE INDEX narrow_")
            names.append(st.split()[2])
            conn.execute(st)
        build_s = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE narrow")
        size = sum(conn.execute("SELECT pg_relation_size(%s::regclass)", (ix,)).fetchone()[0] for ix in names[:4])
        print(f"# narrow table: {n:,} hashes COPYed in {copy_s:.0f} s; 4 block indexes built in {build_s:.0f} s "
              f"(one core), {size / 2**20:,.0f} MB; table {conn.execute('SELECT pg_relation_size(%s)', ('narrow',)).fetchone()[0] / 2**20:,.0f} MB")
        ids = np.arange(1, n + 1)
        masks = interleaved_masks(conn, 4)
        print("| rows | threshold | method | p50 ms | p99 ms | max ms | lookups equal to the truth | hits found / expected |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for t in thresholds:
            for name_m, count in (("scan", n_scan), ("mih4", n_queries)):
                queries = make_queries(values, count, t, seed=t)
                times, exact, found, expected = [], 0, 0, 0
                for j, q in enumerate(queries[:2] + queries):  # the first two warm the caches, uncounted
                    if name_m == "scan":
                        sql, params = ("SELECT id FROM narrow WHERE status = 'ok' AND bit_count((phash # %s::bigint)::bit(64)) <= %s",
                                       [q, t])
                    else:
                        sql, params = mih_query(masks, q, t, bitmap=False)
                        sql = sql.replace("dbdedup.images", "narrow")
                    started = time.perf_counter()
                    got = {r[0] for r in conn.execute(sql, params, prepare=False).fetchall()}
                    if j < 2:
                        continue
                    times.append(time.perf_counter() - started)
                    want = truth(ids, values, q, t)
                    exact += got == want
                    found += len(got & want)
                    expected += len(want)
                print(f"| {n:,} | {t} | {name_m} | {pct(times, 50):.2f} | {pct(times, 99):.2f} | {max(times) * 1000:.2f} "
                      f"| {exact}/{len(queries)} | {found}/{expected} |", flush=True)
            if t == 8:
                plan = explain_sql(conn, *mih_query(masks, make_queries(values, 1, t, seed=99)[0], t, bitmap=False), "narrow")
                print(f"# plan of one lookup at {n:,}, threshold {t}:\n{plan}")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS lookup_bench_narrow WITH (FORCE)")


def explain_sql(conn: psycopg.Connection, sql: str, params: list, table: str | None = None) -> str:
    if table:
        sql = sql.replace("dbdedup.images", table)
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY OFF) " + sql, params, prepare=False).fetchall()
    return "\n".join("#     " + re.sub(r"'\{[^}]{60,}\}'", lambda m: f"'{{{m.group(0).count(',') + 1} values}}'", r[0])
                      for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--thresholds", default="4,8,12")
    parser.add_argument("--methods", default="scan,similar_to_hash,mih3,hnsw", help="of: " + ", ".join(ALL_METHODS))
    parser.add_argument("--narrow", type=int, default=0,
                        help="instead: N hashes in a narrow table (id, status, phash) with the 4 pHash block indexes, "
                             "multi-index lookups against a scan (the 10M measurement)")
    parser.add_argument("--queries", type=int, default=200, help="lookups per threshold and method")
    parser.add_argument("--scan-queries", type=int, default=40, help="lookups per threshold for the scan (slow)")
    parser.add_argument("--load-rows", type=int, default=100_000, help="rows COPYed to measure the index upkeep")
    parser.add_argument("--hnsw-k", type=int, default=40, help="neighbours the HNSW lookup asks for")
    parser.add_argument("--ef-search", type=int, default=100, help="hnsw.ef_search")
    parser.add_argument("--no-vacuum", action="store_true", help="measure before VACUUM too (pages not all-visible)")
    parser.add_argument("--db", help="admin DSN of a server to create bench databases on (default: embedded)")
    parser.add_argument("--data-dir", default="/tmp/dbdedup-bench/pgdata")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    admin = args.db or dbmod.start_embedded(Path(args.data_dir))
    thresholds = [int(t) for t in args.thresholds.split(",")]
    if args.narrow:
        narrow(admin, args.narrow, thresholds, args.queries, args.scan_queries)
        return
    methods = args.methods.split(",")
    print(f"# lookup bench: {os.cpu_count()} cores, PostgreSQL via {'--db' if args.db else 'embedded server'}; "
          "lookup times at the client, planning included; index builds on one core")
    for n in (int(s) for s in args.sizes.split(",")):
        name = f"lookup_bench_{n}"
        dsn = fresh_database(admin, name)
        values, _ = synthetic(n)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET max_parallel_maintenance_workers = 0")
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute(f"SET hnsw.ef_search = {args.ef_search}") if "hnsw" in methods else None
            for name_ix in Method("similar_to_hash", conn, 0, 0).index_names():  # loaded first, indexed after
                conn.execute(f"DROP INDEX dbdedup.{name_ix}")
            started = time.perf_counter()
            load(conn, values)
            print(f"# {n:,} rows loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            ids_values = conn.execute("SELECT id, phash FROM dbdedup.images WHERE status = 'ok' ORDER BY id").fetchall()
            ids = np.array([r[0] for r in ids_values], dtype=np.int64)
            stored = np.array([r[1] for r in ids_values], dtype=np.int64).view(np.uint64)
            del ids_values
            table_mb = conn.execute("SELECT pg_relation_size('dbdedup.images')").fetchone()[0] / 2**20
            print(f"\n## {n:,} rows (images table {table_mb:,.0f} MB; shared_buffers "
                  f"{conn.execute('SHOW shared_buffers').fetchone()[0]})\n")
            results = []  # (threshold, method, state, p50, p99, max, exact, found, expected, extra)
            upkeep = []  # (method, build s, index MB, rows/s without, rows/s with)
            plans = []
            extra_rows = n
            for name_m in methods:
                method = Method(name_m, conn, args.hnsw_k, args.ef_search)
                build = 0.0
                if method.indexes():
                    base_rate = copy_rate(conn, extra_rows, args.load_rows if name_m != "hnsw" else args.load_rows // 10)
                    extra_rows += args.load_rows
                    started = time.perf_counter()
                    for stmt in method.indexes():
                        conn.execute(stmt)
                    conn.commit()
                    build = time.perf_counter() - started
                    conn.execute("ANALYZE dbdedup.images")
                    conn.commit()
                    print(f"# {name_m}: indexes built in {build:.1f} s", file=sys.stderr, flush=True)
                states = ["not vacuumed", "vacuumed"] if args.no_vacuum and method.indexes() else ["vacuumed"]
                for state in states:
                    if state == "vacuumed":
                        conn.execute("VACUUM (ANALYZE) dbdedup.images")
                    for t in thresholds:
                        queries = make_queries(stored, args.scan_queries if name_m == "scan" else args.queries, t, seed=t)
                        # drop a warm-up lookup from the figures (first touch of the index pages)
                        timed_lookups(conn, method, queries[:2], t, ids, stored)
                        times, exact, found, expected, extra = timed_lookups(conn, method, queries, t, ids, stored)
                        results.append((t, name_m, state, pct(times, 50), pct(times, 99), max(times) * 1000,
                                        exact, len(queries), found, expected, extra))
                        print(f"# {name_m} t={t} {state}: p50 {pct(times, 50):.2f} ms", file=sys.stderr, flush=True)
                        if state == "vacuumed" and t == 8:
                            plans.append((name_m, t, explain(conn, method, queries[0], t)))
                if method.indexes():
                    size = index_bytes(conn, method.index_names())
                    with_rate = copy_rate(conn, extra_rows, args.load_rows if name_m != "hnsw" else args.load_rows // 10)
                    extra_rows += args.load_rows
                    upkeep.append((name_m, build, size / 2**20, base_rate, with_rate))
                    for ix in method.index_names():
                        conn.execute(f"DROP INDEX dbdedup.{ix}")
                    conn.commit()
                    # the rows the upkeep COPYs added stay: the truth follows them
                    ids_values = conn.execute("SELECT id, phash FROM dbdedup.images WHERE status = 'ok' ORDER BY id").fetchall()
                    ids = np.array([r[0] for r in ids_values], dtype=np.int64)
                    stored = np.array([r[1] for r in ids_values], dtype=np.int64).view(np.uint64)
                    del ids_values
            print("| threshold | method | table | p50 ms | p99 ms | max ms | lookups equal to the truth | hits found / expected | hits beyond t |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            scan_p50 = {t: p50 for t, m, _, p50, *_ in results if m == "scan"}
            for t, m, state, p50, p99, mx, exact, nq, found, expected, extra in sorted(results):
                ratio = f" ({scan_p50[t] / p50:.0f}x faster than scan)" if t in scan_p50 and m != "scan" else ""
                print(f"| {t} | {m} | {state} | {p50:.2f}{ratio} | {p99:.2f} | {mx:.2f} | {exact}/{nq} | "
                      f"{found}/{expected} | {extra} |")
            if upkeep:
                print("\n| method | index build s (1 core) | index MB | COPY rows/s without | with | load cost |")
                print("| --- | --- | --- | --- | --- | --- |")
                for m, build, mb, without, with_ in upkeep:
                    print(f"| {m} | {build:.1f} | {mb:.0f} | {without:,.0f} | {with_:,.0f} | "
                          f"{(without / with_ - 1) * 100:+.0f}% time per row |")
            for m, t, plan in plans:
                print(f"\n# plan of one lookup, {m}, threshold {t}:\n{plan}")
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
