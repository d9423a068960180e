"""Score dbdedup's clusters (and peers') on the accuracy set built by build_set.py.

Runs dbdedup for real: a fresh embedded PostgreSQL data dir under
bench/out/accuracy/pgdata (or --db DSN), `load_paths` on the images, then
`find_pairs` once at the largest threshold and `build_clusters` at each
threshold, reading `dbdedup.cluster_members`. Every pair of images that one
output cluster puts together is a predicted pair (that is what a user acts on);
a predicted pair is true when both files come from the same original.

Prints (and writes to bench/out/accuracy/results.md):
  - pair precision, recall and F1 per method and threshold, with seconds;
  - recall per transform (an original-copy pair is found when both are in one cluster);
  - pHash distances of the true original-copy pairs per transform, beside each
    image's nearest unrelated image, and the pair-level precision at each distance;
  - the threshold with precision >= 0.99 and the best recall (the default's evidence);
  - peers run on the same files in the same run (imagededup PHash on the whole set;
    difPy, quadratic, on a seeded subset), from bench/out/peers-venv when it exists.

Usage:
    .venv/bin/python bench/accuracy/score.py [--db DSN] [--no-peers] [--difpy-groups 30]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

from dbdedup.clusters import build_clusters
from dbdedup.db import connect, stop_embedded
from dbdedup.load import load_paths
from dbdedup.matching import DEFAULT_THRESHOLD, find_pairs

BENCH_DIR = Path(__file__).resolve().parents[1]
SET_DIR = BENCH_DIR / "out" / "accuracy"
PEERS_PYTHON = BENCH_DIR / "out" / "peers-venv" / "bin" / "python"
PEERS_SCRIPT = Path(__file__).resolve().parent / "peers.py"
TARGET_PRECISION = 0.99
DISTANCES = range(0, 17)  # the pair-level table runs over these Hamming distances


# ---------------------------------------------------------------- ground truth


@dataclass
class Truth:
    group: dict[str, str | None]  # file -> original's id (None for distractors)
    transform: dict[str, str]
    original_of: dict[str, str]  # group -> the original's file
    files: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> "Truth":
        group, transform, original_of, files = {}, {}, {}, []
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                files.append(row["file"])
                group[row["file"]] = row["group"] or None
                transform[row["file"]] = row["transform"]
                if row["transform"] == "original":
                    original_of[row["group"]] = row["file"]
        return cls(group, transform, original_of, files)

    @property
    def transforms(self) -> list[str]:
        seen = dict.fromkeys(t for t in self.transform.values() if t not in ("original", "distractor"))
        return list(seen)


@dataclass
class Score:
    method: str
    threshold: str
    precision: float
    recall: float
    f1: float
    original_copy_recall: float
    predicted_pairs: int
    true_positive_pairs: int
    clusters: int
    largest_cluster: int
    seconds: float | None
    per_transform: dict[str, float]
    note: str = ""


def score_clusters(method: str, threshold, labels: dict[str, object], truth: Truth, universe: set[str],
                   seconds: float | None, note: str = "") -> Score:
    """Pair precision/recall/F1 of a clustering (file -> cluster label; absent = alone) over ``universe``."""
    members: dict[object, list[str]] = defaultdict(list)
    for file, label in labels.items():
        if file in universe:
            members[label].append(file)
    predicted = true_positive = clusters = largest = 0
    for files in members.values():
        n = len(files)
        if n < 2:
            continue
        clusters += 1
        largest = max(largest, n)
        predicted += n * (n - 1) // 2
        per_group = Counter(truth.group[f] for f in files if truth.group[f])
        true_positive += sum(k * (k - 1) // 2 for k in per_group.values())
    group_sizes = Counter(truth.group[f] for f in universe if truth.group[f])
    true_total = sum(k * (k - 1) // 2 for k in group_sizes.values())
    found, total = Counter(), Counter()
    for file in universe:
        name = truth.transform[file]
        if name in ("original", "distractor"):
            continue
        original = truth.original_of[truth.group[file]]
        if original not in universe:
            continue
        total[name] += 1
        label = labels.get(file)
        if label is not None and labels.get(original) == label:
            found[name] += 1
    precision = true_positive / predicted if predicted else 1.0
    recall = true_positive / true_total if true_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_transform = {name: found[name] / total[name] for name in truth.transforms if total[name]}
    original_copy = sum(found.values()) / sum(total.values()) if total else 0.0
    return Score(method, str(threshold), precision, recall, f1, original_copy, predicted, true_positive,
                 clusters, largest, seconds, per_transform, note)


def components(edges, nodes=None) -> dict[str, int]:
    """Connected components (union-find) of an edge list of file names: file -> root label."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = {x: find(x) for x in list(parent)}
    ids = {root: i for i, root in enumerate(sorted(set(roots.values())))}
    return {x: ids[r] for x, r in roots.items()}


