"""Issue #5's signals end to end on real images and a real database: transform variants
(flips, rotations, borders), embeddings in pgvector, the clustering rules, hash-only mode,
hard links."""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg
import pytest
from PIL import Image, ImageOps

from dbdedup import clusters, db as dbmod, embedding_index, matching
from dbdedup.clusters import ClusterSettings
from dbdedup.errors import DbdedupError
from dbdedup.load import load_paths
from dbdedup.verify_workers import verify_pending_pairs
from images import photo, reencoded, resized, save

# Seeds whose pictures are far apart under every orientation (best variant distance >= 20).
SEEDS = (1, 2, 3, 4, 5, 6)
INVERSE = {"rotate_90": "rotate_270", "rotate_270": "rotate_90"}


def make_transform_set(root: Path, seeds=SEEDS[:4]) -> dict[str, Path]:
    """Originals (JPEG) of ``seeds`` and three edited copies: of the first a horizontal flip
    (JPEG), of the second a 90-degree rotation (PNG), of the third an 8% white border (PNG)."""
    files = {f"orig{s}": save(photo(s), root / f"orig{s}.jpg", quality=95) for s in seeds}
    a, b, c = seeds[:3]
    files[f"flip{a}"] = save(ImageOps.mirror(photo(a)), root / f"flip{a}.jpg", quality=90)
    files[f"rot{b}"] = save(photo(b).transpose(Image.Transpose.ROTATE_90), root / f"rot{b}.png")
    original = photo(c)
    files[f"border{c}"] = save(ImageOps.expand(original, border=int(0.08 * original.size[0]), fill="white"),
                               root / f"border{c}.png")
    return files


def ids_by_path(conn) -> dict[str, int]:
    return {path: image_id for image_id, path in
            conn.execute("SELECT id, path FROM dbdedup.images WHERE status = 'ok'").fetchall()}


def phash_pairs(conn) -> dict[frozenset, dict]:
    rows = conn.execute(
        "SELECT image_a, image_b, distance, transform, transform_distance, similarity "
        "FROM dbdedup.pairs WHERE hash_kind = 'phash'").fetchall()
    return {frozenset((r[0], r[1])): {"a": r[0], "b": r[1], "distance": r[2], "transform": r[3],
                                       "transform_distance": r[4], "similarity": r[5]} for r in rows}


def cluster_groups(conn) -> dict[int, dict[int, dict]]:
    """cluster_id -> {image_id: member row} of the current clustering."""
    out: dict[int, dict[int, dict]] = {}
    for cluster_id, image_id, is_keeper, transform, similarity, same_file in conn.execute(
            "SELECT cluster_id, image_id, is_keeper, transform, similarity, is_same_file FROM dbdedup.cluster_members"):
        out.setdefault(cluster_id, {})[image_id] = {"keeper": is_keeper, "transform": transform,
                                                     "similarity": similarity, "same_file": same_file}
    return out


def grouping(conn) -> set[frozenset[int]]:
    return {frozenset(members) for members in cluster_groups(conn).values()}


def fresh_plain_database(admin_dsn: str, name: str) -> str:
    from conftest import dsn_for

    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    dsn = dsn_for(admin_dsn, name)
    dbmod.apply_migrations(dsn)
    return dsn


# ---------------------------------------------------------------- 1. transforms


