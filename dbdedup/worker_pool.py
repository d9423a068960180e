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
from typing import Sequence

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
