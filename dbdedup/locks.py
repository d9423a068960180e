"""The load lock: one writer of images and pairs at a time, waited for within a deadline.

A load holds it for its whole run, and matching (``dbdedup.match`` and the signals, through
the library) for its whole run too, so the two queue instead of interleaving: a match that
started in the middle of a load could otherwise see half of it, and lock tables in an order
that deadlocks the load's last steps.

It is a session-level PostgreSQL advisory lock, and any role that can connect may take an
advisory lock, so a stray session (an analyst's psql, a load whose process hangs) can hold it.
Nobody waits forever: the lock is polled until ``wait`` seconds have passed, and the error then
names the session that holds it (pid, role, application, since when) and how to end it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

import psycopg
from psycopg.rows import dict_row

from .errors import DbdedupError
from .sqlfiles import named_queries

LOAD_LOCK_KEY = 7_220_002
"""The advisory lock key of loads and matching (the SQL functions of matching take it too)."""

DEFAULT_LOCK_WAIT = 30.0
"""Seconds a load or a match waits for the load lock before giving up with the holder's name."""

ENV_LOCK_WAIT = "DBDEDUP_LOCK_WAIT"

_POLL_FIRST = 0.05
_POLL_MAX = 0.5


def _queries() -> dict[str, str]:
    return named_queries("queries/locks.sql")


@dataclass(frozen=True)
class LockHolder:
    """A session holding the load lock, as pg_locks and pg_stat_activity describe it."""

    pid: int
    role: str | None
    application: str | None
    client: str | None
    backend_start: datetime | None
    xact_start: datetime | None
    state: str | None
    state_change: datetime | None
    load_run: tuple[int, datetime] | None = None  # (run id, started at) when the holder is a dbdedup load

    @property
    def is_dbdedup(self) -> bool:
        return (self.application or "").startswith("dbdedup")

    def describe(self) -> str:
        """One line: who, from where, since when."""
        parts = [f"pid {self.pid}", f"role {self.role or '?'}", f"application {self.application or '(none)'}"]
        if self.client:
            parts.append(f"from {self.client}")
        if self.load_run is not None:
            parts.append(f"load run {self.load_run[0]} started {_when(self.load_run[1])}")
        elif self.backend_start is not None:
            parts.append(f"connected {_when(self.backend_start)}")
        if self.xact_start is not None:
            parts.append(f"in a transaction since {_when(self.xact_start)}")
        elif self.state and self.state_change is not None:
            parts.append(f"{self.state} since {_when(self.state_change)}")
        return ", ".join(parts)


def _when(moment: datetime) -> str:
    local = moment.astimezone()
    now = datetime.now(local.tzinfo)
    return local.strftime("%H:%M:%S" if local.date() == now.date() else "%Y-%m-%d %H:%M:%S")


def lock_holders(conn: psycopg.Connection, key: int = LOAD_LOCK_KEY) -> list[LockHolder]:
    """The other sessions that hold advisory lock ``key`` in this database (usually none or one)."""
    q = _queries()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q["holders"], {"key": key}).fetchall()
        holders = []
        for row in rows:
            run = None
            if (row["application"] or "").startswith("dbdedup load"):
                found = cur.execute(q["running_load"]).fetchone()
                run = (found["id"], found["started_at"]) if found else None
            holders.append(LockHolder(pid=row["pid"], role=row["role"], application=row["application"],
                                      client=row["client"], backend_start=row["backend_start"],
                                      xact_start=row["xact_start"], state=row["state"],
                                      state_change=row["state_change"], load_run=run))
    return holders


def _busy_error(purpose: str, holders: list[LockHolder], waited: float) -> DbdedupError:
    waited_text = f"waited {waited:.0f} s" if waited >= 1 else "did not wait"
    if not holders:
        return DbdedupError(f"cannot {purpose}: the load lock is busy ({waited_text})",
                            hint="another dbdedup load or match is running on this database; try again when it "
                                 "ends, or wait longer with --lock-wait SECONDS")
    holder = holders[0]
    message = f"cannot {purpose}: the load lock is held by {holder.describe()} ({waited_text})"
    if holder.is_dbdedup:
        what = holder.application.removeprefix("dbdedup").strip() or "command"  # type: ignore[union-attr]
        hint = (f"another dbdedup {what} is running on this database: let it finish (--lock-wait SECONDS waits "
                f"longer) or stop it; a killed one releases the lock at once")
    else:
        hint = (f"session {holder.pid} is not dbdedup: ask role {holder.role or '?'} to end it (or to run "
                f"SELECT pg_advisory_unlock_all()), or end it as a superuser: SELECT pg_terminate_backend({holder.pid})")
    return DbdedupError(message, hint=hint)


@contextmanager
def load_lock(
    conn: psycopg.Connection,
    purpose: str,
    *,
    wait: float | None = None,
    name: str = "dbdedup",
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the load lock on ``conn`` for the block; give up after ``wait`` seconds with a DbdedupError
    naming the holder. ``purpose`` completes "cannot ..." in that message ("start the load").

    ``name`` becomes the session's application_name meanwhile ("dbdedup load"), so that a command
    waiting for this one can say what holds the lock. ``on_wait(description)`` is called once
    if the lock is busy at first (the CLI prints it). Commits any open transaction first: a
    transaction left open while waiting could hold table locks the holder needs.
    """
    wait = DEFAULT_LOCK_WAIT if wait is None else max(0.0, float(wait))
    q = _queries()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()
    started = time.monotonic()
    pause = _POLL_FIRST
    told = False
    while True:
        with conn.transaction():
            got = conn.execute(q["try_lock"], {"key": LOAD_LOCK_KEY}).fetchone()[0]
            holders = [] if got else lock_holders(conn)
        if got:
            break
        waited = time.monotonic() - started
        if waited >= wait:
            raise _busy_error(purpose, holders, waited)
        if not told and on_wait is not None and holders:
            on_wait(f"waiting up to {wait:.0f} s for the load lock, held by {holders[0].describe()}")
            told = True
        time.sleep(min(pause, max(0.0, wait - waited)))
        pause = min(pause * 2, _POLL_MAX)
    previous = None
    try:
        with conn.transaction():
            previous = conn.execute(q["application_name"]).fetchone()[0]
            conn.execute(q["set_application_name"], {"name": name})
        yield
    finally:
        release(conn, previous)


def release(conn: psycopg.Connection, application_name: str | None = None) -> None:
    """Release the load lock (and restore the application name); silent when the connection is gone."""
    q = _queries()
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            conn.execute(q["unlock"], {"key": LOAD_LOCK_KEY})
            if application_name is not None:
                conn.execute(q["set_application_name"], {"name": application_name})
    except psycopg.Error:
        pass  # the session is gone, and its locks with it
