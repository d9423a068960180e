"""Benchmark of the SQL matching methods against a numpy brute force, on synthetic hashes.

For each size: n random 64-bit hashes, of which 5% are planted near-duplicates of other rows
at distances 0-10, loaded straight into dbdedup.images. For each threshold and method:
``dbdedup.match(..., full_rematch => true)`` is timed (the whole run: distinct values, the
method, image pairs), and its value pairs are compared with the truth:

- up to --exact-truth-max rows (default 200k) the truth is a full numpy brute force
  (np.bitwise_count on uint64 XOR, chunked), timed in the same run;
- above that, numpy's time is extrapolated from a measured sample of rows against all rows
  (said so in the output), and recall is measured on the pairs that involve the sampled rows
  (the exact truth for those rows) plus the planted pairs.

Usage::

    python bench/match_bench.py                      # 10k, 100k, 1M at thresholds 3, 8, 10
    python bench/match_bench.py --sizes 10000 --thresholds 8 --methods blocks,lsh
    python bench/match_bench.py --db postgresql://... # another server (default: embedded in /tmp)
    python bench/match_bench.py --target             # only the 1M / threshold 3 / blocks row, cold then warm,
                                                     # no numpy, with dbdedup.match's DEBUG timings (--profile)
    python bench/match_bench.py --copies 601         # exact copies: pairs stored and clustering time
    python bench/match_bench.py --issue14            # issue 14's target: 1M values at threshold 10 (and 8), the
                                                     # method auto picks (lsh), then lsh_adaptive, numpy truth on a
                                                     # 20k-row sample

Runs: with --repeat N each row is timed N times on the same data; the first run after the load is
"cold" (empty hash_values, nothing of the run cached), the later ones "warm".

The 2 cores are shared: every row ends with the machine's load average (1 / 5 / 15 minutes) read when
the row's runs ended, and the first line gives it at the start.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

from benchdb import fresh_database, start_embedded, stop_started

METHOD_LIMITS = {  # skip runs that would take far too long on 2 cores (value pairs compared by a scan)
    "scan": 2e8,
}


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes (the cores are shared with other jobs)."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def synthetic(n: int, seed: int = 1, share: float = 0.05, max_flip: int = 10):
    """n signed 64-bit hashes: random, plus `share` planted near-duplicates (distance 0..max_flip) of random rows."""
    rng = np.random.default_rng(seed)
    k = int(n * share)
    base = rng.integers(0, 2**64 - 1, size=n - k, dtype=np.uint64, endpoint=True)
    src = rng.integers(0, n - k, size=k)
    dup = base[src].copy()
    flips = rng.integers(0, max_flip + 1, size=k)
    for j in range(k):
        for b in rng.choice(64, size=flips[j], replace=False):
            dup[j] ^= np.uint64(1) << np.uint64(b)
    values = np.concatenate([base, dup])
    planted = np.stack([base[src], dup], axis=1)
    return values, planted


_COPY_IMAGES = ("COPY dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, sha256, width, height, "
                "phash, dhash, ahash) FROM STDIN")


def copy_images(conn: psycopg.Connection, rows) -> None:
    """COPY (path, sha256, hash) rows into dbdedup.images as ok images (the hash in all three columns)."""
    with conn.cursor() as cur, cur.copy(_COPY_IMAGES) as copy:
        for i, (path, sha, h) in enumerate(rows):
            copy.write_row((path, path.encode(), 1000 + i, 10**18 + i, "ok", sha, 100, 100, h, h, h))


def load(conn: psycopg.Connection, values: np.ndarray) -> None:
    signed = values.view(np.int64)
    rng = np.random.default_rng(2)
    shas = rng.integers(0, 2**63 - 1, size=(len(values), 4), dtype=np.int64)
    buf = io.StringIO()
    for i, (h, s) in enumerate(zip(signed.tolist(), shas.tolist())):
        path = f"/bench/{i}.jpg"
        sha = "".join(f"{x & ((1 << 64) - 1):016x}" for x in s)
        buf.write(f"{path}\t\\\\x{path.encode().hex()}\t{1000 + i}\t{10**18 + i}\tok\t\\\\x{sha}\t100\t100\t{h}\t{h}\t{h}\n")
    with conn.cursor() as cur, cur.copy(_COPY_IMAGES) as copy:
        copy.write(buf.getvalue())
    conn.commit()
    settle(conn)


def settle(conn: psycopg.Connection) -> None:
    """VACUUM and ANALYZE the images just COPYed: the state autovacuum leaves after a real load, so that it
    does not visit the table during a timed match."""
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute("VACUUM (ANALYZE) dbdedup.images")
    finally:
        conn.autocommit = autocommit


def brute_force(values: np.ndarray, rows: np.ndarray, threshold: int):
    """Pairs (i, j) of unique-value indices, i in rows, i < j or j not in rows, within threshold; and seconds."""
    started = time.perf_counter()
    chunk = max(1, 2**24 // len(values))  # 16 M distances (128 MB) at a time: stays in memory, one core
    found = []
    in_rows = np.zeros(len(values), dtype=bool)
    in_rows[rows] = True
    for start in range(0, len(rows), chunk):
        idx = rows[start : start + chunk]
        dist = np.bitwise_count(values[idx, None] ^ values[None, :])
        ii, jj = np.nonzero(dist <= threshold)
        a, b = idx[ii], jj
        keep = (a != b) & ((a < b) | ~in_rows[b])
        found.append(np.stack([a[keep], b[keep]], axis=1))
    seconds = time.perf_counter() - started
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    return pairs, seconds


def as_value_pairs(values: np.ndarray, pairs: np.ndarray) -> set[tuple[int, int]]:
    s = values.view(np.int64)
    a, b = s[pairs[:, 0]], s[pairs[:, 1]]
    return set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist()))


# ---------------------------------------------------------------- threshold study


def _edits():
    """Edits that leave "the same picture": name -> function(PIL RGB image) -> (image, format, save options)."""
    from PIL import ImageEnhance

    def resize(f):
        return lambda im: im.resize((max(8, int(im.width * f)), max(8, int(im.height * f))), 1)

    def crop(f):
        return lambda im: im.crop((int(im.width * f), int(im.height * f), im.width - int(im.width * f),
                                   im.height - int(im.height * f)))

    return {
        "resize 50%": (resize(0.5), "JPEG", {"quality": 90}),
        "thumbnail 25%": (resize(0.25), "JPEG", {"quality": 85}),
        "JPEG q30": (lambda im: im, "JPEG", {"quality": 30}),
        "resize 75% + JPEG q70": (resize(0.75), "JPEG", {"quality": 70}),
        "brightness +20%": (lambda im: ImageEnhance.Brightness(im).enhance(1.2), "JPEG", {"quality": 90}),
        "brightness -20%": (lambda im: ImageEnhance.Brightness(im).enhance(0.8), "JPEG", {"quality": 90}),
        "contrast +30%": (lambda im: ImageEnhance.Contrast(im).enhance(1.3), "PNG", {}),
        "crop 3% borders": (crop(0.03), "JPEG", {"quality": 90}),
        "crop 8% borders": (crop(0.08), "JPEG", {"quality": 90}),
    }


def threshold_study(photo_seeds: int, real_glob: str, limit: int, admin: str | None = None) -> None:
    """Distances between true near-duplicates (edits of one image) and between unrelated images, on
    photo-like synthetic images and real images (default: Tux Paint's stamps from Debian)."""
    import glob

    from PIL import Image

    from dbdedup.decode import decode_image
    from dbdedup.hashes import compute_hashes

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from images import photo

    sources: list[tuple[str, object]] = [(f"photo({s})", lambda s=s: photo(s, (640, 480))) for s in range(photo_seeds)]
    real = sorted(glob.glob(real_glob, recursive=True))[:limit]
    sources += [(p, lambda p=p: decode_image(p).image) for p in real]
    edits = _edits()
    originals = []
    library: list[tuple[int, str, int]] = []  # (group, kind of source, phash) of every original and edit
    kinds = ("phash", "dhash", "ahash")
    edit_by_kind = {k: {name: [] for name in edits} for k in kinds}
    for name, make in sources:
        try:
            image = make()
        except Exception:
            continue
        if image.width < 32 or image.height < 32:
            continue
        if image.mode != "RGB":
            background = Image.new("RGB", image.size, "white")
            rgba = image.convert("RGBA")
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        buf = io.BytesIO()
        image.save(buf, "PNG")
        base = compute_hashes(decode_image(buf.getvalue()).image)
        originals.append((name, base))
        source_kind = "photo-like" if name.startswith("photo(") else "real"
        library.append((len(originals), source_kind, base.phash))
        for edit, (fn, fmt, opts) in edits.items():
            out = io.BytesIO()
            fn(image).save(out, fmt, **opts)
            h = compute_hashes(decode_image(out.getvalue()).image)
            library.append((len(originals), source_kind, h.phash))
            for k in kinds:
                d = bin((getattr(base, k) ^ getattr(h, k)) & ((1 << 64) - 1)).count("1")
                edit_by_kind[k][edit].append(d)
    n_photo = sum(1 for n, _ in originals if n.startswith("photo("))
    print(f"# threshold study: {len(originals)} originals ({n_photo} photo-like, {len(originals) - n_photo} real from "
          f"{real_glob}), {len(edits)} edits each")
    thresholds = (0, 2, 4, 6, 8, 10, 12, 14)
    for k in kinds:
        values = np.array([getattr(h, k) for _, h in originals], dtype=np.int64).view(np.uint64)
        dist = np.bitwise_count(values[:, None] ^ values[None, :])
        iu = np.triu_indices(len(values), 1)
        unrelated = dist[iu]
        # photo-like only, and real only
        print(f"\n## {k}: share of true near-duplicates found (edit within threshold), and unrelated pairs within it")
        print("| edit | median | 90th pct | max | " + " | ".join(f"<={t}" for t in thresholds) + " |")
        print("| --- | --- | --- | --- | " + " | ".join("---" for _ in thresholds) + " |")
        for edit, ds in edit_by_kind[k].items():
            a = np.array(ds)
            print(f"| {edit} | {np.median(a):.0f} | {np.percentile(a, 90):.0f} | {a.max()} | "
                  + " | ".join(f"{(a <= t).mean():.2f}" for t in thresholds) + " |")
        allds = np.concatenate([np.array(v) for v in edit_by_kind[k].values()])
        print(f"| all edits | {np.median(allds):.0f} | {np.percentile(allds, 90):.0f} | {allds.max()} | "
              + " | ".join(f"{(allds <= t).mean():.2f}" for t in thresholds) + " |")
        print(f"| unrelated pairs ({len(unrelated):,}) | {np.median(unrelated):.0f} | "
              f"{np.percentile(unrelated, 10):.0f} (10th pct) | min {unrelated.min()} | "
              + " | ".join(f"{int((unrelated <= t).sum())}" for t in thresholds) + " |")
        # precision of the pairs in a library holding every original and every edit once:
        # true pairs = original-edit and edit-edit of one image; false = across images (approximated by originals)
        per_image = len(edits) + 1
        true_pairs = np.array([(allds <= t).mean() for t in thresholds]) * len(originals) * per_image * (per_image - 1) / 2
        false_pairs = np.array([(unrelated <= t).sum() for t in thresholds]) * per_image * per_image
        precision = true_pairs / np.maximum(true_pairs + false_pairs, 1)
        print("| precision in a library of originals + all edits | | | | "
              + " | ".join(f"{p:.3f}" for p in precision) + " |")
    if admin:
        cluster_precision(admin, library, thresholds)


def cluster_precision(admin: str, library: list[tuple[int, str, int]], thresholds) -> None:
    """Load every original and edit (pHash) into a database, cluster at each threshold with
    dbdedup.build_clusters, and count the (keeper, member) pairs the clusters imply that are
    true duplicates (same original), per source kind."""
    dsn = fresh_database(admin, "match_threshold_study")
    print("\n## pHash clusters on the whole library (originals + edits): implied (keeper, member) pairs")
    print("| threshold | source | clusters | implied pairs | true duplicates | precision | recall of edits |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with psycopg.connect(dsn) as conn:
        copy_images(conn, ((f"/{kind}/{group}/{i}.jpg", os.urandom(32), h) for i, (group, kind, h) in enumerate(library)))
        conn.commit()
        for t in thresholds:
            conn.execute("SELECT * FROM dbdedup.build_clusters(%s)", (t,))
            conn.commit()
            rows = conn.execute(
                "SELECT split_part(m.path, '/', 2), split_part(m.path, '/', 3) = split_part(k.path, '/', 3) "
                "FROM dbdedup.cluster_members m JOIN dbdedup.images k ON k.id = m.cluster_id WHERE NOT m.is_keeper"
            ).fetchall()
            n_clusters = conn.execute("SELECT count(*) FROM dbdedup.clusters").fetchone()[0]
            for kind in ("photo-like", "real"):
                implied = [same for k, same in rows if k == kind]
                members = sum(1 for g, k, _ in library if k == kind)
                groups = len({g for g, k, _ in library if k == kind})
                true = sum(implied)
                print(f"| {t} | {kind} | {n_clusters if kind == 'photo-like' else ''} | {len(implied)} | {true} | "
                      f"{true / max(1, len(implied)):.3f} | {true / max(1, members - groups):.3f} |")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS match_threshold_study WITH (FORCE)")


def exact_copies(admin: str, copies: int, repeat: int) -> None:
    """Issue 3's exact-copies case: `copies` byte-identical files of one image, 20 near copies of it and
    10,000 unrelated images; prints the pairs stored for the group and the match and clustering times."""
    dsn = fresh_database(admin, "match_bench_copies")
    rng = np.random.default_rng(5)
    values, _ = synthetic(10_000, seed=7, share=0)
    signed = values.view(np.int64).tolist()
    original = signed[0]
    near = []
    for _ in range(20):
        v = original & ((1 << 64) - 1)
        for b in rng.choice(64, size=int(rng.integers(1, 5)), replace=False):
            v ^= 1 << int(b)
        near.append(v - (1 << 64) if v >= 1 << 63 else v)
    sha = os.urandom(32)
    rows = [(original, sha)] * copies + [(v, os.urandom(32)) for v in near + signed[1:]]
    print(f"# exact copies: {copies} copies of one image, {len(near)} near copies, {len(signed) - 1:,} others")
    print("| run | match seconds | pairs | pairs of the group | clustering seconds | clusters | members |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with psycopg.connect(dsn) as conn:
        copy_images(conn, ((f"/copies/{i}.jpg", sha, h) for i, (h, sha) in enumerate(rows)))
        conn.commit()
        settle(conn)
        for run in range(max(1, repeat)):
            started = time.perf_counter()
            conn.execute("SELECT * FROM dbdedup.match(8, 'phash', 'auto', true)")
            conn.commit()
            match_seconds = time.perf_counter() - started
            pairs = conn.execute("SELECT count(*) FROM dbdedup.pairs").fetchone()[0]
            group = conn.execute(
                "SELECT count(*) FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a "
                "JOIN dbdedup.images b ON b.id = p.image_b WHERE a.sha256 = %s AND b.sha256 = %s", (sha, sha)).fetchone()[0]
            started = time.perf_counter()
            clusters, members, _, _ = conn.execute("SELECT * FROM dbdedup.build_clusters(8)").fetchone()
            conn.commit()
            print(f"| {run + 1} | {match_seconds:.2f} | {pairs:,} | {group:,} | {time.perf_counter() - started:.2f} "
                  f"| {clusters} | {members:,} |", flush=True)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS match_bench_copies WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--thresholds", default="3,8,10")
    parser.add_argument("--methods", default="scan,blocks,lsh")
    parser.add_argument("--db", help="admin DSN of a server to create bench databases on (default: embedded)")
    parser.add_argument("--data-dir", default="/tmp/dbdedup-bench/pgdata")
    parser.add_argument("--exact-truth-max", type=int, default=200_000)
    parser.add_argument("--sample", type=int, default=20_000, help="rows in numpy's measured sample above that")
    parser.add_argument("--max-blocks-cost", type=float, default=2e9, help="skip blocks plans estimated above this")
    parser.add_argument("--repeat", type=int, default=1, help="time each row this many times (first cold, then warm)")
    parser.add_argument("--no-numpy", action="store_true", help="skip the numpy brute force (recall on planted pairs)")
    parser.add_argument("--profile", action="store_true", help="print dbdedup.match's DEBUG timings on stderr")
    parser.add_argument("--target", action="store_true",
                        help="only issue 3's target row: 1M rows, threshold 3, blocks, twice (cold, warm), no numpy, profiled")
    parser.add_argument("--issue14", action="store_true",
                        help="only issue 14's rows: 1M rows, thresholds 10 and 8, method auto (what `dbdedup match` runs) "
                             "and lsh_adaptive")
    parser.add_argument("--copies", type=int, default=0,
                        help="instead: N byte-identical copies of one image (plus near copies and 10k others): "
                             "pairs stored, matching and clustering time")
    parser.add_argument("--threshold-study", action="store_true",
                        help="instead: distances of edited copies vs unrelated images, to choose the default threshold")
    parser.add_argument("--photo-seeds", type=int, default=300)
    parser.add_argument("--real", default="/usr/share/tuxpaint/stamps/**/*.png",
                        help="glob of real images for the study (apt-get install tuxpaint-stamps-default)")
    parser.add_argument("--real-limit", type=int, default=1200)
    args = parser.parse_args()
    if args.threshold_study:
        admin = args.db or start_embedded(Path(args.data_dir))
        threshold_study(args.photo_seeds, args.real, args.real_limit, admin)
        return

    if args.target:
        args.sizes, args.thresholds, args.methods = "1000000", "3", "blocks"
        args.repeat, args.no_numpy, args.profile = max(args.repeat, 2), True, True
    if args.issue14:
        args.sizes, args.thresholds, args.methods = "1000000", "10,8", "auto,lsh_adaptive"
    admin = args.db or start_embedded(Path(args.data_dir))
    if args.copies:
        exact_copies(admin, args.copies, args.repeat)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    thresholds = [int(t) for t in args.thresholds.split(",")]
    methods = args.methods.split(",")
    print(f"# match bench: {os.cpu_count()} cores, PostgreSQL via {'--db' if args.db else 'embedded server'}, "
          f"load average {load_average()} at the start")
    print("| rows | threshold | method | seconds | candidates | value pairs | recall | beyond threshold | numpy seconds "
          "| speed-up | load average |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        values, planted = synthetic(n)
        dsn = fresh_database(admin, f"match_bench_{n}")
        with psycopg.connect(dsn) as conn:
            if args.profile:
                conn.execute("SET client_min_messages = debug")
                conn.add_notice_handler(lambda d: print(f"#   {d.message_primary}", file=sys.stderr)
                                        if d.message_primary.startswith(("dbdedup.match:", "dbdedup.match_values_lsh:")) else None)
            t0 = time.perf_counter()
            load(conn, values)
            print(f"# {n:,} rows loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            unique = np.unique(values)
            exact_truth = len(unique) <= args.exact_truth_max
            if exact_truth:
                rows = np.arange(len(unique))
            else:
                rows = np.sort(np.random.default_rng(3).choice(len(unique), size=args.sample, replace=False))
            if args.no_numpy:
                exact_truth, rows = False, rows[:0]  # recall on the planted pairs only
            for t in thresholds:
                pairs, np_seconds = brute_force(unique, rows, t)
                truth = as_value_pairs(unique, pairs)
                if args.no_numpy:
                    np_seconds, numpy_note = float("nan"), "not run"
                elif exact_truth:
                    numpy_note = f"{np_seconds:.1f}"
                else:
                    # each sampled row was compared with every row; the full run compares n^2/2 pairs
                    full = np_seconds * (len(unique) / 2) / len(rows)
                    np_seconds = full
                    numpy_note = f"{full:.0f} (extrapolated from {len(rows):,} rows)"
                pd = np.bitwise_count(planted[:, 0] ^ planted[:, 1])
                planted_truth = as_value_pairs(
                    np.concatenate([planted[:, 0], planted[:, 1]]),
                    np.stack([np.arange(len(planted)), np.arange(len(planted)) + len(planted)], axis=1)[(pd <= t) & (pd > 0)],
                )
                for method in methods:
                    n_values = len(unique)
                    if method == "scan" and n_values * n_values / 2 > METHOD_LIMITS["scan"]:
                        print(f"| {n:,} | {t} | scan | skipped (~{n_values**2 / 2 / 8e6:.0f} s at 8 M pairs/s) | | | | | {numpy_note} | |")
                        continue
                    if method == "blocks":
                        cost = conn.execute("SELECT estimated_cost FROM dbdedup.plan_blocks(%s, %s, %s)",
                                            (n_values, n_values, t)).fetchone()[0]
                        if cost > args.max_blocks_cost:
                            print(f"| {n:,} | {t} | blocks | skipped (estimated {cost:.1e} row operations) | | | | | {numpy_note} | |")
                            continue
                    times = []
                    for run in range(args.repeat):
                        started = time.perf_counter()
                        row = conn.execute("SELECT * FROM dbdedup.match(%s, 'phash', %s, true)", (t, method)).fetchone()
                        conn.commit()
                        times.append(time.perf_counter() - started)
                    seconds = min(times)
                    seconds_note = f"{times[0]:.1f}" if len(times) == 1 else (
                        f"{times[0]:.1f} cold, " + " / ".join(f"{x:.1f}" for x in times[1:]) + " warm")
                    got = set(conn.execute(
                        "SELECT value_a, value_b FROM dbdedup.value_pairs WHERE hash_kind = 'phash'").fetchall())
                    far = conn.execute("SELECT count(*) FROM dbdedup.value_pairs WHERE distance > %s", (t,)).fetchone()[0]
                    if exact_truth:
                        recall = len(got & truth) / max(1, len(truth))
                        recall_note = f"{recall:.4f}"
                    else:
                        sampled = len(got & truth) / max(1, len(truth))
                        plant = len(got & planted_truth) / max(1, len(planted_truth))
                        recall_note = (f"{plant:.4f} planted" if args.no_numpy else
                                       f"{sampled:.4f} sampled rows ({len(truth):,} pairs); {plant:.4f} planted")
                    speed_up = "-" if args.no_numpy else f"{np_seconds / seconds:.1f}x"
                    print(f"| {n:,} | {t} | {row[0]} | {seconds_note} | {row[5]:,} | {row[6]:,} | {recall_note} | {far} "
                          f"| {numpy_note} | {speed_up} | {load_average()} |", flush=True)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS match_bench_{n} WITH (FORCE)")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_started()
