"""Worker processes of the loader and of the geometric verification: how they are started, tied
to their parent, and stopped.

Both fork a process pool that reads files for a parent holding a database session. A worker must
never outlive its parent (it would keep the parent's database socket open, so the server would
not see the session, or its locks, go), must not hold that socket, and leaves Ctrl-C to the
parent, which records what was done.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Callable, Sequence

PARENT_CHECK_SECONDS = 1.0  # how often a worker checks that its parent is still alive
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> None:
    """Make this worker die with its parent, however the parent dies (kill -9 included).

    Linux's parent-death signal kills the worker at once; a thread checking the parent covers
    the rest (another system, or the parent gone before the prctl call).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="dbdedup-parent-check", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


def start_worker(parent_pid: int | None, inherited_fds: Sequence[int] = ()) -> None:
    """What every worker does first: die with ``parent_pid``, close the parent's database socket
    (``inherited_fds``, copied by fork: only the parent may hold it, so that the server sees the
    session end the moment the parent dies), and leave Ctrl-C to the parent."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    for fd in inherited_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pool_context():
    """The multiprocessing context of the pools."""
    # fork: workers start in milliseconds with everything imported, and callers' scripts need no
    # `if __name__ == "__main__"` guard (forkserver and spawn re-import the main module). The
    # workers only read files: they touch no lock, connection or thread inherited from the parent.
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def abandon(pool: cf.ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what has not started and terminate the workers."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except Exception:
            pass


def shut_down_broken(pool: cf.ProcessPoolExecutor) -> None:
    """Stop what is left of a broken pool (a worker died) and reap its processes."""
    abandon(pool)
    pool.shutdown(wait=True)


class CrashTolerantPool:
    """Chunks of files run through a process pool that one crashing file cannot stop.

    ``new_pool(n)`` makes a pool of n workers; ``task(chunk)`` (picklable: a module-level
    function or a ``functools.partial`` of one) runs in a worker and returns a result that
    ``take(result)`` consumes in the parent; ``after()`` runs after each collection (writing
    what is due, progress). When a worker dies (a decoder crash, the OOM killer) it takes every
    chunk in flight with it: what finished is kept, the lost items run one per task in a
    one-worker pool, and an item that kills its worker again gets ``crashed(item)``, a result
    in ``task``'s shape. At most ``per_worker`` chunks a worker are in flight.
    """

    def __init__(self, new_pool: Callable[[int], cf.ProcessPoolExecutor], workers: int, task: Callable,
                 take: Callable[[object], None], crashed: Callable[[object], object],
                 after: Callable[[], None], per_worker: int):
        self.new_pool, self.workers, self.task = new_pool, workers, task
        self.take, self.crashed, self.after = take, crashed, after
        self.max_in_flight = workers * per_worker
        self.in_flight: dict[cf.Future, list] = {}
        self.pool = new_pool(workers)

    def submit(self, chunk: list) -> None:
        """Run ``chunk`` (collecting first while too many chunks are in flight)."""
        while len(self.in_flight) >= self.max_in_flight:
            self.collect(block=True)
        try:
            future = self.pool.submit(self.task, chunk)
        except cf.process.BrokenProcessPool as exc:
            # the pool broke since the last collection: the chunk is lost like those in flight
            future = cf.Future()
            future.set_exception(exc)
        self.in_flight[future] = chunk

    def collect(self, block: bool) -> None:
        """Take the chunks that finished (waiting for one when ``block``)."""
        if not self.in_flight:
            return
        done, _ = cf.wait(self.in_flight, timeout=None if block else 0, return_when=cf.FIRST_COMPLETED)
        lost: list = []
        for future in done:
            self._take(future, lost)
        if lost:
            for future in cf.as_completed(list(self.in_flight)):
                self._take(future, lost)
            shut_down_broken(self.pool)
            self._one_by_one(lost)
            self.pool = self.new_pool(self.workers)
        self.after()

    def finish(self) -> None:
        """Wait for every chunk in flight and stop the pool."""
        self.drain()
        self.pool.shutdown(wait=True)

    def drain(self) -> cf.ProcessPoolExecutor:
        """Wait for every chunk in flight and return the pool, still running (for another run)."""
        while self.in_flight:
            self.collect(block=True)
        return self.pool

    def abandon(self) -> None:
        """Stop now (an error or Ctrl-C in the parent)."""
        abandon(self.pool)

    def _take(self, future: cf.Future, lost: list) -> None:
        chunk = self.in_flight.pop(future)
        try:
            result = future.result()
        except cf.process.BrokenProcessPool:
            lost.extend(chunk)
            return
        self.take(result)

    def _one_by_one(self, items: list) -> None:
        pool = None
        try:
            for item in items:
                if pool is None:
                    pool = self.new_pool(1)
                try:
                    result = pool.submit(self.task, [item]).result()
                except cf.process.BrokenProcessPool:
                    shut_down_broken(pool)
                    pool = None
                    result = self.crashed(item)
                self.take(result)
                self.after()
        except BaseException:
            if pool is not None:
                abandon(pool)
            raise
        if pool is not None:
            pool.shutdown(wait=True)