def test_flipped_rotated_and_bordered_copies_pair_with_their_originals(conn, tmp_path):
    files = make_transform_set(tmp_path / "set")
    load_paths(conn, [tmp_path / "set"], workers=2, embedder=None)
    ids = {name: ids_by_path(conn)[str(path)] for name, path in files.items()}
    origin = {ids[name]: int(re.sub(r"\D", "", name)) for name in ids}  # image -> seed it shows

    result = matching.find_pairs(conn, threshold=8, transforms=True)
    assert result.transforms is not None and result.transforms.mode == "full"
    pairs = phash_pairs(conn)

    for copy, original, allowed in (("flip1", "orig1", {"flip_h"}), ("rot2", "orig2", {"rotate_90", "rotate_270"}),
                                    ("border3", "orig3", {"trim"})):
        pair = pairs.get(frozenset((ids[copy], ids[original])))
        assert pair is not None, f"{copy} not paired with {original}"
        assert pair["transform"] in allowed, (copy, pair)
        assert pair["distance"] > 8 and pair["transform_distance"] <= 8, (copy, pair)
        assert pair["transform_distance"] < pair["distance"]
    # image_b looks like image_a after the transform: rotate_90 (PIL, counter-clockwise) when the
    # original is image_a, the inverse rotation when the rotated copy is
    rot = pairs[frozenset((ids["rot2"], ids["orig2"]))]
    assert rot["transform"] == ("rotate_90" if rot["a"] == ids["orig2"] else "rotate_270"), rot
    # nothing links two different pictures
    assert all(origin[p["a"]] == origin[p["b"]] for p in pairs.values()), pairs
    # every pair is verified before it may link: the pairs matching left pending, by their pixels
    verify_pending_pairs(conn, workers=1)

    clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="hash"))
    assert grouping(conn) == set()  # no copy is within 8 of its original as stored

    result = clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="transforms"))
    expected = {frozenset((ids["flip1"], ids["orig1"])), frozenset((ids["rot2"], ids["orig2"])),
                frozenset((ids["border3"], ids["orig3"]))}
    assert grouping(conn) == expected and result.clusters == 3
    names = {}
    for members in cluster_groups(conn).values():
        (member_id, member), = [(i, m) for i, m in members.items() if not m["keeper"]]
        names[origin[member_id]] = member["transform"]
    assert names[1] == "flip_h"
    assert names[2] in ("rotate_90", "rotate_270")
    assert names[3] == "trim"


# ---------------------------------------------------------------- 2. incremental == full


def test_incremental_transform_matching_equals_a_full_rematch(conn, tmp_path):
    root = tmp_path / "lib"
    files = make_transform_set(root / "x", seeds=(1, 2, 3, 4))
    make_transform_set(root / "y", seeds=(5, 6, 7, 8))
    # half of the library first: the copies of x's originals come later, and x's copies' originals too
    first_half = root / "x"
    later = {name: files[name] for name in ("flip1", "orig2", "border3")}
    parked = tmp_path / "parked"
    parked.mkdir()
    for path in later.values():
        shutil.move(path, parked / path.name)
    load_paths(conn, [root], workers=2, embedder=None)
    first = matching.find_pairs(conn, threshold=8, transforms=True)
    assert first.transforms.mode == "full"
    for path in later.values():
        shutil.move(parked / path.name, path)
    load_paths(conn, [root], workers=2, embedder=None)
    second = matching.find_pairs(conn, threshold=8, transforms=True)
    assert second.mode == "incremental" and second.transforms.mode == "incremental"

    def signal_rows():
        return set(conn.execute(
            "SELECT image_a, image_b, transform_distance FROM dbdedup.pairs "
            "WHERE hash_kind = 'phash' AND transform_distance IS NOT NULL").fetchall())

    incremental = signal_rows()
    matching.find_pairs(conn, threshold=8, transforms=True, full=True)
    full = signal_rows()
    assert incremental == full
    ids = ids_by_path(conn)
    # the new files paired with images of the first load, and the second folder's own pairs
    for copy, original in (("flip1", "orig1"), ("rot2", "orig2"), ("border3", "orig3")):
        a, b = sorted((ids[str(first_half / f"{copy}.{'jpg' if copy.startswith('flip') else 'png'}")],
                       ids[str(first_half / f"{original}.jpg")]))
        assert any(r[0] == a and r[1] == b for r in full), (copy, full)
    assert len(full) == 6


