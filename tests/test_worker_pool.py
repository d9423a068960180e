"""The worker pool under the loader and the verification: a worker that dies, however it dies, costs
only the calls it held, and never blocks the parent."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dbdedup.worker_pool import DONE, LOST_RUNNING, CrashTolerantPool, WorkerPool

RESULT_BYTES = 64 << 20  # far more than a pipe holds: the worker blocks half-way through sending it


def _no_setup() -> None:
    pass


def _pid_and_big_result(marker: str) -> tuple[int, bytes]:
    Path(marker).write_text(str(os.getpid()))
    return os.getpid(), b"x" * RESULT_BYTES


def _square(n: int) -> int:
    return n * n


def _fail(message: str) -> None:
    raise ValueError(message)


def _square_unless_doomed(chunk: list[int]) -> list[int]:
    if 13 in chunk:
        os.kill(os.getpid(), signal.SIGKILL)  # as a decoder crash or the OOM killer would
    return [n * n for n in chunk]


def _outcomes_until(pool: WorkerPool, count: int) -> dict[int, tuple[str, object]]:
    ended: dict[int, tuple[str, object]] = {}
    while len(ended) < count:
        ended.update((token, (outcome, result)) for token, outcome, result in pool.outcomes(block=True))
    return ended


@pytest.mark.timeout(120)
def test_a_worker_killed_while_sending_a_large_result_loses_only_its_calls(tmp_path):
    # The executor this replaced shared one result pipe among its workers: half a message stayed in it
    # and the parent waited for the rest for ever (a CI run hung in the loader's kill test).
    pool = WorkerPool(2, _no_setup)
    try:
        marker = tmp_path / "sending"
        doomed = pool.submit(_pid_and_big_result, str(marker))
        with pool.lock:  # the collecting thread reads nothing meanwhile: the result stays half-sent
            deadline = time.monotonic() + 60
            while not marker.exists() or not marker.read_text():
                assert time.monotonic() < deadline, "the call never started"
                time.sleep(0.01)
            pid = int(marker.read_text())
            victim = next(w for w in pool.workers if w.process.pid == pid)
            deadline = time.monotonic() + 60
            while not victim.results.poll(0):  # part of the result is in the pipe: the worker is sending
                assert time.monotonic() < deadline, "the worker never started sending"
                time.sleep(0.01)
            time.sleep(0.2)
            os.kill(pid, signal.SIGKILL)
            victim.process.join(30)
        assert _outcomes_until(pool, 1) == {doomed: (LOST_RUNNING, None)}
        # the other worker and a replacement for the dead one run what comes next
        tokens = [pool.submit(_square, n) for n in range(6)]
        assert _outcomes_until(pool, 6) == {t: (DONE, n * n) for n, t in enumerate(tokens)}
        assert len(pool.workers) == 2 and all(w.process.pid != pid for w in pool.workers)
    finally:
        pool.terminate()
    assert pool.workers == []


@pytest.mark.timeout(120)
def test_terminate_returns_while_a_stopped_worker_holds_half_a_result(tmp_path):
    # a worker frozen (SIGSTOP) half-way through sending its result: the collecting thread waits for the rest
    # inside the pool's lock; terminate kills the workers first, so it still returns at once (Ctrl-C works)
    import threading

    pool = WorkerPool(1, _no_setup)
    marker = tmp_path / "sending"
    pool.submit(_pid_and_big_result, str(marker))
    with pool.lock:  # nothing is read until the worker is frozen with its pipe full
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline, "the call never started"
            time.sleep(0.01)
        victim = pool.workers[0]
        while not victim.results.poll(0):
            assert time.monotonic() < deadline, "the worker never started sending"
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(victim.process.pid, signal.SIGSTOP)
    time.sleep(0.5)  # the thread reads what the pipe held and waits for more, holding the lock
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(20)
    try:
        assert not stopper.is_alive(), "terminate waited for a frozen worker"
        assert pool.workers == [] and not victim.process.is_alive()
    finally:
        if victim.process.is_alive():
            os.kill(victim.process.pid, signal.SIGKILL)


def test_a_call_that_raises_raises_in_the_parent_with_the_workers_traceback():
    pool = WorkerPool(1, _no_setup)
    try:
        pool.submit(_fail, "no such colour")
        with pytest.raises(ValueError, match="no such colour") as caught:
            pool.outcomes(block=True)
        assert "_fail" in str(caught.value.__cause__)
    finally:
        pool.terminate()


def test_a_worker_dying_on_a_chunk_costs_one_item_and_the_other_chunks_run_as_they_were():
    taken: list[list[int]] = []
    crashed: list[int] = []

    def on_crash(item: int) -> list[int]:
        crashed.append(item)
        return [-item]

    runner = CrashTolerantPool(lambda n: WorkerPool(n, _no_setup), 2, _square_unless_doomed, taken.append,
                               on_crash, lambda: None, per_worker=3)
    chunks = [list(range(start, start + 5)) for start in range(0, 40, 5)]
    for chunk in chunks:
        runner.submit(chunk)
    runner.finish()
    assert crashed == [13]
    got = sorted(n for result in taken for n in result)
    assert got == sorted([-13] + [n * n for n in range(40) if n != 13])
    # the chunk holding 13 ran again one item per call; every other chunk came back whole
    whole = [result for result in taken if len(result) == 5]
    assert len(whole) == len(chunks) - 1
    assert runner.pool.workers == []
