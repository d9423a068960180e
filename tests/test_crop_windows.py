"""Crop windows (dbdedup/crop_windows.py, dbdedup.propose_keeper_pairs): a copy cropped to half the
picture is far from its original by every whole-frame signal, and near the window of the original's
stored thumbnail it was cut from; the keeper pair that window proposes is checked by its pixels, and
the crop joins the cluster. Real images, the real loader and workers, the embedded PostgreSQL."""

from __future__ import annotations

import random

import numpy as np
import psycopg
import pytest
from PIL import Image

from dbdedup import clusters, crop_windows, embedding_index, verify
from dbdedup.clusters import ClusterSettings
from dbdedup.hashes import PHASH_SIZE, compute_hashes, low_frequency_block, phash_of_blocks
from dbdedup.load import load_paths
from dbdedup.resample import resize_weights
from images import save, star_ring
from test_verify_workers import drawing, other_colours, textured_photo


def _bits(a: int, b: int) -> int:
    return bin((a ^ b) & (2**64 - 1)).count("1")


def half_crop(image: Image.Image, left: float, top: float) -> Image.Image:
    """Half the area (0.707 of each side) kept, its top left corner at the given shares of the room left."""
    w, h = image.size
    cw, ch = int(w * 0.707), int(h * 0.707)
    x, y = round((w - cw) * left), round((h - ch) * top)
    return image.crop((x, y, x + cw, y + ch))


def thumbnail(image: Image.Image) -> np.ndarray:
    return np.frombuffer(verify.structure_thumbnail(image), np.uint8).reshape(1, 64, 64)


def nearest_window(original: Image.Image, copy: Image.Image) -> int:
    windows = crop_windows.window_phashes(thumbnail(original))[0]
    phash = compute_hashes(copy).phash
    return min(_bits(int(w), phash) for w in windows)


def test_a_half_crop_anywhere_is_near_a_window_of_its_original_and_other_pictures_are_not():
    rng = random.Random(7)
    near = 0
    for seed in (1, 2, 3):
        original = textured_photo(seed, size=(640, 480))
        for _ in range(5):
            crop = half_crop(original, rng.random(), rng.random())
            assert _bits(compute_hashes(crop).phash, compute_hashes(original).phash) > crop_windows.CROP_DISTANCE
            near += nearest_window(original, crop) <= crop_windows.CROP_DISTANCE
        assert nearest_window(original, half_crop(drawing(seed), 0.5, 0.5)) > crop_windows.CROP_DISTANCE
        for other in (4, 5):
            assert nearest_window(original, half_crop(textured_photo(other), 0.3, 0.6)) > crop_windows.CROP_DISTANCE
    # (a window is up to 4% of its side off the crop: on the accuracy set 0.86 of the half-area crops are
    # within CROP_DISTANCE of their original's nearest window)
    assert near >= 12, near


def _windows_one_by_one(thumbnails: np.ndarray) -> np.ndarray:
    """Each window cut out, resized to 32x32 with Pillow's Lanczos weights, its pHash taken as dbdedup.hashes
    takes a picture's (the 8x8 low-frequency block, bits above its median): what window_phashes computes at once."""
    out = []
    for side, offsets in crop_windows.WINDOW_GRID:
        weights = resize_weights(side, PHASH_SIZE, Image.Resampling.LANCZOS)
        for top in offsets:
            for left in offsets:
                resized = weights @ thumbnails[:, top:top + side, left:left + side].astype(np.float64) @ weights.T
                out.append(phash_of_blocks(low_frequency_block(resized).reshape(len(thumbnails), -1)))
    return np.array(out, dtype=np.int64).T


def test_the_windows_at_once_are_each_window_resized_and_hashed():
    rng = np.random.default_rng(3)
    pictures = [textured_photo(seed, size=(480, 360)) for seed in (1, 2)] + [drawing(4), star_ring(17, 7, size=200)]
    stack = np.concatenate([thumbnail(p) for p in pictures]
                           + [rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)])
    at_once, one_by_one = crop_windows.window_phashes(stack), _windows_one_by_one(stack)
    assert at_once.shape == one_by_one.shape == (len(stack), crop_windows.WINDOWS)
    # (a window whose coefficients tie at the median, as a flat one's do, may differ in those bits: none here)
    assert np.array_equal(at_once, one_by_one)
    # in chunks or whole, the same
    many = np.concatenate([stack] * 60)
    assert np.array_equal(crop_windows.window_phashes(many), np.concatenate([at_once] * 60))


