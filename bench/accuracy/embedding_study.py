"""How well the default embedding separates duplicates on the accuracy set, and its fused-rule defaults.

Reads the set built by build_set.py (bench/out/accuracy: truth.csv, images/),
decodes every file once with ``decode.decode_image`` (exactly what the loader
hashes), computes pHash, the 8-orientation pHashes, and each descriptor
variant below, fits the PCA reduction on all images and scores pairs with
numpy (no database):

  (a) per transform: fraction of original-copy pairs with cosine similarity >= s;
  (b) pair precision / recall of "similarity >= s" over all pairs;
  (c) the same when also requiring pHash distance <= c (plain, and "best": the least distance
      between one image's stored pHash and the other's transform variants from
      ``variants.compute_variants``: 7 orientations, border-trimmed, trimmed orientations);
  (d) the fused rule  hash <= 8 OR (similarity >= s AND hash distance <= c):
      precision, recall, and recall per transform, plain pHash and with orientations;
  plus describe() cost per image, and the (s, c) with pair precision >= 0.99 and
  the best recall on crops, borders and flips (the DEFAULT_* values in embedding.py).

A predicted pair is true when both files belong to one group (an original and
its copies); distractors belong to no group. Pairs here are direct, not the
pairs a cluster implies (score.py measures clusters).

Variants: "grey-v1" (the shipped descriptor), "d4" (the same blocks made
invariant to flips and 90-degree rotations: DCT magnitudes symmetrised over
the transpose, gradient histograms averaged over the 8 orientations), and
"canonical" (grey-v1 after flipping/transposing the thumbnail to a canonical
orientation chosen from its first DCT coefficients).

Usage:
    .venv/bin/python bench/accuracy/embedding_study.py [--variants grey-v1,d4,canonical] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from dbdedup import decode, embedding, variants
from dbdedup.hashes import compute_hashes

SET_DIR = Path(__file__).resolve().parents[1] / "out" / "accuracy"
SIMILARITIES = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98)
CONFIRM = (12, 16, 20, 24, 28, 64)
HASH_THRESHOLD = 8
TARGET_PRECISION = 0.99
HARD = ("crop_90", "crop_75", "border", "flip_h", "rotate_90", "rotate_5", "crop_50")

# ---------------------------------------------------------------- descriptor variants


def _hog_permutations() -> list[np.ndarray]:
    cells, bins = embedding._HOG_CELLS, embedding._HOG_BINS
    idx = np.arange(cells * cells * bins).reshape(cells, cells, bins)
    flip_bins = (bins - np.arange(bins)) % bins
    transpose_bins = (bins // 2 - np.arange(bins)) % bins

    def hflip(a):
        return a[:, ::-1][:, :, flip_bins]

    def vflip(a):
        return a[::-1][:, :, flip_bins]

    def transpose(a):
        return a.transpose(1, 0, 2)[:, :, transpose_bins]

    group = [idx, hflip(idx), vflip(idx), vflip(hflip(idx))]
    group += [transpose(g) for g in group]
    return [g.ravel() for g in group]


_HOG_PERMS = _hog_permutations()


def features_d4(z: np.ndarray) -> np.ndarray:
    """grey-v1's blocks made invariant to the 8 orientations of the thumbnail."""
    base = embedding.grey_features(z)
    n_dct = embedding._DCT_BAND ** 2 - 1
    n_hog = embedding._HOG_CELLS ** 2 * embedding._HOG_BINS
    c = np.abs(embedding._DCT @ z @ embedding._DCT.T)
    upper = np.triu_indices(embedding._DCT_BAND, 1)
    diag = np.arange(1, embedding._DCT_BAND)
    dct = np.concatenate([c[diag, diag], c[upper] + c.T[upper], np.abs(c[upper] - c.T[upper])])
    hog = base[n_dct:n_dct + n_hog]
    hog = np.mean([hog[p] for p in _HOG_PERMS], axis=0)
    hist = base[n_dct + n_hog:]
    return np.concatenate([embedding._W_DCT * embedding._unit(dct), embedding._W_HOG * embedding._unit(hog),
                           hist]).astype(np.float32)


def features_canonical(z: np.ndarray) -> np.ndarray:
    """grey-v1 after putting the thumbnail in a canonical orientation."""
    c = embedding._DCT[:2] @ z @ embedding._DCT[:2].T
    if abs(c[1, 0]) > abs(c[0, 1]):
        z, c = z.T, c.T
    if c[0, 1] < 0:
        z = z[:, ::-1]
    if c[1, 0] < 0:
        z = z[::-1]
    return embedding.grey_features(np.ascontiguousarray(z))