# ---------------------------------------------------------------- hashes in numpy


@dataclass
class HashTable:
    files: list[str]
    hashes: dict[str, np.ndarray]  # kind -> uint64 per file, in files' order

    def close_pairs(self, kind: str, max_distance: int, chunk: int = 1000):
        """All pairs (i, j, distance) with i < j within max_distance: numpy brute force."""
        values = self.hashes[kind]
        out_i, out_j, out_d = [], [], []
        for start in range(0, len(values), chunk):
            block = values[start:start + chunk]
            dist = np.bitwise_count(block[:, None] ^ values[None, :])
            i, j = np.nonzero(dist <= max_distance)
            i = i + start
            keep = i < j
            out_i.append(i[keep]); out_j.append(j[keep]); out_d.append(dist[i[keep] - start, j[keep]])
        return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)

    def nearest_unrelated(self, kind: str, group_ids: np.ndarray, chunk: int = 1000) -> np.ndarray:
        """Per file, the distance to the nearest file of another group (a distractor is its own group)."""
        values = self.hashes[kind]
        best = np.empty(len(values), dtype=np.int64)
        for start in range(0, len(values), chunk):
            block = values[start:start + chunk]
            dist = np.bitwise_count(block[:, None] ^ values[None, :]).astype(np.int64)
            dist[group_ids[start:start + chunk, None] == group_ids[None, :]] = 99
            best[start:start + chunk] = dist.min(axis=1)
        return best


def read_hashes(conn) -> tuple[HashTable, dict[str, int]]:
    rows = conn.execute("SELECT path, phash, dhash FROM dbdedup.images WHERE status = 'ok' ORDER BY id").fetchall()
    files = [os.path.basename(r[0]) for r in rows]
    as_u64 = lambda column: np.array([r[column] for r in rows], dtype=np.int64).view(np.uint64)
    errors = dict(conn.execute("SELECT status, count(*) FROM dbdedup.images GROUP BY status").fetchall())
    return HashTable(files, {"phash": as_u64(1), "dhash": as_u64(2)}), errors


# ---------------------------------------------------------------- dbdedup runs


def dbdedup_scores(conn, truth: Truth, universe: set[str], thresholds: list[int], kinds: list[str],
                   load_seconds: float, cluster_timeout: float) -> tuple[list[Score], dict, dict]:
    scores, timings, labels_by = [], {}, {}
    for kind in kinds:
        started = time.perf_counter()
        match = find_pairs(conn, max_distance=max(thresholds), hash_kind=kind)
        match_seconds = time.perf_counter() - started
        timings[kind] = {"match_seconds": round(match_seconds, 2), "method": match.method,
                         "pairs": match.pairs, "candidates": match.candidates}
        print(f"  {kind}: find_pairs at {max(thresholds)}: {match.method}, {match.pairs} pairs, "
              f"{match_seconds:.1f} s", file=sys.stderr)
        for threshold in thresholds:
            started = time.perf_counter()
            conn.execute(f"SET statement_timeout = {int(cluster_timeout * 1000)}")
            try:
                result = build_clusters(conn, max_distance=threshold, hash_kind=kind)
            except psycopg.errors.QueryCanceled:
                conn.rollback()
                print(f"  {kind} {threshold}: build_clusters passed {cluster_timeout} s, cancelled", file=sys.stderr)
                scores.append(Score(f"dbdedup {kind}", str(threshold), float("nan"), float("nan"), float("nan"),
                                    float("nan"), 0, 0, 0, 0, None, {},
                                    f"build_clusters cancelled after {cluster_timeout} s"))
                continue
            finally:
                conn.execute("SET statement_timeout = 0")
            cluster_seconds = time.perf_counter() - started
            print(f"  {kind} {threshold}: {result.clusters} clusters in {cluster_seconds:.1f} s, "
                  f"{result.split_rounds} guard rounds", file=sys.stderr)
            rows = conn.execute("SELECT cluster_id, path FROM dbdedup.cluster_members").fetchall()
            labels = {os.path.basename(path): cluster for cluster, path in rows}
            labels_by[(kind, threshold)] = labels
            note = f"guard re-split rounds: {result.split_rounds}" if result.split_rounds else ""
            scores.append(score_clusters(f"dbdedup {kind}", threshold, labels, truth, universe,
                                         load_seconds + match_seconds + cluster_seconds, note))
    return scores, timings, labels_by


