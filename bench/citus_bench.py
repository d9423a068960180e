"""Matching on a local Citus cluster (a coordinator and 2 workers) against one server, same hashes, same run.

For each size: the synthetic hashes of bench/match_bench.py (random 64-bit values, 5% planted
near-duplicates at distances 0-10) are COPYed into dbdedup.images on both, then
``dbdedup.match(t, 'phash', method, full_rematch => true)`` is timed on each at each threshold,
with its stages (dbdedup.match's DEBUG lines: distinct values, hash_values written, the method,
image pairs). The value pairs found must be the same set on both. Then, on the cluster, one step of
the method is run under EXPLAIN ANALYZE with every task shown: the per-shard work (one task per
shard of dbdedup.match_keys, each a hash join of its keys), summarised as tasks, nodes and the spread
of task times. Table and index sizes per image come from both servers (citus_total_relation_size on
the cluster), for the scale model in the README ("Past one machine").

One machine: every server is pinned to the same --cpus cores (default 1), so no speed-up can show;
the ratio is the price of distribution (moving keys between shards, the coordinator's round trips),
and the per-task times are what N machines would share.

    python bench/citus_bench.py                          # 1M rows at thresholds 3 and 8
    python bench/citus_bench.py --sizes 100000 --thresholds 3
    python bench/citus_bench.py --citus postgresql://postgres@127.0.0.1:5432/postgres   # a running cluster

Needs Citus built into the wheel's PostgreSQL (../shared/citus/build.sh); the cluster is started with
../shared/citus/cluster.sh in a temporary folder under /tmp and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

from dbdedup import db as dbmod
from benchdb import fresh_database, start_embedded, stop_started
from match_bench import load, synthetic

CITUS_DIR = Path(os.environ.get("DBDEDUP_CITUS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "citus")
TABLES = ("images", "image_paths", "hash_values", "value_pairs", "pairs")


def pin(data_dir: Path, cpus: set[int]) -> None:
    """Pin a server's postmaster (and so every backend it forks from now on) to ``cpus``."""
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    os.sched_setaffinity(pid, cpus)


