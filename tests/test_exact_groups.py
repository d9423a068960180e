"""Exact copies as stars in dbdedup.pairs (migration 0004): few rows per group, the same clusters as the
greedy stars over every pair, incremental equal to full, and a match never interleaving with a load."""

from __future__ import annotations

import os

import numpy as np
import psycopg
import pytest

from dbdedup import clusters, matching
from dbdedup.clusters import ClusterSettings
from dbdedup.locks import LOAD_LOCK_KEY
from test_matching import brute_force_pairs, flip_bits, insert_images, planted_hashes

DAY = 86_400 * 10**9


def _library(conn, copies: int = 50) -> tuple[list[int], bytes]:
    """`copies` byte-identical files of one picture (varied size and mtime, as copies on disk have),
    near copies of it, a second small exact group among them, and unrelated images."""
    rng = np.random.default_rng(3)
    value = planted_hashes(1, seed=61)[0]
    sha = os.urandom(32)
    sizes = [(640, 480, 40_000, int(rng.integers(1, 400)) * DAY) for _ in range(copies)]
    ids = insert_images(conn, [value] * copies, shas=[sha] * copies, sizes=sizes, prefix="/lib/copies")
    near = [flip_bits(rng, value, int(rng.integers(1, 5))) for _ in range(6)]
    twin = os.urandom(32)
    insert_images(conn, near + [near[0]] * 2, shas=[os.urandom(32) for _ in near] + [twin, twin], prefix="/lib/near",
                  sizes=[(1024, 768, 90_000, int(rng.integers(1, 400)) * DAY) for _ in range(len(near) + 2)])
    insert_images(conn, planted_hashes(300, seed=62, share=0.3), prefix="/lib/other")
    return ids, sha


def _all_pairs(conn, max_distance: int) -> set[tuple[int, int]]:
    """Every pair the old layout stored: hashes within the distance, exact copies always."""
    pairs = {(a, b) for a, b, _ in brute_force_pairs(conn, max_distance)}
    groups: dict[bytes, list[int]] = {}
    for i, sha in conn.execute("SELECT id, sha256 FROM dbdedup.images WHERE status = 'ok'").fetchall():
        groups.setdefault(bytes(sha), []).append(i)
    for ids in groups.values():
        pairs |= {(a, b) for a in ids for b in ids if a < b}
    return pairs


def _greedy_stars(conn, max_distance: int, keeper_rule: str, reference: str | None = None) -> dict[int, tuple[int, bool, int]]:
    """The clustering of issue 3 computed image by image over every pair: the best remaining image
    (reference first, then the keeper rule) keeps every remaining image paired with it."""
    rows = conn.execute("SELECT id, path, width * height, size_bytes, mtime_ns, phash, sha256 FROM dbdedup.images "
                        "WHERE status = 'ok'").fetchall()
    info = {r[0]: r for r in rows}

    def rank(i):
        _, path, pixels, size, mtime, _, _ = info[i]
        under = reference is not None and (path == reference or path.startswith(reference + "/"))
        rule = {"largest": (-pixels, -size), "newest": (-mtime,), "oldest": (mtime,)}[keeper_rule]
        return (not under, *rule, mtime, i)

    neighbours: dict[int, set[int]] = {}
    for a, b in _all_pairs(conn, max_distance):
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    out: dict[int, tuple[int, bool, int]] = {}
    for k in sorted(neighbours, key=rank):
        if k in out:
            continue
        members = [m for m in neighbours[k] if m not in out]
        if not members:
            continue
        out[k] = (k, True, 0)
        for m in members:
            same = info[m][6] == info[k][6]
            d = 0 if same else bin((info[m][5] ^ info[k][5]) & ((1 << 64) - 1)).count("1")
            out[m] = (k, False, d)
    return out


def _stored(conn) -> dict[int, tuple[int, bool, int]]:
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT image_id, cluster_id, is_keeper, distance_to_keeper FROM dbdedup.cluster_assignments").fetchall()}


def _pair_rows(conn) -> set[tuple]:
    return set(conn.execute("SELECT image_a, image_b, distance, is_exact FROM dbdedup.pairs").fetchall())


def test_a_group_of_copies_is_a_star(conn):
    ids, sha = _library(conn)
    matching.find_pairs(conn, threshold=8)
    group = conn.execute(
        "SELECT p.image_a, p.image_b, p.is_exact FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a "
        "JOIN dbdedup.images b ON b.id = p.image_b WHERE a.sha256 = %s OR b.sha256 = %s", (sha, sha)).fetchall()
    star = {(a, b) for a, b, e in group if e}
    assert star == {(ids[0], c) for c in ids[1:]}  # 49 rows, not 1,225
    near = [(a, b) for a, b, e in group if not e]
    assert near and all(a == ids[0] or b == ids[0] for a, b in near)  # only the representative
    assert len(group) < 60