VARIANTS = {
    "grey-v1": lambda image: embedding.GreyEmbedder().describe(image),
    "d4": lambda image: features_d4(embedding.normalised_thumbnail(image)),
    "canonical": lambda image: features_canonical(embedding.normalised_thumbnail(image)),
}


# ---------------------------------------------------------------- data


def variant_hashes(image: Image.Image) -> list[int]:
    """pHash, its 7 orientations, then the border-trimmed pHash and its 7 orientations (or repeats)."""
    plain = compute_hashes(image).phash
    found = variants.compute_variants(image)
    oriented = [plain, *found.orientations]
    if found.trimmed is None:
        return oriented + oriented
    return oriented + [found.trimmed, *found.trimmed_orientations]


def load_set(limit: int | None, variants: list[str]):
    with open(SET_DIR / "truth.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if limit:
        rows = rows[:limit]
    hashes = np.zeros((len(rows), 16), dtype=np.int64)
    raw = {name: [] for name in variants}
    cost = {name: 0.0 for name in variants}
    started = time.perf_counter()
    for i, row in enumerate(rows):
        image = decode.decode_image((SET_DIR / "images" / row["file"]).read_bytes()).image
        hashes[i] = variant_hashes(image)
        for name in variants:
            t = time.perf_counter()
            raw[name].append(VARIANTS[name](image))
            cost[name] += time.perf_counter() - t
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1}/{len(rows)} images, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows, hashes, {k: np.stack(v) for k, v in raw.items()}, {k: v / len(rows) for k, v in cost.items()}


# ---------------------------------------------------------------- pairs


def candidate_pairs(unit: np.ndarray, hashes: np.ndarray, min_similarity: float, chunk: int = 64):
    """Every pair i < j with similarity >= min_similarity or best hash distance <= HASH_THRESHOLD.

    Returns arrays i, j, similarity, plain pHash distance, best distance over orientations.
    """
    n = unit.shape[0]
    plain = np.ascontiguousarray(hashes[:, 0]).view(np.uint64)
    every = hashes.view(np.uint64)
    out = defaultdict(list)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sims = unit[start:stop] @ unit.T
        d_plain = np.bitwise_count(plain[start:stop, None] ^ plain[None, :])
        # each side's variants (orientations, trimmed) against the other's stored hash
        d_best = np.minimum(
            np.bitwise_count(every[start:stop, :, None] ^ plain[None, None, :]).min(axis=1),
            np.bitwise_count(plain[start:stop, None, None] ^ every.T[None, :, :]).min(axis=1))
        rows = np.arange(start, stop)[:, None]
        upper = np.arange(n)[None, :] > rows
        keep = upper & ((sims >= min_similarity) | (d_best <= HASH_THRESHOLD))
        ii, jj = np.nonzero(keep)
        out["i"].append(ii + start)
        out["j"].append(jj)
        out["sim"].append(sims[ii, jj])
        out["plain"].append(d_plain[ii, jj])
        out["best"].append(d_best[ii, jj])
    return {k: np.concatenate(v) for k, v in out.items()}