def test_windows_need_thumbnails_of_64_pixels_a_side():
    assert crop_windows.window_phashes(np.zeros((0, 64, 64), np.uint8)).shape == (0, crop_windows.WINDOWS)
    with pytest.raises(ValueError):
        crop_windows.window_phashes(np.zeros((2, 32, 32), np.uint8))
    stack, kept = crop_windows.thumbnails_of([None, bytes(1024), bytes(4096)])
    assert kept == [2] and stack.shape == (1, 64, 64)


def without_stored_windows(conn) -> None:
    """Every image's stored crop windows emptied (as for an image with no 64x64 thumbnail): no crop window pair is
    found at matching, so a crop is found only the ways a test that clears them follows."""
    conn.execute("UPDATE dbdedup.image_embeddings SET crop_windows = '{}'")
    conn.commit()


def _family(tmp_path) -> tuple[dict[str, int], dict[str, str]]:
    original = textured_photo(11, size=(640, 480))
    root = tmp_path / "set"
    files = {"photo": save(original, root / "photo.png"),
             "photo-large": save(original.resize((960, 720), Image.Resampling.BICUBIC), root / "photo-large.png"),
             "photo-jpeg": save(original, root / "photo.jpg", quality=80),
             "photo-small": save(original.resize((360, 270), Image.Resampling.LANCZOS), root / "photo-small.png"),
             "crop": save(half_crop(original, 0.8, 0.3), root / "crop.jpg", quality=90),
             "crop-recoloured": save(other_colours(half_crop(original, 0.2, 0.7)), root / "crop-recoloured.png")}
    for seed in range(30, 36):
        files[f"other-{seed}"] = save(textured_photo(seed, size=(480, 360)), root / f"other-{seed}.png")
    return files, root


def _load(conn, tmp_path):
    """_family loaded, without its stored windows: the keepers' windows are the way these tests follow (a lone crop
    through its nearest neighbours' windows: test_a_lone_crop_...)."""
    files, root = _family(tmp_path)
    summary = load_paths(conn, [root], workers=2)
    assert summary.loaded == len(files) and not summary.errors
    without_stored_windows(conn)
    by_path = dict(conn.execute("SELECT path, id FROM dbdedup.images").fetchall())
    return {name: by_path[str(path)] for name, path in files.items()}


def _cluster_of(conn, image_id: int) -> set[int]:
    return {i for (i,) in conn.execute(
        "SELECT m.image_id FROM dbdedup.cluster_members m WHERE m.cluster_id = "
        "(SELECT cluster_id FROM dbdedup.cluster_members WHERE image_id = %s)", (image_id,))}


def _pair(conn, a: int, b: int):
    return conn.execute("SELECT transform, verified, verify_reason FROM dbdedup.pairs WHERE hash_kind = 'phash' "
                        "AND image_a = %s AND image_b = %s", (min(a, b), max(a, b))).fetchone()


def test_a_half_crop_joins_its_family_through_the_keepers_windows_and_its_recoloured_twin_does_not(conn, tmp_path):
    image = _load(conn, tmp_path)
    family = {image[n] for n in ("photo", "photo-large", "photo-jpeg", "photo-small")}
    result = clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)
    keeper = image["photo-large"]
    assert _cluster_of(conn, keeper) == family | {image["crop"]}
    # proposed as a keeper pair (nothing else paired the crop with its family) and verified by its pixels
    transform, verified, reason = _pair(conn, keeper, image["crop"])
    assert (transform, verified) == ("linked", True) and reason in ("geometry", "dense"), reason
    assert result.keeper_pairs >= 1
    # the same crop's region in other colours is another picture: whatever proposed it, it stays out
    assert image["crop-recoloured"] not in _cluster_of(conn, keeper)
    recoloured = _pair(conn, keeper, image["crop-recoloured"])
    assert recoloured is None or recoloured[1] is False


