"""Load throughput and peak memory, end to end through `dbdedup load`, beside an imagehash process pool.

    .venv/bin/python bench/load_bench.py            # full: 10k small, 200 x 12 MP, flat-memory 2k/10k/40k
    .venv/bin/python bench/load_bench.py --repeat 3 # best and spread of 3 runs
    .venv/bin/python bench/load_bench.py --signals all --skip-flat   # the default load only
    .venv/bin/python bench/load_bench.py --index-upkeep 1000000      # what the lookup indexes cost the load
    .venv/bin/python bench/load_bench.py --signals all --skip-flat --against HEAD~3 --repeat 3
    .venv/bin/python bench/load_bench.py --signals all --skip-flat --against HEAD~1 --folder DIR   # your own files
    .venv/bin/python bench/load_bench.py --fingerprint-only         # worker CPU per file, by signal

Each set is loaded once per signal configuration (--signals, default all four when
the CLI has the options): `hashes` (--no-orientations --embedder none), `+orientations`
(--embedder none), `+embeddings` (--no-orientations --embedder default) and `all`
(the defaults: orientations and the default embedder), so the cost of each signal
shows as images/s with and without it.

Generated images are cached under bench/out/ (git-ignored). Each `dbdedup load`
runs as a subprocess (the real CLI code path) into a fresh database on an
embedded server in bench/out/pgdata; its wall time includes process start,
migrations check, the walk, hashing, COPY and commits. Peak memory is the
highest sum of RSS over the loader's whole process tree (parent + workers),
sampled every 20 ms; the PostgreSQL server's own memory is not included. The server's CPU seconds during
each load (its processes' times from the OS) are printed at the end: the part of a load's cost that the
wall time of a busy 2-core machine hides.
The baseline is `imagehash.phash(Image.open(path))` mapped over the same files in a
ProcessPoolExecutor with the same number of workers (no database at all).

`--against REV` also loads each set with the code of git revision REV (exported under
bench/out/rev-*, run through PYTHONPATH), alternating with this tree in every repetition, so
a change's cost is a ratio measured under the same machine load.

`--fingerprint` also measures what one worker process spends per file (CPU time, best of
several rounds, in this process): `fingerprint.file_records` over chunks of 64 files, with
each signal on and off (the hashes, orientations, embedding descriptor and the verification
signals: hash quality and colour signature, which also make JPEGs decode in colour). The
end-to-end figures include the parent, the database and whatever else shares the machine;
these do not.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import psycopg
from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PGDATA = OUT / "pgdata"
sys.path.insert(0, str(HERE.parent / "tests"))

from images import photo  # noqa: E402
from benchdb import fresh_database, start_embedded, stop_started  # noqa: E402
from dbdedup.scan import IMAGE_EXTENSIONS  # noqa: E402


# ---------------------------------------------------------------- test data


def _small(i: int) -> None:
    path = OUT / "small" / f"{i // 1000:02d}" / f"s{i:05d}.jpg"
    if not path.exists():
        photo(i, (128, 128)).save(path, "JPEG", quality=90)


def _large(i: int) -> None:
    path = OUT / "large" / f"l{i:03d}.jpg"
    if path.exists():
        return
    rng = np.random.default_rng(i)
    base = photo(10_000 + i, (400, 300)).resize((4000, 3000), Image.Resampling.BICUBIC)
    arr = np.asarray(base, dtype=np.int16) + rng.integers(-6, 7, size=(3000, 4000, 1), dtype=np.int16)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(path, "JPEG", quality=90)


def generate(workers: int) -> None:
    for sub in range(10):
        (OUT / "small" / f"{sub:02d}").mkdir(parents=True, exist_ok=True)
    (OUT / "large").mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_small, range(10_000), chunksize=200))
        list(pool.map(_large, range(200), chunksize=4))
    # flat-memory sets: hard links to the small files (distinct paths, no extra disk)
    small = sorted((OUT / "small").rglob("*.jpg"))
    for name, copies, count in (("flat2k", 1, 2000), ("flat40k", 4, 10_000)):
        for c in range(copies):
            folder = OUT / name / f"{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for src in small[:count]:
                dst = folder / src.name
                if not dst.exists():
                    os.link(src, dst)


def files_of(folder: Path) -> list[str]:
    """The files under ``folder`` with an extension the loader's walk takes as an image (``scan.IMAGE_EXTENSIONS``)."""
    return sorted(str(p) for p in folder.rglob("*")
                  if os.fsencode(p.suffix.lower()) in IMAGE_EXTENSIONS and p.is_file())


