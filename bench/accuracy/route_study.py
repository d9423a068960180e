"""Where the check by pixels spends its time, route by route, and which copies each route verifies.

Reads the database a `cli_score.py` run left (bench/out/accuracy/cli-pgdata) and replays, through one
``verify_workers.PairChecker`` a process (OpenCV on one thread, as in the workers), every pair whose stored reason
only the workers give (all but unchecked, colour, signature and exact, which the SQL step gives too; ``--sample``
for a seeded part of them). Each route of the checker is timed apart (its own time, the files it reads counted as
``read``): reading files, finding keypoints, aligning them and comparing the overlap, ECC from the identity and
from the rings' turn, the window, the frame, the tone fit, the overlay, the re-encoding, the greyscale conversion,
the trimmed comparison. It prints, per kind of pair (found through a keeper: ``linked``; by a signal: ``plain``;
through a variant: ``other``) and outcome (copies or look-alikes by the set's truth, verified or refused), the
seconds each route took, and the pairs each route verified (the last route that verified before the verdict).
It checks that every replayed verdict equals the stored one.

A replay finds each image's keypoints again in each process (a report keeps them in a shared store), so their
share is above a report's. Session 36 used it to weigh cheaper routes (bench/RESULTS.md).

Usage:
    .venv/bin/python bench/accuracy/route_study.py [--set bench/out/accuracy] [--sample 5000]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from dbdedup import verify, verify_workers
from dbdedup.resample import limit_blas_threads
from score import SET_DIR
from structure_study import last_run_rows, same_picture, worker_pairs_query

ROUTES = ("read", "read_at", "keypoints", "align", "overlap", "ecc_identity", "ecc_turned", "window", "framed",
          "tone", "overlay", "reencoded", "converted", "trimmed", "redrawn", "turn_check")
# the routes whose result can be a verified verdict (the others read, find or compare for them)
VERIFYING = {"overlap", "ecc_identity", "ecc_turned", "window", "framed", "tone", "overlay", "reencoded",
             "converted", "trimmed"}
WORKER_VERDICTS = "p.verified IS NOT NULL AND p.verify_reason NOT IN ('unchecked', 'colour', 'signature', 'exact')"

_stack: list[list] = []  # [route, started, seconds of the routes called inside]
_log: list[tuple[str, float, bool | None]] = []  # (route, its own seconds, whether it verified / aligned)


def _timed(owner, name: str, route: str | None = None, route_of=None) -> None:
    """Replace ``owner.name`` by a wrapper that logs its own time (less the timed routes it calls) and result."""
    function = getattr(owner, name)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        _stack.append([route_of(kwargs) if route_of else route, time.perf_counter(), 0.0])
        result = None
        try:
            result = function(*args, **kwargs)
            return result
        finally:
            this, started, inner = _stack.pop()
            seconds = time.perf_counter() - started
            if _stack:
                _stack[-1][2] += seconds
            passed = getattr(result, "verified", None)
            if passed is None and isinstance(result, (verify.DenseMatch, verify.GeometricMatch)):
                passed = result.colour is not None  # (aligned and compared: its verdict follows)
            _log.append((this, seconds - inner, passed))

    setattr(owner, name, wrapper)


def _install() -> None:
    checker = verify_workers.PairChecker
    for name, route in (("_read", "read"), ("_pixels_at", "read_at"), ("_keypoints", "keypoints"),
                        ("_tone_verdict", "tone"), ("_unless_overlay", "overlay"), ("_unless_reencoded", "reencoded")):
        _timed(checker, name, route)
    for name, route in (("align_keypoints", "align"), ("compare_overlap", "overlap"), ("window_match", "window"),
                        ("converted_verdict", "converted"), ("turn_against_hash", "turn_check")):
        _timed(verify, name, route)
    _timed(verify, "dense_match", route_of=lambda kwargs: "ecc_turned" if kwargs.get("turned") else "ecc_identity")
    for name, route in (("framed_verdict", "framed"), ("trimmed_verdict", "trimmed"), ("unless_redrawn", "redrawn")):
        _timed(verify_workers, name, route)


def replay(rows: list[tuple]) -> list[tuple[bool, str, float, list]]:
    """(verified, reason, seconds, route log) of each stored pair row, as one worker would give them in this order."""
    import cv2

    cv2.setNumThreads(1)
    limit_blas_threads()
    _install()
    checker = verify_workers.PairChecker()
    out = []
    for row in rows:
        _log.clear()
        started = time.perf_counter()
        verdict = checker.verdict(verify_workers.PendingPair.from_row(row[2:]))
        out.append((bool(verdict.verified), verdict.reason, time.perf_counter() - started, list(_log)))
    return out


def kind_of(pair: verify_workers.PendingPair) -> str:
    if pair.transform == verify_workers.LINKED:
        return "linked"
    return "plain" if pair.transform is None else "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--sample", type=int, default=None, help="replay this many of the pairs (seeded)")
    args = parser.parse_args(argv)
    found = last_run_rows(args.set_dir, worker_pairs_query(WORKER_VERDICTS, verdict=True))
    if found is None:
        return 2
    truth, rows = found
    random.Random(7).shuffle(rows)  # (each process gets a fair share of every kind)
    rows = rows[:args.sample] if args.sample else rows
    workers = os.cpu_count() or 1
    parts = [rows[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        replayed = list(pool.map(replay, parts))
    seconds: dict[tuple[str, str], Counter] = defaultdict(Counter)
    verified_by: Counter = Counter()
    differ = 0
    for part, results in zip(parts, replayed):
        for row, (passed, reason, total, log) in zip(part, results):
            pair = verify_workers.PendingPair.from_row(row[2:])
            differ += (passed, reason) != (bool(row[0]), row[1])
            same = same_picture(truth, os.path.basename(pair.a.path.decode()), os.path.basename(pair.b.path.decode()))
            outcome = ("copies" if same else "look-alikes") + (" verified" if passed else " refused")
            group = seconds[(kind_of(pair), outcome)]
            group["pairs"] += 1
            group["total"] += total
            for route, own, _ in log:
                group[route] += own
            if passed:
                last = [route for route, _, ok in log if route in VERIFYING and ok]
                verified_by[(kind_of(pair), "copy" if same else "look-alike", last[-1] if last else reason)] += 1
    print(f"{len(rows):,} pairs replayed in {workers} processes ({sum(len(r) for r in replayed):,}); "
          f"{differ} verdicts differ from the stored ones")
    print("| pairs | outcome | count | seconds | " + " | ".join(ROUTES) + " |")
    print("| --- " * (4 + len(ROUTES)) + "|")
    for (kind, outcome), group in sorted(seconds.items()):
        print(f"| {kind} | {outcome} | {group['pairs']:,} | {group['total']:.0f} | "
              + " | ".join(f"{group[route]:.0f}" for route in ROUTES) + " |")
    print("\nverified by (pairs, truth, the last route that verified):")
    for (kind, label, route), count in sorted(verified_by.items()):
        print(f"  {kind} {label} {route}: {count:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