def test_lsh_transform_matching_uses_the_keys_of_the_lsh_method(conn):
    # the variants' lsh tables are dbdedup.lsh_mask's joined on both halves, as dbdedup.match's: a pair at
    # distance d shares a table's key with the chance plan_lsh assumes. The image pairs linked by a variant
    # must be exactly those whose probe and target values share a key in some table (the old sampled masks,
    # which never held bits j and j+32 together, found another set).
    from test_matching import flip_bits, insert_images

    rng = np.random.default_rng(21)
    n, max_distance = 500, 10
    phashes = [int(v) for v in rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)]
    ids = insert_images(conn, phashes)
    variants = [[int(v) for v in rng.integers(-(2**63), 2**63 - 1, size=15, dtype=np.int64)] for _ in range(n)]
    for i in range(0, n, 2):  # every other image has a variant near another image's pHash (or trimmed pHash)
        j = int(rng.integers(0, n - 1))
        j += j >= i
        near = phashes[j] if rng.random() < 0.8 else variants[j][7]
        # most at the threshold, where a table misses the most
        distance = max_distance if rng.random() < 0.7 else int(rng.integers(0, max_distance))
        variants[i][int(rng.integers(0, 15))] = flip_bits(rng, near, distance)
    with conn.cursor() as cur:
        cur.executemany("UPDATE dbdedup.images SET phash_variants = %s WHERE id = %s",
                        [(v, image) for v, image in zip(variants, ids)])
    conn.commit()
    matching.find_pairs(conn, threshold=8, method="scan", full=True)
    row = conn.execute("SELECT * FROM dbdedup.match_transforms(%s, 'lsh', true)", (max_distance,)).fetchone()
    conn.commit()
    assert row[0] == "lsh"

    def low(value: int) -> bool:
        return not 3 < bin(value & (2**64 - 1)).count("1") < 61

    probes = [(image, pos, value) for image, own, vs in zip(ids, phashes, variants)
              for pos, value in enumerate([own] + vs) if not low(value)]
    targets = [(image, pos, value) for image, own, vs in zip(ids, phashes, variants)
               for pos, value in ((0, own), (8, vs[7])) if not low(value)]
    probe_values, target_values = {p[2] for p in probes}, {t[2] for t in targets}
    key_bits, tables, _ = conn.execute("SELECT * FROM dbdedup.plan_lsh(%s, %s, %s, 0.99)",
                                       (len(target_values), len(probe_values), max_distance)).fetchone()
    assert row[3:5] == (len(probe_values), len(target_values))
    masks = [conn.execute("SELECT dbdedup.lsh_mask(%s, %s)", (t, key_bits)).fetchone()[0] & (2**64 - 1)
             for t in range(1, tables + 1)]
    # every (probe value, target value) pair that shares a table's key is a candidate, table by table
    shared = 0
    for m in masks:
        keys = Counter(v & (2**64 - 1) & m for v in target_values)
        shared += sum(keys[v & (2**64 - 1) & m] for v in probe_values)
    assert row[5] == shared
    by_value: dict[int, list] = {}
    for image, pos, value in targets:
        by_value.setdefault(value, []).append((image, pos))
    plain = dict(zip(ids, phashes))
    expected, near_pairs = set(), set()
    target_array = np.array(sorted(target_values), dtype=np.int64)
    for image, pos, value in probes:
        distances = np.bitwise_count(target_array.view(np.uint64) ^ np.uint64(value & (2**64 - 1)))
        for target in target_array[distances <= max_distance]:
            xor = (value ^ int(target)) & (2**64 - 1)
            for other, target_pos in by_value[int(target)]:
                if other == image or (pos == 0 and target_pos == 0):
                    continue
                pair = (min(image, other), max(image, other))
                if bin(xor).count("1") < bin((plain[image] ^ plain[other]) & (2**64 - 1)).count("1"):
                    near_pairs.add(pair)
                    if any(xor & m == 0 for m in masks):
                        expected.add(pair)
    found = set(conn.execute("SELECT image_a, image_b FROM dbdedup.pairs "
                             "WHERE hash_kind = 'phash' AND transform_distance IS NOT NULL").fetchall())
    assert found == expected, f"{len(found - expected)} extra, {len(expected - found)} missing"
    assert len(near_pairs) >= 200 and len(expected) / len(near_pairs) >= 0.95


# ---------------------------------------------------------------- 3. --no-orientations, then orientations


def test_orientations_off_stores_no_variants_and_a_later_load_fills_them(conn, tmp_path):
    files = make_transform_set(tmp_path / "set")
    first = load_paths(conn, [tmp_path / "set"], workers=2, embedder=None, orientations=False)
    assert first.loaded == len(files)
    # and says so: the flipped copies were missed without a word
    assert any(n.startswith("orientations off (--no-orientations): flipped, rotated and bordered copies")
               for n in first.notes), first.notes
    rows = conn.execute("SELECT phash_variants FROM dbdedup.images WHERE status = 'ok'").fetchall()
    assert len(rows) == len(files) and all(r[0] is None for r in rows)
    # nothing to compare variants with: the flip is not found
    matching.find_pairs(conn, threshold=8, transforms=True)
    assert conn.execute("SELECT count(*) FROM dbdedup.pairs WHERE transform IS NOT NULL").fetchone()[0] == 0

    again = load_paths(conn, [tmp_path / "set"], workers=2, embedder=None, orientations=True)
    assert again.loaded == len(files) and again.unchanged == 0
    assert not any("orientations off" in n for n in again.notes)
    lengths = dict(conn.execute(
        "SELECT path, cardinality(phash_variants) FROM dbdedup.images WHERE status = 'ok'").fetchall())
    assert all(n in (7, 15) for n in lengths.values()), lengths
    assert lengths[str(files["border3"])] == 15  # the white border was trimmed
    # and unchanged now
    assert load_paths(conn, [tmp_path / "set"], workers=2, embedder=None, orientations=True).loaded == 0
    matching.find_pairs(conn, threshold=8, transforms=True)
    assert conn.execute("SELECT count(*) FROM dbdedup.pairs WHERE transform IS NOT NULL").fetchone()[0] == 3