def test_the_keepers_windows_propose_the_half_crops_that_no_neighbour_search_proposes(conn, tmp_path, monkeypatch):
    # clustered without keeper rounds; then dbdedup.propose_keeper_pairs with no neighbour search: without
    # windows it proposes nothing for the crops, with the keeper's windows their two pairs with the keeper
    monkeypatch.setattr(clusters, "link_keepers", lambda conn, result, **kw: result)
    image = _load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)
    keeper = image["photo-large"]
    crops = {image["crop"], image["crop-recoloured"]}  # (the recoloured one: its luma, and so its pHash, moved)
    assert not crops & _cluster_of(conn, keeper)
    assert all(_pair(conn, keeper, c) is None for c in crops)
    propose = "SELECT dbdedup.propose_keeper_pairs(near_neighbours => 0, crop_keepers => %s, crop_windows => %s)"
    assert conn.execute(propose, (None, None)).fetchone()[0] == 0
    keepers, windows = clusters.keeper_crop_windows(conn)
    assert keepers == [keeper] and len(windows) == crop_windows.WINDOWS
    # exactly the images outside the cluster whose stored pHash is within CROP_DISTANCE of a window
    stored = dict(conn.execute("SELECT id, phash FROM dbdedup.images").fetchall())
    near = {i for i, phash in stored.items() if i not in _cluster_of(conn, keeper)
            and min(_bits(w, phash) for w in windows) <= crop_windows.CROP_DISTANCE}
    assert image["crop"] in near
    assert conn.execute(propose, (keepers, windows)).fetchone()[0] == len(near)
    proposed = {a if b == keeper else b for a, b in conn.execute(
        "SELECT image_a, image_b FROM dbdedup.pairs WHERE transform = 'linked' AND verified IS NULL")}
    assert proposed == near


def test_windows_of_another_count_than_the_keepers_are_refused(conn, tmp_path):
    image = _load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)
    with pytest.raises(psycopg.errors.RaiseException, match="window hashes for"):
        conn.execute("SELECT dbdedup.propose_keeper_pairs(crop_keepers => %s::bigint[], crop_windows => %s::bigint[])",
                     ([image["photo-large"], image["photo"]], [1, 2, 3]))


# ---------------------------------------------------------------- a flat picture's window (verify.window_match)


def _window_verdict(whole: Image.Image, part: Image.Image):
    pa, pb = verify.working_pixels(whole), verify.working_pixels(part)
    return verify.dense_verdict(verify.Features.of(whole), verify.Features.of(part), verify.window_match(pa, pb))


def test_a_flat_picture_cropped_or_framed_is_aligned_from_its_window_and_other_pictures_are_not():
    from PIL import ImageOps

    from test_turn_signature import _flag

    for seed in (1, 7):
        flag = _flag(seed)
        keeper = flag.resize((600, 400), Image.Resampling.BICUBIC)
        copies = {"half": half_crop(flag, 0.7, 0.2), "three quarters": flag.crop((10, 20, 10 + 260, 20 + 173)),
                  "framed": ImageOps.expand(flag, border=24, fill=(128, 128, 128))}
        for name, copy in copies.items():
            keys = min(len(verify.keypoints(keeper).points), len(verify.keypoints(copy).points))
            assert keys < verify.DENSE_WINDOW_MAX_KEYPOINTS, (seed, name, keys)  # (the path the workers take)
            assert _window_verdict(keeper, copy).reason == "dense", (seed, name)
            assert _window_verdict(copy, keeper).reason == "dense", (seed, name)  # either way round
            # the same crop in other colours is another picture
            assert not _window_verdict(keeper, other_colours(copy)).verified, (seed, name)
        # ECC started unturned from the whole frame does not align the half crop
        pa, pb = verify.working_pixels(keeper), verify.working_pixels(copies["half"])
        assert verify.dense_verdict(verify.Features.of(keeper), verify.Features.of(copies["half"]),
                                    verify.dense_match(pa, pb)).reason != "dense"
        # another flag's window is not this one's
        for other in (2, 3):
            assert not _window_verdict(keeper, half_crop(_flag(other), 0.5, 0.5)).verified, (seed, other)


