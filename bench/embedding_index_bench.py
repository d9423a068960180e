"""pgvector index settings for dbdedup's near-duplicate k-NN: build cost, search cost and recall.

    .venv/bin/python bench/embedding_index_bench.py                    # 1x and 10x the accuracy set's vectors
    .venv/bin/python bench/embedding_index_bench.py --copies 1 --probes 4000
    .venv/bin/python bench/embedding_index_bench.py --configs "ivfflat:auto:4;hnsw:16:64:40"

The vectors are real: those of bench/accuracy's images (photos and clip-art, each original with 21
edited copies and distractors), as ``dbdedup load`` stores them (the default embedder, reduced to 64
dimensions). They are read from a database holding them (--source; by default one on the bench's
embedded server, loaded from bench/out/accuracy/images the first time). A larger collection with
the same structure is made of copies of them, each under its own random rotation: pairs within a
copy keep their similarity, pairs across copies are unrelated.

For each index configuration: the build (backend CPU seconds and wall seconds), and a k-NN search
of a sample of probes as ``dbdedup.match_embeddings`` runs it (k = 10 nearest plus the probe
itself, LATERAL); CPU milliseconds per probe, and recall: the share of the (probe, neighbour) pairs
with similarity >= 0.92 among the probe's exact 10 nearest (numpy) that the search returns (a
neighbour tied with the 10th counts either way). CPU is read from the server process
(/proc/PID/stat), so other jobs on a shared machine move it less than wall time.

Configurations: ``ivfflat:LISTS:PROBES`` (LISTS a number, ``auto`` = dbdedup's 1.5 sqrt(rows) capped
at 1,000, or ``pgvector`` = rows / 1000; PROBES a number or ``sqrt`` = sqrt(lists)) and
``hnsw:M:EF_CONSTRUCTION:EF_SEARCH``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
SIMILARITY = 0.92
NEIGHBOURS = 10
DEFAULT_CONFIGS = "ivfflat:auto:4;ivfflat:pgvector:sqrt;hnsw:16:64:40;hnsw:12:40:30"


def _dsn(admin: str, name: str) -> str:
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    return make_conninfo(**params)


def source_vectors(admin: str, source: str | None) -> np.ndarray:
    """The stored vectors of a dbdedup database (loading the accuracy set into a new one if needed)."""
    if source is None:
        source = _dsn(admin, "embedding_index_bench_source")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'embedding_index_bench_source'").fetchone()
            if not exists:
                conn.execute("CREATE DATABASE embedding_index_bench_source")
        with psycopg.connect(source) as conn:
            loaded = conn.execute("SELECT to_regclass('dbdedup.image_embeddings') IS NOT NULL").fetchone()[0]
        if not loaded:
            images = OUT / "accuracy" / "images"
            if not images.is_dir():
                raise SystemExit(f"{images} is not built: run bench/accuracy/build_set.py, or give --source")
            print(f"# loading {images} into embedding_index_bench_source (once)", file=sys.stderr, flush=True)
            subprocess.run([str(Path(sys.executable).parent / "dbdedup"), "--db", source, "-q", "load", str(images)],
                           check=True)
    with psycopg.connect(source) as conn:
        register_vector(conn)
        rows = conn.execute("SELECT embedding FROM dbdedup.image_embeddings WHERE embedding IS NOT NULL "
                            "ORDER BY image_id").fetchall()
    return np.stack([r[0].to_numpy() for r in rows]).astype(np.float32)


def make_table(admin: str, vectors: np.ndarray, copies: int) -> str:
    """Database embedding_index_bench_N with vecs(id, grp, embedding): ``copies`` rotated copies."""
    name = f"embedding_index_bench_{copies}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = _dsn(admin, name)
    rng = np.random.default_rng(7)
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE EXTENSION vector")
        register_vector(conn)
        conn.execute(f"CREATE TABLE vecs (id bigint PRIMARY KEY, grp integer, embedding vector({vectors.shape[1]}))")
        with conn.cursor().copy("COPY vecs (id, grp, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int4", "vector"])
            n = 0
            for group in range(copies):
                rotation = (np.linalg.qr(rng.standard_normal((vectors.shape[1],) * 2))[0].astype(np.float32)
                            if group else np.eye(vectors.shape[1], dtype=np.float32))
                for vector in vectors @ rotation.T:
                    copy.write_row((n, group, vector))
                    n += 1
        conn.execute("ANALYZE vecs")
        conn.commit()
    return dsn


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exact_pairs(vectors: np.ndarray, probes: np.ndarray) -> set[tuple[int, int]]:
    """(probe, neighbour) pairs >= SIMILARITY strictly inside the probe's exact top NEIGHBOURS (ids = rows of copy 0)."""
    sims = vectors[probes].astype(np.float64) @ vectors.T.astype(np.float64)
    sims[np.arange(len(probes)), probes] = -2
    kth = -np.partition(-sims, NEIGHBOURS - 1, axis=1)[:, NEIGHBOURS - 1]
    return {(int(probes[i]), int(j)) for i in range(len(probes))
            for j in np.nonzero((sims[i] >= SIMILARITY) & (sims[i] > kth[i] + 1e-6))[0]}