# ---------------------------------------------------------------- 4. embeddings


def _vectors(conn) -> dict[int, np.ndarray]:
    return {r[0]: np.asarray(r[1].to_numpy(), dtype=np.float32) for r in
            conn.execute("SELECT image_id, embedding FROM dbdedup.image_embeddings ORDER BY image_id").fetchall()}


def _index_def(conn) -> str | None:
    row = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'dbdedup' "
                       "AND indexname = 'image_embeddings_vector_idx'").fetchone()
    return row[0] if row else None


def test_embeddings_are_stored_indexed_matched_and_refitted(conn, tmp_path):
    root = tmp_path / "emb"
    for s in SEEDS[:5]:
        save(photo(s), root / f"orig{s}.jpg", quality=95)
    copy = save(reencoded(resized(photo(1), 0.6), 70), root / "copy1.jpg", quality=70)
    summary = load_paths(conn, [root], workers=2)
    assert summary.embedder == "grey-v1" and summary.embedded == 6
    ok = conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'ok'").fetchone()[0]
    assert ok == 6
    row = conn.execute("SELECT count(*), count(embedding), min(vector_dims(embedding)), max(vector_dims(embedding)), "
                       "count(DISTINCT embedder) FROM dbdedup.image_embeddings").fetchone()
    assert row == (6, 6, 64, 64, 1)
    reduction = conn.execute(
        "SELECT embedder, dim, fitted_rows, index_method FROM dbdedup.embedding_reductions").fetchall()
    # the default index, ivfflat, cannot train its lists on 6 vectors: hnsw stands in, the choice is kept
    assert reduction == [("grey-v1", 64, 6, "ivfflat")]
    assert "USING hnsw" in (_index_def(conn) or "")
    norms = [float(np.linalg.norm(v)) for v in _vectors(conn).values()]
    assert np.allclose(norms, 1.0, atol=1e-3)

    result = matching.find_pairs(conn, threshold=8, embeddings=True, min_similarity=0.8)
    assert result.embeddings is not None and result.embeddings.mode == "full"
    ids = ids_by_path(conn)
    pair = phash_pairs(conn).get(frozenset((ids[str(copy)], ids[str(root / "orig1.jpg")])))
    assert pair is not None and pair["similarity"] >= 0.9, pair

    verify_pending_pairs(conn, workers=1)  # the pairs matching left pending, by their pixels
    clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="embedding", min_similarity=0.8))
    groups = cluster_groups(conn)
    home = [g for g in groups.values() if ids[str(copy)] in g]
    assert len(home) == 1 and ids[str(root / "orig1.jpg")] in home[0]
    member = [m for m in home[0].values() if not m["keeper"]]
    assert member and all(m["similarity"] is not None and m["similarity"] >= 0.8 for m in member)

    # hnsw on request: the choice is kept for later; 8 rows are not yet twice the 6 the reduction
    # was fitted on: no refit
    for s in (7, 8):
        save(photo(s), root / f"orig{s}.jpg", quality=95)
    summary = load_paths(conn, [root], workers=2, index_method="hnsw")
    assert summary.loaded == 2 and summary.embedded == 2
    assert not any("fitted" in n for n in summary.notes)
    assert "USING hnsw" in (_index_def(conn) or "")
    assert conn.execute("SELECT index_method, fitted_rows FROM dbdedup.embedding_reductions").fetchone() == ("hnsw", 6)
    matching.find_pairs(conn, threshold=8, embeddings=True, min_similarity=0.8)
    assert phash_pairs(conn)[frozenset((ids[str(copy)], ids[str(root / "orig1.jpg")]))]["similarity"] >= 0.9
    assert conn.execute("SELECT count(*) FROM dbdedup.signal_state WHERE signal = 'embeddings'").fetchone()[0] == 1

    # refit: every vector projected again, embedding pairs start over; the same data gives the same vectors
    before = _vectors(conn)
    refit = embedding_index.refit(conn)
    assert refit.projected == 8 and refit.fitted_rows == 8 and refit.fitted
    assert conn.execute("SELECT count(*) FROM dbdedup.signal_state WHERE signal = 'embeddings'").fetchone()[0] == 0
    after = _vectors(conn)
    assert after.keys() == before.keys()
    assert all(np.allclose(before[k], after[k], atol=1e-4) for k in before)