def test_the_workers_align_a_flat_crop_from_its_window(conn, tmp_path):
    from test_turn_signature import _flag
    from test_verify_workers import add_pending, loaded, verdicts
    from dbdedup.verify_workers import verify_pending_pairs

    flag = _flag(7)
    folder = tmp_path / "set"
    files = {"flag": save(flag.resize((600, 400), Image.Resampling.BICUBIC), folder / "flag.png"),
             "crop": save(half_crop(flag, 0.7, 0.2), folder / "flag-crop.png"),
             "crop-again": save(half_crop(flag, 0.15, 0.8), folder / "flag-crop-again.jpg", quality=95),
             "other-colours": save(other_colours(half_crop(flag, 0.7, 0.2)), folder / "flag-other-colours.png")}
    image = loaded(conn, folder, files)
    # a keeper pair (as the crop windows propose it), an embedding neighbour, a keeper pair of another picture
    add_pending(conn, image["flag"], image["crop"], similarity=None, transform="linked")
    add_pending(conn, image["flag"], image["crop-again"], similarity=0.9)
    add_pending(conn, image["flag"], image["other-colours"], similarity=None, transform="linked")
    verify_pending_pairs(conn, workers=1)
    found = verdicts(conn)
    assert found[frozenset((image["flag"], image["crop"]))][0::2] == (True, "dense")
    assert found[frozenset((image["flag"], image["crop-again"]))][0::2] == (True, "dense")
    assert found[frozenset((image["flag"], image["other-colours"]))][0] is False


def test_a_search_past_its_budget_is_skipped_with_a_notice(conn, tmp_path, monkeypatch):
    # (every probe against every window: a collection of millions with many large clusters would take
    # hours; 10^9 comparisons by default, dbdedup.crop_window_budget here)
    monkeypatch.setattr(clusters, "link_keepers", lambda conn, result, **kw: result)
    image = _load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)
    keepers, windows = clusters.keeper_crop_windows(conn)
    notices = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary))
    propose = "SELECT dbdedup.propose_keeper_pairs(near_neighbours => 0, crop_keepers => %s, crop_windows => %s)"
    conn.execute("SET dbdedup.crop_window_budget = 10")
    assert conn.execute(propose, (keepers, windows)).fetchone()[0] == 0
    assert any("crop windows not searched" in n for n in notices), notices
    conn.execute("RESET dbdedup.crop_window_budget")
    assert conn.execute(propose, (keepers, windows)).fetchone()[0] >= 1  # the crop, at the default budget
    assert _pair(conn, image["photo-large"], image["crop"]) == ("linked", None, None)


def crop_of_area(image: Image.Image, share: float, left: float, top: float) -> Image.Image:
    """``share`` of the area kept (sqrt(share) of each side), its top left corner at the given shares of the room left."""
    w, h = image.size
    cw, ch = round(w * share ** 0.5), round(h * share ** 0.5)
    x, y = round((w - cw) * left), round((h - ch) * top)
    return image.crop((x, y, x + cw, y + ch))


def _loaded_among_others(conn, root, files: dict) -> tuple[dict, dict[str, int]]:
    """``files`` and 20 unrelated photos (``other-SEED``) loaded by the real loader: every file and its image id."""
    files = dict(files)
    for seed in range(50, 70):
        files[f"other-{seed}"] = save(textured_photo(seed, size=(480, 360)), root / f"other-{seed}.jpg", quality=90)
    summary = load_paths(conn, [root], workers=2)
    assert summary.loaded == len(files) and not summary.errors
    by_path = dict(conn.execute("SELECT path, id FROM dbdedup.images").fetchall())
    return files, {name: by_path[str(path)] for name, path in files.items()}


def test_a_lone_crop_is_paired_with_its_original_through_the_windows_of_its_nearest_neighbours(conn, tmp_path):
    # A photo and one crop of three quarters of it (the commonest case: no family of 4 for the keeper rounds'
    # windows), among unrelated photos: no hash pairs them, their embeddings are below the pairing floor, and
    # the crop's pHash is near a window of the photo, one of its nearest embedding neighbours
    root = tmp_path / "set"
    original = textured_photo(41, size=(640, 480))
    files, image = _loaded_among_others(conn, root, {
        "photo": save(original, root / "photo.jpg", quality=90),
        "crop": save(crop_of_area(original, 0.75, 0.1, 0.9), root / "crop.jpg", quality=90),
        "crop-recoloured": save(other_colours(crop_of_area(original, 0.75, 0.9, 0.1)), root / "crop-recoloured.png")})
    # the load's workers wrote every image's windows, those its stored thumbnail gives
    stored = conn.execute("SELECT e.crop_windows, i.structure FROM dbdedup.image_embeddings e "
                          "JOIN dbdedup.images i ON i.id = e.image_id").fetchall()
    assert len(stored) == len(files)
    assert all(w == crop_windows.crop_windows_of_thumbnails([bytes(t)])[0] for w, t in stored)
    assert all(len(w) == crop_windows.WINDOWS for w, _ in stored)

    result = clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)

    pair = _pair(conn, image["photo"], image["crop"])
    assert pair is not None and pair[:2] == ("crop_window", True) and pair[2] in ("geometry", "dense"), pair
    assert _cluster_of(conn, image["photo"]) == {image["photo"], image["crop"]}
    # the same region in other colours is another picture, whatever paired it
    recoloured = _pair(conn, image["photo"], image["crop-recoloured"])
    assert recoloured is None or recoloured[1] is False
    assert result.keeper_pairs == 0  # (no cluster of 4: the keeper rounds' windows had no part in it)
    # no unrelated photo was paired so
    others = {image[n] for n in files if n.startswith("other-")}
    window_pairs = conn.execute("SELECT image_a, image_b FROM dbdedup.pairs WHERE transform = 'crop_window'").fetchall()
    assert not any({a, b} & others for a, b in window_pairs), window_pairs