def plain_component_scores(table: HashTable, truth: Truth, universe: set[str], thresholds: list[int]) -> list[Score]:
    """Reference: every pHash pair within t joined by plain connected components (what
    imagehash + union-find gives, with no guard against chaining)."""
    i, j, d = table.close_pairs("phash", max(thresholds))
    scores = []
    for threshold in thresholds:
        keep = d <= threshold
        edges = zip((table.files[k] for k in i[keep]), (table.files[k] for k in j[keep]))
        scores.append(score_clusters("pHash pairs + plain components", threshold, components(edges), truth,
                                     universe, None, "numpy reference, no chaining guard"))
    return scores


# ---------------------------------------------------------------- peers


def run_peer(peer: str, folder: Path, out: Path, thresholds: list[int], timeout: int, workers: int) -> dict | str:
    """Run peers.py in the peers' virtualenv; the parsed JSON, or why it could not run."""
    if not PEERS_PYTHON.exists():
        return f"no peers virtualenv at {PEERS_PYTHON} (see the README's reproduction steps)"
    command = ["nice", "-n", "5", str(PEERS_PYTHON), str(PEERS_SCRIPT), peer, str(folder), str(out),
               "--thresholds", ",".join(map(str, thresholds)), "--workers", str(workers)]
    out.unlink(missing_ok=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{peer} did not finish within {timeout} s"
    if done.returncode != 0 or not out.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{peer} failed (exit {done.returncode}): {last}"
    return json.loads(out.read_text())


def peer_scores(result: dict, truth: Truth, universe: set[str], note: str = "") -> list[Score]:
    scores = []
    for run in result["runs"]:
        labels = components(tuple(edge) for edge in run["edges"])
        scores.append(score_clusters(f"{run['label']} {result['version']}", run["threshold"], labels, truth,
                                     universe, run["seconds"], note))
    return scores


def subset_folder(set_dir: Path, truth: Truth, groups: int, seed: int) -> tuple[Path, set[str]]:
    """Hard links to a seeded subset: ``groups`` originals with all their copies, and ten
    distractors per group (difPy compares every pair, so the whole set is out of its reach)."""
    rng = random.Random(seed)
    chosen_groups = set(rng.sample(sorted(truth.original_of), min(groups, len(truth.original_of))))
    distractors = [f for f in truth.files if truth.group[f] is None]
    chosen = {f for f in truth.files if truth.group[f] in chosen_groups}
    chosen |= set(rng.sample(distractors, min(len(distractors), 10 * groups)))
    folder = set_dir / "subset"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for file in sorted(chosen):
        os.link(set_dir / "images" / file, folder / file)
    return folder, chosen


# ---------------------------------------------------------------- distances


def distance_tables(table: HashTable, truth: Truth, thresholds: list[int]) -> list[str]:
    """Markdown: pHash distances of true original-copy pairs per transform, the nearest
    unrelated image of each file, and pair-level counts per distance."""
    index = {f: k for k, f in enumerate(table.files)}
    values = table.hashes["phash"]
    group_ids = np.array([hash(truth.group[f]) if truth.group[f] else -1 - k for k, f in enumerate(table.files)])
    lines = ["| transform | min | p10 | median | p90 | max | " + " | ".join(f"<= {t}" for t in thresholds) + " |",
             "| --- " * (6 + len(thresholds)) + "|"]
    for name in truth.transforms:
        dists = np.array([
            int(np.bitwise_count(values[index[f]] ^ values[index[truth.original_of[truth.group[f]]]]))
            for f in table.files if truth.transform[f] == name and truth.original_of[truth.group[f]] in index
        ])
        if not len(dists):
            continue
        q = np.percentile(dists, [10, 50, 90])
        lines.append(f"| {name} | {dists.min()} | {q[0]:.0f} | {q[1]:.0f} | {q[2]:.0f} | {dists.max()} | "
                     + " | ".join(f"{(dists <= t).mean():.2f}" for t in thresholds) + " |")
    nearest = table.nearest_unrelated("phash", group_ids)
    is_original = np.array([truth.transform[f] == "original" for f in table.files])
    for label, mask in (("nearest unrelated, originals", is_original), ("nearest unrelated, all files", slice(None))):
        d = nearest[mask]
        q = np.percentile(d, [10, 50, 90])
        lines.append(f"| *{label}* | {d.min()} | {q[0]:.0f} | {q[1]:.0f} | {q[2]:.0f} | {d.max()} | "
                     + " | ".join(f"{(d <= t).mean():.3f}" for t in thresholds) + " |")

    i, j, d = table.close_pairs("phash", max(DISTANCES))
    same = np.array([truth.group[table.files[a]] is not None and truth.group[table.files[a]] == truth.group[table.files[b]]
                     for a, b in zip(i, j)], dtype=bool)
    group_sizes = Counter(g for g in truth.group.values() if g)
    true_total = sum(k * (k - 1) // 2 for k in group_sizes.values())
    pair_lines = ["| distance <= | true pairs | unrelated pairs | pair precision | pair recall |",
                  "| --- | --- | --- | --- | --- |"]
    for t in DISTANCES:
        within = d <= t
        tp, fp = int((same & within).sum()), int((~same & within).sum())
        pair_lines.append(f"| {t} | {tp} | {fp} | {tp / (tp + fp) if tp + fp else 1:.4f} | {tp / true_total:.3f} |")
    return lines, pair_lines


# ---------------------------------------------------------------- output


def score_table(scores: list[Score]) -> list[str]:
    lines = ["| method | threshold | precision | recall | F1 | original-copy recall | clusters | largest | seconds | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in scores:
        seconds = f"{s.seconds:.1f}" if s.seconds is not None else "-"
        lines.append(f"| {s.method} | {s.threshold} | {s.precision:.4f} | {s.recall:.3f} | {s.f1:.3f} | "
                     f"{s.original_copy_recall:.3f} | {s.clusters} | {s.largest_cluster} | {seconds} | {s.note} |")
    return lines


def transform_table(scores: list[Score], transforms: list[str]) -> list[str]:
    head = "| transform | " + " | ".join(f"{s.method} {s.threshold}" for s in scores) + " |"
    lines = [head, "| --- " * (len(scores) + 1) + "|"]
    for name in transforms:
        lines.append(f"| {name} | " + " | ".join(f"{s.per_transform.get(name, float('nan')):.2f}" for s in scores) + " |")
    return lines


def best_threshold(scores: list[Score]) -> Score | None:
    precise = [s for s in scores if s.precision >= TARGET_PRECISION]
    return max(precise, key=lambda s: (s.recall, -int(s.threshold))) if precise else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="set_dir", type=Path, default=SET_DIR)
    parser.add_argument("--db", help="DSN of a server to use instead of a fresh embedded one (its dbdedup data is replaced)")
    parser.add_argument("--thresholds", default="4,6,8,10,12")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--difpy-groups", type=int, default=30, help="originals (with all copies) in difPy's subset")
    parser.add_argument("--peer-timeout", type=int, default=900)
    parser.add_argument("--cluster-timeout", type=float, default=1800, help="seconds allowed to one build_clusters")
    parser.add_argument("--hashes", default="phash,dhash", help="hash kinds to cluster on")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    thresholds = sorted(int(t) for t in args.thresholds.split(","))
    set_dir: Path = args.set_dir
    images = set_dir / "images"
    truth = Truth.read(set_dir / "truth.csv")
    universe = set(truth.files)
    manifest = json.loads((set_dir / "manifest.json").read_text())

    data_dir = None
    if not args.db:
        data_dir = set_dir / "pgdata"
        if data_dir.exists():
            stop_embedded(data_dir)
            shutil.rmtree(data_dir)
    print(f"scoring {len(universe)} files ({manifest['originals']} originals x {len(truth.transforms)} transforms, "
          f"{manifest['distractors']} distractors)", file=sys.stderr)
    try:
        with connect(args.db, data_dir) as conn:
            if args.db:
                conn.execute("TRUNCATE dbdedup.images CASCADE")
                conn.commit()
            started = time.perf_counter()
            summary = load_paths(conn, [str(images)], workers=args.workers)
            load_seconds = time.perf_counter() - started
            print(f"  load: {summary.loaded} files in {load_seconds:.1f} s "
                  f"({summary.loaded / load_seconds:.0f} files/s), errors {summary.errors}", file=sys.stderr)
            table, statuses = read_hashes(conn)
            scores, timings, labels_by = dbdedup_scores(conn, truth, universe, thresholds, args.hashes.split(","), load_seconds,
                                                        args.cluster_timeout)
    finally:
        if data_dir is not None:
            stop_embedded(data_dir)
    missing = universe - set(table.files)
    reference = plain_component_scores(table, truth, universe, thresholds)

    peer_notes, peer_rows, subset_rows = [], [], []
    subset_folder_path, subset = subset_folder(set_dir, truth, args.difpy_groups, args.seed)
    if not args.no_peers:
        print("  peers: imagededup on the whole set ...", file=sys.stderr)
        result = run_peer("imagededup", images, set_dir / "peer-imagededup.json", thresholds, args.peer_timeout,
                          args.workers)
        if isinstance(result, str):
            peer_notes.append(result)
        else:
            peer_rows += peer_scores(result, truth, universe)
            subset_rows += peer_scores(result, truth, subset, "restricted to the subset")
        print(f"  peers: difPy on a subset of {len(subset)} files ...", file=sys.stderr)
        result = run_peer("difpy", subset_folder_path, set_dir / "peer-difpy.json", thresholds, args.peer_timeout,
                          args.workers)
        if isinstance(result, str):
            peer_notes.append(result)
        else:
            subset_rows += peer_scores(result, truth, subset, "run on the subset only")
    subset_rows = [score_clusters(f"dbdedup {kind}", t, labels, truth, subset, None, "restricted to the subset")
                   for (kind, t), labels in labels_by.items() if kind == "phash"] + subset_rows

    phash_scores = [s for s in scores if s.method == "dbdedup phash"]
    best = best_threshold(phash_scores)
    distance_lines, pair_lines = distance_tables(table, truth, thresholds)

    out = []
    out.append(f"## Accuracy on {len(universe)} files: {manifest['originals']} originals x "
               f"{len(truth.transforms)} transforms + {manifest['distractors']} distractors\n")
    out.append(f"Sources: {', '.join(f'{p} {v}' for p, v in manifest['packages'].items())}. "
               f"Originals by kind: {manifest['originals_by_kind']}; distractors: {manifest['distractors_by_kind']}.\n")
    out.append(f"Load: {summary.loaded} files in {load_seconds:.1f} s with {args.workers} workers; "
               f"statuses {statuses}; not loaded: {len(missing)}. Matching: "
               + "; ".join(f"{k} {v['method']} {v['pairs']} pairs in {v['match_seconds']} s" for k, v in timings.items())
               + ". Seconds for dbdedup = load + match (once, at the largest threshold) + clustering.\n")
    out.append("### Pair precision / recall over the output clusters\n")
    out += score_table(scores + reference + peer_rows)
    if peer_notes:
        out.append("")
        out += [f"- peer not measured: {n}" for n in peer_notes]
    out.append("\n### Recall per transform (original-copy pair in one cluster)\n")
    shown = [s for s in scores if s.method == "dbdedup phash"] + \
            [s for s in scores if s.method == "dbdedup dhash" and s.threshold in ("8", "10")] + \
            [s for s in peer_rows if s.threshold in ("8", "10")]
    out += transform_table(shown, truth.transforms)
    out.append("\n### pHash distance of true original-copy pairs, and of each file's nearest unrelated file\n")
    out.append("Columns `<= t`: share of pairs (or of files, for the nearest-unrelated rows) within distance t.\n")
    out += distance_lines
    out.append("\n### pHash pairs by distance, before clustering (all same-original pairs are true)\n")
    out += pair_lines
    if subset_rows:
        out.append(f"\n### Subset for difPy: {args.difpy_groups} originals with all their copies + "
                   f"{10 * args.difpy_groups} distractors ({len(subset)} files)\n")
        out += score_table(subset_rows)
    out.append("\n### Default threshold\n")
    if best:
        out.append(f"Best pHash threshold with cluster pair precision >= {TARGET_PRECISION}: **{best.threshold}** "
                   f"(precision {best.precision:.4f}, recall {best.recall:.3f}, F1 {best.f1:.3f}); "
                   f"dbdedup.matching.DEFAULT_THRESHOLD is {DEFAULT_THRESHOLD}.")
    else:
        out.append(f"No pHash threshold reached cluster pair precision {TARGET_PRECISION}.")
    text = "\n".join(out) + "\n"
    (set_dir / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
