"""Embedding vectors in PostgreSQL: the stored reduction, projection after a load, the pgvector index.

The loader stores each image's raw descriptor (``dbdedup.image_embeddings.raw``); after the
load, ``project_pending`` turns the new ones into reduced unit vectors. The first time an
embedder is used, its PCA is fitted on the corpus just loaded and stored in
``dbdedup.embedding_reductions``, so every later load projects the same way; ``refit`` fits
again on everything and re-projects. The pgvector index (IVFFlat by default, HNSW as an
option) is built after the bulk of the vectors is written, not row by row.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from .db import HASH_ONLY_MESSAGE
from .embedding_defaults import EMBEDDING_DIM
from .errors import DbdedupError
from .sqlfiles import named_queries

if TYPE_CHECKING:
    from .embedding import Reduction

# numpy and dbdedup.embedding are imported where vectors are computed: the report and status
# commands read only counts from here, and numpy is a sixth of a command's start-up.

INDEX_METHODS = ("hnsw", "ivfflat")
# IVFFlat with many small lists (dbdedup.build_embedding_index) builds and answers a near-duplicate
# k-NN for less work than HNSW and finds as many of an exact search's pairs; on images full of
# near-duplicate groups HNSW's graph loses pairs as the collection grows (bench/embedding_index_bench.py)
DEFAULT_INDEX_METHOD = "ivfflat"
FIT_SAMPLE = 20_000  # descriptors a PCA is fitted on (a fixed pseudo-random sample beyond that; bounds memory)
MIN_PCA_ROWS = 32  # below this a PCA is noise: a fixed random projection (no centring) stands in
AUTO_REFIT_BELOW = 2_000  # a reduction fitted on fewer rows is refitted by itself once the rows double
PROJECT_BATCH = 10_000
# binary COPY framing (PostgreSQL's COPY BINARY format): signature, flags, extension length; trailer
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)

HASH_ONLY_NOTE = HASH_ONLY_MESSAGE


@dataclass(frozen=True)
class ProjectionResult:
    """What ``project_pending`` or ``refit`` did."""

    embedder: str
    projected: int  # vectors written
    fitted: bool  # a reduction was fitted (first use of the embedder, or a refit)
    fitted_rows: int  # rows the stored reduction was fitted on
    index: str | None  # the index built, when one was (re)built
    seconds: float


def _queries() -> dict[str, str]:
    return named_queries("queries/embeddings.sql")


def embeddings_available(conn: psycopg.Connection) -> bool:
    """True when the server can store vectors (pgvector), creating dbdedup.image_embeddings if needed."""
    row = conn.execute(_queries()["enable"]).fetchone()
    if not conn.autocommit:
        conn.commit()
    return bool(row and row[0])


def has_embeddings_table(conn: psycopg.Connection) -> bool:
    """True when dbdedup.image_embeddings exists (without trying to create it)."""
    return bool(conn.execute("SELECT to_regclass('dbdedup.image_embeddings') IS NOT NULL").fetchone()[0])


def has_vectors(conn: psycopg.Connection) -> bool:
    """True when embedding vectors are stored (pgvector on the server and a load with an embedder)."""
    return has_embeddings_table(conn) and bool(conn.execute(_queries()["any_vector"]).fetchone()[0])


def vector_count(conn: psycopg.Connection) -> int:
    """Embedding vectors stored for ok images (0 in hash-only mode)."""
    if not has_embeddings_table(conn):
        return 0
    return int(conn.execute(_queries()["vector_count"]).fetchone()[0])


def _vector_schema(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT dbdedup.vector_schema()").fetchone()[0]


def _fit(conn: psycopg.Connection, embedder: str, index_method: str, raw_dim: int | None = None) -> Reduction:
    """Fit the embedder's reduction on a sample of its stored descriptors and store it. ``raw_dim``: the values of
    one descriptor when known (the loader's model, or the reduction stored before)."""
    import numpy as np

    from .embedding import fit_reduction

    q = _queries()
    rows = conn.execute(q["fit_sample"], {"embedder": embedder, "limit": FIT_SAMPLE}).fetchall()
    if not rows:
        raise DbdedupError(f"no descriptors of embedder {embedder} are stored",
                           hint="load images with this embedder first: dbdedup load PATH --embedder ...")
    # (the first row's length halved took a float32 row, a model whose outputs pass 65,504, for twice as many
    # float16 values: every vector was garbage and every similarity NaN)
    raw_dim = _raw_dim(embedder, rows, raw_dim)
    matrix = _raw_matrix([bytes(r[0]) for r in rows], raw_dim)
    if len(rows) < MIN_PCA_ROWS:
        # A handful of rows gives a PCA of their differences: two near-duplicates alone come out
        # as opposite vectors. A random orthonormal projection of the raw descriptors keeps their
        # cosines instead, until there are rows enough (refitted automatically, AUTO_REFIT_BELOW).
        reduction = fit_reduction(embedder, np.zeros((1, raw_dim), dtype=np.float32), dim=EMBEDDING_DIM)
        reduction.fitted_rows = len(rows)
    else:
        reduction = fit_reduction(embedder, matrix, dim=EMBEDDING_DIM)
    conn.execute(q["store_reduction"], {
        "embedder": embedder, "raw_dim": reduction.raw_dim, "dim": reduction.dim,
        "reduction": reduction.to_bytes(), "fitted_rows": reduction.fitted_rows, "index_method": index_method,
    })
    return reduction


def _raw_dim(embedder: str, rows, known: int | None) -> int:
    """The values of one raw descriptor of ``embedder``: ``known`` (the model's, from the load that describes
    with it, or the stored reduction's); else the built-in descriptor's; else (an ONNX model's rows, the model not
    at hand) from the rows' lengths: float16, 2 bytes a value, where a row whose values passed float16's range is
    float32, 4 bytes a value, so where both lengths occur the shorter is the float16 one."""
    from .embedding import load_embedder

    if known:
        return known
    if not embedder.startswith("onnx:"):
        return load_embedder(embedder).raw_dim
    return min(len(bytes(r[0])) for r in rows) // 2


def _copy_data(image_ids, vectors) -> bytes:
    """(image_id bigint, vector) rows as one binary COPY stream, made by numpy at once.

    pgvector's binary form of a vector: its dimension (int16), a zero int16, then the float4 values,
    all big-endian. The values are the same floats ``register_vector``'s per-row adapter sends.
    """
    import numpy as np

    count, dim = vectors.shape
    row = np.dtype([("fields", ">i2"), ("id_size", ">i4"), ("id", ">i8"), ("vector_size", ">i4"),
                    ("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (dim,))])
    rows = np.zeros(count, dtype=row)
    rows["fields"] = 2
    rows["id_size"] = 8
    rows["id"] = image_ids
    rows["vector_size"] = 4 + 4 * dim
    rows["dim"] = dim
    rows["values"] = vectors
    return b"".join((_COPY_SIGNATURE, rows.tobytes(), _COPY_TRAILER))


def _raw_matrix(raws: list[bytes], raw_dim: int):
    """The stored raw descriptors as one float32 matrix (``raw_from_bytes`` of each row)."""
    import numpy as np

    from .embedding import raw_from_bytes

    if all(len(r) == 2 * raw_dim for r in raws):  # float16, as raw_to_bytes stores them: one conversion
        return np.frombuffer(b"".join(raws), dtype="<f2").reshape(len(raws), raw_dim).astype(np.float32)
    return np.stack([raw_from_bytes(r, raw_dim) for r in raws])


def _turn_matrix(signatures):
    """The turn signatures as one matrix; an image with no thumbnail gets a flat picture's signature
    (far from every drawing's, and never pending again)."""
    import numpy as np

    from .turn_signature import FLAT_TURN_SIGNATURE

    return np.stack([FLAT_TURN_SIGNATURE if v is None else v for v in signatures])


def _write_vectors(conn: psycopg.Connection, reduction: Reduction) -> int:
    """Project every pending descriptor of the reduction's embedder; returns the number of vectors projected.

    The loader's workers compute each image's turn signature (``dbdedup.turn_signature``) and crop windows
    (``dbdedup.crop_windows``); a row loaded before there were any (or on Citus) gets them here, from the
    image's stored thumbnail."""
    import numpy as np

    from .crop_windows import crop_windows_of_thumbnails
    from .embedding import project
    from .turn_signature import turn_signatures_of_thumbnails

    q = _queries()
    schema = sql.Identifier(_vector_schema(conn))
    conn.execute(sql.SQL(q["create_update_table"]).format(vector_schema=schema))
    conn.execute(sql.SQL(q["create_turn_table"]).format(vector_schema=schema))
    conn.execute(q["create_windows_table"])
    written, late = 0, False
    with conn.cursor(name="dbdedup_pending_vectors") as pending:
        pending.itersize = PROJECT_BATCH
        pending.execute(q["pending"], {"embedder": reduction.embedder})
        while True:
            rows = pending.fetchmany(PROJECT_BATCH)
            if not rows:
                break
            new = [r for r in rows if r[2]]
            missing_turn = [r for r in rows if r[3]]
            # (a row with its vector already may have been matched without them)
            late = late or any(not r[2] and (r[3] or r[5]) for r in rows)
            with conn.cursor() as cur:
                if new:
                    vectors = project(reduction, _raw_matrix([bytes(r[1]) for r in new], reduction.raw_dim))
                    with cur.copy(q["copy_update_table"]) as copy:
                        copy.write(_copy_data(np.array([r[0] for r in new], dtype=np.int64), vectors))
                    cur.execute(q["apply_update_table"])
                    cur.execute(q["requeue_matched"])
                if missing_turn:
                    turns = _turn_matrix(turn_signatures_of_thumbnails([r[4] for r in missing_turn]))
                    with cur.copy(q["copy_turn_table"]) as copy:
                        copy.write(_copy_data(np.array([r[0] for r in missing_turn], dtype=np.int64), turns))
                    cur.execute(q["apply_turn_table"])
                missing_windows = [r for r in rows if r[5]]
                if missing_windows:
                    windows = crop_windows_of_thumbnails([r[4] for r in missing_windows])
                    with cur.copy(q["copy_windows_table"]) as copy:
                        for r, found in zip(missing_windows, windows):
                            copy.write_row((r[0], found))
                    cur.execute(q["apply_windows_table"])
                cur.execute(q["empty_update_table"])
            written += len(new)
    if late:
        # signatures or windows written for images matched before there were any (a database from before them):
        # the next match searches every image's neighbours again, which is what uses them (their verdicts kept)
        conn.execute(q["forget_embedding_pairs"])
    return written


def project_pending(conn: psycopg.Connection, embedder: str, *, index_method: str | None = None,
                    raw_dim: int | None = None) -> ProjectionResult:
    """Project the stored descriptors that have no vector yet, fitting the embedder's PCA on first use; commit.

    A reduction fitted on few rows (under AUTO_REFIT_BELOW) is fitted again, and every vector
    re-projected, once its rows (one per group of byte-identical files) have doubled. Builds the pgvector index when there is none,
    when ``index_method`` asks for another kind, or when this batch is larger than what is
    already indexed (a bulk build beats inserting row by row). ``raw_dim``: the values of the embedder's raw
    descriptor, which the loader's model knows (an ONNX model's stored rows alone do not say it).
    """
    started = time.monotonic()
    q = _queries()
    if index_method is not None and index_method not in INDEX_METHODS:
        raise DbdedupError(f"unknown index method {index_method!r}", hint="use hnsw or ivfflat")
    with conn.transaction():
        # loads run at once: one projects (fits, drops and builds the index) at a time
        conn.execute(q["projection_lock"])
        if not conn.execute(q["any_descriptor"], {"embedder": embedder}).fetchone()[0]:
            # nothing loaded with this embedder (an empty folder, or only broken files): nothing to fit
            return ProjectionResult(embedder=embedder, projected=0, fitted=False, fitted_rows=0, index=None,
                                    seconds=time.monotonic() - started)
        stored = conn.execute(q["reduction"], {"embedder": embedder}).fetchone()
        current_index = conn.execute(q["index_method"]).fetchone()
        method = (index_method or (stored[1] if stored else None)
                  or (current_index[0] if current_index else DEFAULT_INDEX_METHOD))
        projected_before, new_vectors, pending = conn.execute(q["counts"], {"embedder": embedder}).fetchone()
        fitted_rows = stored[2] if stored else 0
        # (a reduction is fitted on one row per group of byte-identical files: the rows it doubles are counted so,
        # else a collection half made of exact copies was refitted, and its vectors and pairs dropped, by every load)
        fitted = stored is None or (fitted_rows < AUTO_REFIT_BELOW
                                    and conn.execute(q["fit_rows"], {"embedder": embedder}).fetchone()[0] >= 2 * fitted_rows)
        if fitted:
            reduction = _fit(conn, embedder, method, raw_dim or (stored[4] if stored else None))
            if stored is not None:
                conn.execute(q["forget_vectors"], {"embedder": embedder})
                conn.execute(q["forget_embedding_pairs"])
                projected_before, new_vectors, pending = conn.execute(q["counts"], {"embedder": embedder}).fetchone()
        else:
            from .embedding import Reduction

            reduction = Reduction.from_bytes(bytes(stored[0]))
            if index_method is not None and index_method != stored[1]:
                conn.execute(q["set_index_method"], {"embedder": embedder, "index_method": index_method})
        rebuild = (current_index is None or new_vectors > projected_before or current_index[0] != method)
        if rebuild and current_index is not None:
            conn.execute(q["drop_index"])
            conn.execute(q["drop_turn_index"])
        written = _write_vectors(conn, reduction) if pending else 0
        index = conn.execute(q["build_index"], {"method": method}).fetchone()[0] if rebuild else None
    return ProjectionResult(embedder=embedder, projected=written, fitted=fitted, fitted_rows=reduction.fitted_rows,
                            index=index, seconds=time.monotonic() - started)


def refit(conn: psycopg.Connection, *, embedder: str | None = None, index_method: str | None = None,
          lock_wait: float | None = None) -> ProjectionResult:
    """Fit the embedder's PCA again on the stored descriptors, re-project every vector and rebuild the index; commit.
    Holds the load lock (waits up to ``lock_wait`` s for a running load or match)."""
    from .locks import load_lock

    started = time.monotonic()
    q = _queries()
    if not embeddings_available(conn):
        raise DbdedupError(HASH_ONLY_NOTE, hint="install pgvector on the server, or use the embedded default database")
    with load_lock(conn, "refit the embeddings", wait=lock_wait, name="dbdedup embeddings refit"), conn.transaction():
        if embedder is None:
            row = conn.execute(q["latest_embedder"]).fetchone()
            if row is None:
                # (images loaded with --embedder none have none either: loading them again with an embedder adds them)
                raise DbdedupError("no embeddings are stored yet",
                                   hint="load images with an embedder (the default grey-v1): dbdedup load PATH; a "
                                        "folder loaded with --embedder none gets its embeddings when loaded again "
                                        "without it")
            embedder = row[0]
        stored = conn.execute(q["reduction"], {"embedder": embedder}).fetchone()
        current_index = conn.execute(q["index_method"]).fetchone()
        method = (index_method or (stored[1] if stored else None)
                  or (current_index[0] if current_index else DEFAULT_INDEX_METHOD))
        if method not in INDEX_METHODS:
            raise DbdedupError(f"unknown index method {method!r}", hint="use hnsw or ivfflat")
        reduction = _fit(conn, embedder, method, stored[4] if stored else None)
        conn.execute(q["drop_index"])
        conn.execute(q["drop_turn_index"])
        conn.execute(q["forget_vectors"], {"embedder": embedder})
        conn.execute(q["forget_embedding_pairs"])
        written = _write_vectors(conn, reduction)
        index = conn.execute(q["build_index"], {"method": method}).fetchone()[0]
    return ProjectionResult(embedder=embedder, projected=written, fitted=True, fitted_rows=reduction.fitted_rows,
                            index=index, seconds=time.monotonic() - started)
