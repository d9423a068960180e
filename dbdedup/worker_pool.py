"""Worker processes of the loader and of the geometric verification: how they are started, tied
to their parent, and stopped.

Both fork a process pool that reads files for a parent holding a database session. A worker must
never outlive its parent (it would keep the parent's database socket open, so the server would
not see the session, or its locks, go), must not hold that socket, and leaves Ctrl-C to the
parent, which records what was done.
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from multiprocessing import connection as mp_connection
from typing import Callable, Sequence


def default_workers() -> int:
    """All cores this process may use: the pools' size unless asked otherwise."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def most_workers() -> int:
    """The most processes a pool may be asked for: four a core (files on a slow disk or a network share keep a
    few more than one a core waiting), at least 32. Each holds an image or two in memory and takes a moment to
    start: `--workers 500` on two cores started 500 processes for five files (19 s)."""
    return max(32, 4 * default_workers())


PARENT_CHECK_SECONDS = 1.0  # how often a worker checks that its parent is still alive
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
PIPE_BYTES = 1 << 20  # a task pipe's size (Linux's default limit for an unprivileged process)

# how a call sent to a worker ended: WorkerPool.outcomes
DONE, LOST_RUNNING, LOST_QUEUED = "done", "lost running", "lost queued"


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


class WorkerPool:
    """Worker processes, each with a pipe of its own for tasks and one for results.

    Not ``concurrent.futures.ProcessPoolExecutor``: its workers share one result pipe, so a worker
    killed while writing a large result (the OOM killer, a user's ``kill -9``) leaves half a message
    there, and the executor's thread blocks for ever reading the rest (a load hung; the interpreter
    could not even exit, as it joins that thread). Here only the worker holds the writing end of its
    result pipe, so its death ends the half message with end-of-file, and only its own tasks are lost.

    ``submit(fn, arg)`` queues a call and returns its token; ``outcomes(block)`` returns what ended,
    as ``(token, DONE, result)``, or ``(token, LOST_RUNNING, None)`` when the worker died on it, or
    ``(token, LOST_QUEUED, None)`` when the worker died before it started. A task's exception is
    raised in the parent. A dead worker is replaced when there is work for it.

    A thread of the parent collects results and sends each worker its next call the moment it has sent
    one back, from one queue for all (so no worker waits behind another's long call, nor while the
    parent writes to the database). Workers are started by the caller's thread only (in ``submit`` and
    ``outcomes``): never forked from the collecting thread.
    """

    def __init__(self, workers: int, initializer: Callable, initargs: tuple = ()):
        self.size = max(1, workers)
        self.initializer, self.initargs = initializer, initargs
        self.context = pool_context()
        self.workers: list[_Worker] = []
        self.queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self.next_token = 0
        self.ended: list[tuple[int, str, object]] = []
        self.failure: BaseException | None = None  # a call's exception (or the thread's), raised by outcomes
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.wake_reader, self.wake_writer = self.context.Pipe(duplex=False)
        self.thread: threading.Thread | None = None
        self.stopping = False
        # (the workers start with the first call: a load with nothing new to hash forks none)

    def submit(self, fn: Callable, arg) -> int:
        """Queue ``fn(arg)`` (picklable) and return its token."""
        payload = pickle.dumps((self.next_token, fn, arg), protocol=pickle.HIGHEST_PROTOCOL)
        with self.lock:
            token = self.next_token
            self.next_token += 1
            self.queue.append((token, payload))
            self._fill()
            self._dispatch()
        return token

    def outcomes(self, block: bool) -> list[tuple[int, str, object]]:
        """The calls that ended since the last call (waiting for one when ``block`` and none has)."""
        with self.changed:
            while True:
                self._fill()  # (replaces a worker that died: forked here, not in the collecting thread)
                self._dispatch()
                if self.failure is not None:
                    failure, self.failure = self.failure, None
                    raise failure
                if self.ended or not block or not (self.queue or any(w.sent for w in self.workers)):
                    break
                self.changed.wait()
            ended, self.ended = self.ended, []
        return ended

    def shutdown(self) -> None:
        """Stop the workers once they have finished what they were sent (the queue is dropped)."""
        self._stop_thread()
        self.queue.clear()
        for worker in self.workers:
            try:
                worker.tasks.send_bytes(b"")
            except OSError:
                pass
        for worker in self.workers:
            worker.process.join()
            worker.close()
        self.workers = []

    def terminate(self) -> None:
        """Stop now: kill the workers and drop the queue."""
        # the workers first, and by SIGKILL (they hold nothing but files they read, and their SIGTERM has no
        # handler either): one stopped half-way through sending a result would otherwise hold the collecting
        # thread in its read, under the lock this needs
        for worker in list(self.workers):
            worker.process.kill()
        self._stop_thread()
        self.queue.clear()
        for worker in self.workers:
            worker.process.join()
            worker.close()
        self.workers = []

    # ------------------------------------------------------------ under self.lock

    def _fill(self) -> None:
        if not self.queue or self.stopping:
            return
        started = False
        while len(self.workers) < self.size:
            self.workers.append(_Worker(self.context, self.initializer, self.initargs))
            started = True
        if self.thread is None:
            self.thread = threading.Thread(target=self._collect, name="dbdedup-pool-results", daemon=True)
            self.thread.start()
        elif started:
            self._wake()  # the thread waits on the new worker too

    def _dispatch(self) -> None:
        for worker in self.workers:
            # one call running and one waiting in the pipe: the worker goes on the moment it is done; a
            # waiting call must fit the pipe, or the sender would block on it while the worker blocks on
            # its result
            while self.queue and worker.alive and (not worker.sent or (
                    len(worker.sent) < 2 and len(self.queue[0][1]) < worker.pipe_bytes)):
                token, payload = self.queue.popleft()
                try:
                    worker.tasks.send_bytes(payload)
                except OSError:  # it died: found by its sentinel, and the call runs elsewhere
                    self.queue.appendleft((token, payload))
                    break
                worker.sent.append(token)

    def _read(self, worker: "_Worker") -> None:
        try:
            token, ok, value = pickle.loads(worker.results.recv_bytes())
        except (EOFError, OSError):  # it died writing
            self._lose(worker)
            return
        worker.sent.remove(token)
        if ok:
            self.ended.append((token, DONE, value))
        else:
            exc, remote_traceback = value
            exc.__cause__ = RemoteTraceback(remote_traceback)
            self.failure = self.failure or exc

    def _lose(self, worker: "_Worker") -> None:
        worker.alive = False
        for position, token in enumerate(worker.sent):
            self.ended.append((token, LOST_RUNNING if position == 0 else LOST_QUEUED, None))
        worker.sent.clear()
        worker.process.join()
        worker.close()
        self.workers.remove(worker)

    def _wake(self) -> None:
        try:
            self.wake_writer.send_bytes(b"")
        except OSError:
            pass

    # ------------------------------------------------------------ the collecting thread

    def _collect(self) -> None:
        try:
            while True:
                with self.lock:
                    if self.stopping:
                        return
                    watched = list(self.workers)
                waitables = [self.wake_reader] + [w.results for w in watched] + [w.process.sentinel for w in watched]
                ready = set(mp_connection.wait(waitables))
                with self.changed:
                    if self.stopping:
                        return
                    if self.wake_reader in ready:
                        while self.wake_reader.poll(0):
                            self.wake_reader.recv_bytes()
                    for worker in watched:
                        if worker.alive and worker.results in ready:
                            self._read(worker)
                        if worker.alive and worker.process.sentinel in ready:
                            while worker.alive and worker.results.poll(0):
                                self._read(worker)  # the complete results it sent before dying
                            if worker.alive:
                                self._lose(worker)
                    self._dispatch()
                    self.changed.notify_all()
        except BaseException as exc:  # a bug here must not leave the caller waiting for ever
            with self.changed:
                self.failure = self.failure or exc
                self.stopping = True
                self.changed.notify_all()

    def _stop_thread(self) -> None:
        with self.lock:
            self.stopping = True
            thread, self.thread = self.thread, None
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.wake_reader.close()
        self.wake_writer.close()


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker."""

    def __str__(self) -> str:
        return self.args[0]


class _Worker:
    def __init__(self, context, initializer: Callable, initargs: tuple):
        task_reader, self.tasks = context.Pipe(duplex=False)
        self.results, result_writer = context.Pipe(duplex=False)
        self.pipe_bytes = _widen_pipe(self.tasks.fileno())
        self.process = context.Process(target=_worker_main, daemon=True, name="dbdedup-worker",
                                       args=(task_reader, result_writer, (self.tasks, self.results),
                                             initializer, initargs))
        self.process.start()
        # the parent keeps no copy of the worker's ends: its death must close its result pipe
        task_reader.close()
        result_writer.close()
        self.sent: collections.deque[int] = collections.deque()
        self.alive = True

    def close(self) -> None:
        self.tasks.close()
        self.results.close()


def _widen_pipe(fd: int) -> int:
    """Make a pipe hold a large task (Linux), and return what it holds."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
        return fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", 1032))
    except (ImportError, OSError):
        return 4096