def test_a_lone_crop_cut_between_two_windows_is_paired_with_its_nearest_neighbour(conn, tmp_path):
    # The windows sit at a grid of places: a crop cut between two of them has its pHash 9-10 bits from the
    # nearest window, past the 8 allowed for the 3 nearest neighbours; the nearest neighbour is allowed 10
    root = tmp_path / "set"
    original = textured_photo(41, size=(640, 480))
    place = next((i / 10, j / 10) for i in range(11) for j in range(11)
                 if 9 <= nearest_window(original, crop_of_area(original, 0.75, i / 10, j / 10)) <= 10)
    _, image = _loaded_among_others(conn, root, {
        "photo": save(original, root / "photo.jpg", quality=90),
        "crop": save(crop_of_area(original, 0.75, *place), root / "crop.jpg", quality=90)})
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)
    pair = _pair(conn, image["photo"], image["crop"])
    assert pair is not None and pair[:2] == ("crop_window", True), (place, pair)
    assert _cluster_of(conn, image["photo"]) == {image["photo"], image["crop"]}
    window_pairs = conn.execute("SELECT image_a, image_b FROM dbdedup.pairs WHERE transform = 'crop_window'").fetchall()
    assert window_pairs == [tuple(sorted((image["photo"], image["crop"])))], window_pairs


def test_windows_missing_from_an_older_database_are_written_from_the_stored_thumbnails(conn, tmp_path):
    root = tmp_path / "set"
    files = {f"photo-{seed}": save(textured_photo(seed, size=(320, 240)), root / f"photo-{seed}.png") for seed in (1, 2, 3)}
    files["flat"] = save(Image.new("RGB", (200, 100), (90, 120, 30)), root / "flat.png")
    load_paths(conn, [root], workers=1)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    embeddings_matched = "SELECT count(*) FROM dbdedup.signal_state WHERE signal = 'embeddings'"
    assert conn.execute(embeddings_matched).fetchone()[0] == 1
    before = dict(conn.execute("SELECT image_id, crop_windows FROM dbdedup.image_embeddings").fetchall())
    vectors = dict(conn.execute("SELECT image_id, embedding::text FROM dbdedup.image_embeddings").fetchall())
    conn.execute("UPDATE dbdedup.image_embeddings SET crop_windows = NULL")
    conn.commit()

    result = embedding_index.project_pending(conn, "grey-v1")

    assert dict(conn.execute("SELECT image_id, crop_windows FROM dbdedup.image_embeddings").fetchall()) == before
    # only the windows were missing: no vector projected again, no refit
    assert result.projected == 0 and not result.fitted
    assert dict(conn.execute("SELECT image_id, embedding::text FROM dbdedup.image_embeddings").fetchall()) == vectors
    # and the next match searches every image's neighbours again, which is what compares the windows
    assert conn.execute(embeddings_matched).fetchone()[0] == 0


