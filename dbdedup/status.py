"""What is in the database: counts, the last load runs, and the files that could not be loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from .embedding_index import vector_count
from .locks import live_runs
from .sqlfiles import named_queries

COUNT_LABELS = {
    "images": "images loaded (ok)",
    "errors": "files that could not be loaded",
    "missing": "files gone from disk (missing)",
    "image_bytes": "bytes in loaded images",
    "images_with_variants": "images with flip/rotation/trim variants",
    "embedding_vectors": "embedding vectors (pgvector)",
    "exact_duplicate_groups": "exact-duplicate groups",
    "exact_duplicate_extra_copies": "extra copies in those groups",
    "exact_duplicate_bytes": "bytes in extra copies",
    "load_runs": "load runs",
}
"""The counts ``collect_status`` returns, in order, with what they mean."""

RUN_COLUMNS = ("run", "started_at", "status", "roots", "files_seen", "loaded", "unchanged", "errors", "missing",
               "ignored", "seconds")
GONE_STATUS = "interrupted (its loader is gone)"
"""The status shown for a run recorded 'running' whose loader is gone (see ``collect_status``)."""
ERROR_COLUMNS = ("path", "reason", "detail", "size_bytes", "mtime", "load_run_id", "loaded_at")


def _queries() -> dict[str, str]:
    return named_queries("queries/status.sql")


@dataclass(frozen=True)
class Status:
    """Counts over the whole database (keys of COUNT_LABELS) and the last load runs, newest first."""

    counts: dict[str, int]
    runs: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        from datetime import datetime

        return {"counts": dict(self.counts),
                "last_runs": [{c: (r[c].isoformat() if isinstance(r[c], datetime) else r[c]) for c in RUN_COLUMNS}
                              for r in self.runs]}


def collect_status(conn: psycopg.Connection, *, runs: int = 5) -> Status:
    """Counts of images, errors, missing files, exact duplicates and vectors, and the last ``runs`` load runs.

    A run recorded 'running' whose loader is gone (killed: ``kill -9``, a lost connection) is shown with
    the status "interrupted (its loader is gone)"; the next load records it 'interrupted'.
    """
    q = _queries()
    # the runs whose loader holds their lock, read before and after the runs themselves: a run that
    # ends in between held it at the first read, one that starts in between holds it at the second
    live = set(live_runs(conn))
    with conn.cursor(row_factory=dict_row) as cur:
        counts = cur.execute(q["status_counts"]).fetchone() or {}
        last = cur.execute(q["last_runs"], {"limit": runs}).fetchall()
    live.update(live_runs(conn))
    counts = {**counts, "embedding_vectors": vector_count(conn)}
    ordered = {key: int(counts[key]) for key in COUNT_LABELS if key in counts}
    for run in last:
        if run.get("seconds") is not None:
            run["seconds"] = float(run["seconds"])
        if run["status"] == "running" and run["run"] not in live:
            # killed (kill -9, a lost connection): the next load records it 'interrupted'; status writes nothing
            run["status"] = GONE_STATUS
    return Status(counts=ordered, runs=last)


def current_errors(conn: psycopg.Connection, *, reason: str | None = None) -> list[dict]:
    """The files that currently cannot be loaded (keys of ERROR_COLUMNS), by reason then path."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_queries()["current_errors"], {"reason": reason}).fetchall()
