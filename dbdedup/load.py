"""Load image files into dbdedup.images: walk, hash in worker processes, COPY in batches.

The data flow, all streaming (memory stays flat whatever the number of files):

    scan (this process, lazy) -> batch of paths -> which are new or changed? (one
    query per batch) -> chunks of paths to a process pool (a bounded number in
    flight) -> result rows -> binary COPY into a temporary table -> one upsert
    into dbdedup.images + dbdedup.load_errors, committed per batch.

A batch is one transaction, so a load killed at any moment leaves whole rows
only, and the next load carries on from what is stored. A worker process that
dies (a decoder crash, the OOM killer) loses only its own chunks (worker_pool):
the one it was hashing is hashed again one file per task, the one waiting for it
as it was, and a file that kills its worker again becomes an error row
('worker_crashed'); the other workers go on. Any number of loads
write into one database at once (other folders, other hosts; the same folder waits for the
load of it already running); a match waits for them (dbdedup.locks). A run found still
'running' whose loader is gone was killed, and is marked 'interrupted'.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import psycopg

from . import distributed, embedding, embedding_index, fingerprint, locks, pg_binary, worker_pool
from .db import analyze_if_changed
from .decode import DEFAULT_MAX_PIXELS, RETRY_REASONS, WORKING_SIZE, use_own_pixel_limit
from .errors import DbdedupError, Terminated
from .file_access import as_bigint
from .fingerprint import Extras, FileRecord, failed_record
from .hashes import HASH_SIZE
from .keypoints import LOADER_KEYS
from .locks import load_lock
from .resample import limit_blas_threads
from .scan import CANDIDATE, ERROR, IGNORED, LEFT_OUT, LINKED, ScanEntry, display_path, normalise_root, scan
from .sqlfiles import named_queries


FIRST_SCAN_BATCH = 256  # small, so workers start at once
SCAN_BATCH = 2000  # scanned entries looked up in the database per query
CHUNK_FILES = 64  # files per task sent to a worker process
CHUNK_BYTES = 8 * 1024 * 1024  # ... or fewer when the files are large (keeps workers balanced)
CHUNKS_IN_FLIGHT_PER_WORKER = 4
WRITE_ROWS = 2000  # rows per COPY + upsert transaction
WRITE_SECONDS = 1.0  # ... or fewer, so a kill loses at most about a second of work
WRITE_ATTEMPTS = 5  # a batch is written again after a deadlock with another load (overlapping roots)

# Binary COPY framing (PostgreSQL's COPY BINARY file format): signature, flags, extension length
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_INT8_OID = 20

PathLike = Union[str, bytes, os.PathLike]


class LoadProgress:
    """Callbacks the loader calls as it goes; subclass and override what you need.

    The library never prints: the CLI implements this with a progress bar.
    """

    def files_found(self, found: int, scan_complete: bool) -> None:
        """``found`` image files (and unreadable entries) seen by the walk so far."""

    def files_done(self, done: int, errors: int) -> None:
        """``done`` of them handled (hashed, unchanged or failed); ``errors`` failed so far."""

    def waiting(self, message: str) -> None:
        """The load lock is busy: ``message`` says who holds it and how long the load waits."""


@dataclass
class LoadSummary:
    """What one call of ``load_paths`` did."""

    run_id: int
    roots: list[str]
    files_seen: int = 0
    loaded: int = 0
    unchanged: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    ignored: int = 0
    missing: int = 0
    exact_duplicate_groups: int = 0
    seconds: float = 0.0
    workers: int = 0
    interrupted_runs: list[int] = field(default_factory=list)
    orientations: bool = False
    keypoints: bool = False  # keypoint keys were computed (dbdedup.keypoints)
    embedder: str | None = None  # the embedder whose descriptors this load stored (None: no embeddings)
    embedded: int = 0  # vectors projected after the load
    notes: list[str] = field(default_factory=list)  # things the user should know (hash-only mode, a refit, ...)
    # things the user must know before relying on the results (vectors of two embedders), shown even with --quiet
    warnings: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (folder, why) not walked: see scan.LEFT_OUT

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id, "roots": self.roots, "files_seen": self.files_seen, "loaded": self.loaded,
            "unchanged": self.unchanged, "errors": dict(self.errors), "error_count": self.error_count,
            "ignored": self.ignored, "missing": self.missing,
            "left_out": [{"path": path, "why": why} for path, why in self.left_out],
            "exact_duplicate_groups": self.exact_duplicate_groups, "seconds": round(self.seconds, 3),
            "workers": self.workers, "interrupted_runs": self.interrupted_runs,
            "orientations": self.orientations, "keypoints": self.keypoints, "embedder": self.embedder,
            "embedded": self.embedded,
            "notes": list(self.notes),
        }


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide the hash values (stored with every run)."""
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import PIL

    from . import __version__

    versions = {"dbdedup": __version__, "Pillow": PIL.__version__, "numpy": numpy.__version__}
    for dist in ("scipy", "pillow-heif", "pillow-avif-plugin"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return versions


def _queries() -> dict[str, str]:
    return named_queries("queries/load.sql")


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode("utf-8", "replace")
    return struct.pack(">i", len(data)) + data


def _bytea(value: bytes | None) -> bytes:
    return _NULL if value is None else struct.pack(">i", len(value)) + value


def _int8(value: int | None) -> bytes:
    return _NULL if value is None else struct.pack(">iq", 8, value)


def _int4(value: int | None) -> bytes:
    return _NULL if value is None else struct.pack(">ii", 4, value)


def _int8_array(values: Sequence[int] | None) -> bytes:
    if values is None:
        return _NULL
    if not values:
        body = struct.pack(">iii", 0, 0, _INT8_OID)
    else:
        body = (struct.pack(">iiiii", 1, 0, _INT8_OID, len(values), 1)
                + struct.pack(">" + "iq" * len(values), *(v for value in values for v in (8, value))))
    return struct.pack(">i", len(body)) + body


def _int4_array(values: np.ndarray | None) -> bytes:
    """An integer[] from int32 values (``FileRecord.keypoint_keys``); '{}' for none."""
    if values is None:
        return _NULL
    if not len(values):
        body = struct.pack(">iii", 0, 0, pg_binary.INT4_OID)
    else:
        body = pg_binary.array4(values, pg_binary.INT4_OID, pg_binary.INT4_ELEMENT)
    return struct.pack(">i", len(body)) + body


def _int2(value: int | None) -> bytes:
    return _NULL if value is None else struct.pack(">ih", 2, value)


def _float4_array(packed: bytes | None) -> bytes:
    """A real[] from float32 values in native byte order (``FileRecord.colour_signature``, ``turn_signature``)."""
    if packed is None:
        return _NULL
    body = pg_binary.float4_array(np.frombuffer(packed, dtype=np.float32))
    return struct.pack(">i", len(body)) + body


def stage_row(record: FileRecord) -> tuple[str | None, bytes]:
    """A file's ``fingerprint.FileRecord`` -> (error reason or None, its dbdedup_stage row as binary COPY data).

    Made in the worker processes, so the parent only joins bytes: its per-row Python work was
    a third of its time (psycopg's generic row encoder, the path's display form).
    """
    r = record
    data = b"".join((
        b"\x00\x1b",  # 27 columns
        _text(display_path(r.path)), _bytea(r.path), _int8(r.size_bytes), _int8(r.mtime_ns),
        _int8(as_bigint(r.device)), _int8(as_bigint(r.inode)), _text("ok" if r.reason is None else "error"),
        _bytea(r.sha256), _text(r.format), _int4(r.width), _int4(r.height), _int4(r.frames),
        _int8(r.phash), _int8(r.dhash), _int8(r.ahash), _int8_array(r.phash_variants), _text(r.embedder),
        _bytea(r.raw_descriptor), _text(r.reason), _text(r.detail), _int2(r.quality),
        _float4_array(r.colour_signature), _text(r.signature_error), _int4_array(r.keypoint_keys),
        _bytea(r.structure), _float4_array(r.turn_signature), _int8_array(r.crop_windows),
    ))
    return r.reason, data


# ---------------------------------------------------------------- worker processes


_worker_extras: Extras | None = None


def _init_worker(extras: Extras | None = None, parent_pid: int | None = None,
                 inherited_fds: Sequence[int] = ()) -> None:
    global _worker_extras
    worker_pool.start_worker(parent_pid, inherited_fds)
    use_own_pixel_limit()  # the header is checked against --max-pixels instead
    limit_blas_threads()
    if extras is not None and extras.keypoints and "cv2" not in sys.modules:
        # one process per core already (and not on a pool forked from a parent that used OpenCV:
        # setNumThreads blocks forever there, see verify_workers)
        import cv2

        cv2.setNumThreads(1)
    # given once per worker, not with every chunk (an ONNX embedder is not small)
    _worker_extras = extras


def _hash_chunk(paths: list[bytes], max_pixels: int) -> list[tuple[str | None, bytes]]:
    return [stage_row(record) for record in fingerprint.file_records(paths, max_pixels, _worker_extras)]


# ---------------------------------------------------------------- the run


class _Loader:
    def __init__(self, conn: psycopg.Connection, run_id: int, max_pixels: int,
                 progress: LoadProgress, started: float, extras: Extras):
        self.conn = conn
        self.extras = extras
        self.embedder_name = extras.embedder.name if extras.embedder is not None else None
        self.has_embeddings_table = False
        # on a Citus cluster, the upserts claim the path's image id first (dbdedup.distributed)
        self.q = {**_queries(), **distributed.loader_queries(conn)}
        self.run_id = run_id
        self.max_pixels = max_pixels
        self.progress = progress
        self.started = started
        self.found = 0
        self.done = 0
        self.loaded = 0
        self.unchanged = 0
        self.ignored = 0
        self.missing = 0
        self.errors: Counter[str] = Counter()
        # loaded and errors count the rows written (what the run record says it stored); a result waits
        # here, with its error reason (None: loaded), until the batch it is in is committed
        self.pending_rows: list[tuple[str | None, bytes]] = []
        self.pending_errors = 0
        self.last_write = time.monotonic()
        self.skip_prefixes: list[bytes] = []
        self.left_out: list[tuple[bytes, str]] = []  # folders the walk left out: rows there are left as they are
        self.linked_folders: list[str] = []  # symbolic links to folders the walk entered (see reference_aliases)
        self.start_seq = 0  # change_seq when the run started: rows written later by other loads are theirs

    # -- database steps, each one transaction

    def create_temp_tables(self) -> None:
        with self.conn.transaction():
            for name in ("create_scan_batch", "create_seen", "create_stage"):
                self.conn.execute(self.q[name])
            self.conn.execute(self.q["clear_temp_tables"])

    def files_to_hash(self, entries: list[ScanEntry]) -> set[bytes]:
        """Remember the batch as seen; return the paths that need hashing (or re-recording)."""
        with self.conn.transaction():
            with self.conn.cursor() as cur:
                with cur.copy(self.q["copy_scan_batch"]) as copy:
                    copy.set_types(["bytea", "int8", "int8", "int8"])
                    for entry in entries:
                        copy.write_row((entry.path, entry.size, entry.mtime_ns, as_bigint(entry.inode)))
                cur.execute(self.q["files_to_hash"], {"retry_reasons": list(RETRY_REASONS),
                                                      "orientations": self.extras.orientations,
                                                      "keypoints": self.extras.keypoints,
                                                      "signals": self.extras.signals,
                                                      "max_pixels": self.max_pixels})
                todo = {bytes(row[0]) for row in cur}
                if self.embedder_name is not None:
                    cur.execute(self.q["files_to_describe"], {"embedder": self.embedder_name})
                    todo.update(bytes(row[0]) for row in cur)
                cur.execute(self.q["remember_scan_batch"])
                cur.execute(self.q["empty_scan_batch"])
        return todo

    def _write_batch(self, results: list[tuple[str | None, bytes]]) -> None:
        failed = Counter(reason for reason, _ in results if reason is not None)
        loaded = len(results) - sum(failed.values())
        with self.conn.transaction():
            with self.conn.cursor() as cur:
                with cur.copy(self.q["copy_stage"]) as copy:
                    copy.write(b"".join((_COPY_SIGNATURE, *(row for _, row in results), _COPY_TRAILER)))
                if "claim_paths" in self.q:
                    cur.execute(self.q["claim_paths"])
                cur.execute(self.q["upsert_stage"], {"run_id": self.run_id})
                if self.has_embeddings_table:
                    cur.execute(self.q["upsert_stage_embeddings"])
                cur.execute(self.q["record_stage_errors"], {"run_id": self.run_id})
                cur.execute(self.q["empty_stage"])
                cur.execute(self.q["update_run_counts"], self.counts(loaded=loaded, errors=sum(failed.values())))
        # committed: these rows are stored now, and counted in load_runs with them (a signal here, before
        # the count below, leaves the stored count right: finish_run does not write it)
        self.loaded += loaded
        self.errors.update(failed)
        self.pending_errors -= sum(failed.values())

    def add_result(self, reason: str | None, row: bytes) -> None:
        if reason is not None:
            self.pending_errors += 1
        self.done += 1
        self.pending_rows.append((reason, row))

    def add_scan_error(self, entry: ScanEntry) -> None:
        self.add_result(*stage_row(FileRecord(path=entry.path, size_bytes=entry.size, mtime_ns=entry.mtime_ns,
                                              device=None, inode=None, reason=entry.reason, detail=entry.detail)))

    def write_if_due(self, force: bool = False) -> None:
        if not self.pending_rows:
            return
        if force or len(self.pending_rows) >= WRITE_ROWS or time.monotonic() - self.last_write >= WRITE_SECONDS:
            self.write()

    def write(self) -> None:
        rows, self.pending_rows = self.pending_rows, []
        # at most WRITE_ROWS a transaction, however many came in since the last write (the workers' results are
        # taken a collection at a time): a failure or a kill then costs one batch, not all of them
        for start in range(0, len(rows), WRITE_ROWS):
            self._write_with_retries(rows[start:start + WRITE_ROWS])
        self.last_write = time.monotonic()
        self.progress.files_done(self.done, self.errors_so_far)

    def _write_with_retries(self, rows: list[tuple[str | None, bytes]]) -> None:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self._write_batch(rows)
                return
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                # another load upserting some of the same paths (overlapping roots) in another
                # order: the batch was rolled back whole; write it again
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @property
    def error_count(self) -> int:
        """Error rows written."""
        return sum(self.errors.values())

    @property
    def errors_so_far(self) -> int:
        """Files that failed, their rows written or not yet (for the progress bar)."""
        return self.error_count + self.pending_errors

    def counts(self, loaded: int = 0, errors: int = 0) -> dict:
        """The run's counts for update_run_counts and finish_run. ``loaded`` and ``errors`` are not the run's
        totals: update_run_counts adds them, the rows (and error rows) the transaction it runs in stores, and
        finish_run does not write them."""
        return {
            "run_id": self.run_id, "files_seen": self.found, "unchanged": self.unchanged, "ignored": self.ignored,
            "missing": self.missing, "seconds": time.monotonic() - self.started, "linked_folders": self.linked_folders,
            "loaded": loaded, "errors": errors,
        }

    def mark_missing(self, roots: list[bytes], recursive: bool) -> None:
        with self.conn.transaction():
            for root in roots:
                prefix = root if root.endswith(b"/") else root + b"/"
                params = {"run_id": self.run_id, "root": root, "prefix": prefix, "recursive": recursive,
                          "skip_prefixes": self.skip_prefixes, "start_seq": self.start_seq}
                # first: a folder read this time (or gone) is not a file gone from disk
                self.conn.execute(self.q["forget_folders"], params)
                cur = self.conn.execute(self.q["mark_missing"], params)
                self.missing += cur.rowcount
            self.conn.execute(self.q["update_run_counts"], self.counts())

    # -- the pipeline

    def run(self, roots: list[bytes], recursive: bool, workers: int) -> None:
        if self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            # each batch must be a transaction of its own (not a savepoint in a caller's), or a
            # kill would lose every batch and not only the last one
            self.conn.commit()
        self.create_temp_tables()

        def take(rows: list[tuple[str | None, bytes]]) -> None:
            for reason, row in rows:
                self.add_result(reason, row)

        def after() -> None:
            self.progress.files_done(self.done, self.errors_so_far)
            self.write_if_due()

        runner = worker_pool.CrashTolerantPool(
            lambda n: _new_pool(n, self.extras, self.conn), workers,
            functools.partial(_hash_chunk, max_pixels=self.max_pixels), take,
            lambda path: [stage_row(_crashed_record(path))], after, CHUNKS_IN_FLIGHT_PER_WORKER)
        try:
            for batch in _batches(scan(roots, recursive=recursive), self):
                todo = self.files_to_hash(batch) if batch else set()
                self.unchanged += len(batch) - len(todo)
                self.done += len(batch) - len(todo)
                chunk: list[bytes] = []
                chunk_bytes = 0
                for entry in batch:
                    if entry.path not in todo:
                        continue
                    if entry.kind == ERROR:
                        self.add_scan_error(entry)
                        continue
                    chunk.append(entry.path)
                    chunk_bytes += entry.size
                    if len(chunk) >= CHUNK_FILES or chunk_bytes >= CHUNK_BYTES:
                        runner.submit(chunk)
                        chunk, chunk_bytes = [], 0
                if chunk:
                    runner.submit(chunk)
                runner.collect(block=False)
            self.progress.files_found(self.found, True)
            runner.finish()
        except BaseException:
            runner.abandon()
            raise
        self.write_if_due(force=True)
        self.mark_missing(roots, recursive)


def _new_pool(workers: int, extras: Extras, conn: psycopg.Connection) -> worker_pool.WorkerPool:
    return worker_pool.WorkerPool(workers, _init_worker, (extras, os.getpid(), (conn.fileno(),)))


def _crashed_record(path: bytes) -> FileRecord:
    return failed_record(path, "worker_crashed",
                         "the worker process died while hashing this file, twice (a decoder crash, or out of memory)")


def _batches(entries: Iterator[ScanEntry], loader: _Loader) -> Iterator[list[ScanEntry]]:
    """Group scanned entries (ignored files only counted) into lookup batches."""
    batch: list[ScanEntry] = []
    size = FIRST_SCAN_BATCH
    for entry in entries:
        if entry.kind == IGNORED:
            loader.ignored += 1
            continue
        if entry.kind == LEFT_OUT:
            loader.left_out.append((entry.path, entry.detail or ""))
            loader.skip_prefixes.append(entry.path.rstrip(b"/") + b"/")
            continue
        if entry.kind == LINKED:
            loader.linked_folders.append(display_path(entry.path))
            continue
        if entry.kind == ERROR and entry.is_dir:
            # a folder that cannot be read: the rows under it are left as they are (mark_missing), and
            # its own error row ends in '/', so that once it can be read (or is gone) that row is
            # dropped (forget_folders), never taken for a file gone from disk
            entry = dataclasses.replace(entry, path=folder_row_path(entry.path))
            loader.skip_prefixes.append(entry.path)
        batch.append(entry)
        loader.found += 1
        if len(batch) >= size:
            loader.progress.files_found(loader.found, False)
            yield batch
            batch = []
            size = SCAN_BATCH
    loader.progress.files_found(loader.found, False)
    yield batch


def folder_row_path(path: bytes) -> bytes:
    """The path of a folder's row in dbdedup.images (an error: it could not be read): with a '/' at the end."""
    return path.rstrip(b"/") + b"/"


def check_roots(roots: Sequence[PathLike]) -> list[bytes]:
    """Absolute bytes paths of ``roots``; DbdedupError if one does not exist."""
    if not roots:
        raise DbdedupError("no path to load", hint="give one or more files or folders: dbdedup load ~/Pictures")
    normalised = []
    for root in roots:
        path = normalise_root(root)
        if not os.path.exists(path):
            raise DbdedupError(f"no such file or folder: {display_path(os.fsencode(root))}",
                               hint="check the path; nothing was loaded")
        normalised.append(path)
    return normalised


def load_paths(
    conn: psycopg.Connection,
    roots: Sequence[PathLike],
    *,
    workers: int | None = None,
    recursive: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: LoadProgress | None = None,
    orientations: bool = True,
    keypoints: bool = False,
    embedder: str | None = "default",
    index_method: str | None = None,
    lock_wait: float | None = None,
) -> LoadSummary:
    """Load every image under ``roots`` into dbdedup.images and return a summary.

    New and changed files (by path, size and mtime) are hashed in ``workers``
    processes (default: all cores); unchanged ones are skipped; files that
    cannot be loaded get status 'error' with a reason (and a dbdedup.load_errors
    row); stored files under the roots that are gone are marked 'missing'.
    Commits once per batch. Raises DbdedupError when a root does not exist, or
    when the load lock stays busy (another load or a match) for ``lock_wait``
    seconds (default ``locks.DEFAULT_LOCK_WAIT``); the error names the holder.

    ``orientations`` also stores the pHash of the 7 other orientations and of the image with
    uniform borders trimmed (for flipped, rotated and bordered copies). ``keypoints`` also stores
    each image's keypoint keys (``dbdedup.keypoints``; files loaded before without them are read
    again), from which matching proposes crops and rotations to the geometric check: opt-in, as
    it costs about as much worker time as the hashes. ``embedder`` ("default",
    "onnx:PATH", or None for none) stores a raw descriptor per image; after the load the new
    ones are projected to vectors (the PCA is fitted on first use) and indexed with
    ``index_method`` (hnsw or ivfflat). Without pgvector on the server, embeddings are skipped
    and ``summary.notes`` says so (once per database).

    The run is recorded 'completed' only when every stage finished (hashing, missing files,
    vectors and index); otherwise 'failed' or 'interrupted', and the next load does what is
    left (vectors still pending are projected then).
    """
    root_paths = check_roots(roots)
    workers = max(1, int(workers or worker_pool.default_workers()))
    progress = progress or LoadProgress()
    q = _queries()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()
    notes: list[str] = []
    warnings: list[str] = []
    embedder_object = embedding.load_embedder(embedder) if embedder is not None else None
    if embedder_object is not None and not embedding_index.embeddings_available(conn):
        if conn.execute(q["first_load"]).fetchone()[0]:  # said once per database, not on every load
            notes.append(embedding_index.HASH_ONLY_NOTE)
        embedder_object = None
    extras = Extras(orientations=orientations, embedder=embedder_object, keypoints=keypoints)
    if not orientations:
        # (the flipped copies were missed without a word: status alone showed "variants 0")
        notes.append("orientations off (--no-orientations): flipped, rotated and bordered copies of the files "
                     "loaded now are found only through the embedding; load them again without it to store them")
    # loads share the load lock (a match waits for them all) and queue per root
    with load_lock(conn, "start the load", wait=lock_wait, name="dbdedup load", on_wait=progress.waiting,
                   shared=True), \
            locks.root_locks(conn, [display_path(r) for r in root_paths], wait=lock_wait, on_wait=progress.waiting):
        started = time.monotonic()
        parameters = {"workers": workers, "recursive": recursive, "max_pixels": max_pixels,
                      "working_size": WORKING_SIZE, "hash_size": HASH_SIZE,
                      "orientations": orientations,
                      **({"keypoints": LOADER_KEYS} if keypoints else {}),
                      "embedder": embedder_object.name if embedder_object is not None else None}
        with conn.transaction():
            conn.execute(q["start_lock"])
            run_id = conn.execute(q["start_run"], {
                "roots": [display_path(r) for r in root_paths],
                "parameters": json.dumps(parameters),
                "versions": json.dumps(library_versions()),
            }).fetchone()[0]
            locks.hold_run(conn, run_id)
            start_seq = conn.execute(q["change_mark"]).fetchone()[0]
            interrupted = [row[0] for row in conn.execute(q["mark_interrupted"],
                                                          {"run_id": run_id, "live": locks.live_runs(conn)})]
            has_embeddings_table = embedding_index.has_embeddings_table(conn)
        loader = _Loader(conn, run_id, max_pixels, progress, started, extras)
        loader.has_embeddings_table = has_embeddings_table
        loader.start_seq = start_seq
        status, message = "failed", None
        projection = None
        try:
            loader.run(root_paths, recursive, workers)
            analyze_if_changed(conn, "dbdedup.images", loader.loaded + loader.error_count + loader.missing)
            if embedder_object is not None:
                projection = _project(conn, embedder_object.name, index_method, embedder_object.raw_dim)
                # (the vectors analysed once projected, not while they were still NULL)
                analyze_if_changed(conn, "dbdedup.image_embeddings", projection.projected)
                if projection.fitted:
                    notes.append(f"embeddings: fitted the {embedder_object.name} reduction on "
                                 f"{projection.fitted_rows:,} images; later loads project the same way "
                                 "(dbdedup embeddings refit fits again)")
                with conn.transaction():
                    stored = conn.execute(q["vectors_by_embedder"]).fetchall()
                if len(stored) > 1:
                    # the nearest-neighbour search compares every vector with every other: the cosine of two
                    # embedders' vectors means nothing, and the pairs across them were lost without a word
                    kinds = ", ".join(f"{name}: {count:,}" for name, count in stored)
                    option = ("--embedder onnx:PATH, the same model" if embedder_object.name.startswith("onnx:")
                              else "--embedder default")
                    warnings.append(f"vectors of {len(stored)} embedders are stored ({kinds}), and vectors of "
                                    "different embedders do not compare: the embedding finds no copy across them; "
                                    f"load the other folders with this one too ({option}), or these with theirs")
            with conn.transaction():
                duplicate_groups = conn.execute(q["exact_duplicate_groups"]).fetchone()[0]
            status = "completed"
        except KeyboardInterrupt as exc:
            status = "interrupted"
            message = "stopped by SIGTERM" if isinstance(exc, Terminated) else "stopped by the user (Ctrl-C)"
            raise
        except BaseException as exc:
            message = f"{exc.__class__.__name__}: {exc}"
            raise
        finally:
            _finish_run(conn, loader, status, message)
            locks.release_run(conn, run_id)
    return LoadSummary(
        run_id=run_id, roots=[display_path(r) for r in root_paths], files_seen=loader.found,
        loaded=loader.loaded, unchanged=loader.unchanged, errors=dict(sorted(loader.errors.items())),
        ignored=loader.ignored, missing=loader.missing, exact_duplicate_groups=duplicate_groups,
        left_out=[(display_path(path), why) for path, why in loader.left_out],
        seconds=time.monotonic() - started, workers=workers, interrupted_runs=interrupted,
        orientations=orientations, keypoints=keypoints,
        embedder=embedder_object.name if embedder_object is not None else None,
        embedded=projection.projected if projection else 0, notes=notes, warnings=warnings,
    )


def _project(conn: psycopg.Connection, embedder: str, index_method: str | None,
             raw_dim: int) -> embedding_index.ProjectionResult:
    # one transaction, which another load's batch can deadlock with (both write image_embeddings
    # rows, in their own orders): the loser is rolled back whole and done again
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return embedding_index.project_pending(conn, embedder, index_method=index_method, raw_dim=raw_dim)
        except psycopg.errors.DeadlockDetected:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _finish_run(conn: psycopg.Connection, loader: _Loader, status: str, message: str | None) -> None:
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.rollback()
        elif conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.commit()  # what was written is whole rows: kept
        with conn.transaction():
            conn.execute(_queries()["finish_run"], {**loader.counts(), "status": status, "message": message})
    except psycopg.Error:
        pass  # the connection is gone: the next load finds the run 'running' and marks it interrupted