def test_with_no_windows_given_the_keepers_stored_windows_are_searched_as_refresh_needs(conn, tmp_path, monkeypatch):
    # CALL dbdedup.refresh() proposes keeper pairs in SQL alone, which cannot cut windows from a thumbnail: with
    # none given, dbdedup.propose_keeper_pairs searches the keepers' stored windows, and proposes what the windows
    # the report computes propose
    monkeypatch.setattr(clusters, "link_keepers", lambda conn, result, **kw: result)
    files, root = _family(tmp_path)
    assert load_paths(conn, [root], workers=2).loaded == len(files)
    by_path = dict(conn.execute("SELECT path, id FROM dbdedup.images").fetchall())
    image = {name: by_path[str(path)] for name, path in files.items()}
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)
    # (the pairs the nearest neighbours' windows found at matching taken away: the crops are outside the cluster)
    conn.execute("DELETE FROM dbdedup.pairs WHERE transform = 'crop_window'")
    conn.commit()
    clusters.build_clusters(conn, ClusterSettings())
    keeper = image["photo-large"]
    assert image["crop"] not in _cluster_of(conn, keeper)
    keepers, windows = clusters.keeper_crop_windows(conn)
    assert keepers == [keeper]
    propose = "SELECT dbdedup.propose_keeper_pairs(near_neighbours => 0, crop_keepers => %s, crop_windows => %s)"

    def proposed(keepers, windows) -> tuple[int, set]:
        with conn.transaction(force_rollback=True):
            count = conn.execute(propose, (keepers, windows)).fetchone()[0]
            return count, set(conn.execute("SELECT image_a, image_b FROM dbdedup.pairs WHERE transform = 'linked'"))

    given, stored = proposed(keepers, windows), proposed(None, None)
    assert stored == given and (min(keeper, image["crop"]), max(keeper, image["crop"])) in stored[1]
    assert proposed([], [])[0] == 0  # (an empty array: no windows searched)


def _shapes_on_a_gradient(seed: int, width: int = 480, height: int = 360) -> Image.Image:
    """A noisy two-colour gradient with a few filled shapes: few keypoints, so a crop of it is verified by its
    window (pixels align), not by keypoints."""
    from PIL import ImageDraw

    rnd = random.Random(seed)
    c1, c2 = (np.array([rnd.randint(0, 255) for _ in range(3)], np.float32) for _ in range(2))
    t = np.linspace(0, 1, width)[None, :, None] if rnd.random() < .5 else np.linspace(0, 1, height)[:, None, None]
    pixels = c1 * (1 - t) + c2 * t + np.random.default_rng(seed).normal(0, 8, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rnd.randint(4, 9)):
        x0, y0 = rnd.randint(0, width - 60), rnd.randint(0, height - 60)
        x1, y1 = x0 + rnd.randint(30, 200), y0 + rnd.randint(30, 150)
        colour = tuple(rnd.randint(0, 255) for _ in range(3))
        kind = rnd.choice(["rect", "ellipse", "polygon", "line"])
        if kind == "rect":
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif kind == "ellipse":
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind == "polygon":
            draw.polygon([(x0, y0), (x1, y0 + 10), (x0 + 20, y1)], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=rnd.randint(3, 12))
    return image


def test_a_crop_found_by_its_window_is_kept_when_a_raised_threshold_finds_it_by_its_phash(db_dsn, tmp_path):
    # at a threshold of 64 the pHash alone found the crop (28 bits from its keeper), checked it as two whole
    # frames and refused it; the crop window, found again, was ignored: the copy was lost at 64 and at 8 after
    from PIL import ImageOps
    from test_report_sample import run_cli

    root = tmp_path / "mini"
    for seed in (100, 102):
        save(_shapes_on_a_gradient(seed), root / f"p{seed}.jpg", quality=92)
    for seed in (101, 104):
        picture = _shapes_on_a_gradient(seed)
        save(picture, root / f"p{seed}.jpg", quality=92)
        save(ImageOps.expand(picture, border=30, fill=(255, 255, 255)), root / f"p{seed}_border.jpg", quality=88)
        w, h = picture.size
        save(picture.crop((w // 10, h // 10, w - w // 10, h - h // 10)), root / f"p{seed}_crop.jpg", quality=88)
    with psycopg.connect(db_dsn) as conn:
        load_paths(conn, [root], workers=1)

    def family_of_the_crop(threshold: int) -> set[str]:
        run_cli(db_dsn, "report", "--threshold", str(threshold))
        with psycopg.connect(db_dsn) as conn:
            rows = conn.execute("SELECT m.cluster_id, m.path FROM dbdedup.cluster_members m").fetchall()
        by_cluster: dict[int, set[str]] = {}
        for cluster_id, path in rows:
            by_cluster.setdefault(cluster_id, set()).add(path.rsplit("/", 1)[1])
        return next((names for names in by_cluster.values() if "p101_crop.jpg" in names), set())

    family = {"p101.jpg", "p101_border.jpg", "p101_crop.jpg"}
    assert family_of_the_crop(8) == family
    assert family_of_the_crop(64) == family
    assert family_of_the_crop(8) == family