def test_a_collection_of_exact_copies_is_not_refitted_by_each_load(conn, tmp_path):
    # the reduction is fitted on one row per group of byte-identical files; counting every copy made the rows look
    # doubled, so each load refitted it and dropped every vector and embedding pair
    root = tmp_path / "backed_up"
    for s in range(1, 6):
        save(photo(s), root / "photos" / f"p{s}.jpg", quality=95)
    shutil.copytree(root / "photos", root / "backup")
    first = load_paths(conn, [root], workers=2)
    assert first.embedded == 10 and any("fitted" in n for n in first.notes)
    assert conn.execute("SELECT fitted_rows FROM dbdedup.embedding_reductions").fetchone() == (5,)
    fitted_at = conn.execute("SELECT fitted_at FROM dbdedup.embedding_reductions").fetchone()[0]
    before = _vectors(conn)
    again = load_paths(conn, [root], workers=2)
    assert again.loaded == 0 and again.embedded == 0
    assert not any("fitted" in n for n in again.notes), again.notes
    assert conn.execute("SELECT fitted_at FROM dbdedup.embedding_reductions").fetchone()[0] == fitted_at
    assert _vectors(conn).keys() == before.keys()
    # five new pictures double the distinct ones: then it refits
    for s in range(6, 11):
        save(photo(s), root / "photos" / f"p{s}.jpg", quality=95)
    grown = load_paths(conn, [root], workers=2)
    assert any("fitted" in n for n in grown.notes)
    assert conn.execute("SELECT fitted_rows FROM dbdedup.embedding_reductions").fetchone() == (10,)


def _small_distinct_images(root: Path, count: int, start: int = 0) -> None:
    rng = np.random.default_rng(start)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pixels = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").resize((48, 48), Image.Resampling.BICUBIC).save(root / f"n{i:05d}.png")


def test_an_ivfflat_index_is_trained_on_1000_vectors_and_kept_through_later_loads(conn, tmp_path):
    root = tmp_path / "many"
    _small_distinct_images(root, 1000)
    summary = load_paths(conn, [root], workers=2, index_method="ivfflat")
    assert summary.embedded == 1000
    assert "USING ivfflat" in (_index_def(conn) or "")
    # more new images than vectors stored: rebuilt after the load, with the method chosen before
    _small_distinct_images(root, 1100, start=1000)
    summary = load_paths(conn, [root], workers=2)
    assert summary.loaded == 1100
    # fitted on 1,000 rows, now 2,100: small enough to refit by itself, and every vector re-projected
    assert summary.embedded == 2100 and any("fitted" in n for n in summary.notes)
    assert conn.execute("SELECT fitted_rows FROM dbdedup.embedding_reductions").fetchone()[0] == 2100
    assert "USING ivfflat" in (_index_def(conn) or "")
    assert conn.execute("SELECT index_method FROM dbdedup.embedding_reductions").fetchone()[0] == "ivfflat"
    result = matching.find_pairs(conn, threshold=8, embeddings=True, min_similarity=0.99)
    assert result.embeddings.probes == 2100


def test_an_ivfflat_index_on_a_first_load_of_two_images_is_hnsw_until_it_can_train(conn, tmp_path):
    # two images: too few to train ivfflat's lists (their mean may even be the zero vector)
    root = tmp_path / "two"
    for s in (1, 2):
        save(photo(s), root / f"orig{s}.jpg", quality=95)
    summary = load_paths(conn, [root], workers=2, index_method="ivfflat")
    assert summary.embedded == 2
    assert "USING hnsw" in (_index_def(conn) or "")
    assert conn.execute("SELECT index_method FROM dbdedup.embedding_reductions").fetchone()[0] == "ivfflat"
    # a random projection, not a PCA of two rows: the two photos are not made opposite
    vectors = list(_vectors(conn).values())
    assert float(np.dot(vectors[0], vectors[1])) > -0.5


# ---------------------------------------------------------------- 5. hash-only mode