@pytest.mark.parametrize("keeper_rule", ["largest", "newest", "oldest"])
def test_clusters_equal_greedy_stars_over_every_pair(conn, keeper_rule):
    ids, _ = _library(conn)
    clusters.build_clusters(conn, ClusterSettings(threshold=8, keeper_rule=keeper_rule, rule="hash"))
    stored = _stored(conn)
    assert stored == _greedy_stars(conn, 8, keeper_rule)
    # the copies are together, any of them can be the keeper, copies of the keeper at distance 0
    assert len({stored[i][0] for i in ids}) == 1
    keeper = stored[ids[0]][0]
    if keeper in ids:
        assert all(stored[i][2] == 0 for i in ids)


def test_a_reference_copy_is_the_keeper(conn):
    ids, sha = _library(conn)
    chosen = ids[17]
    conn.execute("UPDATE dbdedup.images SET path = '/ref/keep.jpg', path_bytes = '/ref/keep.jpg' WHERE id = %s", (chosen,))
    conn.commit()
    clusters.build_clusters(conn, ClusterSettings(threshold=8, keeper_rule="largest", reference_paths=["/ref"], rule="hash"))
    stored = _stored(conn)
    assert stored == _greedy_stars(conn, 8, "largest", reference="/ref")
    assert stored[chosen] == (chosen, True, 0)
    assert all(stored[i] == (chosen, False, 0) for i in ids if i != chosen)
    flags = dict(conn.execute("SELECT image_id, is_exact_duplicate FROM dbdedup.cluster_members").fetchall())
    assert all(flags[i] for i in ids if i != chosen)


def test_incremental_equals_full_when_copies_come_and_go(conn):
    ids, sha = _library(conn, copies=20)
    matching.find_pairs(conn, threshold=8)
    # later: more copies, copies of a near image, and the representative and some copies gone
    near_sha, near_value = conn.execute(
        "SELECT sha256, phash FROM dbdedup.images WHERE path LIKE '/lib/near/%' ORDER BY id LIMIT 1").fetchone()
    value = conn.execute("SELECT phash FROM dbdedup.images WHERE id = %s", (ids[0],)).fetchone()[0]
    insert_images(conn, [value] * 5 + [near_value] * 3, shas=[sha] * 5 + [near_sha] * 3, prefix="/later", seed=3)
    conn.execute("UPDATE dbdedup.images SET status = 'missing', change_seq = nextval('dbdedup.change_seq') "
                 "WHERE id = ANY(%s)", ([ids[0], ids[1], ids[5]],))
    # a file changed into a copy of the group, below the representative's id
    conn.execute("UPDATE dbdedup.images SET sha256 = %s, phash = %s, change_seq = nextval('dbdedup.change_seq') "
                 "WHERE path LIKE '/lib/near/%%' AND id = (SELECT max(id) FROM dbdedup.images WHERE path LIKE '/lib/near/%%')",
                 (sha, value))
    conn.commit()
    step = matching.find_pairs(conn, threshold=8)
    assert step.mode == "incremental"
    incremental = _pair_rows(conn)
    clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="hash"))
    incremental_clusters = _stored(conn)
    assert matching.find_pairs(conn, threshold=8, full=True).mode == "full"
    assert incremental == _pair_rows(conn)
    clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="hash"))
    assert incremental_clusters == _stored(conn) == _greedy_stars(conn, 8, "largest")
    # the group's star is around its smallest ok id now
    rep = conn.execute("SELECT min(id) FROM dbdedup.images WHERE status = 'ok' AND sha256 = %s", (sha,)).fetchone()[0]
    star = {b for a, b, d, e in incremental if e and a == rep}
    assert len(star) == conn.execute("SELECT count(*) - 1 FROM dbdedup.images WHERE status = 'ok' AND sha256 = %s",
                                     (sha,)).fetchone()[0]


def test_match_waits_for_a_running_load(conn, db_dsn):
    insert_images(conn, planted_hashes(50, seed=5))
    with psycopg.connect(db_dsn, autocommit=True) as loader:
        # what dbdedup.load holds for the whole load
        loader.execute("SELECT pg_advisory_lock(%s)", (LOAD_LOCK_KEY,))
        conn.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute("SELECT * FROM dbdedup.match(8)")
        conn.rollback()
        loader.execute("SELECT pg_advisory_unlock(%s)", (LOAD_LOCK_KEY,))
    conn.execute("SET lock_timeout = '300ms'")
    assert conn.execute("SELECT mode FROM dbdedup.match(8)").fetchone()[0] == "full"
    conn.commit()
