"""Pair finding in SQL: every exact method equals a numpy brute force, lsh reaches its recall,
incremental equals full, over-common hashes stay out, similar(), read-only access."""

from __future__ import annotations

import functools
import os

import numpy as np
import psycopg
import pytest

from dbdedup import lookup, matching, verify
from dbdedup.clusters import ClusterSettings
from dbdedup.errors import DbdedupError

COPY_IMAGES = (
    "COPY dbdedup.images (path, path_bytes, size_bytes, mtime_ns, status, sha256, width, height, phash, dhash, ahash, "
    "quality, colour_signature) FROM STDIN"
)


# ---------------------------------------------------------------- synthetic data helpers (used by the other test files)


def flip_bits(rng: np.random.Generator, value: int, distance: int) -> int:
    """``value`` (signed 64-bit) with ``distance`` distinct random bits flipped."""
    u = value & ((1 << 64) - 1)
    for b in rng.choice(64, size=distance, replace=False):
        u ^= 1 << int(b)
    return u - (1 << 64) if u >= 1 << 63 else u


def planted_hashes(n: int, seed: int, *, share: float = 0.1, max_flip: int = 10) -> list[int]:
    """``n`` signed 64-bit hashes: random ones plus planted near-duplicates at distances 0..max_flip
    (some of them from earlier copies, so small chains exist too)."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for _ in range(n):
        if out and rng.random() < share:
            out.append(flip_bits(rng, out[int(rng.integers(0, len(out)))], int(rng.integers(0, max_flip + 1))))
        else:
            out.append(int(rng.integers(-(2**63), 2**63 - 1, dtype=np.int64)))
    return out


@functools.cache
def shared_signature() -> list[float]:
    """One real colour signature (of a photo-like image) that every synthetic image gets."""
    from images import photo

    return [float(x) for x in verify.colour_signature(photo(0))]


def insert_images(
    conn: psycopg.Connection,
    hashes: list[int],
    *,
    prefix: str = "/synth",
    shas: list[bytes] | None = None,
    sizes: list[tuple[int, int, int, int]] | None = None,
    seed: int = 0,
) -> list[int]:
    """Insert ok images with these phash (= dhash = ahash) values straight into dbdedup.images; returns their ids.

    ``sizes``: (width, height, size_bytes, mtime_ns) per image; ``shas``: SHA-256 per image (random otherwise).
    Every image gets the same hash quality and colour signature: as far as verification can see they are
    one picture in colour, so every pair that is aligned by its hashes (pHash within 12) is verified and
    links by the clustering rule alone, which is what the tests using them are about.
    """
    first = conn.execute("SELECT coalesce(max(id), 0) FROM dbdedup.images").fetchone()[0]
    # seeded by the first id too: two calls never make byte-identical files (same SHA-256) of different hashes
    rng = np.random.default_rng((seed + 1000, first))
    with conn.cursor() as cur, cur.copy(COPY_IMAGES) as copy:
        for i, h in enumerate(hashes):
            path = f"{prefix}/{first + i}.jpg"
            w, hgt, size, mtime = sizes[i] if sizes else (640, 480, 10_000 + i, 1_600_000_000_000_000_000 + i)
            sha = shas[i] if shas else rng.bytes(32)
            copy.write_row((path, path.encode(), size, mtime, "ok", sha, w, hgt, h, h, h, 50, shared_signature()))
    ids = [r[0] for r in conn.execute("SELECT id FROM dbdedup.images WHERE id > %s ORDER BY id", (first,)).fetchall()]
    conn.commit()
    return ids


def brute_force_pairs(conn: psycopg.Connection, max_distance: int, kind: str = "phash") -> set[tuple[int, int, int]]:
    """Every (image_a, image_b, distance) with a < b within max_distance among ok images, by numpy."""
    rows = conn.execute(f"SELECT id, {kind} FROM dbdedup.images WHERE status = 'ok' ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[1] for r in rows], dtype=np.int64).view(np.uint64)
    out: set[tuple[int, int, int]] = set()
    for start in range(0, len(values), 1024):
        dist = np.bitwise_count(values[start : start + 1024, None] ^ values[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        for i, j in zip(ii + start, jj):
            if ids[i] < ids[j]:
                out.add((int(ids[i]), int(ids[j]), int(dist[i - start, j])))
    return out


def stored_pairs(conn: psycopg.Connection, max_distance: int = 64, kind: str = "phash") -> set[tuple[int, int, int]]:
    return {
        (a, b, d)
        for a, b, d in conn.execute(
            "SELECT image_a, image_b, distance FROM dbdedup.pairs WHERE hash_kind = %s AND distance <= %s",
            (kind, max_distance),
        ).fetchall()
    }


# ---------------------------------------------------------------- tests


def test_hamming_function(conn):
    rows = conn.execute(
        "SELECT dbdedup.hamming(0, 0), dbdedup.hamming(0, -1), dbdedup.hamming(5, 6), "
        "dbdedup.hamming(-9223372036854775808, 0)"
    ).fetchone()
    assert rows == (0, 64, 2, 1)
    volatility = conn.execute(
        "SELECT provolatile, proparallel FROM pg_proc WHERE oid = 'dbdedup.hamming(bigint,bigint)'::regprocedure"
    ).fetchone()
    assert volatility == ("i", "s")


@pytest.mark.parametrize("method", ["scan", "blocks"])
def test_exact_methods_equal_numpy_brute_force(conn, method):
    insert_images(conn, planted_hashes(900, seed=11, share=0.3))
    for threshold in (0, 3, 8, 12):
        result = matching.find_pairs(conn, threshold=threshold, method=method, full=True)
        assert result.method == method and result.mode == "full"
        expected = brute_force_pairs(conn, threshold)
        assert len(expected) > 100 or threshold == 0
        assert stored_pairs(conn) == expected, f"{method} at threshold {threshold}"


def test_blocks_plans_cover_every_threshold(conn):
    for threshold in range(16):
        for total, probed in ((1_000, 1_000), (100_000, 100_000), (1_000_000, 1_000_000), (1_000_000, 50)):
            blocks, radii, cost = conn.execute(
                "SELECT * FROM dbdedup.plan_blocks(%s, %s, %s)", (total, probed, threshold)
            ).fetchone()
            assert len(radii) == blocks and max(radii) <= 3
            # pigeonhole: some block must be within its radius
            assert sum(r + 1 for r in radii) > threshold
    # the masks of a plan partition the 64 bits
    for blocks in (1, 2, 3, 4, 5, 7, 11, 16):
        masks = [conn.execute("SELECT dbdedup.interleaved_mask(%s, %s)", (blocks, i)).fetchone()[0] for i in range(blocks)]
        union = 0
        for m in masks:
            u = m & ((1 << 64) - 1)
            assert union & u == 0
            union |= u
            if blocks > 1:
                assert not any((u >> j) & 1 and (u >> (j + 32)) & 1 for j in range(32)), "j and j+32 in one block"
        assert union == (1 << 64) - 1


def test_blocks_with_forced_plans_stay_exact(conn):
    insert_images(conn, planted_hashes(600, seed=5, share=0.4))
    matching.find_pairs(conn, threshold=7, method="scan", full=True)
    expected = stored_pairs(conn)
    for blocks, radii in ((2, [3, 3]), (4, [1, 1, 1, 1]), (8, [0] * 8), (3, [3, 2, 1])):
        conn.execute("DELETE FROM dbdedup.value_pairs")
        conn.execute("UPDATE dbdedup.hash_values SET pending = true")
        conn.execute("SELECT dbdedup.match_values_blocks('phash', 7, false, %s, %s)", (blocks, radii))
        found = {
            (a, b, d)
            for a, b, d in conn.execute(
                "SELECT x.id, y.id, vp.distance FROM dbdedup.value_pairs vp "
                "JOIN dbdedup.images x ON x.phash = vp.value_a JOIN dbdedup.images y ON y.phash = vp.value_b"
            ).fetchall()
        }
        assert {(min(a, b), max(a, b), d) for a, b, d in found} == {p for p in expected if p[2] > 0}
        conn.rollback()
    with pytest.raises(psycopg.errors.RaiseException):
        conn.execute("SELECT dbdedup.match_values_blocks('phash', 7, false, 2, '{2,2}')")


def test_lsh_reaches_its_recall_and_never_returns_a_far_pair(conn):
    insert_images(conn, planted_hashes(3000, seed=3, share=0.3, max_flip=8))
    result = matching.find_pairs(conn, threshold=8, method="lsh", full=True)
    assert result.method == "lsh"
    expected = brute_force_pairs(conn, 8)
    found = stored_pairs(conn)
    assert found <= expected  # every candidate re-checked exactly
    at_threshold = {p for p in expected if p[2] == 8}
    assert len(found) / len(expected) >= 0.99
    # the stated recall holds at exactly the threshold too (the worst case), with slack for a small sample
    assert len(found & at_threshold) / max(1, len(at_threshold)) >= 0.95
    assert result.candidates < 3000 * 3000 / 2 / 10  # far fewer comparisons than a scan


def lsh_oracle(values: list[int], max_distance: int, masks: list[int]) -> set[tuple[int, int, int]]:
    """The value pairs the lsh method must return, by numpy: distinct values within max_distance (brute force) whose
    XOR has no bit in at least one table's mask (so the two share that table's key)."""
    return {pair for pair, table in first_tables(values, max_distance, masks).items() if table}


def test_lsh_full_run_returns_exactly_the_pairs_of_its_tables(conn):
    # planted near-duplicates at distances 0-10, the same value in other files, byte-identical copies, and a
    # tight family (12 values within 3 bits of one), which shares keys 4 or more at a time
    hashes = planted_hashes(3000, seed=13, share=0.3, max_flip=10)
    rng = np.random.default_rng(4)
    hashes += [flip_bits(rng, hashes[7], int(rng.integers(1, 4))) for _ in range(12)]
    insert_images(conn, hashes)
    insert_images(conn, hashes[:40], prefix="/same-value", seed=2)
    shas = [r[0] for r in conn.execute("SELECT sha256 FROM dbdedup.images ORDER BY id LIMIT 20").fetchall()]
    insert_images(conn, hashes[:20], shas=shas, prefix="/copies")
    for threshold in (8, 10):
        exact = matching.find_pairs(conn, threshold=threshold, method="scan", full=True)
        scan_pairs = stored_pairs(conn)
        result = matching.find_pairs(conn, threshold=threshold, method="lsh", full=True)
        assert result.method == "lsh" and result.mode == "full"
        n = result.values_total
        key_bits, tables, _ = conn.execute("SELECT * FROM dbdedup.plan_lsh(%s, %s, %s)", (n, n, threshold)).fetchone()
        masks = [conn.execute("SELECT dbdedup.lsh_mask(%s, %s)", (t, key_bits)).fetchone()[0]
                 for t in range(1, tables + 1)]
        values = [v for (v,) in conn.execute(
            "SELECT value FROM dbdedup.hash_values WHERE hash_kind = 'phash' AND NOT is_common").fetchall()]
        expected = lsh_oracle(values, threshold, masks)
        u = np.array(values, dtype=np.int64).view(np.uint64)
        assert max(np.unique(u & np.uint64(m & (2**64 - 1)), return_counts=True)[1].max() for m in masks) >= 4
        found = set(conn.execute(
            "SELECT value_a, value_b, distance FROM dbdedup.value_pairs WHERE hash_kind = 'phash'").fetchall())
        assert found == expected, f"threshold {threshold}: {len(found - expected)} extra, {len(expected - found)} missing"
        assert len(expected) > 500
        # image pairs: the exact scan's, less the near pairs no table shares a key for (copies and same values stay)
        value_of = dict(conn.execute("SELECT id, phash FROM dbdedup.images").fetchall())
        kept = {(a, b, d) for a, b, d in scan_pairs
                if d == 0 or any(((value_of[a] ^ value_of[b]) & m) == 0 for m in masks)}
        assert stored_pairs(conn) == kept
        assert len(kept) / len(scan_pairs) >= 0.99 and exact.pairs == len(scan_pairs)
        assert conn.execute("SELECT count(*) FROM dbdedup.match_work").fetchone()[0] == 0


def first_tables(values: list[int], max_distance: int, masks: list[int]) -> dict[tuple[int, int, int], int]:
    """Every value pair within max_distance (numpy brute force), with the number of the first table (1-based) whose
    mask its XOR misses (so the two share that table's key), or 0 when no table finds it."""
    unique = np.unique(np.array(values, dtype=np.int64)).view(np.uint64)
    mask_array = np.array(masks, dtype=np.int64).view(np.uint64)
    out = {}
    columns = np.arange(len(unique))
    for start in range(0, len(unique), 512):
        rows = columns[start : start + 512]
        close = np.bitwise_count(unique[rows, None] ^ unique[None, :]) <= max_distance
        ii, jj = np.nonzero(close & (columns[None, :] > rows[:, None]))
        for i, j in zip(ii + start, jj):
            xor = unique[i] ^ unique[j]
            hits = np.nonzero((xor & mask_array) == 0)[0]
            a, b = sorted((int(unique[i].view(np.int64)), int(unique[j].view(np.int64))))
            out[(a, b, int(np.bitwise_count(xor)))] = int(hits[0]) + 1 if len(hits) else 0
    return out


def test_lsh_tables_find_each_pair_at_the_threshold_with_the_planned_chance(conn):
    # plan_lsh assumes each pair at distance d shares a table's key with C(64-d, k) / C(64, k), whichever bits differ:
    # so pairs differing in both bits j and j+32 of some columns too (a mask that never takes both finds those
    # less often: 0.66 instead of 0.99 with five such columns)
    key_bits, tables, _ = conn.execute("SELECT * FROM dbdedup.plan_lsh(1000000, 1000000, 10)").fetchone()
    masks = np.array([conn.execute("SELECT dbdedup.lsh_mask(%s, %s)", (t, key_bits)).fetchone()[0]
                      for t in range(1, tables + 1)], dtype=np.int64).view(np.uint64)
    assert all(int(np.bitwise_count(m)) == key_bits for m in masks)
    rng = np.random.default_rng(8)
    for columns_in_both in (0, 2, 5):
        found = 0
        for _ in range(400):
            cols = rng.choice(32, size=10 - columns_in_both, replace=False)
            bits = [int(c) for c in cols[:columns_in_both]] + [int(c) + 32 for c in cols[:columns_in_both]]
            bits += [int(c) + 32 * int(rng.integers(0, 2)) for c in cols[columns_in_both:]]
            xor = np.uint64(sum(1 << b for b in bits))
            found += bool(((xor & masks) == 0).any())
        assert found / 400 >= 0.96, (columns_in_both, found)


def test_lsh_plan_weighs_a_candidate_as_half_a_row(conn):
    # measured on 1M values at threshold 10: k=19 (217 tables) and k=18 (169) take about 130 s, k=20 (279) 155 s,
    # k=21 (362) 160 s; candidates weighed like rows made the plan pick 20
    plan = conn.execute("SELECT key_bits, tables FROM dbdedup.plan_lsh(1000000, 1000000, 10)").fetchone()
    assert tuple(plan) == (19, 217)
    assert tuple(conn.execute("SELECT key_bits, tables FROM dbdedup.plan_lsh(1000000, 1000000, 8)").fetchone()) == (19, 93)


def test_lsh_estimated_recall(conn):
    def estimate(tables_done, found_at, max_distance=10, key_bits=20):
        return conn.execute("SELECT dbdedup.lsh_estimated_recall(%s, %s, %s, %s)",
                            (max_distance, key_bits, tables_done, found_at)).fetchone()[0]

    # 10,000 pairs at distance 1: each table finds one with p = 44/64, 8 tables miss it with 0.3125^8; the
    # distances where nothing was found yet may still hold up to 4 (1 - q_d) / q_d pairs each (68 here)
    assert estimate(8, [10000] + [0] * 9) >= 0.99
    assert estimate(8, [1000] + [0] * 9) < 0.99
    # ... but after 8 tables nothing yet seen at 8-10 is likely missed there (p_10 = 0.016 a table)
    assert estimate(8, [0] * 9 + [100]) < 0.2
    assert estimate(8, [10000] + [0] * 9) > estimate(8, [10000] + [0] * 8 + [10])
    # the plan's 279 tables find 99% of the pairs at exactly 10; the bound stays a little below that
    assert 0.95 < estimate(279, [0] * 9 + [10000]) < 0.99
    # nothing found yet: no estimate, the plan's tables all run
    assert estimate(8, [0] * 10) == 0


def test_lsh_adaptive_stops_once_it_estimates_the_recall_of_the_pairs_present(conn):
    # near-duplicates as images have them (mostly within 4 of their original, some chains further), threshold 10
    insert_images(conn, planted_hashes(4000, seed=21, share=0.3, max_flip=4))
    result = matching.find_pairs(conn, threshold=10, method="lsh_adaptive", full=True)
    assert result.method == "lsh_adaptive" and result.mode == "full"
    n = result.values_total
    key_bits, tables, _ = conn.execute("SELECT * FROM dbdedup.plan_lsh(%s, %s, 10)", (n, n)).fetchone()
    masks = [conn.execute("SELECT dbdedup.lsh_mask(%s, %s)", (t, key_bits)).fetchone()[0]
             for t in range(1, tables + 1)]
    values = [v for (v,) in conn.execute(
        "SELECT value FROM dbdedup.hash_values WHERE hash_kind = 'phash' AND NOT is_common").fetchall()]
    first = first_tables(values, 10, masks)
    found = set(conn.execute("SELECT value_a, value_b, distance FROM dbdedup.value_pairs").fetchall())
    assert found <= set(first)  # within the threshold, every one
    # exactly the pairs of its first tables, a whole number of rounds of 8, fewer than the plan's
    used = max(first[p] for p in found)
    used = min(tables, -(-used // 8) * 8)
    assert found == {p for p, t in first.items() if 0 < t <= used}
    assert used < tables
    assert len(found) / len(first) >= 0.99 and len(first) > 500
    # the same first tables as lsh: lsh finds a superset
    matching.find_pairs(conn, threshold=10, method="lsh", full=True)
    assert found <= set(conn.execute("SELECT value_a, value_b, distance FROM dbdedup.value_pairs").fetchall())


def test_identical_values_are_collapsed_and_exact_copies_marked(conn):
    value = planted_hashes(1, seed=9)[0]
    sha = os.urandom(32)
    ids = insert_images(conn, [value] * 30, shas=[sha] * 10 + [os.urandom(32) for _ in range(20)])
    near = insert_images(conn, [flip_bits(np.random.default_rng(1), value, 3)])
    result = matching.find_pairs(conn, threshold=4, method="scan")
    assert result.values_total == 2 and result.candidates == 1
    pairs = conn.execute("SELECT image_a, image_b, distance, is_exact FROM dbdedup.pairs").fetchall()
    # the 10 byte-identical files are a star around the first (9 rows, not 45); it stands for them
    # among the 20 other files of the value and the near one: 22 images, 231 pairs
    assert len(pairs) == 9 + 22 * 21 // 2
    exact = {(a, b) for a, b, d, e in pairs if e}
    assert exact == {(ids[0], b) for b in ids[1:10]}
    assert not any(i in (a, b) for a, b, d, e in pairs if not e for i in ids[1:10])
    assert {d for a, b, d, e in pairs if near[0] in (a, b)} == {3}


def test_incremental_equals_full(conn):
    insert_images(conn, planted_hashes(800, seed=21, share=0.3))
    first = matching.find_pairs(conn, threshold=8)
    assert first.mode == "full"
    # new images (some near old ones), a changed hash, a missing file, a failed file
    old = conn.execute("SELECT phash FROM dbdedup.images ORDER BY id LIMIT 50").fetchall()
    rng = np.random.default_rng(2)
    new = [flip_bits(rng, v, int(rng.integers(0, 9))) for (v,) in old[:40]] + planted_hashes(60, seed=22)
    insert_images(conn, new, prefix="/new", seed=1)
    conn.execute("UPDATE dbdedup.images SET phash = %s, change_seq = nextval('dbdedup.change_seq') WHERE id = 7",
                 (flip_bits(rng, old[30][0], 2),))
    conn.execute("UPDATE dbdedup.images SET status = 'missing', change_seq = nextval('dbdedup.change_seq') WHERE id IN (3, 4)")
    conn.execute("UPDATE dbdedup.images SET status = 'error', error = 'truncated', "
                 "change_seq = nextval('dbdedup.change_seq') WHERE id = 5")
    conn.commit()
    incremental = matching.find_pairs(conn, threshold=8)
    assert incremental.mode == "incremental"
    assert incremental.values_matched < 110  # only the new values were compared
    after_incremental = stored_pairs(conn)
    full = matching.find_pairs(conn, threshold=8, full=True)
    assert full.mode == "full"
    assert after_incremental == stored_pairs(conn) == brute_force_pairs(conn, 8)
    # nothing changed: the next run compares nothing
    again = matching.find_pairs(conn, threshold=8)
    assert again.mode == "incremental" and again.values_matched == 0 and again.candidates == 0


def test_pairs_kept_up_to_the_largest_threshold(conn):
    insert_images(conn, planted_hashes(500, seed=8, share=0.4))
    assert matching.find_pairs(conn, threshold=4).threshold_kept == 4
    assert matching.find_pairs(conn, threshold=9).mode == "full"
    smaller = matching.find_pairs(conn, threshold=3)
    assert smaller.mode == "incremental" and smaller.threshold_kept == 9 and smaller.values_matched == 0
    assert stored_pairs(conn, 3) == brute_force_pairs(conn, 3)
    assert stored_pairs(conn) == brute_force_pairs(conn, 9)
    assert matching.pairs_are_current(conn, threshold=9)
    assert not matching.pairs_are_current(conn, threshold=10)


def test_over_common_hashes_are_reported_and_do_not_chain(conn):
    rng = np.random.default_rng(4)
    blank = 0  # what a flat image's dHash/aHash is: no bits set
    shared = planted_hashes(1, seed=77)[0]
    blank_ids = insert_images(conn, [blank] * 5 + [flip_bits(rng, blank, 2)] * 2, prefix="/blank")
    shared_ids = insert_images(conn, [shared] * 60, prefix="/shared")
    # unrelated images that are each near the shared value: without the guard they would all chain
    around = insert_images(conn, [flip_bits(rng, shared, 4) for _ in range(20)], prefix="/around")
    copy_sha = conn.execute("SELECT sha256 FROM dbdedup.images WHERE id = %s", (shared_ids[0],)).fetchone()[0]
    copy = insert_images(conn, [shared], shas=[copy_sha], prefix="/copy")
    matching.find_pairs(conn, threshold=8, common_limit=50)
    common = dict(conn.execute("SELECT value, common_reason FROM dbdedup.common_hashes WHERE hash_kind = 'phash'").fetchall())
    assert common[blank] == "low_information" and common[shared] == "shared_by_many"
    assert common[flip_bits(np.random.default_rng(4), blank, 2)] == "low_information"
    listed = {r[0] for r in conn.execute("SELECT image_id FROM dbdedup.common_hash_images").fetchall()}
    assert set(blank_ids + shared_ids + copy) <= listed
    pairs = stored_pairs(conn)
    common_ids = set(blank_ids + shared_ids + copy)
    touching = {(a, b) for a, b, d in pairs if a in common_ids or b in common_ids}
    assert touching == {(shared_ids[0], copy[0])}  # only the byte-identical copy
    # the images around the shared value still pair among themselves where they are close
    assert all(a in around and b in around for a, b, d in pairs if (a, b) != (shared_ids[0], copy[0]))


def test_similar_by_id_path_and_hash(conn):
    ids = insert_images(conn, planted_hashes(300, seed=31, share=0.5))
    truth = brute_force_pairs(conn, 10)
    target = max(ids, key=lambda i: sum(1 for a, b, d in truth if i in (a, b)))
    expected = {(b if a == target else a, d) for a, b, d in truth if target in (a, b)}
    signals = lookup.Signals(max_distance=10)
    by_id = lookup.similar(conn, image_id=target, signals=signals)
    assert {(r["image_id"], r["distance"]) for r in by_id} == expected
    assert [r["distance"] for r in by_id] == sorted(r["distance"] for r in by_id)
    path, value = conn.execute("SELECT path, phash FROM dbdedup.images WHERE id = %s", (target,)).fetchone()
    assert lookup.similar(conn, image_id=lookup.find_image(conn, path), signals=signals) == by_id
    by_hash = lookup.similar(conn, hash_value=value, signals=signals)
    assert {(r["image_id"], r["distance"]) for r in by_hash} == expected | {(target, 0)}
    assert conn.execute("SELECT count(*) FROM dbdedup.similar(%s::bigint, 10)", (target,)).fetchone()[0] == len(expected)


def test_bad_arguments_are_user_errors(conn):
    with pytest.raises(DbdedupError):
        matching.find_pairs(conn, threshold=65)
    with pytest.raises(DbdedupError):
        matching.find_pairs(conn, threshold=8, hash_kind="md5")
    with pytest.raises(DbdedupError) as info:
        matching.find_pairs(conn, threshold=20, method="blocks")
    assert "0 to 15" in info.value.message and info.value.hint


def test_read_only_role_reads_and_queries_but_cannot_write(conn, db_dsn):
    insert_images(conn, planted_hashes(200, seed=41, share=0.5))
    from dbdedup.clusters import build_clusters

    build_clusters(conn, ClusterSettings(threshold=8))
    role = f"analyst_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role}")
    conn.execute("SELECT dbdedup.grant_read_access(%s)", (role,))
    conn.commit()
    try:
        conn.execute(f"SET ROLE {role}")
        assert conn.execute("SELECT count(*) FROM dbdedup.clusters").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM dbdedup.cluster_members").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM dbdedup.similar(1::bigint, 64)").fetchone()[0] == 199
        assert conn.execute("SELECT dbdedup.hamming(1, 2)").fetchone()[0] == 2
        for statement in (
            "DELETE FROM dbdedup.images",
            "INSERT INTO dbdedup.pairs VALUES (1, 2, 'phash', 0, false)",
            "SELECT * FROM dbdedup.match(8)",
            "UPDATE dbdedup.cluster_assignments SET is_keeper = true",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
            conn.execute(f"SET ROLE {role}")
    finally:
        conn.rollback()
        conn.execute("RESET ROLE")
        conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA dbdedup FROM {role}")
        conn.execute(f"REVOKE ALL ON SCHEMA dbdedup FROM {role}")
        conn.execute(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dbdedup FROM {role}")
        conn.execute(f"DROP ROLE {role}")
        conn.commit()