def test_hash_only_server_matches_transforms_and_clusters_fused(plain_pg_dsn, tmp_path):
    dsn = fresh_plain_database(plain_pg_dsn, f"signals_{os.getpid()}")
    files = make_transform_set(tmp_path / "set")
    with psycopg.connect(dsn) as conn:
        summary = load_paths(conn, [tmp_path / "set"], workers=2)  # embedder "default"
        assert summary.loaded == len(files) and summary.embedder is None and summary.embedded == 0
        assert any("pgvector" in note for note in summary.notes), summary.notes
        assert conn.execute("SELECT to_regclass('dbdedup.image_embeddings')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM dbdedup.images WHERE phash_variants IS NOT NULL").fetchone()[0] \
            == len(files)

        result = matching.find_pairs(conn, threshold=8, transforms=True, embeddings=True)
        assert result.embeddings is not None and result.embeddings.mode == "none"
        assert result.transforms is not None and result.transforms.pairs == 3

        fused = clusters.ensure_clusters(conn, ClusterSettings(threshold=8, rule="fused"))
        assert fused.clusters == 3
        ids = ids_by_path(conn)
        assert frozenset((ids[str(files["flip1"])], ids[str(files["orig1"])])) in grouping(conn)

        with pytest.raises(DbdedupError) as info:
            clusters.ensure_clusters(conn, ClusterSettings(threshold=8, rule="embedding"))
        assert info.value.hint
        assert "pgvector" in info.value.hint or "embedder" in info.value.hint


# ---------------------------------------------------------------- 6. ensure_clusters bookkeeping


def test_ensure_clusters_is_current_the_second_time_and_a_new_rule_rebuilds(conn, tmp_path):
    files = make_transform_set(tmp_path / "set")
    save(reencoded(resized(photo(4), 0.7), 75), tmp_path / "set" / "small4.jpg", quality=75)
    load_paths(conn, [tmp_path / "set"], workers=2)
    first = clusters.ensure_clusters(conn, ClusterSettings(threshold=8, rule="fused"))
    assert first.matched and first.rebuilt and first.settings.rule == "fused"
    assert first.match.transforms is not None and first.match.embeddings is not None
    fused_groups = grouping(conn)
    assert len(fused_groups) == 4  # three transformed copies and the resized one

    second = clusters.ensure_clusters(conn, ClusterSettings(threshold=8, rule="fused"))
    assert not second.matched and not second.rebuilt
    assert (second.clusters, second.members) == (first.clusters, first.members)
    assert grouping(conn) == fused_groups

    by_hash = clusters.ensure_clusters(conn, ClusterSettings(threshold=8, rule="hash"))
    assert by_hash.rebuilt and by_hash.settings.rule == "hash"
    assert clusters.current_parameters(conn)["rule"] == "hash"
    ids = ids_by_path(conn)
    assert grouping(conn) == {frozenset((ids[str(tmp_path / "set" / "small4.jpg")], ids[str(files["orig4"])]))}

    # a new image makes the clustering stale: matching runs again (incrementally)
    save(ImageOps.mirror(photo(5)), tmp_path / "set" / "orig5.jpg", quality=95)
    load_paths(conn, [tmp_path / "set"], workers=2)
    third = clusters.ensure_clusters(conn, ClusterSettings(threshold=8, rule="fused"))
    assert third.matched and third.rebuilt and third.match.mode == "incremental"
    assert grouping(conn) == fused_groups


# ---------------------------------------------------------------- 7. hard links


def test_a_hard_link_to_the_keeper_is_the_same_file_and_frees_nothing(conn, tmp_path):
    root = tmp_path / "links"
    original = save(photo(1), root / "a_original.jpg", quality=92)
    os.link(original, root / "b_link.jpg")
    shutil.copyfile(original, root / "c_copy.jpg")
    stat = original.stat()
    # the copy is newer, so the keeper is one of the two names of the original file
    os.utime(root / "c_copy.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    save(photo(2), root / "d_other.jpg", quality=92)
    load_paths(conn, [root], workers=2, embedder=None)
    clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="hash"))
    rows = conn.execute("SELECT path, is_keeper, is_same_file, is_exact_duplicate FROM dbdedup.cluster_members "
                        "ORDER BY path").fetchall()
    by_name = {Path(r[0]).name: r[1:] for r in rows}
    assert set(by_name) == {"a_original.jpg", "b_link.jpg", "c_copy.jpg"}
    keeper = [n for n, r in by_name.items() if r[0]]
    assert keeper and keeper[0] in ("a_original.jpg", "b_link.jpg")
    link = "b_link.jpg" if keeper[0] == "a_original.jpg" else "a_original.jpg"
    assert by_name[link][1] is True and by_name[link][2] is True
    assert by_name["c_copy.jpg"][1] is False and by_name["c_copy.jpg"][2] is True
    reclaimable = conn.execute("SELECT reclaimable_bytes, member_count FROM dbdedup.clusters").fetchall()
    assert reclaimable == [(stat.st_size, 3)]


