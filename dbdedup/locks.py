"""The load lock, the root locks and the run locks: loads and matches queue, loads of one root too.

Loads hold the load lock in shared mode for their whole run, so any number of loads (of other
folders, from other hosts) write at once; matching (``dbdedup.match`` and the signals, through
the library) holds it exclusively for its whole run, so a match and the loads queue instead of
interleaving: a match that started in the middle of a load could otherwise see half of it, and
lock tables in an order that deadlocks the load's last steps. A match that waits is queued by
PostgreSQL ahead of loads that ask after it, so a stream of loads cannot keep it out.

Each load also holds one lock per root it walks (two loads of the same folder queue; a folder
inside another's root is not held back: rows are written per batch, by path) and one lock for its
run, by which the next load tells a run that is still going from a killed one.

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
"""The advisory lock key of loads (shared) and matching (exclusive; the SQL functions of matching take it too)."""

ROOT_LOCK_CLASS = 7_220_004
"""Class of the per-root locks (the object is a hash of the root's path)."""

RUN_LOCK_CLASS = 7_220_005
"""Class of the per-run locks (the object is the load run's id)."""

VERIFY_LOCK_KEY = 7_220_009
"""The advisory lock key of the geometric verification (one run at a time per database)."""

DEFAULT_LOCK_WAIT = 30.0
"""Seconds a load, a match or a verification waits for its lock before giving up with the holder's name."""

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


def _lock_id(key: int | tuple[int, int]) -> dict[str, int]:
    """pg_locks' (classid, objid, objsubid) of a bigint key or of a pair of int4 keys."""
    if isinstance(key, tuple):
        return {"classid": key[0] & 0xFFFFFFFF, "objid": key[1] & 0xFFFFFFFF, "objsubid": 2}
    return {"classid": (key >> 32) & 0xFFFFFFFF, "objid": key & 0xFFFFFFFF, "objsubid": 1}


def lock_holders(conn: psycopg.Connection, key: int | tuple[int, int] = LOAD_LOCK_KEY) -> list[LockHolder]:
    """The other sessions that hold advisory lock ``key`` (a bigint, or a pair of int4) in this database."""
    q = _queries()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q["holders"], _lock_id(key)).fetchall()
        holders = []
        for row in rows:
            run = None
            if (row["application"] or "").startswith("dbdedup load"):
                found = cur.execute(q["running_load"], {"run_class": RUN_LOCK_CLASS, "pid": row["pid"]}).fetchone()
                run = (found["id"], found["started_at"]) if found else None
            holders.append(LockHolder(pid=row["pid"], role=row["role"], application=row["application"],
                                      client=row["client"], backend_start=row["backend_start"],
                                      xact_start=row["xact_start"], state=row["state"],
                                      state_change=row["state_change"], load_run=run))
    return holders


def _busy_error(purpose: str, holders: list[LockHolder], waited: float, what: str = "the load lock") -> DbdedupError:
    waited_text = f"waited {waited:.0f} s" if waited >= 1 else "did not wait"
    if not holders:
        return DbdedupError(f"cannot {purpose}: {what} is busy ({waited_text})",
                            hint="another dbdedup command (a load, match or verify) is running on this database; "
                                 "try again when it ends, or wait longer with --lock-wait SECONDS")
    holder = holders[0]
    others = f" and {len(holders) - 1} more session(s)" if len(holders) > 1 else ""
    message = f"cannot {purpose}: {what} is held by {holder.describe()}{others} ({waited_text})"
    if holder.is_dbdedup:
        what = holder.application.removeprefix("dbdedup").strip() or "command"  # type: ignore[union-attr]
        hint = (f"another dbdedup {what} is running on this database: let it finish (--lock-wait SECONDS waits "
                f"longer) or stop it; a killed one's lock goes with its database session, once the query it was "
                f"running ends")
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
    shared: bool = False,
) -> Iterator[None]:
    """Hold the load lock on ``conn`` for the block; give up after ``wait`` seconds with a DbdedupError
    naming the holder. ``purpose`` completes "cannot ..." in that message ("start the load").
    ``shared``: a load's mode (loads run together; a match waits for all of them).

    ``name`` becomes the session's application_name meanwhile ("dbdedup load"), so that a command
    waiting for this one can say what holds the lock. ``on_wait(description)`` is called once
    if the lock is busy at first (the CLI prints it). Commits any open transaction first: a
    transaction left open while waiting could hold table locks the holder needs.
    """
    wait = DEFAULT_LOCK_WAIT if wait is None else max(0.0, float(wait))
    q = _queries()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()

    def tell(holder: str) -> None:
        if on_wait is not None:
            on_wait(f"waiting up to {wait:.0f} s for the load lock, held by {holder}")

    if shared:
        wait_for_lock(conn, LOAD_LOCK_KEY, purpose, what="the load lock", wait=wait, on_wait=tell, shared=True)
    else:
        started = time.monotonic()
        with conn.transaction():
            got = conn.execute(q["try_lock"], {"key": LOAD_LOCK_KEY}).fetchone()[0]
            holders = [] if got else lock_holders(conn)
        if not got:
            waited = time.monotonic() - started
            if waited >= wait:
                raise _busy_error(purpose, holders, waited)
            if holders:
                tell(holders[0].describe())
            # queue for it: loads that ask after this session wait behind it
            if not _wait_in_queue(conn, wait - waited):
                raise _busy_error(purpose, lock_holders(conn), time.monotonic() - started)
    previous = None
    try:
        previous = set_application_name(conn, name)
        yield
    finally:
        release(conn, previous, shared=shared)


