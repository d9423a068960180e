"""Keypoint keys on real images drawn with Pillow: a crop or a small rotation of a picture shares many
keys with it, an unrelated picture shares few (dbdedup.keypoints); and in the product, through the CLI
and a real database: `load --keypoints` stores them, matching proposes the pairs, the geometric check
decides, and the report clusters crops and rotations with their original."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import psycopg
import pytest
from images import save, scatter_shapes, textured_photo
from PIL import Image, ImageDraw, ImageOps
from psycopg.rows import dict_row
from test_report_sample import run_cli

from dbdedup import keypoints


def scene(seed: int, size=(480, 360)) -> Image.Image:
    """A detailed drawing: many overlapping shapes and lines of random colours (corners to find)."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)))
    return scatter_shapes(image, rng, 160)


def crop_area(image: Image.Image, area: float, left_share: float, top_share: float) -> Image.Image:
    """A crop keeping ``area`` of the picture, placed at the given share of the free room."""
    side = area ** 0.5
    w, h = round(image.width * side), round(image.height * side)
    left, top = round((image.width - w) * left_share), round((image.height - h) * top_share)
    return image.crop((left, top, left + w, top + h))


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """A rotation about the centre on the same canvas, corners white (as bench/accuracy makes them)."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(255, 255, 255))


def shared(a: Image.Image, b: Image.Image) -> int:
    return keypoints.shared_keys(keypoints.image_keys(a), keypoints.image_keys(b))


@pytest.mark.parametrize("seed", [3, 8])
def test_half_area_crop_and_ten_degree_rotation_share_many_keys_unrelated_few(seed):
    picture = scene(seed)
    others = [scene(seed + 100 + k) for k in range(4)]
    crop = crop_area(picture, 0.5, 0.8, 0.3)
    turned = rotated(picture, 10)
    crop_shared, turn_shared = shared(picture, crop), shared(picture, turned)
    unrelated = [shared(picture, other) for other in others] + [shared(crop, other) for other in others]
    # drawings of one kind of shape share a few generic corners; a copy shares tens
    assert min(crop_shared, turn_shared) >= 40, (crop_shared, turn_shared)
    assert min(crop_shared, turn_shared) >= 4 * max(unrelated), (crop_shared, turn_shared, unrelated)


def test_candidate_pairs_of_a_collection_rank_the_copies_first():
    picture = scene(4)
    images = [picture, crop_area(picture, 0.5, 0.1, 0.9), rotated(picture, -10)] + [scene(40 + k) for k in range(8)]
    keys = [keypoints.image_keys(image) for image in images]
    a, b, count = keypoints.candidate_pairs(keys, max_df=50, min_shared=3, top_k=2)
    pairs = {(int(x), int(y)): int(c) for x, y, c in zip(a, b, count)}
    copies = {(0, 1), (0, 2), (1, 2)}
    assert copies <= set(pairs), pairs
    assert min(pairs[p] for p in copies) > max([c for p, c in pairs.items() if p not in copies], default=0)
    # every key held by all images is a stop word when max_df is below the collection's size
    common = [np.r_[k, 1 << 40] for k in keys]
    _, _, with_common = keypoints.candidate_pairs(common, max_df=len(images) - 1, min_shared=1, top_k=0)
    _, _, without = keypoints.candidate_pairs(keys, max_df=len(images) - 1, min_shared=1, top_k=0)
    assert sorted(with_common.tolist()) == sorted(without.tolist())


def test_top_k_keeps_a_pair_that_is_among_either_images_best():
    # image 0 shares 5 keys with 1, 4 with 2, 3 with 3; images 2 and 3 share nothing else
    keys = [np.arange(12), np.arange(5), np.arange(5, 9), np.arange(9, 12)]
    a, b, count = keypoints.candidate_pairs(keys, max_df=10, min_shared=3, top_k=1)
    assert {(int(x), int(y), int(c)) for x, y, c in zip(a, b, count)} == {(0, 1, 5), (0, 2, 4), (0, 3, 3)}
    a, b, count = keypoints.candidate_pairs(keys, max_df=10, min_shared=4, top_k=0)
    assert {(int(x), int(y)) for x, y in zip(a, b)} == {(0, 1), (0, 2)}


def test_a_resized_jpeg_copy_keeps_its_keys(tmp_path):
    picture = scene(5, size=(900, 600))
    path = tmp_path / "copy.jpg"
    picture.resize((450, 300), Image.Resampling.LANCZOS).save(path, quality=75)
    with Image.open(path) as copy:
        copy.load()
        assert shared(picture, copy) >= 4 * keypoints.MIN_SHARED


def test_a_flat_or_tiny_image_has_no_keys():
    assert keypoints.image_keys(Image.new("RGB", (300, 200), (30, 120, 200))).size == 0
    assert keypoints.image_keys(Image.new("L", (1, 1), 0)).size == 0


def test_keys_are_the_descriptor_bands_with_their_number():
    rng = np.random.default_rng(1)
    descriptors = rng.integers(0, 256, size=(5, 32), dtype=np.uint8)
    keys = keypoints.descriptor_keys(descriptors, bands=10, bits=24)
    assert keys.size == 50 and np.all(np.diff(keys) > 0)  # distinct and sorted
    bits = np.unpackbits(descriptors[0])
    third = int("".join(map(str, bits[48:72])), 2)  # band 2 of the first descriptor
    assert (2 << 24 | third) in set(keys.tolist())
    # one flipped bit changes the key of its band only
    changed = descriptors.copy()
    changed[0, 7] ^= 0b0000_0001  # bit 63: band 2
    other = keypoints.descriptor_keys(changed, bands=10, bits=24)
    assert keypoints.shared_keys(keys, other) == 49


def test_bands_must_fit_in_the_descriptor():
    with pytest.raises(ValueError, match="exceed"):
        keypoints.descriptor_keys(np.zeros((1, 32), np.uint8), bands=11, bits=24)


# ---------------------------------------------------------------- in the product: load --keypoints, match, report


def tiles_shuffled(image: Image.Image, n: int, seed: int) -> Image.Image:
    """The picture cut into n x n tiles put back in another order: the same local features (many
    shared keys), no geometry that maps one picture onto the other."""
    w, h = image.width // n, image.height // n
    tiles = [image.crop((i * w, j * h, (i + 1) * w, (j + 1) * h)) for j in range(n) for i in range(n)]
    order = np.random.default_rng(seed).permutation(len(tiles))
    out = Image.new("RGB", (w * n, h * n))
    for k, t in enumerate(order):
        out.paste(tiles[t], ((k % n) * w, (k // n) * h))
    return out


def _keypoint_pairs(dsn: str) -> list[dict]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT a.path AS path_a, b.path AS path_b, p.transform, p.shared_keys, p.verified, p.verify_reason "
            "FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a JOIN dbdedup.images b ON b.id = p.image_b "
            "WHERE p.shared_keys IS NOT NULL OR p.transform = 'keypoints'").fetchall()


def _stored_keys(dsn: str) -> dict[str, list[int] | None]:
    with psycopg.connect(dsn) as conn:
        return {Path(path).name: keys for path, keys in
                conn.execute("SELECT path, keypoint_keys FROM dbdedup.images WHERE status = 'ok'")}


def _clusters_by_name(report_stdout: str) -> dict[str, tuple[int, dict]]:
    data = json.loads(report_stdout)
    return {Path(m["path"]).name: (c["id"], m) for c in data["clusters"] for m in c["members"]}


def test_a_half_crop_and_a_ten_degree_rotation_join_their_original_via_load_keypoints_and_report(db_dsn, tmp_path):
    root = tmp_path / "photos"
    picture = textured_photo(7)
    rng = random.Random(20261201)
    save(picture, root / "original.png")
    save(crop_area(picture, 0.5, rng.random(), rng.random()), root / "half_crop.png")
    save(rotated(picture, 10), root / "turned.jpg", quality=92)
    for k in range(4):
        save(textured_photo(100 + k), root / f"other{k}.png")
    run_cli(db_dsn, "load", "--keypoints", "--workers", "1", str(root))
    keys = _stored_keys(db_dsn)
    assert all(len(k) > 200 for k in keys.values()), {n: len(k) for n, k in keys.items()}

    by_name = _clusters_by_name(run_cli(db_dsn, "report", "--format", "json").stdout)
    cluster = by_name["original.png"][0]
    assert by_name["half_crop.png"][0] == cluster and by_name["turned.jpg"][0] == cluster
    assert not any(f"other{k}.png" in by_name and by_name[f"other{k}.png"][0] == cluster for k in range(4))
    # linked by keypoints, verified by geometry (the hashes are far apart: no other signal found them)
    for name in ("original.png", "half_crop.png", "turned.jpg"):
        member = by_name[name][1]
        assert member["keeper"] or (member["transform"] == "keypoints" and member["verify_reason"] == "geometry")
    found = {frozenset((Path(p["path_a"]).name, Path(p["path_b"]).name)): p for p in _keypoint_pairs(db_dsn)}
    for copy in ("half_crop.png", "turned.jpg"):
        pair = found[frozenset(("original.png", copy))]
        assert pair["transform"] == "keypoints" and pair["shared_keys"] >= keypoints.MIN_SHARED
        assert pair["verified"] and pair["verify_reason"] == "geometry"
    # the terminal report says why
    table = run_cli(db_dsn, "report").stdout
    assert "keypoints, features align" in table


def test_pictures_sharing_keys_without_geometry_stay_apart(db_dsn, tmp_path):
    root = tmp_path / "photos"
    picture = textured_photo(11)
    save(picture, root / "picture.png")
    save(tiles_shuffled(picture, 4, seed=1), root / "tiles4.png")
    save(tiles_shuffled(picture, 6, seed=2), root / "tiles6.png")
    save(textured_photo(12), root / "unrelated.png")
    run_cli(db_dsn, "load", "--keypoints", "--workers", "1", str(root))
    by_name = _clusters_by_name(run_cli(db_dsn, "report", "--format", "json").stdout)
    assert by_name == {}, by_name  # no cluster at all
    found = {frozenset((Path(p["path_a"]).name, Path(p["path_b"]).name)): p for p in _keypoint_pairs(db_dsn)}
    shuffled = found[frozenset(("picture.png", "tiles4.png"))]
    # many shared keys made it a candidate; the check by pixels rejected it
    assert shuffled["shared_keys"] >= 4 * keypoints.MIN_SHARED
    assert shuffled["verified"] is False and shuffled["verify_reason"] in ("no_geometry", "no_overlap", "colour")
    assert all(p["verified"] is False for p in found.values()), found


def test_a_flat_and_a_tiny_image_load_with_no_keys_and_no_error(db_dsn, tmp_path):
    root = tmp_path / "photos"
    save(Image.new("RGB", (400, 300), (40, 140, 90)), root / "flat.png")
    save(Image.new("L", (3, 2), 200), root / "tiny.png")
    save(textured_photo(5), root / "textured.jpg", quality=90)
    result = run_cli(db_dsn, "load", "--keypoints", "--workers", "1", str(root))
    assert "error" not in result.stderr.replace("0 errors", "")
    keys = _stored_keys(db_dsn)
    assert keys["flat.png"] == [] and keys["tiny.png"] == []
    assert len(keys["textured.jpg"]) > 200
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.images WHERE status <> 'ok'").fetchone()[0] == 0
        assert conn.execute("SELECT status FROM dbdedup.load_runs").fetchone()[0] == "completed"
    run_cli(db_dsn, "report", "--format", "json")
    assert _keypoint_pairs(db_dsn) == []


def test_without_keypoints_the_load_stores_no_keys_and_matching_finds_no_keypoint_pairs(db_dsn, tmp_path):
    root = tmp_path / "photos"
    picture = textured_photo(7)
    save(picture, root / "original.png")
    save(crop_area(picture, 0.5, 0.3, 0.6), root / "half_crop.png")
    save(rotated(picture, 10), root / "turned.png")
    run_cli(db_dsn, "load", "--workers", "1", str(root))
    assert set(_stored_keys(db_dsn).values()) == {None}
    # without keys the half crop is found through a window of its nearest neighbour (transform crop_window) and
    # the turned copy through its nearest turn signature (the keeper rounds' proposal for an image with no large
    # family, transform linked), neither through keypoints
    by_name = _clusters_by_name(run_cli(db_dsn, "report", "--format", "json").stdout)
    assert set(by_name) == {"original.png", "half_crop.png", "turned.png"}
    assert by_name["turned.png"][1]["transform"] == "linked" and by_name["half_crop.png"][1]["transform"] == "crop_window"
    assert _keypoint_pairs(db_dsn) == []
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.signal_state WHERE signal = 'keypoints'").fetchone()[0] == 0
        assert conn.execute("SELECT mode FROM dbdedup.match_keypoints()").fetchone()[0] == "none"

    # opting in later: a --keypoints load reads the stored files again for their keys, and the next
    # report matches them (incrementally) and clusters the copies
    result = run_cli(db_dsn, "load", "--keypoints", "--workers", "1", str(root))
    assert "loaded 3 images" in result.stderr
    assert all(len(k) > 200 for k in _stored_keys(db_dsn).values())
    by_name = _clusters_by_name(run_cli(db_dsn, "report", "--format", "json").stdout)
    assert len({by_name[n][0] for n in ("original.png", "half_crop.png", "turned.png")}) == 1


def _loaded_and_reported(db_dsn: str, root: Path, seed: int) -> Image.Image:
    """A photo (original.png) and 3 unrelated ones, loaded with --keypoints and reported once (which stores
    the clustering parameters, rule fused): the set a later copy is added to. Returns the photo."""
    picture = textured_photo(seed)
    save(picture, root / "original.png")
    for k in range(3):
        save(textured_photo(200 + k), root / f"other{k}.png")
    run_cli(db_dsn, "load", "--keypoints", "--workers", "1", str(root))
    run_cli(db_dsn, "report", "--format", "json")
    return picture


def test_new_images_are_matched_against_all_incrementally(db_dsn, tmp_path):
    root = tmp_path / "photos"
    picture = _loaded_and_reported(db_dsn, root, 21)
    save(rotated(crop_area(picture, 0.75, 0.9, 0.1), -6), root / "late_copy.png")
    run_cli(db_dsn, "load", "--keypoints", "--workers", "1", str(root))
    match = run_cli(db_dsn, "match").stderr
    assert "keypoints (incremental): 1 images with keys matched" in match, match
    by_name = _clusters_by_name(run_cli(db_dsn, "report", "--format", "json").stdout)
    assert by_name["late_copy.png"][0] == by_name["original.png"][0]


def _image_info(image_id: int, path: Path):
    from dbdedup.decode import decode_image
    from dbdedup.fingerprint import verification_signals
    from dbdedup.verify_workers import ImageInfo

    st = path.stat()
    quality, signature, why = verification_signals(decode_image(path.read_bytes(), colour=True))
    with Image.open(path) as image:
        size, fmt = image.size, image.format  # (as the loader records them: these pictures carry no EXIF orientation)
    return ImageInfo(image_id, "ok", bytes(path), st.st_size, st.st_mtime_ns, quality, signature, why, *size, fmt)


def test_a_keypoint_pair_is_decided_by_geometry_never_by_its_signatures(tmp_path):
    from dbdedup.verify_workers import PairChecker, PendingPair

    picture = textured_photo(31)
    a = _image_info(1, save(picture, tmp_path / "a.png"))
    b = _image_info(2, save(picture, tmp_path / "b.jpg", quality=85))
    shuffled = _image_info(3, save(tiles_shuffled(picture, 4, seed=3), tmp_path / "c.png"))

    def verdict(x, y, transform, distance):
        return PairChecker().verdict(PendingPair("phash", x.id, y.id, distance, False, transform,
                                                 0 if transform else None, None, x, y))

    # the same close pair: as a hash pair its signatures settle it; as a keypoint pair only geometry may
    assert verdict(a, b, None, 2).reason == "signature"
    keyed = verdict(a, b, "keypoints", 2)
    assert keyed.verified and keyed.reason == "geometry"
    # a keypoint pair whose pictures do not align is rejected, whatever its (made-up) hash distance
    assert not verdict(a, shuffled, "keypoints", 2).verified


def test_an_embedding_pair_the_keys_find_loses_a_signature_verdict_and_keeps_a_geometry_one(db_dsn, tmp_path):
    from dbdedup.matching import find_pairs

    root = tmp_path / "photos"
    picture = textured_photo(41)
    save(picture, root / "original.png")
    save(crop_area(picture, 0.5, 0.2, 0.4), root / "crop.png")
    save(rotated(picture, 8), root / "turned.png")
    run_cli(db_dsn, "load", "--keypoints", "--embedder", "none", "--workers", "1", str(root))
    with psycopg.connect(db_dsn) as conn:
        find_pairs(conn, threshold=8)  # the pHash only: no keypoint step
        ids = {Path(p).name: i for i, p in conn.execute("SELECT id, path FROM dbdedup.images")}
        crop, turned = sorted((ids["original.png"], ids["crop.png"])), sorted((ids["original.png"], ids["turned.png"]))
        # as if the embedding had found them, with verdicts already given
        for (a, b), reason in ((crop, "signature"), (turned, "geometry")):
            conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, similarity, "
                         "verified, verify_score, verify_reason) VALUES ('phash', %s, %s, 30, false, 0.95, true, "
                         "0.9, %s)", (a, b, reason))
        conn.execute("SELECT * FROM dbdedup.match_keypoints()")
        rows = {(a, b): (t, k, v, r) for a, b, t, k, v, r in conn.execute(
            "SELECT image_a, image_b, transform, shared_keys, verified, verify_reason FROM dbdedup.pairs")}
    transform, shared, verified, reason = rows[tuple(crop)]
    assert transform == "keypoints" and shared >= keypoints.MIN_SHARED
    assert (verified, reason) == (None, None)  # the signature's verdict is gone: geometry decides
    assert rows[tuple(turned)][0] == "keypoints" and rows[tuple(turned)][2:] == (True, "geometry")


def test_refresh_finds_keypoint_pairs_and_leaves_them_to_the_geometric_check(db_dsn, tmp_path):
    # pg_cron's dbdedup.refresh() after a --keypoints load: the new crop becomes a keypoint pair, pending
    # (only geometry verifies one), so not clustered until `dbdedup verify` has checked it
    root = tmp_path / "photos"
    picture = _loaded_and_reported(db_dsn, root, 9)
    save(crop_area(picture, 0.5, 0.3, 0.6), root / "half_crop.png")
    run_cli(db_dsn, "load", "--keypoints", "--workers", "1", str(root))
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("CALL dbdedup.refresh()")
    pairs = {frozenset((Path(p["path_a"]).name, Path(p["path_b"]).name)): p for p in _keypoint_pairs(db_dsn)}
    pair = pairs[frozenset(("original.png", "half_crop.png"))]
    assert pair["transform"] == "keypoints" and pair["verified"] is None
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.cluster_members").fetchone()[0] == 0
    run_cli(db_dsn, "verify")
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("CALL dbdedup.refresh()")
        members = {Path(p).name for (p,) in conn.execute("SELECT path FROM dbdedup.cluster_members")}
    assert members == {"original.png", "half_crop.png"}


def flat_scene(seed: int, channels: tuple[int, int, int] | None = None, size=(480, 360)) -> Image.Image:
    """A flat photo: a noisy two-colour gradient under 8 filled rectangles and ellipses (few keypoints: 20 or so
    at the check's working size). ``channels``: the shapes' red, green and blue taken from these channels of
    their colours (a look-alike: the same drawing in other colours); None leaves them as drawn."""
    rng = np.random.default_rng(seed)
    w, h = size
    first, last = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    share = np.linspace(0, 1, w)[None, :, None] * 0.6 + np.linspace(0, 1, h)[:, None, None] * 0.4
    pixels = first * (1 - share) + last * share + rng.normal(0, 6, size=(h, w, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    shapes = random.Random(seed)
    for _ in range(8):
        x, y = shapes.randint(0, w - 60), shapes.randint(0, h - 60)
        dx, dy = shapes.randint(30, 150), shapes.randint(30, 120)
        colour = tuple(shapes.randint(0, 255) for _ in range(3))
        if channels is not None:
            colour = tuple(colour[c] for c in channels)
        (draw.rectangle if shapes.random() < 0.5 else draw.ellipse)((x, y, x + dx, y + dy), fill=colour)
    return image


def _clustered_pairs(dsn: str) -> dict[frozenset, str]:
    """Each member's pair with its keeper (file names) and the transform of the pair that brought it in."""
    by_name = _clusters_by_name(run_cli(dsn, "report", "--format", "json").stdout)
    keepers = {cluster: name for name, (cluster, member) in by_name.items() if member["keeper"]}
    return {frozenset((name, keepers[cluster])): member["transform"]
            for name, (cluster, member) in by_name.items() if not member["keeper"]}


def test_keypoints_lose_no_copy_the_embedding_finds_and_cluster_no_recoloured_look_alike(db_dsn, empty_db_dsn,
                                                                                          tmp_path):
    # The same folder loaded without and with --keypoints (both --no-orientations). A pair the embedding found
    # that shares keys becomes a keypoints pair (sql/keypoints.sql); a flat copy in a white border has too few
    # keypoints to align, and its pair was verified `dense`, a check of an embedding neighbour that a keypoints
    # pair did not get: the opt-in signal lost the copy. It gets an embedding neighbour's checks too now.
    root = tmp_path / "photos"
    for seed in range(12):
        save(flat_scene(seed), root / f"p{seed:02d}.png")
    save(flat_scene(0).resize((240, 180), Image.Resampling.LANCZOS), root / "resized.png")
    save(flat_scene(0), root / "q20.jpg", quality=20)
    save(flat_scene(0), root / "same.png", "PNG", compress_level=1)
    save(ImageOps.mirror(flat_scene(1)), root / "flipped.png")
    save(flat_scene(2).rotate(90, expand=True), root / "turned90.png")
    save(flat_scene(3).crop((24, 18, 456, 342)), root / "crop10.png")
    save(ImageOps.expand(flat_scene(5), border=30, fill=(255, 255, 255)), root / "bordered.png")
    look_alikes = {9: (1, 2, 0), 11: (2, 1, 0)}  # (each found by the embedding and the keys, 12 and 16 bits apart)
    for seed, channels in look_alikes.items():
        save(flat_scene(seed, channels), root / f"recoloured{seed}.png")

    run_cli(empty_db_dsn, "load", "--no-orientations", "--workers", "1", str(root))
    run_cli(db_dsn, "load", "--no-orientations", "--keypoints", "--workers", "1", str(root))
    without, with_keys = _clustered_pairs(empty_db_dsn), _clustered_pairs(db_dsn)
    bordered = frozenset(("bordered.png", "p05.png"))
    assert bordered in without, without  # (the embedding's pair, verified by aligning the pixels)
    # every copy found without the keys is found with them: a keeper pair proposed through a member
    # (`linked`: the flat picture turned by 90 degrees) too, though the keys' pair of the same two images,
    # which did not align, was stored first
    assert set(without) <= set(with_keys), (without, with_keys)
    with psycopg.connect(db_dsn) as conn:
        ids = {Path(p).name: i for i, p in conn.execute("SELECT id, path FROM dbdedup.images")}
        rows = {frozenset((a, b)): (t, s, k, v, r) for a, b, t, s, k, v, r in conn.execute(
            "SELECT image_a, image_b, transform, similarity, shared_keys, verified, verify_reason FROM dbdedup.pairs")}
    # the bordered copy's pair: the keys found it too, and it was verified by its pixels
    transform, similarity, shared_keys, verified, reason = rows[frozenset((ids["bordered.png"], ids["p05.png"]))]
    assert transform == "keypoints" and similarity is not None and shared_keys >= keypoints.MIN_SHARED
    assert verified and reason == "dense"
    # the look-alikes: the same drawing in other colours, found by the embedding and the keys (so given the
    # same checks), still apart
    for seed in look_alikes:
        look_alike = frozenset((f"recoloured{seed}.png", f"p{seed:02d}.png"))
        transform, similarity, shared_keys, verified, _ = rows[frozenset(ids[n] for n in look_alike)]
        assert transform == "keypoints" and similarity is not None and shared_keys is not None
        assert verified is False
        assert look_alike not in with_keys and look_alike not in without


def test_a_keypoints_pair_the_embedding_found_gets_an_embedding_neighbours_checks_one_the_keys_alone_found_not(
        tmp_path):
    from dbdedup import verify
    from dbdedup.verify_workers import PairChecker, PendingPair

    picture = flat_scene(5)
    a = _image_info(1, save(picture, tmp_path / "a.png"))
    b = _image_info(2, save(ImageOps.expand(picture, border=30, fill=(255, 255, 255)), tmp_path / "bordered.png"))

    def verdict(transform, similarity):
        return PairChecker().verdict(PendingPair("phash", a.id, b.id, 18, False, transform, 0 if transform else None,
                                                 similarity, a, b))

    # too few keypoints to align: the embedding's pair is verified by aligning the pixels
    assert verdict(None, 0.9) == verdict("keypoints", 0.9)
    assert verdict("keypoints", 0.9).verified and verdict("keypoints", 0.9).reason == "dense"
    # the keys alone (or an embedding too weak for any check): the keypoints' routes only
    for similarity in (None, verify.GEOMETRY_MIN_SIMILARITY - 0.05):
        assert verdict("keypoints", similarity).reason == "no_geometry"