def test_a_file_reached_by_several_paths_counts_once(conn, tmp_path):
    # a copy reached by its own path, a hard link and a symbolic link (which the loader follows) frees its bytes
    # once; once one of its paths is protected (and so kept), removing the others frees nothing
    root = tmp_path / "paths"
    original = save(photo(1), root / "original.jpg", quality=95)
    copy = save(resized(photo(1), 0.8), root / "copy.jpg", quality=90)
    os.link(copy, root / "copy_link.jpg")
    os.symlink(copy, root / "copy_symlink.jpg")
    load_paths(conn, [root], workers=2, embedder=None)

    def members() -> dict[str, tuple]:
        rows = conn.execute("SELECT path, is_keeper, is_same_file, is_protected FROM dbdedup.cluster_members").fetchall()
        return {Path(r[0]).name: r[1:] for r in rows}

    clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="hash"))
    found = members()
    assert set(found) == {"original.jpg", "copy.jpg", "copy_link.jpg", "copy_symlink.jpg"}
    assert found["original.jpg"][0] is True
    paths_of_copy = [found[n][1] for n in ("copy.jpg", "copy_link.jpg", "copy_symlink.jpg")]
    assert sorted(paths_of_copy) == [False, True, True]  # counted at one path of the three
    assert conn.execute("SELECT reclaimable_bytes FROM dbdedup.clusters").fetchall() == [(copy.stat().st_size,)]

    clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="hash",
                                                  reference_paths=(str(root / "copy_link.jpg"),)))
    found = members()
    assert found["copy_link.jpg"] == (True, False, True)  # a protected image is kept
    assert found["copy.jpg"][1] is True and found["copy_symlink.jpg"][1] is True
    assert conn.execute("SELECT reclaimable_bytes FROM dbdedup.clusters").fetchall() == [(original.stat().st_size,)]


def test_byte_identical_copies_do_not_crowd_the_embedding_neighbours(conn, tmp_path):
    # 30 copies of one photo sit at similarity 1.0 from each other: the k-NN search must look past them
    root = tmp_path / "crowd"
    first = save(photo(1), root / "orig1.jpg", quality=95)
    for i in range(30):
        shutil.copy2(first, root / f"copy{i:02d}.jpg")
    save(resized(reencoded(photo(1), 70), 0.6), root / "small1.jpg", quality=80)
    for s in (2, 3, 4):
        save(photo(s), root / f"other{s}.jpg", quality=95)
    load_paths(conn, [root], workers=2)
    result = matching.find_pairs(conn, threshold=8, embeddings=True, min_similarity=0.8, neighbours=3)
    assert result.embeddings.probes == 5  # one image per group of identical files
    ids = ids_by_path(conn)
    representative = min(i for p, i in ids.items() if "copy" in p or p.endswith("orig1.jpg"))
    pair = phash_pairs(conn).get(frozenset((representative, ids[str(root / "small1.jpg")])))
    assert pair is not None and pair["similarity"] is not None and pair["similarity"] >= 0.8
    verify_pending_pairs(conn, workers=1)  # the pairs matching left pending, by their pixels
    clusters.build_clusters(conn, ClusterSettings(threshold=8, rule="embedding", min_similarity=0.8))
    group = [g for g in cluster_groups(conn).values() if ids[str(root / "small1.jpg")] in g]
    assert len(group) == 1 and len(group[0]) == 32


def test_loading_an_empty_folder_with_the_default_embedder_is_fine(conn, tmp_path):
    (tmp_path / "empty").mkdir()
    summary = load_paths(conn, [tmp_path / "empty"], workers=2)
    assert summary.loaded == 0 and summary.embedded == 0
    assert conn.execute("SELECT count(*) FROM dbdedup.embedding_reductions").fetchone()[0] == 0


