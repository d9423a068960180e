"""Clusters: components of the pairs, the chaining guard, keeper rules, what-if thresholds,
ensure_clusters bookkeeping, CALL dbdedup.refresh(), and an end-to-end run on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dbdedup import clusters, matching
from dbdedup.clusters import ClusterSettings
from dbdedup.errors import DbdedupError
from test_matching import brute_force_pairs, flip_bits, insert_images, planted_hashes

DAY = 86_400 * 10**9


def _assignments(conn) -> dict[int, tuple[int, bool, int]]:
    return {
        r[0]: (r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT image_id, cluster_id, is_keeper, distance_to_keeper FROM dbdedup.cluster_members"
        ).fetchall()
    }


def _groups(conn) -> set[frozenset[int]]:
    out: dict[int, set[int]] = {}
    for image, (cluster, _, _) in _assignments(conn).items():
        out.setdefault(cluster, set()).add(image)
    return {frozenset(g) for g in out.values()}


def test_clusters_are_the_components_when_nothing_chains(conn):
    # tight groups (every member within 3 of its origin) far apart: components are the answer
    rng = np.random.default_rng(7)
    origins = planted_hashes(120, seed=70, share=0)
    hashes = []
    for o in origins:
        hashes.append(o)
        hashes += [flip_bits(rng, o, int(rng.integers(0, 2))) for _ in range(int(rng.integers(0, 4)))]
    insert_images(conn, hashes)
    result = clusters.build_clusters(conn, ClusterSettings(threshold=4))
    pairs = brute_force_pairs(conn, 4)
    ids = sorted({i for a, b, _ in pairs for i in (a, b)})
    index = {i: k for k, i in enumerate(ids)}
    graph = coo_matrix(([1] * len(pairs), ([index[a] for a, _, _ in pairs], [index[b] for _, b, _ in pairs])),
                       shape=(len(ids), len(ids)))
    count, labels = connected_components(graph, directed=False)
    expected = {frozenset(ids[k] for k in range(len(ids)) if labels[k] == c) for c in range(count)}
    assert _groups(conn) == expected
    assert result.clusters == count and result.split_rounds == 0
    members = _assignments(conn)
    assert all(sum(1 for m in g if members[m][1]) == 1 for g in expected)  # one keeper each


def test_chaining_guard_keeps_every_member_near_its_keeper(conn):
    # a chain: each hash 3 bits from the previous one, drifting far from the start
    rng = np.random.default_rng(12)
    chain = [planted_hashes(1, seed=99)[0]]
    for _ in range(15):
        chain.append(flip_bits(rng, chain[-1], 3))
    ids = insert_images(conn, chain)
    values = dict(zip(ids, chain))
    result = clusters.build_clusters(conn, ClusterSettings(threshold=4))
    members = _assignments(conn)
    assert result.split_rounds >= 1
    assert len(_groups(conn)) > 1  # one component, several clusters
    for image, (cluster, is_keeper, distance) in members.items():
        real = bin((values[image] ^ values[cluster]) & ((1 << 64) - 1)).count("1")
        assert distance == real <= 4
    # the guard never invents a link: every member is paired with its keeper
    pairs = {(a, b) for a, b, _ in brute_force_pairs(conn, 4)}
    assert all((min(i, c), max(i, c)) in pairs for i, (c, k, _) in members.items() if not k)


def _three_copies(conn, prefix="/p"):
    value = planted_hashes(1, seed=5)[0]
    rng = np.random.default_rng(5)
    sizes = [
        (800, 600, 50_000, 3 * DAY),  # most pixels, newest
        (400, 300, 90_000, 1 * DAY),  # fewer pixels, biggest file, oldest
        (400, 300, 20_000, 2 * DAY),
    ]
    return insert_images(conn, [value, flip_bits(rng, value, 2), flip_bits(rng, value, 1)], sizes=sizes, prefix=prefix)


@pytest.mark.parametrize("rule, keeper_index", [("largest", 0), ("newest", 0), ("oldest", 1)])
def test_keeper_rules(conn, rule, keeper_index):
    ids = _three_copies(conn)
    clusters.build_clusters(conn, ClusterSettings(threshold=6, keeper_rule=rule))
    keepers = [i for i, (_, k, _) in _assignments(conn).items() if k]
    assert keepers == [ids[keeper_index]]
    row = conn.execute("SELECT keeper_image_id, member_count, reclaimable_bytes FROM dbdedup.clusters").fetchone()
    sizes = {ids[0]: 50_000, ids[1]: 90_000, ids[2]: 20_000}
    assert row == (ids[keeper_index], 3, sum(sizes.values()) - sizes[ids[keeper_index]])


def test_largest_prefers_pixels_then_bytes_then_oldest(conn):
    value = planted_hashes(1, seed=15)[0]
    sizes = [(400, 300, 10_000, 5 * DAY), (400, 300, 10_000, 2 * DAY), (400, 300, 12_000, 9 * DAY)]
    ids = insert_images(conn, [value] * 3, sizes=sizes)
    clusters.build_clusters(conn, ClusterSettings(threshold=0))
    assert [i for i, (_, k, _) in _assignments(conn).items() if k] == [ids[2]]
    conn.execute("UPDATE dbdedup.images SET size_bytes = 10000")
    conn.commit()
    clusters.build_clusters(conn, ClusterSettings(threshold=0))
    assert [i for i, (_, k, _) in _assignments(conn).items() if k] == [ids[1]]


def test_reference_paths_are_kept_and_protected(conn):
    ids = _three_copies(conn, prefix="/photos/new")
    ref = insert_images(conn, [conn.execute("SELECT phash FROM dbdedup.images WHERE id = %s", (ids[2],)).fetchone()[0]],
                        sizes=[(100, 100, 5_000, DAY)], prefix="/photos/originals")
    # a sibling folder sharing the prefix's text is not under it
    clusters.build_clusters(conn, ClusterSettings(threshold=6, reference_paths=["/photos/originals/", "/photos/orig"]))
    members = {r[0]: r[1:] for r in conn.execute(
        "SELECT image_id, is_keeper, is_protected, is_exact_duplicate FROM dbdedup.cluster_members").fetchall()}
    assert members[ref[0]][:2] == (True, True)
    assert not any(members[i][1] for i in ids)
    assert clusters.current_parameters(conn)["reference_paths"] == ["/photos/orig", "/photos/originals"]
    reclaimable = conn.execute("SELECT reclaimable_bytes FROM dbdedup.clusters").fetchone()[0]
    assert reclaimable == 50_000 + 90_000 + 20_000


def test_exact_duplicates_flagged_against_the_keeper(conn):
    value = planted_hashes(1, seed=3)[0]
    sha = b"\x01" * 32
    ids = insert_images(conn, [value, value, value], shas=[sha, sha, b"\x02" * 32],
                        sizes=[(10, 10, 100, DAY), (10, 10, 100, 2 * DAY), (10, 10, 100, 3 * DAY)])
    clusters.build_clusters(conn, ClusterSettings(threshold=0, keeper_rule="oldest"))
    flags = dict(conn.execute("SELECT image_id, is_exact_duplicate FROM dbdedup.cluster_members").fetchall())
    assert flags == {ids[0]: False, ids[1]: True, ids[2]: False}


def test_what_if_thresholds_need_no_rematch(conn):
    insert_images(conn, planted_hashes(600, seed=17, share=0.4))
    first = clusters.ensure_clusters(conn, ClusterSettings(threshold=10))
    assert first.matched and first.rebuilt
    matched_at = conn.execute("SELECT matched_at FROM dbdedup.match_state").fetchone()[0]
    sizes = []
    for threshold in (8, 4, 0, 10):
        result = clusters.ensure_clusters(conn, ClusterSettings(threshold=threshold))
        assert not result.matched and result.rebuilt
        sizes.append(result.members)
    assert conn.execute("SELECT matched_at FROM dbdedup.match_state").fetchone()[0] == matched_at
    assert sizes[0] >= sizes[1] >= sizes[2] and sizes[3] == first.members
    cheap = clusters.ensure_clusters(conn, ClusterSettings(threshold=10))
    assert not cheap.matched and not cheap.rebuilt and cheap.members == first.members
    assert clusters.current_parameters(conn)["threshold"] == 10


def test_ensure_clusters_follows_new_images(conn):
    hashes = planted_hashes(300, seed=23, share=0.3)
    insert_images(conn, hashes)
    before = clusters.ensure_clusters(conn, ClusterSettings(threshold=8))
    rng = np.random.default_rng(9)
    insert_images(conn, [flip_bits(rng, h, 2) for h in hashes[:20]], prefix="/more", seed=4)
    after = clusters.ensure_clusters(conn, ClusterSettings(threshold=8))
    assert after.matched and after.match.mode == "incremental" and after.members > before.members
    full = clusters.build_clusters(conn, ClusterSettings(threshold=8))
    assert full.members == after.members and full.clusters == after.clusters


def _triples(rng, n: int, seed: int) -> list[int]:
    """The hashes of n clusters of 3: an image and two near copies, the clusters far apart."""
    origins = planted_hashes(n, seed=seed, share=0)
    return [h for o in origins for h in (o, flip_bits(rng, o, 1), flip_bits(rng, o, 2))]


def test_a_build_that_rewrites_many_assignments_analyses_them(conn):
    """A build deletes the last one's assignments and writes its own; the joins on dbdedup.cluster_assignments (review
    pages, verdicts, reports) plan on its statistics. One that changed more rows than autovacuum's threshold (50 +
    10% of the rows counted) analyses the table at once, as a load analyses the images; a build of a few rows leaves
    it to autovacuum."""
    conn.execute("ALTER TABLE dbdedup.cluster_assignments SET (autovacuum_enabled = false)")  # only a build analyses
    conn.commit()
    rng = np.random.default_rng(31)

    def planned_rows() -> int:
        return conn.execute("SELECT reltuples::bigint FROM pg_class "
                            "WHERE oid = 'dbdedup.cluster_assignments'::regclass").fetchone()[0]

    insert_images(conn, _triples(rng, 5, 32))
    assert clusters.build_clusters(conn, ClusterSettings(threshold=4)).members == 15
    assert planned_rows() == -1  # never analysed: 15 rows written are autovacuum's to see to
    insert_images(conn, _triples(rng, 120, 33), prefix="/more", seed=1)
    result = clusters.ensure_clusters(conn, ClusterSettings(threshold=4))  # (the new images matched first)
    assert result.rebuilt and result.members == 375
    assert planned_rows() == 375
    conn.commit()
    analysed = conn.execute("SELECT analyze_count, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                            "WHERE relid = 'dbdedup.cluster_assignments'::regclass").fetchone()
    assert analysed == (1, True)


def test_refresh_from_psql_analyses_the_assignments_it_rewrote(conn):
    """CALL dbdedup.refresh() (psql, pg_cron) builds in SQL alone, with no command after it: its build analyses
    dbdedup.cluster_assignments when it deleted and wrote more rows than autovacuum's threshold (50 + 10% of the rows
    counted), so that the keeper pairs it proposes next and the joins after it plan on fresh statistics; a build of a
    few rows leaves the table to autovacuum."""
    conn.execute("ALTER TABLE dbdedup.cluster_assignments SET (autovacuum_enabled = false)")  # only a build analyses
    conn.commit()
    clusters.save_settings(conn, ClusterSettings(threshold=4))
    rng = np.random.default_rng(37)

    def refresh() -> tuple[int, int, int]:
        """CALL dbdedup.refresh(); the members built, the times the table was analysed and the rows it plans on."""
        conn.execute("CALL dbdedup.refresh()")
        conn.commit()  # (a transaction reads the statistics counters once)
        return conn.execute(
            "SELECT p.members, s.analyze_count, c.reltuples::bigint "
            "FROM dbdedup.cluster_parameters p, pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.relid = 'dbdedup.cluster_assignments'::regclass").fetchone()

    insert_images(conn, _triples(rng, 5, 34))
    assert refresh() == (15, 0, -1)  # 15 rows written: autovacuum's to see to
    insert_images(conn, _triples(rng, 120, 35), prefix="/more", seed=2)
    assert refresh() == (375, 1, 375)  # 15 deleted and 375 written, over the 50 of a table never counted


def test_refresh_procedure_for_pg_cron(conn):
    hashes = planted_hashes(200, seed=29, share=0.3)
    insert_images(conn, hashes)
    clusters.save_settings(conn, ClusterSettings(threshold=6, keeper_rule="newest"))  # as `report --keeper newest`
    clusters.build_clusters(conn)
    rng = np.random.default_rng(2)
    new = insert_images(conn, [flip_bits(rng, hashes[0], 1)], prefix="/new", seed=8,
                        sizes=[(10, 10, 10, 2 * 10**18)])
    conn.execute("CALL dbdedup.refresh()")
    conn.commit()
    keeper, rule = conn.execute(
        "SELECT m.is_keeper, p.keeper_rule FROM dbdedup.cluster_members m, dbdedup.cluster_parameters p "
        "WHERE m.image_id = %s", (new[0],)).fetchone()
    assert keeper and rule == "newest"  # the newest file, with the stored rule
    assert conn.execute("SELECT mode FROM dbdedup.match_state").fetchone()[0] == "incremental"


def test_bad_keeper_rule(conn):
    with pytest.raises(DbdedupError):
        clusters.build_clusters(conn, ClusterSettings(keeper_rule="prettiest"))


@pytest.mark.parametrize("arguments, message", [
    ("-5", "threshold must be a Hamming distance from 0 to 64, not -5"),
    ("65", "threshold must be a Hamming distance from 0 to 64, not 65"),
    ("NULL", "threshold must be a Hamming distance from 0 to 64, not <NULL>"),
    ("8, NULL", "unknown hash kind <NULL>"),
    ("8, 'phash', NULL", "unknown keeper rule <NULL>"),
    ("8, 'phash', 'largest', '{}', NULL", "unknown clustering rule <NULL>"),
    ("8, 'phash', 'largest', '{}', 'fused', 0", "minimum similarity must be in (0, 1], not 0"),
    ("8, 'phash', 'largest', '{}', 'hash', 1.5", "minimum similarity must be in (0, 1], not 1.5"),
    ("8, 'phash', 'largest', '{}', 'fused', 0.85, -1",
     "confirm distance must be a Hamming distance from 0 to 64, not -1"),
    ("8, 'phash', 'largest', '{}', 'fused', 0.85, 64, 33",
     "transform threshold must be a Hamming distance from 0 to 32, not 33"),
])
def test_build_clusters_refuses_what_refresh_could_not_build_with(conn, arguments, message):
    # a value out of range was stored in cluster_parameters, and every later CALL dbdedup.refresh() failed
    insert_images(conn, planted_hashes(50, seed=31, share=0.3))
    clusters.build_clusters(conn, ClusterSettings(threshold=6))
    before = conn.execute("SELECT max_distance, built_at FROM dbdedup.cluster_parameters").fetchone()
    conn.commit()
    with pytest.raises(psycopg.errors.RaiseException) as refused:
        conn.execute(f"SELECT * FROM dbdedup.build_clusters({arguments})")
    conn.rollback()
    assert refused.value.diag.message_primary == message
    assert conn.execute("SELECT max_distance, built_at FROM dbdedup.cluster_parameters").fetchone() == before
    conn.execute("CALL dbdedup.refresh()")
    conn.commit()


def test_the_next_report_rebuilds_after_another_command_rematched_every_pair(conn):
    # a full re-match (`dbdedup pairs -t 64` runs one) rewrites every pair and its verdict but keeps matched_seq
    # when no image changed: the clusters built before are not current
    insert_images(conn, planted_hashes(300, seed=37, share=0.3))
    settings = ClusterSettings(rule="hash")  # (no signal to match again: the pairs alone are rewritten)
    first = clusters.ensure_clusters(conn, settings)
    assert first.rebuilt and not clusters.ensure_clusters(conn, settings).rebuilt
    matching.find_pairs(conn, threshold=12, full=True)
    after = clusters.ensure_clusters(conn, settings)
    assert after.rebuilt and not after.matched and after.members == first.members
    assert not clusters.ensure_clusters(conn, settings).rebuilt  # and then current again


def test_a_report_after_pairs_rematched_shows_no_member_whose_pair_with_its_keeper_is_not_verified(db_dsn, tmp_path):
    from test_report_sample import run_cli
    from test_verify_plan import mini_set, named_clusters, named_pair

    root = tmp_path / "mini"
    mini_set(root)
    run_cli(db_dsn, "load", "--workers", "1", str(root))
    run_cli(db_dsn, "report")
    assert {"p04_border", "p04", "p04_crop"} in named_clusters(db_dsn)
    # a copy deleted (not loaded again), then `pairs -t 64`: a full re-match, whose check by pixels finds the
    # file gone; `pairs` stores no setting and builds no cluster
    (root / "p04_crop.jpg").unlink()
    run_cli(db_dsn, "pairs", "-t", "64")
    assert named_pair(db_dsn, "p04_border", "p04_crop")[0] is False
    report = run_cli(db_dsn, "report", "--format", "json")
    shown = {frozenset(Path(m["path"]).stem for m in c["members"]) for c in json.loads(report.stdout)["clusters"]}
    assert {"p04_border", "p04"} in shown and not any("p04_crop" in c for c in shown), shown
    with psycopg.connect(db_dsn) as c:
        unlinked = c.execute(
            "SELECT m.path FROM dbdedup.cluster_members m "
            "JOIN dbdedup.cluster_members k ON k.cluster_id = m.cluster_id AND k.is_keeper "
            "LEFT JOIN dbdedup.pairs p ON p.hash_kind = 'phash' AND p.image_a = least(m.image_id, k.image_id) "
            "AND p.image_b = greatest(m.image_id, k.image_id) "
            "WHERE NOT m.is_keeper AND NOT coalesce(p.verified, false)").fetchall()
    assert unlinked == []


def test_real_images_end_to_end(conn, tmp_path):
    load = pytest.importorskip("dbdedup.load")
    from images import brighter, photo, reencoded, resized, save

    for seed in range(10):
        save(photo(seed + 100), tmp_path / f"o{seed}.jpg", quality=92)
    save(resized(photo(100), 0.5), tmp_path / "edits" / "o0_half.jpg", quality=88)
    save(reencoded(photo(101), 35), tmp_path / "edits" / "o1_q35.jpg", quality=35)
    save(brighter(photo(102), 1.1), tmp_path / "edits" / "o2_bright.jpg", quality=90)
    (tmp_path / "edits" / "o3_copy.jpg").write_bytes((tmp_path / "o3.jpg").read_bytes())
    load.load_paths(conn, [tmp_path])
    result = clusters.ensure_clusters(conn, ClusterSettings(threshold=matching.DEFAULT_THRESHOLD))
    groups = {frozenset(p.rsplit("/", 1)[1] for p in paths) for (paths,) in conn.execute(
        "SELECT array_agg(path) FROM dbdedup.cluster_members GROUP BY cluster_id").fetchall()}
    assert groups == {frozenset({"o0.jpg", "o0_half.jpg"}), frozenset({"o1.jpg", "o1_q35.jpg"}),
                      frozenset({"o2.jpg", "o2_bright.jpg"}), frozenset({"o3.jpg", "o3_copy.jpg"})}
    assert result.clusters == 4
    exact = conn.execute("SELECT path FROM dbdedup.cluster_members WHERE is_exact_duplicate").fetchall()
    assert len(exact) == 1
