"""Where a report's time goes: a fresh `dbdedup load` of a folder, then the report's work
(``clusters.ensure_clusters``, what `dbdedup report` runs) with each of its steps timed as it runs.

    .venv/bin/python bench/report_phases.py                          # the accuracy set (bench/out/accuracy/images)
    .venv/bin/python bench/report_phases.py --images DIR --data-dir D
    .venv/bin/python bench/report_phases.py --keep                   # the data dir as it is (no new load)
    .venv/bin/python bench/report_phases.py --against 75f6b02        # then the same with that revision's code

The steps are the library's own functions, wrapped for timing while the real ``ensure_clusters`` runs:
matching (``matching.find_pairs``, with its own split: hashes, variants, embeddings, the SQL verdicts,
the structure check), each check by pixels (``verify_workers.verify_pending_pairs``: pairs, files read,
verdicts) and each build of the clusters; "other" is the rest (the keeper rounds' proposals, SQL verdicts and
structure checks among it). The load is the command line's, in a subprocess. Prints one line
a step, then the totals, and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dbdedup import clusters, matching, verify_workers
from dbdedup.db import connect, stop_embedded

HERE = Path(__file__).resolve().parent
DBDEDUP = Path(sys.executable).parent / "dbdedup"


def timed(steps: list, name: str, function, describe):
    """``function`` wrapped: each call appends (name, seconds, describe(result)) to ``steps``."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        steps.append((name, time.perf_counter() - started, describe(result)))
        return result
    return wrapper


def describe_match(m) -> str:
    parts = [f"{m.pairs:,} pairs", f"hashes {m.seconds:.1f} s"]
    for label, signal in (("variants", m.transforms), ("embeddings", m.embeddings)):
        if signal is not None:
            parts.append(f"{label} {signal.seconds:.1f} s")
    if m.verification is not None:
        v = m.verification
        parts.append(f"SQL verdicts {v.seconds:.1f} s ({v.verified:,} verified, {v.rejected:,} rejected, "
                     f"{v.pending:,} pending)")
    if m.structure is not None:
        parts.append(f"structure check {m.structure.seconds:.1f} s ({m.structure.failed:,} failed)")
    return "; ".join(parts)


def tallied(totals: dict, name: str, function):
    """``function`` wrapped: each call adds 1 to totals[name + 's'] and its seconds to totals[name + '_seconds']."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name + "s"] += 1
            totals[name + "_seconds"] += time.perf_counter() - started
    return wrapper


def describe_plan(s, inner: dict) -> str:
    """One plan's checks (None: nothing needed), with the runs and graphs counted since the last plan."""
    what = "no check needed" if s is None else describe_check(s) + f", {s.unchecked:,} left unchecked"
    what += (f"; {inner['runs']} runs ({inner['run_seconds']:.1f} s), {inner['graphs']} graphs planned "
             f"({inner['graph_seconds']:.1f} s)")
    for key in inner:
        inner[key] = 0
    return what


def describe_check(s) -> str:
    return (f"{s.pending:,} pairs, {s.images_read:,} files read, {s.verified:,} verified, {s.rejected:,} rejected, "
            f"{s.workers} workers")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=HERE / "out" / "accuracy" / "images")
    parser.add_argument("--data-dir", type=Path, default=HERE / "out" / "report-phases" / "pgdata")
    parser.add_argument("--keep", action="store_true", help="use the data dir as it is: no new load")
    parser.add_argument("--against", metavar="REV", default=None,
                        help="then run again with the code of git revision REV (its own data dir)")
    args = parser.parse_args(argv)
    run(args)
    if args.against:
        sys.path.insert(0, str(HERE))
        from load_bench import export_revision

        tree = export_revision(args.against)
        print(f"\n## the same with the code of {args.against}", flush=True)
        command = [sys.executable, __file__, "--images", str(args.images),
                   "--data-dir", str(args.data_dir.parent / f"pgdata-{args.against}")] + (["--keep"] if args.keep else [])
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(tree)})


def run(args: argparse.Namespace) -> None:
    """One measurement: the load (unless ``args.keep``), then the report's steps."""
    import dbdedup

    print(f"# report phases: {args.images}, code {Path(dbdedup.__file__).parent}, {os.cpu_count()} cores; "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    if not args.keep:
        if args.data_dir.exists():
            stop_embedded(args.data_dir)
            shutil.rmtree(args.data_dir)
        args.data_dir.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run([str(DBDEDUP), "--data-dir", str(args.data_dir), "-q", "load", str(args.images)], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"load (command line): {time.perf_counter() - started:.1f} s", flush=True)
    steps: list = []
    clusters.find_pairs = timed(steps, "matching", matching.find_pairs, describe_match)
    clusters.build_clusters = timed(steps, "build clusters", clusters.build_clusters,
                                    lambda r: f"{r.clusters:,} clusters")
    if hasattr(clusters, "verify_needed_pairs"):
        # the checks by pixels are planned (verify_plan): one step per plan, its runs and graphs counted in it
        from dbdedup import verify_plan

        inner = {"runs": 0, "run_seconds": 0.0, "graphs": 0, "graph_seconds": 0.0}
        verify_workers.verify_pending_pairs = tallied(inner, "run", verify_workers.verify_pending_pairs)
        verify_plan._graph = tallied(inner, "graph", verify_plan._graph)
        clusters.verify_needed_pairs = timed(steps, "check by pixels (planned)", verify_plan.verify_needed_pairs,
                                             lambda s: describe_plan(s, inner))
    else:
        verify_workers.verify_pending_pairs = timed(steps, "check by pixels", verify_workers.verify_pending_pairs,
                                                    describe_check)
    try:
        with connect(None, args.data_dir) as conn:
            started = time.perf_counter()
            result = clusters.ensure_clusters(conn)
            total = time.perf_counter() - started
    finally:
        stop_embedded(args.data_dir)
    print("| step | seconds | what |\n| --- | --- | --- |")
    for name, seconds, what in steps:
        print(f"| {name} | {seconds:.1f} | {what} |")
    counted = sum(seconds for _, seconds, _ in steps)
    print(f"| other (the keeper pairs' proposals, SQL verdicts and structure checks; settings) | {total - counted:.1f} | |")
    print(f"report (ensure_clusters): {total:.1f} s, {result.clusters:,} clusters; "
          f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
