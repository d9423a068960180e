"""Keypoint keys (dbdedup.keypoints) as a candidate source, measured on the accuracy set.

Issue 11 asks recall >= 0.90 for 10% and 25% area crops and rotations up to 10
degrees, >= 0.6 for 50% crops. Verification can only confirm pairs some signal
proposes, and pHash (<= 12) with its orientation/trim variants (<= 8) proposes
few of the 50% crops and 10-20 degree rotations. This study measures ORB keys
(each 256-bit descriptor cut into bands of a few bits, stored as (key, image)
rows, candidate pairs = images sharing >= m keys, over-common keys dropped):

  1. candidate recall of original-copy pairs per edit, alone and united with
     pHash <= 12 / variants <= 8 (computed here with dbdedup.hashes/variants),
     for several key settings; candidate pairs per image, unrelated ones among them;
  2. load cost per image (decode, today's hashes + variants, ORB + keys) in the
     same run, as ratios;
  3. the self-join in a real PostgreSQL (the embedded server, a scratch data dir):
     rows, COPY seconds, join seconds, and that it gives the pairs numpy gave;
  4. the end result: the candidates checked by dbdedup.verify's geometric match
     on the same ORB keypoints (RANSAC similarity, then colours over the overlap,
     geometric_verdict), recall per edit and false pairs verified.

The sample: --originals originals with all their copies plus --distractors
distractors (seeded), or --all. Per image measures are cached in --cache.
Runs in one process (one core); prints the machine's load average.

Usage:
    .venv/bin/python bench/accuracy/keypoint_study.py --originals 150 --distractors 1500
    .venv/bin/python bench/accuracy/keypoint_study.py --all --out bench/out/accuracy/keypoint-results.md
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from score import Truth  # noqa: E402
from verify_study import open_image  # noqa: E402

from dbdedup import keypoints, verify  # noqa: E402
from dbdedup.hashes import hashes_and_dct_block  # noqa: E402
from dbdedup.variants import stored_variants  # noqa: E402

SET_DIR = Path(__file__).resolve().parents[1] / "out" / "accuracy"
EDIT_ORDER = ("crop_90", "crop_75", "crop_50", "rotate_2", "rotate_5", "rotate_10", "rotate_20", "border",
              "border_wide")
CONFIG = (keypoints.WORKING_SIDE, keypoints.MAX_KEYPOINTS)
MASK64 = (1 << 64) - 1


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


# ---------------------------------------------------------------- sample and per image measures


def sample_files(truth: Truth, originals: int, distractors: int, seed: int, everything: bool) -> list[str]:
    if everything:
        return list(truth.files)
    rng = random.Random(seed)
    groups = sorted(truth.original_of)
    chosen = set(rng.sample(groups, min(originals, len(groups))))
    lone = sorted(f for f in truth.files if truth.group[f] is None)
    picked = set(rng.sample(lone, min(distractors, len(lone))))
    return [f for f in truth.files if truth.group[f] in chosen or f in picked]


def measure_image(path: Path) -> dict:
    """Every per image measure of one file, with its cost."""
    t0 = time.perf_counter()
    image = open_image(str(path))
    t1 = time.perf_counter()
    hashes, block = hashes_and_dct_block(image)
    variants = stored_variants(image, block)
    t2 = time.perf_counter()
    out = {"decode": t1 - t0, "hash": t2 - t1, "phash": hashes.phash & MASK64,
           "variants": [v & MASK64 for v in variants], "size": image.size}
    t3 = time.perf_counter()
    out["features"] = verify.Features.of(image)
    out["features_s"] = time.perf_counter() - t3
    t4 = time.perf_counter()
    grey = keypoints.working_grey(image)
    t5 = time.perf_counter()
    found = keypoints.keypoints_of_grey(grey)
    t6 = time.perf_counter()
    keypoints.descriptor_keys(found.descriptors)
    t7 = time.perf_counter()
    out["orb"] = found
    out["orb_cost"] = (t5 - t4, t6 - t5, t7 - t6)
    return out


def measure_all(files: list[str], cache: Path) -> dict[str, dict]:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"measures-{keypoints.WORKING_SIDE}-{keypoints.MAX_KEYPOINTS}-{keypoints.PATCH}.pkl"
    done: dict[str, dict] = {}
    if path.exists():
        with open(path, "rb") as fh:
            done = pickle.load(fh)
    todo = [f for f in files if f not in done]
    for k, name in enumerate(todo):
        done[name] = measure_image(SET_DIR / "images" / name)
        if k % 500 == 0:
            print(f"  measured {k}/{len(todo)} ({load_line()})", file=sys.stderr)
    if todo:
        with open(path, "wb") as fh:
            pickle.dump(done, fh)
    return {f: done[f] for f in files}


# ---------------------------------------------------------------- candidates


def popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x)


def hash_candidates(measures: list[dict]) -> set[tuple[int, int]]:
    """Today's hash candidates: pHash within 12, or a variant of one within 8 of the other's pHash."""
    n = len(measures)
    phash = np.array([m["phash"] for m in measures], dtype=np.uint64)
    width = max(len(m["variants"]) for m in measures)
    variants = np.zeros((n, width), dtype=np.uint64)
    present = np.zeros((n, width), dtype=bool)
    for i, m in enumerate(measures):
        variants[i, :len(m["variants"])] = m["variants"]
        present[i, :len(m["variants"])] = True
    pairs: set[tuple[int, int]] = set()
    step = 256
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        close = popcount(phash[rows, None] ^ phash[None, :]) <= 12
        for v in range(width):
            d = popcount(variants[rows, v][:, None] ^ phash[None, :]) <= 8
            close |= d & present[rows, v][:, None]
        ii, jj = np.nonzero(close)
        ii += start
        for i, j in zip(ii.tolist(), jj.tolist()):
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def image_keys(measures: list[dict], bands: int, bits: int) -> list[np.ndarray]:
    """Every image's distinct keys."""
    return [keypoints.descriptor_keys(m["orb"].descriptors, bands=bands, bits=bits) for m in measures]