# ---------------------------------------------------------------- measuring


def run_measured(command: list[str], env: dict | None = None) -> tuple[float, int]:
    """Run ``command``; return (seconds, peak RSS bytes of its process tree)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{command} failed:\n{process.stderr.read().decode()}")
    return seconds, peak


def _phash_file(path: str) -> str:
    import imagehash

    with Image.open(path) as im:
        return str(imagehash.phash(im))


def _pool_main(paths_file: str, workers: int) -> None:
    paths = Path(paths_file).read_text().splitlines()
    with ProcessPoolExecutor(workers) as pool:
        hashes = list(pool.map(_phash_file, paths, chunksize=max(1, min(64, len(paths) // (workers * 8)))))
    assert len(hashes) == len(paths)


# load options of each signal configuration (the CLI of issue #5)
SIGNALS = {
    "hashes": ["--no-orientations", "--embedder", "none"],
    "+orientations": ["--embedder", "none"],
    "+embeddings": ["--no-orientations", "--embedder", "default"],
    "all": [],
}


def dbdedup_command() -> str:
    return str(Path(sys.executable).parent / "dbdedup")


def cli_has_signals() -> bool:
    """Whether `dbdedup load` has issue #5's options (--no-orientations, --embedder)."""
    text = subprocess.run([dbdedup_command(), "load", "--help"], capture_output=True, text=True).stdout
    return "--no-orientations" in text and "--embedder" in text