def _wait_in_queue(conn: psycopg.Connection, seconds: float) -> bool:
    """Wait for the load lock (exclusive) in PostgreSQL's queue for at most ``seconds``; True once held."""
    q = _queries()
    try:
        with conn.transaction():
            conn.execute(q["set_lock_timeout"], {"timeout": f"{max(1, int(seconds * 1000))}ms"})
            conn.execute(q["lock"], {"key": LOAD_LOCK_KEY})
        return True
    except psycopg.errors.LockNotAvailable:
        return False


@contextmanager
def root_locks(
    conn: psycopg.Connection,
    roots: list[str],
    *,
    wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold one lock per root (display paths) for the block: a second load of the same root waits up
    to ``wait`` seconds, then gives up with a DbdedupError naming the load that holds it.

    Taken in a fixed order, so two loads with common roots cannot wait for each other in a circle.
    """
    wait = DEFAULT_LOCK_WAIT if wait is None else max(0.0, float(wait))
    q = _queries()
    with conn.transaction():
        keys = sorted({(conn.execute(q["root_key"], {"root": root}).fetchone()[0], root) for root in roots})
    held: list[int] = []
    started = time.monotonic()
    try:
        for key, root in keys:
            def tell(holder: str, root: str = root) -> None:
                if on_wait is not None:
                    on_wait(f"waiting up to {wait:.0f} s for {root}: another load of it is running ({holder})")

            wait_for_lock(conn, (ROOT_LOCK_CLASS, key), f"load {root}", what="its folder", wait=wait,
                          started=started, on_wait=tell)
            held.append(key)
        yield
    finally:
        _unlock_pairs(conn, ROOT_LOCK_CLASS, held)


def wait_for_lock(
    conn: psycopg.Connection,
    key: int | tuple[int, int],
    purpose: str,
    *,
    what: str,
    wait: float | None = None,
    started: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    shared: bool = False,
) -> None:
    """Take the session-level advisory lock ``key`` (a bigint, or a (class, object) pair of int4;
    a bigint one in shared mode with ``shared``), polling until ``wait`` seconds have passed since
    ``started`` (default: now); then a DbdedupError "cannot ``purpose``: ``what`` is held by ..."
    names the holder.

    Polling, not failing at the first try: a killed command's session keeps its locks until its
    backend notices the client is gone, which takes until the query it was running ends.
    ``on_wait(holder's description)`` is called once if the lock is busy at first.
    """
    wait = DEFAULT_LOCK_WAIT if wait is None else max(0.0, float(wait))
    started = time.monotonic() if started is None else started
    q = _queries()
    if isinstance(key, tuple):
        query, params = q["try_lock_pair"], {"classid": key[0], "objid": key[1]}
    else:
        query, params = q["try_lock_shared" if shared else "try_lock"], {"key": key}
    pause = _POLL_FIRST
    told = False
    while True:
        with conn.transaction():
            got = conn.execute(query, params).fetchone()[0]
            holders = [] if got else lock_holders(conn, key)
        if got:
            return
        waited = time.monotonic() - started
        if waited >= wait:
            raise _busy_error(purpose, holders, waited, what=what)
        if not told and on_wait is not None and holders:
            on_wait(holders[0].describe())
            told = True
        time.sleep(min(pause, max(0.0, wait - waited)))
        pause = min(pause * 2, _POLL_MAX)


def set_application_name(conn: psycopg.Connection, name: str) -> str:
    """Name the session ``name`` (so that a command waiting for one of its locks can say what holds
    it) and return the name it had."""
    q = _queries()
    with conn.transaction():
        previous = conn.execute(q["application_name"]).fetchone()[0]
        conn.execute(q["set_application_name"], {"name": name})
    return previous


def hold_run(conn: psycopg.Connection, run_id: int) -> None:
    """Take the lock of load run ``run_id`` for this session (inside the transaction that starts the
    run, so that no other load sees the run without its lock): while the session lives, the run is
    not taken for a killed one (``live_runs``)."""
    conn.execute(_queries()["try_lock_pair"], {"classid": RUN_LOCK_CLASS, "objid": run_id & 0x7FFFFFFF})


def release_run(conn: psycopg.Connection, run_id: int) -> None:
    """Release the lock of load run ``run_id`` (silent when the session is gone)."""
    _unlock_pairs(conn, RUN_LOCK_CLASS, [run_id & 0x7FFFFFFF])


def live_runs(conn: psycopg.Connection) -> list[int]:
    """The ids of the load runs whose loader session is still connected (it holds the run's lock)."""
    return [row[0] for row in conn.execute(_queries()["live_runs"], {"run_class": RUN_LOCK_CLASS})]


def _unlock_pairs(conn: psycopg.Connection, classid: int, objids: list[int]) -> None:
    q = _queries()
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            for objid in objids:
                conn.execute(q["unlock_pair"], {"classid": classid, "objid": objid})
    except psycopg.Error:
        pass  # the session is gone, and its locks with it


def release(conn: psycopg.Connection, application_name: str | None = None, *, shared: bool = False,
            key: int = LOAD_LOCK_KEY) -> None:
    """Release the session-level advisory lock ``key`` (default: the load lock) and give the session
    back ``application_name`` (when given); silent when the connection is gone."""
    q = _queries()
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            conn.execute(q["unlock_shared" if shared else "unlock"], {"key": key})
            if application_name is not None:
                conn.execute(q["set_application_name"], {"name": application_name})
    except psycopg.Error:
        pass  # the session is gone, and its locks with it