def flat_postings(keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(key, image index) rows."""
    owners = np.concatenate([np.full(len(k), i, dtype=np.int64) for i, k in enumerate(keys)])
    return np.concatenate(keys), owners


class Scorer:
    """Original-copy pairs and unrelated pairs of a sample, by index."""

    def __init__(self, files: list[str], truth: Truth):
        self.files, self.truth, self.n = files, truth, len(files)
        index = {f: i for i, f in enumerate(files)}
        self.edit_pairs: dict[str, set[tuple[int, int]]] = defaultdict(set)
        for f in files:
            t = truth.transform[f]
            if t in ("original", "distractor"):
                continue
            o = index[truth.original_of[truth.group[f]]]
            i = index[f]
            self.edit_pairs[t].add((min(o, i), max(o, i)))
        self.group = [truth.group[f] for f in files]

    def related(self, a: int, b: int) -> bool:
        return self.group[a] is not None and self.group[a] == self.group[b]

    def recall(self, found: set[tuple[int, int]]) -> dict[str, float]:
        return {t: len(p & found) / len(p) for t, p in self.edit_pairs.items()}

    def summary(self, found: set[tuple[int, int]]) -> tuple[int, int]:
        unrelated = sum(1 for a, b in found if not self.related(a, b))
        return len(found), unrelated


def recall_row(name: str, scorer: Scorer, found: set[tuple[int, int]], extra: str = "") -> str:
    r = scorer.recall(found)
    others = [t for t in r if t not in EDIT_ORDER]
    other = min(r[t] for t in others) if others else float("nan")
    total, unrelated = scorer.summary(found)
    cells = " | ".join(f"{r.get(t, float('nan')):.2f}" for t in EDIT_ORDER)
    return (f"| {name} | {cells} | {other:.2f} | {total / scorer.n:.1f} | {unrelated / scorer.n:.1f} |"
            + (f" {extra} |" if extra else ""))


def recall_header(extra: str = "") -> str:
    head = "| source | " + " | ".join(EDIT_ORDER) + " | others (min) | pairs/image | unrelated/image |"
    if extra:
        head += f" {extra} |"
    return head + "\n" + "|---" * (head.count("|") - 1) + "|"


# ---------------------------------------------------------------- SQL


def sql_join(keys: np.ndarray, owners: np.ndarray, max_df: int, min_shared: int, top_k: int, data_dir: Path) -> dict:
    """Load (key, image) rows into a scratch table of a real PostgreSQL and self-join them."""
    from dbdedup.db import connect

    figures = {}
    with connect(None, data_dir, migrate=False, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS kp_keys")
        conn.execute("CREATE UNLOGGED TABLE kp_keys (key integer NOT NULL, image_id integer NOT NULL)")
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy("COPY kp_keys (key, image_id) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "int4"])
                for k, o in zip(keys.tolist(), owners.tolist()):
                    copy.write_row((k, o))
        t1 = time.perf_counter()
        conn.execute("CREATE INDEX kp_keys_key ON kp_keys (key, image_id)")
        conn.execute("ANALYZE kp_keys")
        t2 = time.perf_counter()
        rows = conn.execute(
            open(Path(__file__).with_name("keypoint_join.sql")).read(), {"max_df": max_df, "min_shared": min_shared, "top_k": top_k or 2**31 - 1}
        ).fetchall()
        t3 = time.perf_counter()
        size = conn.execute("SELECT pg_total_relation_size('kp_keys')").fetchone()[0]
        figures.update(rows=len(keys), copy_s=t1 - t0, index_s=t2 - t1, join_s=t3 - t2, pairs=len(rows),
                       bytes=size, result={(a, b): c for a, b, c in rows})
    return figures


def sql_join_arrays(keys: list[np.ndarray], max_df: int, min_shared: int, top_k: int, data_dir: Path) -> dict:
    """The same join from one row per image holding its keys as an integer array (the storage a
    column images.keypoint_keys would have), unnested at match time."""
    from dbdedup.db import connect

    with connect(None, data_dir, migrate=False, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS kp_images")
        conn.execute("CREATE UNLOGGED TABLE kp_images (image_id integer PRIMARY KEY, keys integer[] NOT NULL)")
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy("COPY kp_images (image_id, keys) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "int4[]"])
                for i, k in enumerate(keys):
                    copy.write_row((i, k.tolist()))
        t1 = time.perf_counter()
        conn.execute("ANALYZE kp_images")
        size = conn.execute("SELECT pg_total_relation_size('kp_images')").fetchone()[0]
        t2 = time.perf_counter()
        rows = conn.execute(open(Path(__file__).with_name("keypoint_join_arrays.sql")).read(),
                            {"max_df": max_df, "min_shared": min_shared, "top_k": top_k or 2**31 - 1}).fetchall()
        t3 = time.perf_counter()
    return {"copy_s": t1 - t0, "join_s": t3 - t2, "bytes": size, "result": {(a, b): c for a, b, c in rows}}


# ---------------------------------------------------------------- verification


def stub_keypoints(found: keypoints.Found) -> verify.Keypoints:
    # geometric_match reads only the pixels' shape until a pair has enough inliers
    shape = (found.size[1], found.size[0], 3)
    return verify.Keypoints(found.points, found.descriptors, np.broadcast_to(np.zeros(1, np.uint8), shape), "orb")


def verify_pairs(pairs: list[tuple[int, int]], files: list[str], measures: list[dict],
                 min_inliers: int) -> tuple[dict, dict]:
    """geometric_match + geometric_verdict on the candidates, with the ORB keypoints the keys came from."""
    stubs = [stub_keypoints(m["orb"]) for m in measures]
    pixels: dict[int, np.ndarray] = {}
    verdicts: dict[tuple[int, int], verify.Verdict] = {}
    inliers: dict[tuple[int, int], int] = {}
    t_first = t_colour = 0.0
    colour_pairs = 0
    for a, b in pairs:
        t0 = time.perf_counter()
        first = verify.geometric_match(stubs[a], stubs[b], min_inliers=10 ** 9)
        t_first += time.perf_counter() - t0
        inliers[(a, b)] = first.inliers
        if first.inliers < min_inliers or not verify.MIN_SCALE <= first.scale <= verify.MAX_SCALE:
            verdicts[(a, b)] = verify.Verdict(False, 0.0, "no_geometry")
            continue
        for i in (a, b):
            if i not in pixels:
                pixels[i] = verify.working_pixels(open_image(str(SET_DIR / "images" / files[i])),
                                                  keypoints.WORKING_SIDE)
        t1 = time.perf_counter()
        ka = verify.Keypoints(stubs[a].points, stubs[a].descriptors, pixels[a], "orb")
        kb = verify.Keypoints(stubs[b].points, stubs[b].descriptors, pixels[b], "orb")
        match = verify.geometric_match(ka, kb, min_inliers=min_inliers)
        saved = verify.MIN_INLIERS
        verify.MIN_INLIERS = min_inliers  # geometric_verdict reads the module's threshold
        try:
            verdicts[(a, b)] = verify.geometric_verdict(measures[a]["features"], measures[b]["features"], match)
        finally:
            verify.MIN_INLIERS = saved
        t_colour += time.perf_counter() - t1
        colour_pairs += 1
    cost = {"match_ms": 1000 * t_first / max(1, len(pairs)), "colour_ms": 1000 * t_colour / max(1, colour_pairs),
            "colour_pairs": colour_pairs}
    return {"verdicts": verdicts, "inliers": inliers}, cost


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--originals", type=int, default=150)
    parser.add_argument("--distractors", type=int, default=1500)
    parser.add_argument("--all", action="store_true", help="the whole set")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/k/cache"))
    parser.add_argument("--pgdata", type=Path, default=Path("/tmp/k/pg"))
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this markdown file")
    parser.add_argument("--grid", action="store_true", help="scan key settings (slow on the whole set)")
    parser.add_argument("--no-sql", action="store_true")
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args(argv)

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    truth = Truth.read(SET_DIR / "truth.csv")
    files = sample_files(truth, args.originals, args.distractors, args.seed, args.all)
    scorer = Scorer(files, truth)
    say("# Keypoint keys as a candidate source (bench/accuracy/keypoint_study.py)")
    say()
    sample = "the whole set" if args.all else (f"sample: {args.originals} originals with all their copies + "
                                                f"{args.distractors} distractors, seed {args.seed}")
    say(f"{len(files)} files ({sample}); at start: {load_line()}")
    started = time.perf_counter()
    measures = [m for m in measure_all(files, args.cache / ("all" if args.all else f"s{args.seed}")).values()]
    say(f"per image measures: {time.perf_counter() - started:.0f} s (0 when cached); {load_line()}")

    # ---- load cost
    say()
    say("## Load cost per image (one core, same run; medians and means in ms)")
    say()
    say("| step | mean ms | median ms | ratio to today's hashes+variants (mean) |")
    say("|---|---|---|---|")
    hash_ms = np.array([m["hash"] for m in measures]) * 1000
    decode_ms = np.array([m["decode"] for m in measures]) * 1000
    feat_ms = np.array([m["features_s"] for m in measures]) * 1000
    say(f"| decode (open_image) | {decode_ms.mean():.2f} | {np.median(decode_ms):.2f} | "
        f"{decode_ms.mean() / hash_ms.mean():.2f} |")
    say(f"| pHash/dHash/aHash + variants (today) | {hash_ms.mean():.2f} | {np.median(hash_ms):.2f} | 1.00 |")
    say(f"| verify.Features (quality + colour signature) | {feat_ms.mean():.2f} | {np.median(feat_ms):.2f} | "
        f"{feat_ms.mean() / hash_ms.mean():.2f} |")
    cost = np.array([m["orb_cost"] for m in measures]) * 1000
    total = cost.sum(axis=1)
    say(f"| ORB keys ({keypoints.WORKING_SIDE} px, {keypoints.MAX_KEYPOINTS} kp): resize {cost[:, 0].mean():.2f} + "
        f"ORB {cost[:, 1].mean():.2f} + keys {cost[:, 2].mean():.2f} | {total.mean():.2f} | {np.median(total):.2f} | "
        f"{total.mean() / hash_ms.mean():.2f} |")
    count = np.array([len(m["orb"].points) for m in measures])
    say()
    say(f"Keypoints per image: mean {count.mean():.0f}; share of images with none {(count == 0).mean():.3f}, "
        f"with < 20 {(count < 20).mean():.3f}.")

    # ---- candidates
    say()
    hashed = hash_candidates(measures)
    say("## Candidate recall of original-copy pairs per edit")
    say()
    say(f"Unrelated = pairs of two different pictures (distractors and hard negatives included). {load_line()}")
    say()
    say(recall_header("rows/image"))
    say(recall_row("pHash <= 12 or variant <= 8 (today, without embeddings)", scorer, hashed, "-"))
    # (bands, bits, max_df, min_shared, top_k); the first is the module's default
    default = (keypoints.BANDS, keypoints.KEY_BITS, keypoints.MAX_DF, keypoints.MIN_SHARED, keypoints.TOP_K)
    settings = [default]
    if args.grid:
        settings += [(10, 24, 50, 3, 0), (10, 24, 50, 5, 0), (10, 24, 50, 8, 0), (10, 24, 50, 3, 10),
                     (10, 24, 50, 3, 30), (10, 24, 50, 5, 20), (8, 32, 50, 2, 20), (12, 20, 50, 4, 20),
                     (10, 24, 20, 3, 20), (10, 24, 100, 3, 20)]
    postings_of = {}
    found_of = {}
    for setting in dict.fromkeys(settings):
        bands, bits, max_df, m, top_k = setting
        t0 = time.perf_counter()
        if (bands, bits) not in postings_of:
            postings_of[(bands, bits)] = image_keys(measures, bands, bits)
        keys = postings_of[(bands, bits)]
        a, b, _ = keypoints.candidate_pairs(keys, max_df=max_df, min_shared=m, top_k=top_k)
        seconds = time.perf_counter() - t0
        found = set(zip(a.tolist(), b.tolist()))
        found_of[setting] = found
        name = f"keys {bands}x{bits} bits, df <= {max_df}, shared >= {m}, top {top_k or 'all'}"
        rows = sum(len(k) for k in keys)
        say(recall_row(name, scorer, found, f"{rows / len(files):.0f} (numpy {seconds:.1f} s)"))
        say(recall_row("  united with today's", scorer, found | hashed, ""))

    found = found_of[default]
    bands, bits, max_df, m, top_k = default
    keys, owners = flat_postings(postings_of[(bands, bits)])

    # ---- SQL
    if not args.no_sql:
        say()
        say(f"## The self-join in PostgreSQL (embedded server, scratch data dir {args.pgdata}; default setting)")
        say()
        sql = sql_join(keys, owners, max_df, m, top_k, args.pgdata)
        same = set(sql.pop("result")) == found
        say(f"{sql['rows']:,} rows ({sql['rows'] / len(files):.0f} per image), {sql['bytes'] / 2**20:.1f} MiB with "
            f"the index; COPY {sql['copy_s']:.1f} s, index + ANALYZE {sql['index_s']:.1f} s, join "
            f"{sql['join_s']:.1f} s -> {sql['pairs']:,} pairs (same pairs as numpy: {same}). {load_line()}")
        arrays = sql_join_arrays(postings_of[(bands, bits)], max_df, m, top_k, args.pgdata)
        same = set(arrays.pop("result")) == found
        say()
        say(f"One row per image with its keys as integer[] (unnested at match time): {arrays['bytes'] / 2**20:.1f} MiB; "
            f"COPY {arrays['copy_s']:.1f} s, join {arrays['join_s']:.1f} s (same pairs as numpy: {same}). {load_line()}")

    # ---- verification
    if not args.no_verify:
        say()
        say("## After geometric verification (verify.geometric_match on the same ORB keypoints, geometric_verdict)")
        say()
        new = sorted(found - hashed)
        say(f"Verified here: the {len(new):,} keypoint candidates (default setting) that today's hash candidates "
            f"do not have; today's are verified as today (not here). {load_line()}")
        t0 = time.perf_counter()
        outcome, cost = verify_pairs(new, files, measures, min_inliers=12)
        seconds = time.perf_counter() - t0
        say(f"{seconds:.0f} s: match + RANSAC {cost['match_ms']:.2f} ms/pair; warp + colour check over the overlap "
            f"{cost['colour_ms']:.2f} ms/pair on the {cost['colour_pairs']:,} pairs with >= 12 inliers.")
        say()
        say("Recall here = keypoint-only pairs verified, united with every original-copy pair that today's "
            "candidates hold (an upper bound for those: today's verification decides them).")
        say()
        say(recall_header("false pairs verified"))
        for need in (12, 16, 20, 24):
            ok = {pair for pair, verdict in outcome["verdicts"].items()
                  if outcome["inliers"][pair] >= need and verdict.verified}
            false = sum(1 for a, b in ok if not scorer.related(a, b))
            say(recall_row(f">= {need} inliers", scorer, ok | hashed, str(false)))
        for need in (12, 24):
            kinds = Counter()
            for (a, b), verdict in outcome["verdicts"].items():
                if verdict.verified and outcome["inliers"][(a, b)] >= need and not scorer.related(a, b):
                    ka, kb = truth.hard_kind[files[a]] or "photo-like", truth.hard_kind[files[b]] or "photo-like"
                    kinds[ka if ka == kb else "mixed"] += 1
            say()
            say(f"False pairs verified at >= {need} inliers, by kind of the two pictures: "
                + (", ".join(f"{k} {v}" for k, v in kinds.most_common()) or "none"))
        reasons = Counter(v.reason for v in outcome["verdicts"].values())
        say()
        say("Verdicts: " + ", ".join(f"{k} {v:,}" for k, v in reasons.most_common()))
        inl = defaultdict(list)
        for (a, b), n_in in outcome["inliers"].items():
            kinds = {truth.transform[files[a]], truth.transform[files[b]]}
            if not scorer.related(a, b):
                t = "unrelated"
            elif "original" in kinds:
                t = (kinds - {"original"}).pop()
            else:
                t = "copy-copy"
            inl[t].append(n_in)
        say()
        say("Inliers (median / 90th percentile) by kind of pair: " + ", ".join(
            f"{t} {np.median(v):.0f}/{np.percentile(v, 90):.0f} (n={len(v)})" for t, v in sorted(inl.items())))
    say()
    say(f"At the end: {load_line()}")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