def export_revision(revision: str) -> Path:
    """The package at git ``revision``, exported under bench/out (for PYTHONPATH)."""
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=HERE.parent, capture_output=True,
                            text=True, check=True).stdout.strip()
    tree = OUT / f"rev-{commit}"
    if not (tree / "dbdedup" / "__init__.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "dbdedup", "sql", "migrations"], cwd=HERE.parent,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        # setuptools' package-dir maps sql/ and migrations/ into the package; a plain tree needs links
        for name in ("sql", "migrations"):
            link = tree / "dbdedup" / name
            if not link.exists():
                link.symlink_to(Path("..") / name)
    return tree


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU seconds the embedded server in ``data_dir`` has used: the postmaster, its live processes and
    (through the postmaster's children times) every backend that has exited."""
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        try:
            child_times = child.cpu_times()
        except psutil.Error:  # (exited meanwhile: counted in the children times from now on)
            continue
        total += child_times.user + child_times.system
    return total


def measure_load(admin: str, folder: Path, workers: int, options: list[str] = (),
                 tree: Path | None = None) -> tuple[float, int, int, float]:
    """One `dbdedup load` of ``folder`` into a fresh database: (seconds, peak RSS of its process tree, images
    loaded, the server's CPU seconds meanwhile)."""
    dsn = fresh_database(admin, "bench_load", migrate=tree is None)
    # bytecode cached as in an installed package (see e2e_bench.tool_environment), outside the tree
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(OUT / "pycache")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
        # migrated by that revision's own code, untimed (this tree's migrations may be newer than it knows)
        subprocess.run([dbdedup_command(), "--db", dsn, "-q", "migrate"], env=env, check=True, capture_output=True)
    server_before = server_cpu_seconds(PGDATA)
    seconds, peak = run_measured([dbdedup_command(), "--db", dsn, "-q", "load", "--workers", str(workers),
                                  *options, str(folder)], env=env)
    server = server_cpu_seconds(PGDATA) - server_before
    with psycopg.connect(dsn) as conn:
        loaded = conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'ok'").fetchone()[0]
    return seconds, peak, loaded, server


def measure_pool(folder: Path, workers: int) -> tuple[float, int]:
    listing = OUT / f"paths_{folder.name}.txt"
    listing.write_text("\n".join(files_of(folder)))
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import load_bench; load_bench._pool_main({str(listing)!r}, {workers})"
    return run_measured([sys.executable, "-c", code])


FINGERPRINT_CONFIGS = {
    "hashes": dict(orientations=False, embedder=False),
    "+orientations": dict(orientations=True, embedder=False),
    "+embeddings": dict(orientations=False, embedder=True),
    "all": dict(orientations=True, embedder=True),
}


def measure_fingerprint(sets: list[tuple[str, Path, int]], rounds: int) -> None:
    """Worker CPU per file of each signal configuration, with the verification signals off and on."""
    from dbdedup import fingerprint
    from dbdedup.embedding import load_embedder
    from dbdedup.resample import limit_blas_threads

    limit_blas_threads()  # as in a load worker
    embedder = load_embedder("default")
    print("\nworker CPU per file (fingerprint.file_records, chunks of 64, one process, best of "
          f"{rounds} rounds; verification signals = hash quality + colour signature):")
    print(f"{'set':<14} {'load':<15} {'files':>6} {'without us/file':>16} {'with us/file':>13} {'cost':>7}")
    for label, folder, count in sets:
        paths = [p.encode() for p in files_of(folder)[:count]]
        chunks = [paths[i:i + 64] for i in range(0, len(paths), 64)]
        extras = {(name, signals): fingerprint.Extras(orientations=config["orientations"],
                                                      embedder=embedder if config["embedder"] else None,
                                                      signals=signals)
                  for name, config in FINGERPRINT_CONFIGS.items() for signals in (False, True)}
        best = dict.fromkeys(extras, float("inf"))
        for _ in range(rounds):
            for key, extra in extras.items():  # alternating, so a busy moment hits every configuration
                started = time.process_time()
                for chunk in chunks:
                    fingerprint.file_records(chunk, extras=extra)
                best[key] = min(best[key], (time.process_time() - started) / len(paths))
        for k, name in enumerate(FINGERPRINT_CONFIGS):
            without, with_signals = best[(name, False)], best[(name, True)]
            print(f"{label if k == 0 else '':<14} {name:<15} {len(paths):>6} {without * 1e6:>16,.0f} "
                  f"{with_signals * 1e6:>13,.0f} {with_signals / without:>6.2f}x", flush=True)


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def describe(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:,.0f}"
    return f"best {max(values):,.0f} (runs: {', '.join(f'{v:,.0f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-flat", action="store_true", help="skip the 2k/10k/40k memory series")
    parser.add_argument("--signals", default=",".join(SIGNALS),
                        help=f"load configurations to measure, comma-separated, of: {', '.join(SIGNALS)}")
    parser.add_argument("--index-upkeep", type=int, default=0, metavar="N",
                        help="only the load-time cost of the lookup indexes (issue 15): N synthetic images through the "
                             "loader's write path with and without them (bench/lookup_bench.py --upkeep)")
    parser.add_argument("--against", metavar="REV",
                        help="also load with the code of this git revision, alternating with this tree")
    parser.add_argument("--folder", type=Path, action="append",
                        help="load this folder instead of the generated sets (repeatable; every file must load)")
    parser.add_argument("--fingerprint", action="store_true",
                        help="also measure worker CPU per file with the verification signals off and on")
    parser.add_argument("--fingerprint-only", action="store_true", help="only that (no database, no loads)")
    args = parser.parse_args()
    if args.index_upkeep:
        from lookup_bench import upkeep

        upkeep(start_embedded(PGDATA), args.index_upkeep, repeat=max(args.repeat, 2), trimmed_share=0.1)
        return
    signals = [name.strip() for name in args.signals.split(",")]
    unknown = [name for name in signals if name not in SIGNALS]
    if unknown:
        parser.error(f"unknown --signals {unknown}; use {', '.join(SIGNALS)}")
    if not cli_has_signals():
        print("note: `dbdedup load` has no --no-orientations/--embedder yet: measuring its default load only")
        signals, options_of = ["default"], {"default": []}
    else:
        options_of = SIGNALS

    print(f"generating / checking test files under {OUT} ...", flush=True)
    generate(args.workers)
    print(f"machine load (1, 5, 15 min) at start: {load_average()}", flush=True)
    fingerprint_sets = [("128x128 JPEG", OUT / "small", 1280), ("12 MP JPEG", OUT / "large", 40)]
    if args.fingerprint_only:
        measure_fingerprint(fingerprint_sets, max(3, args.repeat))
        print(f"machine load at end: {load_average()}")
        return
    trees = {"": None}
    if args.against:
        trees = {"": None, f" @{args.against}": export_revision(args.against)}
    admin = start_embedded(PGDATA)
    import dbdedup

    print(f"dbdedup {dbdedup.__version__}, {args.workers} workers, {os.cpu_count()} cores\n")
    print(f"{'set':<14} {'load':<15} {'files':>7} {'dbdedup load img/s':>30} {'peak MB':>8} "
          f"{'imagehash pool img/s':>30} {'peak MB':>8}")
    runs = [name + tree for name in signals for tree in trees]
    folders = ([(folder.name, folder) for folder in args.folder] if args.folder
               else [("128x128 JPEG", OUT / "small"), ("12 MP JPEG", OUT / "large")])
    server_cpu = {}
    for label, folder in folders:
        count = len(files_of(folder))
        ours = {name: [] for name in runs}
        our_mem = {name: [] for name in runs}
        server_cpu[label] = {name: [] for name in runs}
        pool, pool_mem = [], []
        for _ in range(args.repeat):
            for name in signals:
                for suffix, tree in trees.items():
                    seconds, peak, loaded, server = measure_load(admin, folder, args.workers, options_of[name], tree)
                    assert loaded == count, (loaded, count)
                    ours[name + suffix].append(count / seconds)
                    our_mem[name + suffix].append(peak / 2**20)
                    server_cpu[label][name + suffix].append(server)
            seconds, peak = measure_pool(folder, args.workers)
            pool.append(count / seconds)
            pool_mem.append(peak / 2**20)
        for k, name in enumerate(runs):
            pool_text = (f"{describe(pool):>30} {max(pool_mem):>8.0f}" if k == 0 else "")
            print(f"{label if k == 0 else '':<14} {name:<15} {count:>7,} {describe(ours[name]):>30} "
                  f"{max(our_mem[name]):>8.0f} {pool_text}".rstrip(), flush=True)
        if "hashes" in ours:
            base = max(ours["hashes"])
            costs = ", ".join(f"{name} {max(ours[name]) / base:.2f}x" for name in runs if name != "hashes")
            print(f"{'':<14} throughput relative to hashes only: {costs}", flush=True)
        if args.against:
            ratios = ", ".join(f"{name} {max(ours[name]) / max(ours[name + suffix]):.2f}x"
                               for name in signals for suffix in trees if suffix)
            print(f"{'':<14} this tree's throughput relative to {args.against}: {ratios}", flush=True)
    print(f"machine load at end of the loads: {load_average()}", flush=True)
    print("\nthe server's CPU seconds during each load (PostgreSQL's processes, from the OS):")
    for label, by_run in server_cpu.items():
        for name, values in by_run.items():
            print(f"  {label:<14} {name:<15} {', '.join(f'{v:.2f}' for v in values)}", flush=True)
    if args.fingerprint:
        measure_fingerprint(fingerprint_sets, max(3, args.repeat))

    if not args.skip_flat:
        print("\npeak memory of `dbdedup load` as the file count grows (128x128 JPEGs, default load):")
        for folder in (OUT / "flat2k", OUT / "small", OUT / "flat40k"):
            count = len(files_of(folder))
            seconds, peak, loaded, _ = measure_load(admin, folder, args.workers)
            assert loaded == count
            print(f"  {count:>7,} files: peak {peak / 2**20:6.0f} MB, {count / seconds:,.0f} img/s", flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_started()