def test_an_onnx_model_of_the_users_embeds_through_the_cli_and_a_switch_re_describes(db_dsn, tmp_path):
    from click.testing import CliRunner

    from dbdedup.cli.main import cli
    from test_embedding import build_model

    pytest.importorskip("onnxruntime")
    model = build_model(tmp_path / "tiny.onnx", filters=8)
    root = tmp_path / "photos"
    for s in (1, 2, 3):
        save(photo(s), root / f"orig{s}.jpg", quality=95)
    save(resized(photo(1), 0.5), root / "small1.jpg", quality=85)
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", db_dsn, "--quiet", "load", str(root), "--embedder", f"onnx:{model}"])
    assert result.exit_code == 0, result.output
    with psycopg.connect(db_dsn) as conn:
        rows = conn.execute("SELECT embedder, count(*), count(embedding) FROM dbdedup.image_embeddings "
                            "GROUP BY embedder").fetchall()
        assert len(rows) == 1 and rows[0][0].startswith("onnx:") and rows[0][1:] == (4, 4)
        assert conn.execute("SELECT raw_dim FROM dbdedup.embedding_reductions").fetchone()[0] == 8
    # the default embedder next: every file is described again (same bytes, another embedder)
    result = runner.invoke(cli, ["--db", db_dsn, "--quiet", "load", str(root)])
    assert result.exit_code == 0, result.output
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT embedder, count(embedding) FROM dbdedup.image_embeddings "
                            "GROUP BY embedder").fetchall() == [("grey-v1", 4)]
    # a model path that does not exist: one line and a hint, nothing loaded, no traceback
    result = runner.invoke(cli, ["--db", db_dsn, "load", str(root), "--embedder", f"onnx:{tmp_path / 'nope.onnx'}"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "nope.onnx" in result.output


def test_the_far_neighbour_search_probes_more_ivfflat_lists_and_finds_the_exact_nearest(conn, tmp_path):
    # dbdedup.propose_keeper_pairs looks for neighbours at similarity 0.6-0.85 (a crop's family), which
    # the 4 lists that serve near-duplicates often miss; it asks embedding_neighbours for 16
    root = tmp_path / "many"
    _small_distinct_images(root, 1200)
    load_paths(conn, [root], workers=2, index_method="ivfflat")
    assert "USING ivfflat" in (_index_def(conn) or "")

    def nearest(lists_probed: int | None) -> set[tuple[int, int]]:
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE em_probe AS SELECT image_id, embedding "
                         "FROM dbdedup.image_embeddings ORDER BY image_id LIMIT 300")
            conn.execute("CREATE TEMP TABLE em_found (a bigint, b bigint, similarity real)")
            if lists_probed is None:  # exact: no index
                conn.execute("SET enable_indexscan = off")
                conn.execute("SELECT dbdedup.embedding_neighbours(4)")
            else:
                conn.execute("SELECT dbdedup.embedding_neighbours(4, %s)", (lists_probed,))
            found = {tuple(r) for r in conn.execute("SELECT a, b FROM em_found")}
            conn.execute("DROP TABLE em_probe, em_found")
            conn.execute("RESET enable_indexscan")
            return found

    exact = nearest(None)
    assert len(exact) == 300 * 3
    # these noise pictures are spread evenly, the hardest case for ivfflat's lists (52 here): 4 lists
    # find 0.56 of the exact 3 nearest, 16 find 0.88
    far = nearest(16)
    assert len(far & exact) >= 0.85 * len(exact)


def test_a_load_with_another_embedder_than_the_stored_vectors_says_they_do_not_compare(db_dsn, tmp_path):
    # the nearest-neighbour search compares every vector with every other, whatever made it: a copy in a folder
    # loaded with an ONNX model and its original loaded with the built-in descriptor came out at cosine -0.09
    pytest.importorskip("onnxruntime")
    from click.testing import CliRunner

    from dbdedup.cli.main import cli
    from test_embedding import build_model

    for s in (1, 2):
        save(photo(s), tmp_path / "originals" / f"o{s}.jpg", quality=92)
        save(resized(photo(s), 0.5), tmp_path / "copies" / f"o{s}_small.jpg", quality=90)
    runner = CliRunner()
    first = runner.invoke(cli, ["--db", db_dsn, "--quiet", "load", str(tmp_path / "originals")])
    assert first.exit_code == 0 and "warning" not in first.stderr
    model = build_model(tmp_path / "tiny.onnx")
    second = runner.invoke(cli, ["--db", db_dsn, "--quiet", "load", str(tmp_path / "copies"),
                                 "--embedder", f"onnx:{model}"])
    assert second.exit_code == 0, second.stderr
    assert "warning: vectors of 2 embedders are stored (" in second.stderr
    assert "vectors of different embedders do not compare" in second.stderr
    again = runner.invoke(cli, ["--db", db_dsn, "--quiet", "load", str(tmp_path / "originals"),
                                "--embedder", f"onnx:{model}"])
    assert again.exit_code == 0 and "warning" not in again.stderr  # one embedder again: said no more
