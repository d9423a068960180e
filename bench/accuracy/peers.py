"""Run peer deduplicators on a folder and write their duplicate groups as JSON.

Runs in the peers' own virtualenv (bench/out/peers-venv), never in dbdedup's:
score.py calls it as a subprocess and scores what it writes. Each peer's
output (a mapping or a dict of matches) becomes edges between file names; the
scorer turns edges into clusters by connected components.

    bench/out/peers-venv/bin/python bench/accuracy/peers.py imagededup DIR OUT.json --thresholds 4,6,8,10,12
    bench/out/peers-venv/bin/python bench/accuracy/peers.py difpy DIR OUT.json
    bench/out/peers-venv/bin/python bench/accuracy/peers.py imagehash DIR OUT.json --thresholds 4,6,8,10,12
    bench/out/peers-venv/bin/python bench/accuracy/peers.py czkawka DIR OUT.json --czkawka-levels 5,10,15

Output: {"peer": ..., "version": ..., "runs": [{"label", "threshold", "seconds", "edges": [[a, b], ...]}]}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path


def run_imagededup(folder: Path, thresholds: list[int], workers: int) -> dict:
    """imagededup's PHash: encode once, then find_duplicates from the encodings per threshold.
    The seconds of each run are the encoding plus that threshold's search."""
    from imagededup.methods import PHash

    hasher = PHash(verbose=False)
    started = time.perf_counter()
    encodings = hasher.encode_images(image_dir=str(folder), num_enc_workers=workers)
    encode_seconds = time.perf_counter() - started
    runs = []
    for threshold in thresholds:
        started = time.perf_counter()
        duplicates = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=threshold,
                                            num_dist_workers=workers)
        search_seconds = time.perf_counter() - started
        edges = sorted({tuple(sorted((a, b))) for a, matches in duplicates.items() for b in matches})
        runs.append({"label": "imagededup PHash", "threshold": threshold,
                     "seconds": round(encode_seconds + search_seconds, 2),
                     "encoded": len(encodings), "edges": edges})
    return {"peer": "imagededup", "version": version("imagededup"), "runs": runs}


def _imagehash_one(path: str):
    import imagehash
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(str(imagehash.phash(image)), 16)
    except Exception:  # a file imagehash cannot read joins nothing
        return None


def run_imagehash(folder: Path, thresholds: list[int], workers: int) -> dict:
    """imagehash.phash over the files in a process pool, then every pair within the threshold by
    numpy brute force (np.bitwise_count on the XOR): the usual twenty-line script. The seconds of
    each run are the hashing plus that threshold's pair search."""
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    files = sorted(p for p in folder.iterdir() if p.is_file())
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        hashes = list(pool.map(_imagehash_one, [str(p) for p in files], chunksize=64))
    hash_seconds = time.perf_counter() - started
    names = [p.name for p, h in zip(files, hashes) if h is not None]
    values = np.array([h for h in hashes if h is not None], dtype=np.uint64)
    runs = []
    for threshold in thresholds:
        started = time.perf_counter()
        edges = []
        for start in range(0, len(values), 1000):
            dist = np.bitwise_count(values[start:start + 1000, None] ^ values[None, :])
            i, j = np.nonzero(dist <= threshold)
            keep = i + start < j
            edges += [(names[a + start], names[b]) for a, b in zip(i[keep], j[keep])]
        runs.append({"label": "imagehash pHash + numpy", "threshold": threshold,
                     "seconds": round(hash_seconds + time.perf_counter() - started, 2), "edges": edges})
    return {"peer": "imagehash", "version": version("ImageHash"), "runs": runs}


def run_czkawka(folder: Path, levels: list[int]) -> dict:
    """czkawka's Rust image-similarity engine through its PyPI bindings, one scan per similarity
    level; each group it returns becomes a clique of edges (its groups are what a user acts on)."""
    from czkawka import ImageSimilarity

    runs = []
    for level in levels:
        finder = ImageSimilarity()
        finder.set_directories([folder])
        finder.set_similarity(level)
        started = time.perf_counter()
        groups = finder.find_similar()
        seconds = time.perf_counter() - started
        edges = set()
        for group in groups:
            names = sorted(p.name for p in group)
            edges |= {(a, b) for k, a in enumerate(names) for b in names[k + 1:]}
        runs.append({"label": "czkawka", "threshold": level, "seconds": round(seconds, 2),
                     "edges": sorted(edges)})
    return {"peer": "czkawka", "version": version("czkawka"), "runs": runs}


def run_difpy(folder: Path, similarities: list[str], workers: int) -> dict:
    """difPy with same_dim=False (its default, True, never compares a resized copy) and rotate on."""
    import difPy

    started = time.perf_counter()
    built = difPy.build(str(folder), show_progress=False, processes=workers)
    build_seconds = time.perf_counter() - started
    runs = []
    for similarity in similarities:
        started = time.perf_counter()
        found = difPy.search(built, similarity=similarity, same_dim=False, show_progress=False, processes=workers)
        search_seconds = time.perf_counter() - started
        edges = set()
        for key, matches in found.result.items():
            for match in matches:
                a, b = os.path.basename(str(key)), os.path.basename(str(match[0]))
                edges.add(tuple(sorted((a, b))))
        shown = {"duplicates": 0, "similar": 5}.get(similarity, similarity)  # difPy's own names for MSE 0 and 5
        runs.append({"label": "difPy", "threshold": f"mse<={shown}",
                     "seconds": round(build_seconds + search_seconds, 2), "edges": sorted(edges)})
    return {"peer": "difPy", "version": version("difPy"), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=["imagededup", "difpy", "imagehash", "czkawka"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--thresholds", default="4,6,8,10,12")
    parser.add_argument("--difpy-similarity", default="similar,20,50",
                        help="MSE limits, comma-separated ('similar' is difPy's own, 5)")
    parser.add_argument("--czkawka-levels", default="5,10,15", help="czkawka similarity levels (0-50)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.peer == "imagededup":
        result = run_imagededup(args.folder, [int(t) for t in args.thresholds.split(",")], args.workers)
    elif args.peer == "imagehash":
        result = run_imagehash(args.folder, [int(t) for t in args.thresholds.split(",")], args.workers)
    elif args.peer == "czkawka":
        result = run_czkawka(args.folder, [int(level) for level in args.czkawka_levels.split(",")])
    else:
        result = run_difpy(args.folder, args.difpy_similarity.split(","), args.workers)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