def start_cluster(workers: int) -> tuple[str, Path]:
    folder = Path(tempfile.mkdtemp(prefix="dbdedup-citus-bench-", dir="/tmp"))
    done = subprocess.run(["bash", str(CITUS_DIR / "cluster.sh"), "start", str(folder), str(workers), sys.executable],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"citus_bench: the cluster did not start: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1], folder


def stop_cluster(folder: Path) -> None:
    subprocess.run(["bash", str(CITUS_DIR / "cluster.sh"), "stop", str(folder)], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def citus_fresh(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS dbdedup CASCADE")
    dbmod.apply_migrations(url)
    return url


def timed_match(conn: psycopg.Connection, t: int, method: str) -> tuple[float, tuple, dict[str, float]]:
    """One full match: seconds, its result row, and the time of each stage (from its DEBUG lines)."""
    marks: list[tuple[str, float]] = []

    def note(diag) -> None:
        found = re.match(r"dbdedup\.match: (.+) after ([\d.]+) s", diag.message_primary or "")
        if found:
            marks.append((found.group(1), float(found.group(2))))

    conn.add_notice_handler(note)
    conn.execute("SET client_min_messages = debug")
    started = time.perf_counter()
    row = conn.execute("SELECT * FROM dbdedup.match(%s, 'phash', %s, true)", (t, method)).fetchone()
    conn.commit()
    seconds = time.perf_counter() - started
    conn.execute("SET client_min_messages = notice")
    conn.remove_notice_handler(note)
    stages, last = {}, 0.0
    for name, at in marks:
        stages[name] = at - last
        last = at
    stages["image pairs and state"] = seconds - last
    return seconds, row, stages


def value_pairs(conn: psycopg.Connection) -> set[tuple[int, int]]:
    return set(conn.execute("SELECT value_a, value_b FROM dbdedup.value_pairs WHERE hash_kind = 'phash'").fetchall())


def sizes(conn: psycopg.Connection, distributed: bool) -> dict[str, dict[str, int]]:
    """Rows, table bytes and index bytes of the matching tables (all shards on the cluster)."""
    size = "citus_total_relation_size" if distributed else "pg_total_relation_size"
    table = "citus_table_size" if distributed else "pg_table_size"
    out = {}
    for name in TABLES:
        if conn.execute("SELECT to_regclass(%s) IS NULL", (f"dbdedup.{name}",)).fetchone()[0]:
            continue
        rows = conn.execute(f"SELECT count(*) FROM dbdedup.{name}").fetchone()[0]
        total, heap = conn.execute(f"SELECT {size}(%s), {table}(%s)", (f"dbdedup.{name}",) * 2).fetchone()
        out[name] = {"rows": rows, "table_bytes": heap, "index_bytes": total - heap}
    return out


def per_shard_plan(conn: psycopg.Connection, t: int, method: str) -> str:
    """EXPLAIN ANALYZE of one step of the method on the cluster (block 0, or LSH table 1), every task shown."""
    n = conn.execute("SELECT count(*) FROM dbdedup.hash_values WHERE hash_kind = 'phash' AND NOT is_common").fetchone()[0]
    if method == "blocks":
        blocks, radii = conn.execute("SELECT blocks, radii FROM dbdedup.plan_blocks(%s, %s, %s)", (n, n, t)).fetchone()
        conn.execute("SELECT dbdedup.match_keys_add_values('phash', dbdedup.interleaved_mask(%s, 0), true)", (blocks,))
        conn.execute(
            "INSERT INTO dbdedup.match_keys (part, key, value, pending, probed) "
            "SELECT 1, (v.value & m.mask) # f, v.value, true, f <> 0 "
            "FROM dbdedup.hash_values v, (SELECT dbdedup.interleaved_mask(%s, 0) AS mask) m, "
            "unnest(dbdedup.ball_masks(m.mask, %s)) f "
            "WHERE v.hash_kind = 'phash' AND NOT v.is_common AND (f = 0 OR ((v.value & m.mask) # f) > (v.value & m.mask))",
            (blocks, radii[0]))
        step = f"blocks: block 1 of {blocks}, radius {radii[0]}"
    else:
        key_bits = conn.execute("SELECT key_bits FROM dbdedup.plan_lsh(%s, %s, %s)", (n, n, t)).fetchone()[0]
        conn.execute("SELECT dbdedup.match_keys_add_values('phash', dbdedup.lsh_mask(1, %s), true)", (key_bits,))
        conn.execute("INSERT INTO dbdedup.match_keys (part, key, value, pending, probed) "
                     "SELECT 1, key, value, true, false FROM dbdedup.match_keys WHERE part = 0")
        step = f"lsh: table 1, {key_bits} key bits"
    conn.execute("ANALYZE dbdedup.match_keys")
    keys = conn.execute("SELECT count(*) FILTER (WHERE part = 0), count(*) FILTER (WHERE part = 1) "
                        "FROM dbdedup.match_keys").fetchone()
    conn.execute("SET LOCAL citus.explain_all_tasks = on")
    plan = json.dumps(conn.execute(
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM dbdedup.match_keys p "
        "JOIN dbdedup.match_keys b ON b.key = p.key AND b.part = 0 WHERE p.part = 1 "
        "AND bit_count((p.value # b.value)::bit(64)) <= %s" % t).fetchone()[0])
    conn.rollback()
    tasks = re.findall(r'"Node": "host=([^ ]+) port=(\d+)[^"]*", "Remote Plan": \[\[\{"Plan": \{(.*?)"Actual Total Time": ([\d.]+)',
                       plan)
    times = [float(x[3]) for x in tasks]
    nodes = sorted({x[1] for x in tasks})
    first_join = re.search(r'"Node Type": "(Hash Join|Merge Join|Nested Loop)"', plan)
    summary = (f"{step}: {keys[0]:,} keys, {keys[1]:,} probes; Citus Adaptive, {len(tasks)} tasks on "
               f"{len(nodes)} worker(s) (ports {', '.join(nodes)}), each a {first_join.group(1) if first_join else '?'} "
               f"of its shard's probes with its shard's keys")
    if times:
        summary += (f"; task time min {min(times):.0f} ms, median {statistics.median(times):.0f} ms, "
                    f"max {max(times):.0f} ms, sum {sum(times) / 1000:.1f} s")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--thresholds", default="3,8")
    parser.add_argument("--method", default="auto", help="auto, blocks or lsh (the same on both servers)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1, help="cores every server is pinned to (the same ones)")
    parser.add_argument("--citus", help="the coordinator's URL of a running cluster (default: start one)")
    parser.add_argument("--data-dir", default="/tmp/dbdedup-citus-bench/pgdata", help="the single server's data")
    args = parser.parse_args()
    cpus = set(sorted(os.sched_getaffinity(0))[: args.cpus])
    folder = None
    url = args.citus
    if url is None:
        url, folder = start_cluster(args.workers)
        for node in sorted(folder.glob("node*")):
            pin(node, cpus)
    admin = start_embedded(Path(args.data_dir))
    pin(Path(args.data_dir), cpus)
    os.sched_setaffinity(0, cpus)
    try:
        print(f"# citus bench: {args.workers} workers + coordinator vs one server, every server on cores "
              f"{sorted(cpus)} of {os.cpu_count()}")
        print("| rows | t | method | one server s | Citus s | Citus / one | value pairs | same pairs | "
              "stages on one server (s) | stages on Citus (s) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        notes = []
        for n in (int(s) for s in args.sizes.split(",")):
            values, _ = synthetic(n)
            single = fresh_database(admin, f"citus_bench_{n}")
            cluster = citus_fresh(url)
            loaded = {}
            for name, dsn in (("one", single), ("citus", cluster)):
                with psycopg.connect(dsn) as conn:
                    started = time.perf_counter()
                    load(conn, values)
                    loaded[name] = time.perf_counter() - started
            notes.append(f"{n:,} rows COPYed in {loaded['one']:.1f} s (one server), {loaded['citus']:.1f} s (Citus)")
            with psycopg.connect(single) as one, psycopg.connect(cluster) as dist:
                for t in (int(x) for x in args.thresholds.split(",")):
                    s1, row1, st1 = timed_match(one, t, args.method)
                    s2, row2, st2 = timed_match(dist, t, args.method)
                    same = value_pairs(one) == value_pairs(dist)
                    stage = lambda st: ", ".join(f"{k} {v:.1f}" for k, v in st.items())  # noqa: E731
                    print(f"| {n:,} | {t} | {row1[0]} / {row2[0]} | {s1:.1f} | {s2:.1f} | {s2 / s1:.2f}x | "
                          f"{row1[6]:,} / {row2[6]:,} | {'yes' if same else 'NO'} | {stage(st1)} | {stage(st2)} |",
                          flush=True)
                    if row2[0] in ("blocks", "lsh"):
                        notes.append(f"{n:,} rows, t={t}: " + per_shard_plan(dist, t, row2[0]))
                for name, conn, distributed in (("one server", one, False), ("Citus", dist, True)):
                    notes.append(f"{n:,} rows, sizes on {name}: " + json.dumps(sizes(conn, distributed)))
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS citus_bench_{n} WITH (FORCE)")
        for note in notes:
            print(f"# {note}")
    finally:
        if folder is not None:
            stop_cluster(folder)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_started()
