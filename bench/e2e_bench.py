"""End to end: dbdedup (load + report) beside czkawka, imagehash + numpy and imagededup, in one run.

    .venv/bin/python bench/e2e_bench.py                      # both sets, every tool, best of 3
    .venv/bin/python bench/e2e_bench.py --sets small --repeat 5 --tools dbdedup,hashes-only,czkawka
    .venv/bin/python bench/e2e_bench.py --mixed-limit 3000   # a sample of the mixed set
    .venv/bin/python bench/e2e_bench.py --sets small --tools dbdedup --against a458450 --repeat 4

Sets:
- ``small``: 10,000 JPEGs of 128x128 (``tests/images.photo``, deterministic), in one flat folder;
- ``mixed``: photos and clip-art of the accuracy set (``bench/accuracy/build_set.py`` builds it
  in bench/out/accuracy/images; JPEG, PNG, WebP; originals, edits and distractors), or an
  evenly spaced sample of it (``--mixed-limit``).

Each tool runs as its own process(es) and is timed on the wall clock, from start to exit:

- ``dbdedup`` (the defaults): ``dbdedup --data-dir D load DIR`` then ``dbdedup --data-dir D report``
  on an embedded server that is already initialised and running (as after a user's first command)
  with an empty, migrated ``dbdedup`` schema (dropped and migrated again before every run, untimed);
  the two commands' seconds are shown apart and summed.
- ``hashes-only``: the same with ``load --no-orientations --embedder none`` (report at its defaults).
- ``dbdedup@REV`` (with ``--against REV``): the defaults with the code of git revision REV (exported
  under bench/out by ``load_bench.export_revision``), in the same rounds: a before/after on a busy
  machine, where only runs close in time compare.
- ``czkawka``, ``imagehash`` (imagehash.phash in a process pool, then every pair within 8 by numpy
  ``bitwise_count``) and ``imagededup`` (PHash, its default threshold 10): through
  ``bench/accuracy/peers.py`` in the peers' virtualenv (bench/out/peers-venv; see
  bench/accuracy/peers-requirements.txt), the whole process timed (interpreter start and imports
  included, as for dbdedup).

Every tool runs with Python's bytecode cache on (``tool_environment``), as an installed package does.

Tools run in a rotating order in each round, so a burst of load from elsewhere on a shared machine
does not always hit the same tool. Each tool's best run is compared, and every run is listed.
Ratios are peer seconds / dbdedup seconds (above 1: dbdedup is faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
E2E = OUT / "e2e"
PEERS_PYTHON = OUT / "peers-venv" / "bin" / "python"
PEERS_SCRIPT = HERE / "accuracy" / "peers.py"
ACCURACY_IMAGES = OUT / "accuracy" / "images"
sys.path.insert(0, str(HERE.parent / "tests"))

TOOLS = ("dbdedup", "hashes-only", "czkawka", "imagehash", "imagededup")
DBDEDUP_TOOLS = {"dbdedup": [], "hashes-only": ["--no-orientations", "--embedder", "none"]}


# ---------------------------------------------------------------- the sets


def _small(args: tuple[Path, int]) -> None:
    from images import photo

    folder, i = args
    path = folder / f"s{i:05d}.jpg"
    if not path.exists():
        photo(i, (128, 128)).save(path, "JPEG", quality=90)


def small_set(count: int, workers: int) -> Path:
    folder = E2E / f"small{count}"
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_small, [(folder, i) for i in range(count)], chunksize=200))
    return folder


def mixed_set(limit: int | None) -> Path | None:
    """The accuracy set's images, or an evenly spaced sample of them (hard links, no extra disk)."""
    if not ACCURACY_IMAGES.is_dir():
        return None
    files = sorted(p for p in ACCURACY_IMAGES.iterdir() if p.is_file())
    if not limit or limit >= len(files):
        return ACCURACY_IMAGES
    folder = E2E / f"mixed{limit}"
    chosen = [files[i * len(files) // limit] for i in range(limit)]
    if folder.is_dir() and sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in chosen):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in chosen:
        os.link(path, folder / path.name)
    return folder


# ---------------------------------------------------------------- running


def dbdedup_command() -> str:
    return str(Path(sys.executable).parent / "dbdedup")


def tool_environment() -> dict[str, str]:
    """The environment every tool runs in: Python's bytecode cache on.

    An installed package has its modules compiled (pip writes the .pyc files; the peers' virtualenv
    has them). An editable checkout run with PYTHONDONTWRITEBYTECODE set (as in some CI and sandbox
    shells) compiles every dbdedup module from source at each command instead: 0.15-0.2 s a command
    on this 2-core machine, which no user pays. The cache goes to bench/out/e2e/pycache, not into
    the source tree; the untimed ``migrate`` before each run fills it.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(E2E / "pycache")
    return env


def timed(command: list[str], *, log: Path, tree: Path | None = None) -> float:
    """Run ``command`` (stdout discarded, stderr to ``log``), with the dbdedup code of ``tree`` when given;
    return its wall seconds; exit on failure."""
    env = tool_environment()
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with open(log, "ab") as err:
        started = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}); see {log}")
    return seconds


def reset_schema(admin: str, data_dir: Path, log: Path, tree: Path | None = None) -> float:
    """An empty, migrated dbdedup schema on the running embedded server; returns the migration's seconds."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS dbdedup CASCADE")
        conn.execute("CHECKPOINT")
    return timed([dbdedup_command(), "--data-dir", str(data_dir), "migrate"], log=log, tree=tree)


def run_dbdedup(tool: str, folder: Path, admin: str, data_dir: Path, log: Path, tree: Path | None = None) -> dict:
    migrate = reset_schema(admin, data_dir, log, tree)
    base = [dbdedup_command(), "--data-dir", str(data_dir)]
    load = timed([*base, "load", *DBDEDUP_TOOLS.get(tool, []), str(folder)], log=log, tree=tree)
    report = timed([*base, "report"], log=log, tree=tree)
    with psycopg.connect(admin) as conn:
        images, clusters = conn.execute(
            "SELECT (SELECT count(*) FROM dbdedup.images WHERE status = 'ok'), "
            "(SELECT count(DISTINCT cluster_id) FROM dbdedup.cluster_assignments)").fetchone()
    return {"seconds": load + report, "load": load, "report": report, "migrate": migrate,
            "note": f"{images:,} images, {clusters:,} clusters"}


def run_peer(tool: str, folder: Path, workers: int, log: Path) -> dict:
    out = E2E / f"peer-{tool}.json"
    options = {"czkawka": ["--czkawka-levels", "10"], "imagehash": ["--thresholds", "8"],
               "imagededup": ["--thresholds", "10"]}[tool]
    seconds = timed([str(PEERS_PYTHON), str(PEERS_SCRIPT), tool, str(folder), str(out), *options,
                     "--workers", str(workers)], log=log)
    import json

    result = json.loads(out.read_text())
    run = result["runs"][0]
    out.unlink()
    return {"seconds": seconds, "note": f"{result['version']}, {len(run['edges']):,} pairs, "
                                        f"{run['seconds']:.1f} s inside the process"}


def describe(runs: list[float]) -> str:
    return ", ".join(f"{s:.1f}" for s in runs)


def bench_set(name: str, folder: Path, tools: list[str], repeat: int, admin: str, data_dir: Path,
              workers: int, trees: dict[str, Path] | None = None) -> None:
    count = sum(1 for p in folder.iterdir() if p.is_file())
    log = E2E / "stderr.log"
    print(f"\n## {name}: {count:,} files in {folder}", flush=True)
    results: dict[str, list[dict]] = {tool: [] for tool in tools}
    for round_number in range(repeat):
        order = tools[round_number % len(tools):] + tools[:round_number % len(tools)]
        for tool in order:
            load_before = os.getloadavg()[0]
            if tool in DBDEDUP_TOOLS or tool in (trees or {}):
                result = run_dbdedup(tool, folder, admin, data_dir, log, (trees or {}).get(tool))
            else:
                result = run_peer(tool, folder, workers, log)
            result["load_average"] = (load_before, os.getloadavg()[0])
            results[tool].append(result)
            extra = (f" (load {result['load']:.1f} + report {result['report']:.1f}; migrate {result['migrate']:.1f} "
                     "untimed)" if "load" in result else "")
            print(f"#   round {round_number + 1}: {tool:<12} {result['seconds']:6.1f} s{extra}; {result['note']}; "
                  f"load average {result['load_average'][0]:.1f} -> {result['load_average'][1]:.1f}",
                  file=sys.stderr, flush=True)
    ours = min(r["seconds"] for r in results["dbdedup"]) if results.get("dbdedup") else None
    print(f"| tool | best seconds | every run | dbdedup defaults faster by |")
    print("| --- | --- | --- | --- |")
    for tool in tools:
        runs = results[tool]
        best = min(runs, key=lambda r: r["seconds"])
        shown = f"{best['seconds']:.1f}"
        if "load" in best:
            shown += f" (load {best['load']:.1f} + report {best['report']:.1f})"
        ratio = f"{best['seconds'] / ours:.2f}x" if ours and tool != "dbdedup" else ""
        print(f"| {tool} | {shown} | {describe([r['seconds'] for r in runs])} | {ratio} |", flush=True)
    averages = [a for runs in results.values() for r in runs for a in r["load_average"]]
    print(f"load average during the runs: {min(averages):.1f} to {max(averages):.1f} "
          f"({os.cpu_count()} cores)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="small,mixed", help="comma-separated: small, mixed")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of: {', '.join(TOOLS)}")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small-count", type=int, default=10_000)
    parser.add_argument("--mixed-limit", type=int, default=None, help="an evenly spaced sample of the mixed set")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="the peers' process pools (dbdedup uses its default: every core)")
    parser.add_argument("--data-dir", type=Path, default=E2E / "pgdata")
    parser.add_argument("--against", metavar="REV", default=None,
                        help="also run the defaults with the code of this git revision (tool dbdedup@REV)")
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",")]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        parser.error(f"unknown tools {unknown}; use {', '.join(TOOLS)}")
    peers = [t for t in tools if t not in DBDEDUP_TOOLS]  # (checked before dbdedup@REV is added)
    if peers and not PEERS_PYTHON.exists():
        parser.error(f"the peers need {PEERS_PYTHON}: python3.11 -m venv bench/out/peers-venv && "
                     "bench/out/peers-venv/bin/pip install -r bench/accuracy/peers-requirements.txt")
    if "dbdedup" not in tools:
        tools.insert(0, "dbdedup")  # the reference of every ratio
    trees: dict[str, Path] = {}
    if args.against:
        sys.path.insert(0, str(HERE))
        from load_bench import export_revision

        trees[f"dbdedup@{args.against}"] = export_revision(args.against)
        tools.insert(tools.index("dbdedup") + 1, f"dbdedup@{args.against}")

    from dbdedup import __version__
    from dbdedup import db as dbmod

    E2E.mkdir(parents=True, exist_ok=True)
    admin = dbmod.start_embedded(args.data_dir)
    print(f"# e2e bench: dbdedup {__version__}, {os.cpu_count()} cores, peers' pools {args.workers} workers, "
          f"best of {args.repeat}; load average at start {os.getloadavg()[0]:.1f}")
    try:
        for name in args.sets.split(","):
            if name == "small":
                folder = small_set(args.small_count, args.workers)
            elif name == "mixed":
                folder = mixed_set(args.mixed_limit)
                if folder is None:
                    print(f"\n## mixed: skipped, {ACCURACY_IMAGES} is not built (bench/accuracy/build_set.py)")
                    continue
            else:
                parser.error(f"unknown set {name!r}")
            bench_set(name, folder, tools, args.repeat, admin, args.data_dir, args.workers, trees)
    finally:
        # (the server the runs started would otherwise outlive the bench, holding its memory)
        dbmod.stop_embedded(args.data_dir)


if __name__ == "__main__":
    main()