def run_config(conn: psycopg.Connection, config: str, rows: int, must: set, n_probes: int) -> str:
    pid = conn.info.backend_pid
    parts = config.split(":")
    conn.execute("DROP INDEX IF EXISTS vecs_idx")
    if parts[0] == "ivfflat":
        lists = {"auto": min(1000, max(10, round(1.5 * rows ** 0.5))), "pgvector": max(1, rows // 1000)}.get(
            parts[1], None) or int(parts[1])
        probes = max(1, round(lists ** 0.5)) if parts[2] == "sqrt" else int(parts[2])
        ddl = f"USING ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})"
        knob, label = f"SET ivfflat.probes = {probes}", f"ivfflat, {lists} lists, {probes} probes"
    else:
        m, efc, ef = (int(x) for x in parts[1:4])
        ddl = f"USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {efc})"
        knob, label = f"SET hnsw.ef_search = {ef}", f"hnsw, m {m}, ef_construction {efc}, ef_search {ef}"
    cpu, wall = _cpu(pid), time.perf_counter()
    conn.execute(f"CREATE INDEX vecs_idx ON vecs {ddl}")
    build_cpu, build_wall = _cpu(pid) - cpu, time.perf_counter() - wall
    conn.execute(knob)
    cpu = _cpu(pid)
    got = conn.execute(f"""SELECT p.id, x.id, x.s FROM probe p CROSS JOIN LATERAL (
        SELECT e.id, (1 - (e.embedding <=> p.embedding)) AS s FROM vecs e
        ORDER BY e.embedding <=> p.embedding LIMIT {NEIGHBOURS + 1}) x WHERE x.id <> p.id""").fetchall()
    search_cpu = _cpu(pid) - cpu
    found = {(a, b) for a, b, s in got if s >= SIMILARITY}
    recall = len(found & must) / max(1, len(must))
    return (f"| {rows:,} | {label} | {build_cpu:.1f} ({build_wall:.1f}) | {search_cpu / n_probes * 1000:.3f} | "
            f"{recall:.4f} | {build_cpu + search_cpu / n_probes * rows:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", default="1,10", help="collection sizes, as copies of the source vectors")
    parser.add_argument("--probes", type=int, default=2000, help="probes searched per configuration")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument("--source", help="DSN of a dbdedup database whose vectors to use")
    parser.add_argument("--data-dir", type=Path, default=OUT / "e2e" / "pgdata", help="the bench's embedded server")
    args = parser.parse_args()

    from benchdb import start_embedded

    admin = start_embedded(args.data_dir)
    vectors = source_vectors(admin, args.source)
    rng = np.random.default_rng(1)
    probes = np.sort(rng.choice(len(vectors), min(args.probes, len(vectors)), replace=False))
    must = exact_pairs(vectors, probes)
    print(f"# embedding index bench: {len(vectors):,} source vectors, {len(probes):,} probes, "
          f"{len(must):,} exact (probe, neighbour) pairs >= {SIMILARITY} in the top {NEIGHBOURS}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| vectors | index | build CPU s (wall) | search CPU ms a probe | recall | build + every row searched, CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for copies in (int(c) for c in args.copies.split(",")):
        dsn = make_table(admin, vectors, copies)
        with psycopg.connect(dsn, autocommit=True) as conn:
            register_vector(conn)
            conn.execute("SET maintenance_work_mem = '256MB'")  # as dbdedup.build_embedding_index
            conn.execute("SET max_parallel_maintenance_workers = 0")  # build CPU is the backend's own
            conn.execute("CREATE TEMP TABLE probe AS SELECT id, embedding FROM vecs WHERE id = ANY(%s)",
                         (probes.tolist(),))
            rows = conn.execute("SELECT count(*) FROM vecs").fetchone()[0]
            for config in args.configs.split(";"):
                print(run_config(conn, config, rows, must, len(probes)), flush=True)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS embedding_index_bench_{copies} WITH (FORCE)")


if __name__ == "__main__":
    from benchdb import stop_started

    try:
        main()
    finally:
        stop_started()