def truth(rows):
    groups = np.array([r["group"] or f"#distractor{k}" for k, r in enumerate(rows)])
    sizes = defaultdict(int)
    for r in rows:
        if r["group"]:
            sizes[r["group"]] += 1
    positives = sum(s * (s - 1) // 2 for s in sizes.values())
    # original-copy pairs per transform: (original index, copy index)
    original = {r["group"]: k for k, r in enumerate(rows) if r["transform"] == "original"}
    per_transform = defaultdict(list)
    for k, r in enumerate(rows):
        if r["group"] and r["transform"] != "original":
            per_transform[r["transform"]].append((original[r["group"]], k))
    return groups, positives, per_transform


def score(mask, pairs, same, positives):
    tp = int((mask & same).sum())
    predicted = int(mask.sum())
    precision = tp / predicted if predicted else 1.0
    recall = tp / positives if positives else 0.0
    return precision, recall


def transform_recall(edge_set, per_transform):
    return {t: np.mean([(min(a, b), max(a, b)) in edge_set for a, b in pp]) for t, pp in per_transform.items()}


def report(name, rows, hashes, raw, cost):
    print(f"\n## descriptor {name}: raw_dim {raw.shape[1]}, describe() {cost * 1000:.3f} ms an image")
    reduction = embedding.fit_reduction(name, raw)
    unit = embedding.project(reduction, raw)
    groups, positives, per_transform = truth(rows)
    pairs = candidate_pairs(unit, hashes, min(SIMILARITIES))
    same = groups[pairs["i"]] == groups[pairs["j"]]
    index = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(pairs["i"], pairs["j"]))}

    def per_t(mask):
        chosen = set(np.flatnonzero(mask))
        return {t: float(np.mean([index.get((min(a, b), max(a, b)), -1) in chosen for a, b in pp]))
                for t, pp in per_transform.items()}

    # (a) similarity of original-copy pairs, per transform (computed directly, not from candidates)
    print("\n(a) original-copy pairs with similarity >= s")
    print("transform        " + " ".join(f"{s:>5.2f}" for s in SIMILARITIES) + "  median")
    for t, pp in per_transform.items():
        a, b = np.array(pp).T
        sims = np.einsum("ij,ij->i", unit[a], unit[b])
        print(f"{t:<16} " + " ".join(f"{(sims >= s).mean():5.2f}" for s in SIMILARITIES)
              + f"  {np.median(sims):6.3f}")

    print(f"\n(b, c) pair precision / recall over all pairs ({positives} true pairs)")
    print("rule                         " + " ".join(f"{s:>11.2f}" for s in SIMILARITIES))
    for label, dist, c in [("sim alone", None, None)] + [
            (f"sim & {kind} <= {c}", kind, c) for kind in ("plain", "best") for c in CONFIRM[:-1]]:
        cells = []
        for s in SIMILARITIES:
            mask = pairs["sim"] >= s
            if dist:
                mask &= pairs[dist] <= c
            p, r = score(mask, pairs, same, positives)
            cells.append(f"{p:5.3f}/{r:5.3f}")
        print(f"{label:<28} " + " ".join(cells))

    print(f"\n(d) fused: hash <= {HASH_THRESHOLD} OR (sim >= s AND hash <= c); precision/recall, hard-transform recall")
    results = []
    for kind in ("plain", "best"):
        base = pairs[kind] <= HASH_THRESHOLD
        p0, r0 = score(base, pairs, same, positives)
        rec0 = per_t(base)
        print(f"  {kind} pHash <= {HASH_THRESHOLD} alone: P {p0:.4f} R {r0:.4f}  "
              + " ".join(f"{t} {rec0[t]:.2f}" for t in HARD))
        for s in SIMILARITIES:
            for c in CONFIRM:
                mask = base | ((pairs["sim"] >= s) & (pairs[kind] <= c))
                p, r = score(mask, pairs, same, positives)
                results.append((kind, s, c, p, r, mask))
    print("kind   s     c   precision recall  " + " ".join(f"{t:>9}" for t in HARD))
    for kind, s, c, p, r, mask in results:
        if c == 64 and s < 0.9:
            continue
        rec = per_t(mask)
        print(f"{kind:<6} {s:.2f} {c:>3}  {p:.4f}   {r:.4f}  " + " ".join(f"{rec[t]:>9.2f}" for t in HARD))
    ok = [x for x in results if x[3] >= TARGET_PRECISION and x[2] < 64]
    summary = {}
    for kind in ("plain", "best"):
        candidates = [x for x in ok if x[0] == kind]
        if not candidates:
            continue
        best = max(candidates, key=lambda x: (np.mean([per_t(x[5])[t] for t in HARD[:5]]), x[4]))
        rec = per_t(best[5])
        summary[kind] = best
        print(f"\nrecommended ({kind} hash): s >= {best[1]:.2f}, c <= {best[2]}: precision {best[3]:.4f} "
              f"recall {best[4]:.4f}")
        print("  per transform: " + ", ".join(f"{t} {v:.2f}" for t, v in rec.items()))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="descriptor variants to compare, comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--limit", type=int, help="only the first N rows of truth.csv (a quick look)")
    args = parser.parse_args(argv)
    if not (SET_DIR / "truth.csv").exists():
        print(f"no accuracy set at {SET_DIR}: run bench/accuracy/build_set.py first", file=sys.stderr)
        return 1
    variants = args.variants.split(",")
    rows, hashes, raw, cost = load_set(args.limit, variants)
    print(f"{len(rows)} images, {sum(1 for r in rows if r['group'])} in duplicate groups")
    for name in variants:
        report(name, rows, hashes, raw[name], cost[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