def _worker_main(tasks, results, parents_ends, initializer: Callable, initargs: tuple) -> None:
    for conn in parents_ends:  # copied by fork
        conn.close()
    initializer(*initargs)
    while True:
        try:
            payload = tasks.recv_bytes()
        except EOFError:
            return
        if not payload:
            return
        token, fn, arg = pickle.loads(payload)
        try:
            message = pickle.dumps((token, True, fn(arg)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # returned to the parent, which raises it
            remote_traceback = "".join(traceback.format_exception(exc))
            try:
                message = pickle.dumps((token, False, (exc, remote_traceback)), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                message = pickle.dumps((token, False, (RuntimeError(str(exc)), remote_traceback)))
        results.send_bytes(message)


class CrashTolerantPool:
    """Chunks of items run through a ``WorkerPool`` that one crashing item cannot stop.

    ``new_pool(n)`` makes a pool of n workers; ``task(chunk)`` (picklable: a module-level
    function or a ``functools.partial`` of one) runs in a worker and returns a result that
    ``take(result)`` consumes in the parent; ``after()`` runs after each collection (writing
    what is due, progress). When a worker dies (a decoder crash, the OOM killer, ``kill -9``)
    the chunk it was running runs again one item per task, a chunk that was only waiting for
    it runs again as it was, and an item that kills its worker again gets ``crashed(item)``, a
    result in ``task``'s shape. The other workers go on. At most ``per_worker`` chunks a worker
    are in flight.
    """

    def __init__(self, new_pool: Callable[[int], WorkerPool], workers: int, task: Callable,
                 take: Callable[[object], None], crashed: Callable[[object], object],
                 after: Callable[[], None], per_worker: int):
        self.task, self.take, self.crashed, self.after = task, take, crashed, after
        self.max_in_flight = workers * per_worker
        self.in_flight: dict[int, tuple[list, bool]] = {}  # token: (chunk, run alone after a crash)
        self.pool = new_pool(workers)

    def submit(self, chunk: list) -> None:
        """Run ``chunk`` (collecting first while too many chunks are in flight)."""
        while len(self.in_flight) >= self.max_in_flight:
            self.collect(block=True)
        self._send(chunk, alone=False)

    def collect(self, block: bool) -> None:
        """Take the chunks that finished (waiting for one when ``block``)."""
        if not self.in_flight:
            return
        for token, outcome, result in self.pool.outcomes(block):
            chunk, alone = self.in_flight.pop(token)
            if outcome == DONE:
                self.take(result)
            elif outcome == LOST_QUEUED:
                self._send(chunk, alone)
            elif alone:
                self.take(self.crashed(chunk[0]))
            else:
                for item in chunk:
                    self._send([item], alone=True)
        self.after()

    def finish(self) -> None:
        """Wait for every chunk in flight and stop the pool."""
        self.drain()
        self.pool.shutdown()

    def drain(self) -> WorkerPool:
        """Wait for every chunk in flight and return the pool, still running (for another run)."""
        while self.in_flight:
            self.collect(block=True)
        return self.pool

    def abandon(self) -> None:
        """Stop now (an error or Ctrl-C in the parent)."""
        self.pool.terminate()

    def _send(self, chunk: list, alone: bool) -> None:
        self.in_flight[self.pool.submit(self.task, chunk)] = (chunk, alone)
