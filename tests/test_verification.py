"""Verification in SQL (sql/verification.sql): signature distances equal to dbdedup.verify's, a verdict for
every candidate pair from the stored signals, and clusters that link verified pairs only, on real images
made with Pillow, loaded by the real loader into a real database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from dbdedup import clusters, matching, verify
from dbdedup.clusters import ClusterSettings
from dbdedup.load import load_paths
from dbdedup.verify_plan import reopen_unchecked
from dbdedup.verify_workers import aligned_verdict, verify_pending_pairs
from images import brighter, photo, reencoded, resized, save, textured_photo


def _sql_distance(conn, a: np.ndarray, b: np.ndarray, orientation: str | None):
    return conn.execute("SELECT light, chroma, gain, detail, grey_light, gain_limit, hue_shift, hue_spread "
                        "FROM dbdedup.signature_distance(%s::real[], %s::real[], %s)",
                        ([float(x) for x in a], [float(x) for x in b], orientation)).fetchone()


@pytest.mark.parametrize("orientation", verify.ORIENTATIONS)
def test_signature_distance_equals_python_in_every_orientation(conn, orientation):
    original = photo(3, (200, 150))
    edited = ImageOps.mirror(original).rotate(7).convert("RGB")
    for x, y in ((original, edited), (original, ImageOps.grayscale(original)), (photo(4), original)):
        a, b = verify.colour_signature(x), verify.colour_signature(y)
        expected = verify.compare_signatures(verify.orient_signature(a, orientation), b)
        light, chroma, gain, detail, grey_light, gain_limit, hue_shift, hue_spread = _sql_distance(conn, a, b, orientation)
        assert light == pytest.approx(expected.light, abs=1e-4)
        assert gain_limit == pytest.approx(expected.gain_limit)
        assert gain == pytest.approx(expected.gain, abs=1e-4)
        assert detail == pytest.approx(expected.detail, abs=1e-4)
        if expected.chroma is None:
            assert chroma is None and hue_shift is None and hue_spread is None
        else:
            assert chroma == pytest.approx(expected.chroma, abs=1e-4)
            assert hue_shift == pytest.approx(expected.hue_shift, abs=1e-3)
            assert hue_spread == pytest.approx(expected.hue_spread, abs=1e-3)
        if expected.grey_light is None:
            assert grey_light is None
        else:
            assert grey_light == pytest.approx(expected.grey_light, abs=1e-4)


def test_signature_distance_of_a_missing_signature_is_null_and_an_unknown_orientation_an_error(conn):
    a = verify.colour_signature(photo(5))
    assert _sql_distance(conn, a, a, None)[:4] == pytest.approx((0.0, 0.0, 1.0, 0.0))
    assert conn.execute("SELECT * FROM dbdedup.signature_distance(NULL, %s::real[])",
                        ([float(x) for x in a],)).fetchone() == (None,) * 8
    with pytest.raises(Exception, match="unknown orientation"):
        _sql_distance(conn, a, a, "rotate_45")


def test_grey_lightness_of_many_cells_equals_one_cell_at_a_time_and_python(conn):
    # dark colours (the linear part of each curve), saturated ones out of the sRGB gamut (clipped)
    # and ordinary ones: a layout converts its 64 cells in one call, the scalar form one cell
    rng = np.random.default_rng(7)
    light = np.concatenate([[0.0, 1.0, 4.0, 50.0, 100.0], rng.uniform(0, 100, 59)])
    a = np.concatenate([[0.0, 3.0, -2.0, 90.0, -120.0], rng.uniform(-100, 100, 59)])
    b = np.concatenate([[0.0, -4.0, 1.0, -110.0, 95.0], rng.uniform(-100, 100, 59)])
    expected = verify.grey_lightness(light, a, b)
    cells = conn.execute("SELECT dbdedup.grey_lightness(%s::float8[], %s::float8[], %s::float8[])",
                         (list(light), list(a), list(b))).fetchone()[0]
    assert cells == pytest.approx(list(expected), abs=1e-9)
    one_by_one = [conn.execute("SELECT dbdedup.grey_lightness(%s::float8, %s::float8, %s::float8)",
                               (float(x), float(y), float(z))).fetchone()[0] for x, y, z in zip(light, a, b)]
    assert one_by_one == cells


# ---------------------------------------------------------------- images


def flag(colours, size=(240, 160)) -> Image.Image:
    """Three horizontal stripes with a disc in the middle: one layout, any colours."""
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for k, colour in enumerate(colours[:3]):
        draw.rectangle([0, k * h // 3, w, (k + 1) * h // 3], fill=colour)
    draw.ellipse([w // 2 - 25, h // 2 - 25, w // 2 + 25, h // 2 + 25], fill=colours[3])
    return image


def drawing(colour, size=(200, 200)) -> Image.Image:
    """A folder-like icon on white: the same drawing in any colour."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 40, 90, 70], fill=colour)
    draw.rectangle([20, 60, 180, 170], fill=colour)
    draw.rectangle([40, 90, 160, 110], fill="white")
    draw.ellipse([120, 120, 160, 160], outline="white", width=6)
    return image


def card(shape: str, colour, size=(180, 250)) -> Image.Image:
    """A playing-card-like image: a border, corner marks and four pips (discs or diamonds) in two columns."""
    w, h = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle([2, 2, w - 3, h - 3], radius=12, outline="black", width=3)
    for x, y in ((12, 12), (w - 32, h - 42)):
        draw.rectangle([x, y, x + 20, y + 30], fill=colour)
    for k in range(4):
        cx, cy, r = (w // 3, 2 * w // 3)[k % 2], 50 + (k // 2 + 0.5) * (h - 100) / 2, 22
        if shape == "disc":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.polygon([(cx, cy - r - 6), (cx + r, cy), (cx, cy + r + 6), (cx - r, cy)], fill=colour)
    return image


def faint(seed: int, line: bool = False, size=(160, 160)) -> Image.Image:
    """A nearly flat grey image (blobs a few levels deep): little hash signal. ``line``: a thin line drawn
    12 levels lighter across it, another faint picture."""
    grid = np.random.default_rng(seed).integers(126, 131, size=(4, 4)).astype(np.uint8)
    image = Image.fromarray(grid, "L").resize(size, Image.Resampling.BICUBIC).convert("RGB")
    if line:
        ImageDraw.Draw(image).line((20, 30, 140, 120), fill=(140, 140, 140), width=1)
    return image


def load(conn, root: Path) -> dict[str, int]:
    """Load ``root`` with the real loader (which stores each image's quality and colour signature);
    returns {file name: image id}."""
    load_paths(conn, [root], workers=1, embedder=None)
    assert conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'ok' AND colour_signature IS NULL").fetchone()[0] == 0
    return {p.rsplit("/", 1)[1]: i for i, p in conn.execute("SELECT id, path FROM dbdedup.images WHERE status = 'ok'")}


def groups(conn) -> set[frozenset[str]]:
    return {frozenset(p.rsplit("/", 1)[1] for p in paths) for (paths,) in conn.execute(
        "SELECT array_agg(path) FROM dbdedup.cluster_members GROUP BY cluster_id").fetchall()}


def pair(conn, ids: dict[str, int], x: str, y: str) -> dict:
    a, b = sorted((ids[x], ids[y]))
    row = conn.execute("SELECT distance, transform, transform_distance, verified, verify_score, verify_reason "
                       "FROM dbdedup.pairs WHERE hash_kind = 'phash' AND image_a = %s AND image_b = %s", (a, b)).fetchone()
    assert row is not None, f"{x} and {y} are not a candidate pair"
    return dict(zip(("distance", "transform", "transform_distance", "verified", "score", "reason"), row))


def phash_distance(conn, ids, x, y) -> int:
    return conn.execute("SELECT dbdedup.hamming(a.phash, b.phash) FROM dbdedup.images a, dbdedup.images b "
                        "WHERE a.id = %s AND b.id = %s", (ids[x], ids[y])).fetchone()[0]


# ---------------------------------------------------------------- look-alikes and copies


def test_look_alikes_with_close_hashes_are_candidates_but_never_one_cluster(conn, tmp_path):
    save(flag([(206, 17, 38), (255, 255, 255), (0, 122, 61), (255, 205, 0)]), tmp_path / "flag_a.png")
    save(flag([(0, 122, 61), (255, 255, 255), (206, 17, 38), (255, 205, 0)]), tmp_path / "flag_b.png")
    for name, colour in (("red", (200, 30, 30)), ("blue", (40, 70, 200)), ("green", (40, 150, 40))):
        save(drawing(colour), tmp_path / f"folder_{name}.png")
    save(card("disc", (200, 20, 30)), tmp_path / "card_discs.png")
    save(card("diamond", (200, 20, 30)), tmp_path / "card_diamonds.png")
    save(card("disc", (20, 20, 20)), tmp_path / "card_discs_black.png")
    ids = load(conn, tmp_path)
    result = clusters.ensure_clusters(conn, ClusterSettings())
    look_alikes = [("flag_a.png", "flag_b.png"), ("folder_red.png", "folder_blue.png"),
                   ("folder_red.png", "folder_green.png"), ("folder_blue.png", "folder_green.png"),
                   ("card_discs.png", "card_diamonds.png"), ("card_discs.png", "card_discs_black.png")]
    for x, y in look_alikes:
        assert phash_distance(conn, ids, x, y) <= 8, (x, y)  # the hash alone would link them
        found = pair(conn, ids, x, y)
        assert found["verified"] is False, (x, y, found)
        # rejected by the signatures, or by the geometric check: a pair found through a trimmed variant
        # (the flags' white stripe; a frame is not one framing), or an aligned pair apart in detail only
        # (the cards' pips), is decided by its pixels
        assert found["reason"] in ("colour", "layout", "detail", "no_geometry"), (x, y, found)
    assert groups(conn) == set() and result.clusters == 0


def test_a_grey_drawing_is_not_the_greyscale_copy_of_a_coloured_one(conn, tmp_path):
    # A grey folder of the red folder's own Lab lightness normalises to the same lightness layout
    # with the same spread; only the greyscale conversion's luma tells it from the red folder's
    # greyscale copy. Icon sets ship such grey variants beside every colour.
    red = drawing((200, 30, 30))
    grey_level = round(float(np.interp(verify.srgb_to_lab(np.array([200, 30, 30]))[0],
                                       verify.srgb_to_lab(np.stack([np.arange(256)] * 3, axis=-1))[:, 0],
                                       np.arange(256))))
    save(red, tmp_path / "folder_red.png")
    save(drawing((grey_level,) * 3), tmp_path / "folder_grey.png")
    save(ImageOps.grayscale(red), tmp_path / "folder_red_greyscale.png")
    save(ImageOps.grayscale(drawing((40, 70, 200))), tmp_path / "folder_blue_greyscale.png")
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    a = verify.colour_signature(red)
    grey = verify.compare_signatures(a, verify.colour_signature(drawing((grey_level,) * 3)))
    assert grey.light < 0.1 and grey.gain < 1.1  # what the layout sees: the same picture
    assert grey.grey_light > verify.MAX_GREY_LIGHT
    for other in ("folder_grey.png", "folder_blue_greyscale.png"):
        assert phash_distance(conn, ids, "folder_red.png", other) <= 8
        found = pair(conn, ids, "folder_red.png", other)
        assert found["verified"] is False and found["reason"] == "colour", (other, found)
    found = pair(conn, ids, "folder_red.png", "folder_red_greyscale.png")
    assert found["verified"] is True and found["reason"] == "signature", found
    assert frozenset({"folder_red.png", "folder_red_greyscale.png"}) in groups(conn)
    assert not any("folder_grey.png" in g and "folder_red.png" in g for g in groups(conn))


def grey_variant_of(image: Image.Image) -> Image.Image:
    """An icon set's grey variant of a colour drawing, as papirus makes its grey folders: each pixel the mean of
    its three channels (a brown's Rec. 601 luma is 6 levels off it)."""
    return Image.fromarray((np.asarray(image.convert("RGB"), dtype=np.float32).mean(axis=2) + 0.5).astype(np.uint8))


def test_a_grey_variant_of_a_flat_drawing_is_refused_and_its_greyscale_copy_joins_its_enlargement(conn, tmp_path):
    # Icon sets ship a grey of every colour drawing, here the mean of its channels: close enough to the Rec. 601
    # conversion for the signatures (grey_light within MAX_GREY_LIGHT), so the SQL step verified it. On the stored
    # thumbnails the structure check finds its coloured areas off their luma, where a greyscale copy keeps them,
    # against the drawing itself and against its 2x enlargement, the keeper.
    brown = drawing((166, 132, 100))
    variant = grey_variant_of(brown)
    signatures = verify.compare_signatures(verify.colour_signature(brown),
                                           verify.colour_signature(variant.convert("RGB")))
    assert signatures.grey_light is not None and signatures.grey_light <= verify.MAX_GREY_LIGHT
    features = [verify.Features(verify.quality(im), verify.colour_signature(im.convert("RGB")))
                for im in (brown, variant)]
    assert aligned_verdict(*features, "identity", 0).reason == "signature"  # what the signatures alone say
    refused_beside_its_greyscale_copy(conn, tmp_path, "folder", brown, variant)


def refused_beside_its_greyscale_copy(conn, tmp_path: Path, stem: str, coloured: Image.Image,
                                      look_alike: Image.Image) -> None:
    """Load ``coloured``, its 2x enlargement (the keeper), its greyscale copy and ``look_alike``, cluster, and check
    that the look-alike, a candidate of both, is refused for colour against both, and that the greyscale copy joins
    the keeper: one cluster of the three copies."""
    names = {"coloured": f"{stem}.png", "keeper": f"{stem}_2x.png", "greyscale": f"{stem}_greyscale.png",
             "look_alike": f"{stem}_look_alike.png"}
    save(coloured, tmp_path / names["coloured"])
    keeper = coloured.resize((2 * coloured.width, 2 * coloured.height), Image.Resampling.LANCZOS)
    save(keeper, tmp_path / names["keeper"])
    save(ImageOps.grayscale(coloured), tmp_path / names["greyscale"])
    save(look_alike, tmp_path / names["look_alike"])
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    for other in (names["coloured"], names["keeper"]):
        assert phash_distance(conn, ids, other, names["look_alike"]) <= 8
        found = pair(conn, ids, other, names["look_alike"])
        assert found["verified"] is False and found["reason"] == "colour", (other, found)
    found = pair(conn, ids, names["keeper"], names["greyscale"])
    assert found["verified"] is True, found
    assert groups(conn) == {frozenset({names["coloured"], names["keeper"], names["greyscale"]})}


def test_the_grey_variant_rule_holds_flat_drawings_only():
    """A photo's black-and-white copy by another formula (its channels' mean) is not held to the conversion (photos
    keep the signatures' verdict); a flat drawing's is, and its plain greyscale copy passes."""
    side = verify.FINE_STRUCTURE_SIDE

    def thumbnail(image: Image.Image) -> np.ndarray:
        return verify.structure_pixels(verify.structure_thumbnail(image), "identity", side)

    picture = photo(11, (256, 192))
    assert verify.flat_share(thumbnail(picture)) < verify.GREY_VARIANT_MIN_FLAT
    assert not verify.grey_variant(thumbnail(picture), thumbnail(grey_variant_of(picture)),
                                   verify.colour_signature(picture))
    brown = drawing((166, 132, 100))
    assert verify.flat_share(thumbnail(brown)) >= verify.GREY_VARIANT_MIN_FLAT
    signature = verify.colour_signature(brown)
    assert verify.grey_variant(thumbnail(brown), thumbnail(grey_variant_of(brown)), signature)
    assert not verify.grey_variant(thumbnail(brown), thumbnail(ImageOps.grayscale(brown)), signature)
    # only Rec. 601 is a conversion here: on a red drawing the grey of Rec. 709's weights (CSS, GIMP's "Luma") is 11
    # levels darker, which is what an icon set's grey variant may be (README, Limits: such a copy is missed)
    red = drawing((200, 60, 40))
    rec709 = np.asarray(red, dtype=np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    rec709_grey = Image.fromarray(np.clip(rec709 + 0.5, 0, 255).astype(np.uint8))
    assert verify.grey_variant(thumbnail(red), thumbnail(rec709_grey), verify.colour_signature(red))
    assert not verify.grey_variant(thumbnail(red), thumbnail(ImageOps.grayscale(red)), verify.colour_signature(red))
    # found through a trimmed variant, the whole thumbnails may be framed otherwise: a greyscale copy against the
    # drawing in a wide coloured frame is far apart in the frame's cells, which is no grey variant; the variant is
    # judged as before
    framed = ImageOps.expand(ImageOps.grayscale(drawing((120, 120, 120))).convert("RGB"), border=60, fill=(40, 90, 200))
    grey = ImageOps.grayscale(drawing((120, 120, 120)).resize(framed.size))
    framed_signature = verify.colour_signature(framed)
    grey_signature = verify.colour_signature(grey.convert("RGB"))
    assert verify.grey_against_colour(verify.chroma(framed_signature), verify.chroma(grey_signature))
    assert verify.grey_variant(thumbnail(framed), thumbnail(grey), framed_signature)
    assert not verify.grey_variant(thumbnail(framed), thumbnail(grey), framed_signature, trimmed=True)
    assert verify.grey_variant(thumbnail(brown), thumbnail(grey_variant_of(brown)), signature, trimmed=True)


def pips(ink, size=(200, 280), r=9) -> Image.Image:
    """A card of small pips and corner marks in one ink on white, in a grey border: coloured in small areas only
    (RMS chroma 3.2 in green: under grey_against_colour's floor)."""
    w, h = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle([2, 2, w - 3, h - 3], radius=12, outline=(60, 60, 60), width=2)
    draw.rectangle([10, 10, 22, 30], fill=ink)
    draw.rectangle([w - 23, h - 31, w - 11, h - 11], fill=ink)
    for cx in (60, 140):
        for cy in (60, 115, 170, 225):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=ink)
            draw.rectangle([cx - 2, cy, cx + 2, cy + r + 5], fill=ink)
    return image


GREEN_INK, BLACK_INK = (61, 123, 104), (41, 54, 61)  # a four-colour deck's clubs, the plain deck's (gnome-cards-data)


def test_a_card_in_black_ink_is_refused_against_its_green_inked_twin_and_a_greyscale_copy_joins(conn, tmp_path):
    # Two-toned on white, either card is the other under one tone edit in luma, and their colour is in small areas:
    # the signatures verify the pair (what the SQL step says). Their chroma cells do not: where the green card's are
    # coloured the black one's are neutral and darker than the green's grey lightness. The greyscale copy keeps it.
    green, black = pips(GREEN_INK), pips(BLACK_INK)
    signatures = [verify.colour_signature(im) for im in (green, black)]
    assert not verify.grey_against_colour(*map(verify.chroma, signatures))
    features = [verify.Features(verify.quality(im), s) for im, s in zip((green, black), signatures)]
    assert aligned_verdict(*features, "identity", 0).reason == "signature"
    refused_beside_its_greyscale_copy(conn, tmp_path, "clubs", green, black)


def test_the_ink_rule_holds_flat_drawings_only_and_refuses_a_toned_greyscale_copy():
    """A greyscale picture against a drawing coloured in small areas: its greyscale copy passes, another ink is
    refused, on a flat ground only; a greyscale copy whose contrast was raised as well is refused too (the trade
    README's Limits names)."""
    side = verify.FINE_STRUCTURE_SIDE

    def thumbnail(image: Image.Image) -> np.ndarray:
        return verify.structure_pixels(verify.structure_thumbnail(image), "identity", side)

    green = pips(GREEN_INK)
    signature = verify.colour_signature(green)
    assert verify.ink_variant(signature, verify.colour_signature(pips(BLACK_INK)), thumbnail(green))
    greyscale = ImageOps.grayscale(green).convert("RGB")
    assert not verify.ink_variant(signature, verify.colour_signature(greyscale), thumbnail(green))
    assert verify.ink_variant(signature, verify.colour_signature(ImageEnhance.Contrast(greyscale).enhance(1.6)),
                              thumbnail(green))
    # the same inks over a black-and-white photo: as far apart in their cells, but not a flat drawing (a photo's
    # black-and-white copy often has its tones edited too), so not held to the rule
    def on_photo(ink) -> Image.Image:
        card = pips(ink)
        inked = Image.fromarray(((np.asarray(card).min(axis=2) < 200) * 255).astype(np.uint8))
        return Image.composite(card, ImageOps.grayscale(photo(12, card.size)).convert("RGB"), inked)

    textured, textured_black = on_photo(GREEN_INK), on_photo(BLACK_INK)
    assert verify.flat_share(thumbnail(textured)) < verify.INK_VARIANT_MIN_FLAT
    assert not verify.ink_variant(verify.colour_signature(textured), verify.colour_signature(textured_black),
                                  thumbnail(textured))


def sunburst(colours, size=(240, 160), rays=24) -> Image.Image:
    """Rays of two colours from the centre, a disc over it: where the rays meet, one signature cell holds both."""
    w, h = size
    image = Image.new("RGB", size, colours[0])
    draw = ImageDraw.Draw(image)
    cx, cy, r = w / 2, h / 2, 2 * w
    for k in range(0, rays, 2):
        a0, a1 = 2 * np.pi * k / rays, 2 * np.pi * (k + 1) / rays
        draw.polygon([(cx, cy), (cx + r * np.cos(a0), cy + r * np.sin(a0)), (cx + r * np.cos(a1), cy + r * np.sin(a1))],
                     fill=colours[1])
    draw.ellipse([cx - 22, cy - 22, cx + 22, cy + 22], fill=colours[2])
    return image


def test_the_greyscale_copy_of_a_saturated_picture_is_verified_by_its_pixels_conversion(conn, tmp_path):
    # Red and yellow rays: the signature converts each cell's mean colour, which puts the greyscale copy more
    # than MAX_GREY_LIGHT from the original, and the SQL step would refuse it at pHash 0. Each pixel's luma
    # is the copy's grey: the check by pixels verifies it. The greyscale of the same rays in blue is not it.
    original = sunburst([(215, 20, 30), (250, 215, 0), (0, 140, 60)])
    save(original, tmp_path / "rays.png")
    save(ImageOps.grayscale(original), tmp_path / "rays_greyscale.png")
    save(ImageOps.grayscale(sunburst([(30, 60, 215), (250, 215, 0), (0, 140, 60)])), tmp_path / "blue_rays_greyscale.png")
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    signatures = verify.compare_signatures(verify.colour_signature(original),
                                           verify.colour_signature(ImageOps.grayscale(original).convert("RGB")))
    assert signatures.grey_light > verify.MAX_GREY_LIGHT and signatures.light <= verify.MAX_LIGHT
    assert phash_distance(conn, ids, "rays.png", "rays_greyscale.png") <= 2
    found = pair(conn, ids, "rays.png", "rays_greyscale.png")
    assert found["verified"] is True and found["reason"] == "converted", found
    assert found["score"] > 0.9
    other = pair(conn, ids, "rays.png", "blue_rays_greyscale.png")
    assert other["verified"] is False and other["reason"] == "colour", other
    assert groups(conn) == {frozenset({"rays.png", "rays_greyscale.png"})}


def test_a_colour_picture_never_joins_a_greyscale_keeper(conn, tmp_path):
    # The greyscale copy is larger, so it would rank first as keeper: a user applying the cluster
    # would keep the grey one and move the colours away. Its link is dropped; the colour copies
    # still cluster together (a greyscale copy ranked after its colour keeper joins it: see
    # test_edited_copies_are_verified_and_clustered_with_the_measure_that_verified_them).
    red = drawing((200, 30, 30))
    save(red, tmp_path / "red.png")
    save(reencoded(red, 90), tmp_path / "red.jpg")
    save(ImageOps.grayscale(red).resize((300, 300), Image.Resampling.LANCZOS), tmp_path / "grey_large.png")
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    assert pair(conn, ids, "red.png", "grey_large.png")["verified"] is True  # the same picture, in grey
    assert pair(conn, ids, "red.jpg", "grey_large.png")["verified"] is True
    assert groups(conn) == {frozenset({"red.png", "red.jpg"})}


def test_a_colour_picture_aligned_with_a_greyscale_keeper_joins_it_only_when_its_colours_are_a_frame(conn, tmp_path):
    # An alignment (the geometric check, or a dense one: ECC from the whole frame, the rings' turn or a
    # window) compares the overlap's lightness when one side is grey, so it says nothing of the colours: a
    # colour picture whose middle is in colour is not kept by a greyscale keeper, whatever the verdict (a turned
    # grey folder, aligned with each coloured folder of an icon set, kept twelve of them: cli_score.py
    # --lone-copies). A frame may add colours the keeper lacks: a grey picture in a coloured mat joins it.
    grey = ImageOps.grayscale(drawing((200, 30, 30))).convert("RGB")
    save(drawing((200, 30, 30)), tmp_path / "red.png")
    save(grey.resize((300, 300), Image.Resampling.LANCZOS), tmp_path / "grey_large.png")
    save(ImageOps.expand(grey, border=40, fill=(30, 160, 60)), tmp_path / "grey_in_green_mat.png")
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    conn.execute("DELETE FROM dbdedup.pairs")
    for other in ("red.png", "grey_in_green_mat.png"):
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, transform_distance, "
                     "verified, verify_score, verify_reason) VALUES ('phash', %s, %s, 4, false, NULL, true, 0.9, 'signature')",
                     sorted((ids["grey_large.png"], ids[other])))
    for reason, joined in (("dense", {"grey_in_green_mat.png"}), ("geometry", {"grey_in_green_mat.png"}),
                           ("signature", set())):
        conn.execute("UPDATE dbdedup.pairs SET verify_reason = %s", (reason,))
        clusters.build_clusters(conn, ClusterSettings())
        assert groups(conn) == ({frozenset({"grey_large.png", *joined})} if joined else set()), reason


def test_a_trimmed_variant_keeps_a_colour_picture_with_a_greyscale_keeper_only_when_its_colours_are_in_its_frame(conn, tmp_path):
    # A pair found through a trimmed variant may be a greyscale picture and the same picture in a coloured mat: the
    # colours are the frame's, and the link stays. A colour picture whose middle has the colours (red where the
    # keeper is grey: a red-pipped card beside a black-pipped one, whose greyscale conversion the signatures match)
    # is not kept by the greyscale keeper, trimmed variant or not.
    grey = ImageOps.grayscale(drawing((200, 30, 30))).convert("RGB")
    save(grey.resize((300, 300), Image.Resampling.LANCZOS), tmp_path / "grey_large.png")
    save(ImageOps.expand(grey, border=40, fill=(30, 160, 60)), tmp_path / "grey_in_green_mat.png")
    save(drawing((200, 30, 30)), tmp_path / "red.png")
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())  # (matched once: the build below uses the pairs as they stand)
    conn.execute("DELETE FROM dbdedup.pairs")
    for other in ("grey_in_green_mat.png", "red.png"):
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, transform, "
                     "transform_distance, verified, verify_score, verify_reason) "
                     "VALUES ('phash', %s, %s, 20, false, 'trim', 2, true, 0.9, 'signature')",
                     sorted((ids["grey_large.png"], ids[other])))
    clusters.build_clusters(conn, ClusterSettings())
    assert groups(conn) == {frozenset({"grey_large.png", "grey_in_green_mat.png"})}
    # the planner of the checks by pixels expects the same of an open edge (it checks only what the build needs)
    from dbdedup.verify_plan import _graph, _queries

    conn.execute("UPDATE dbdedup.pairs SET verified = NULL, verify_reason = NULL")
    conn.commit()  # (the build's temporary tables go with its transaction)
    edges = _graph(conn, ClusterSettings(), _queries()).links
    drops = {edge.pair: edge.greyscale_keeper for linked in edges.values() for edge in linked.values()}
    # (the red picture's link is dropped whatever its verdict: no edge to check)
    assert drops == {tuple(sorted((ids["grey_large.png"], ids["grey_in_green_mat.png"]))): False}, drops
    # (the same two without the trimmed variant: a signature verdict of whole pictures, dropped)
    conn.execute("UPDATE dbdedup.pairs SET transform = NULL, transform_distance = NULL, verified = true, "
                 "verify_reason = 'signature'")
    clusters.build_clusters(conn, ClusterSettings())
    assert groups(conn) == set()


def emblem_folder(emblem: str, size: int = 160) -> Image.Image:
    """A grey folder on white with a white emblem (a disc or a bar): an icon set's folder family."""
    s = size / 64
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([4 * s, 10 * s, 28 * s, 18 * s], fill=(120, 120, 120))
    draw.rectangle([4 * s, 16 * s, 60 * s, 56 * s], fill=(120, 120, 120))
    if emblem == "disc":
        draw.ellipse([24.4 * s, 28.4 * s, 39.6 * s, 43.6 * s], fill=(250, 250, 250))
    else:
        draw.rectangle([22.5 * s, 33.15 * s, 41.5 * s, 38.85 * s], fill=(250, 250, 250))
    return image


def test_another_emblem_on_one_folder_is_not_verified_beyond_the_nearest_distances(conn, tmp_path):
    # The two folders differ only in their emblem: a 16x16 lightness detail under the limit of
    # near pairs (re-encodes, resizes), over the one of pairs a few pHash bits apart.
    disc, bar = emblem_folder("disc"), emblem_folder("bar")
    save(disc, tmp_path / "disc.png")
    save(bar, tmp_path / "bar.png")
    save(reencoded(disc, 85), tmp_path / "disc.jpg")
    detail = verify.compare_signatures(verify.colour_signature(disc), verify.colour_signature(bar)).detail
    assert verify.MAX_DETAIL_FAR < detail <= verify.MAX_DETAIL
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    assert verify.NEAR_DISTANCE < phash_distance(conn, ids, "disc.png", "bar.png") <= 8
    # (the report checks only what its clusters need: the JPEG keeps the PNG, and bar's pair with the PNG
    # decides nothing; every pair checked, as `dbdedup verify --unchecked` does)
    assert reopen_unchecked(conn) == 1
    verify_pending_pairs(conn, workers=1)
    found = pair(conn, ids, "disc.png", "bar.png")
    assert found["verified"] is False and found["reason"] == "detail", found
    assert pair(conn, ids, "disc.png", "disc.jpg")["verified"] is True
    assert groups(conn) == {frozenset({"disc.png", "disc.jpg"})}


def test_darker_copies_of_a_muted_photo_and_of_a_greyscale_photo_are_verified(conn, tmp_path):
    # Darkening by 30% scales the lightness spread by about 1.4 and the chroma with it: a muted
    # photo's dark copy falls under the chroma at which chroma layouts are compared, which is not
    # what makes a greyscale picture (its limit, for a grey folder against a blue one, is 1.3).
    colour = photo(41, (240, 180))
    muted = Image.blend(ImageOps.grayscale(colour).convert("RGB"), colour, 0.12)
    grey = ImageOps.grayscale(photo(42, (240, 180))).convert("RGB")
    copies = {"muted.png": muted, "muted_dark.png": ImageEnhance.Brightness(muted).enhance(0.7),
              "grey.png": grey, "grey_dark.png": ImageEnhance.Brightness(grey).enhance(0.7)}
    for name, image in copies.items():
        save(image, tmp_path / name)
    signatures = {name: verify.colour_signature(image) for name, image in copies.items()}
    assert verify.chroma(signatures["muted_dark.png"]) < verify.MIN_CHROMA <= verify.chroma(signatures["muted.png"])
    assert verify.chroma(signatures["muted_dark.png"]) >= verify.GREY_CHROMA > verify.chroma(signatures["grey.png"])
    for x, y in (("muted.png", "muted_dark.png"), ("grey.png", "grey_dark.png")):
        assert verify.compare_signatures(signatures[x], signatures[y]).gain > verify.MAX_GAIN
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    for x, y in (("muted.png", "muted_dark.png"), ("grey.png", "grey_dark.png")):
        found = pair(conn, ids, x, y)
        assert found["verified"] is True and found["reason"] == "signature", (x, y, found)
    assert groups(conn) == {frozenset({"muted.png", "muted_dark.png"}), frozenset({"grey.png", "grey_dark.png"})}


def test_a_paler_palette_of_one_drawing_is_apart_in_colour_and_its_edited_copies_are_not(conn, tmp_path):
    # An icon set's orange folder and its pale orange one: the same hue, the same lightness layout,
    # half the chroma. Normalised, the two chroma layouts are one; the chroma ratio is what an edit
    # does not explain (brightness and contrast scale it by 1.4 at most).
    orange = (225, 110, 30)
    grey_level = round(float(np.interp(verify.srgb_to_lab(np.array(orange))[0],
                                       verify.srgb_to_lab(np.stack([np.arange(256)] * 3, axis=-1))[:, 0],
                                       np.arange(256))))
    pale = tuple(round(0.45 * c + 0.55 * grey_level) for c in orange)
    copies = {"orange.png": drawing(orange), "pale.png": drawing(pale),
              "orange_dark.png": ImageEnhance.Brightness(drawing(orange)).enhance(0.7),
              "orange_bright.png": ImageEnhance.Brightness(drawing(orange)).enhance(1.3),
              "orange_contrast.png": ImageEnhance.Contrast(drawing(orange)).enhance(1.4)}
    for name, image in copies.items():
        save(image, tmp_path / name)
    signatures = {name: verify.colour_signature(image) for name, image in copies.items()}
    apart = verify.compare_signatures(signatures["orange.png"], signatures["pale.png"])
    assert apart.light < 0.1 and apart.chroma < 0.1  # the layouts alone: the same picture
    assert verify.chroma(signatures["orange.png"]) / verify.chroma(signatures["pale.png"]) > verify.MAX_GAIN_COLOUR
    assert apart.gain > apart.gain_limit
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    assert phash_distance(conn, ids, "orange.png", "pale.png") < verify.SAME_FRAMING
    found = pair(conn, ids, "orange.png", "pale.png")
    assert found["verified"] is False and found["reason"] == "colour", found
    for name in ("orange_dark.png", "orange_bright.png", "orange_contrast.png"):
        found = pair(conn, ids, "orange.png", name)
        assert found["verified"] is True and found["reason"] == "signature", (name, found)
    assert not any("pale.png" in g and "orange.png" in g for g in groups(conn))
    assert any({"orange.png", "orange_dark.png", "orange_bright.png"} <= g for g in groups(conn))


def test_edited_copies_are_verified_and_clustered_with_the_measure_that_verified_them(conn, tmp_path):
    original = photo(21, (320, 240))
    save(original, tmp_path / "ref" / "original.png")  # under a reference path: the keeper
    edits = {
        "jpeg.jpg": reencoded(original, 40),
        "half.png": resized(original, 0.5),
        "grey.png": ImageOps.grayscale(original),
        "bright.png": ImageEnhance.Brightness(original).enhance(1.3),
        "dark.png": ImageEnhance.Brightness(original).enhance(0.7),
        "mirror.png": ImageOps.mirror(original),
    }
    for name, image in edits.items():
        save(image, tmp_path / name)
    (tmp_path / "copy.png").write_bytes((tmp_path / "ref" / "original.png").read_bytes())
    save(photo(22, (320, 240)), tmp_path / "other.png")
    ids = load(conn, tmp_path)
    result = clusters.ensure_clusters(conn, ClusterSettings(reference_paths=[str(tmp_path / "ref")]))
    assert groups(conn) == {frozenset({"original.png", "copy.png", *edits})} and result.clusters == 1
    # every member's pair with the keeper's file is verified (pairs are kept between the first
    # of each group of byte-identical files: copy.png stands for original.png)
    for name in edits:
        found = pair(conn, ids, "copy.png", name)
        assert found["verified"] is True and found["reason"] == "signature", (name, found)
        assert 0.5 < found["score"] <= 1
    assert pair(conn, ids, "copy.png", "mirror.png")["transform"] == "flip_h"
    assert pair(conn, ids, "copy.png", "original.png")["reason"] == "exact"
    keeper = conn.execute("SELECT path FROM dbdedup.cluster_members WHERE is_keeper").fetchone()[0]
    assert keeper.endswith("ref/original.png")


def test_a_flat_image_matches_only_its_exact_copies_and_the_same_pixels(conn, tmp_path):
    save(faint(1), tmp_path / "flat.png")
    save(faint(1, line=True), tmp_path / "flat_lookalike.png")
    save(faint(1), tmp_path / "flat_reencoded.webp", quality=30)
    save(faint(1).resize((120, 120), Image.Resampling.LANCZOS), tmp_path / "flat_smaller.png")
    (tmp_path / "flat_copy.png").write_bytes((tmp_path / "flat.png").read_bytes())
    ids = load(conn, tmp_path)
    qualities = dict(conn.execute("SELECT id, quality FROM dbdedup.images").fetchall())
    assert max(qualities.values()) < verify.MIN_QUALITY
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    found = pair(conn, ids, "flat.png", "flat_lookalike.png")  # one size: paired, for their pixels
    assert found["verified"] is False and found["reason"] == "low_quality"
    assert pair(conn, ids, "flat.png", "flat_copy.png")["reason"] == "exact"
    assert pair(conn, ids, "flat.png", "flat_reencoded.webp")["reason"] == "pixels"
    # the same picture at another size is not the same pixels: a flat picture has no signal to tell it from another
    smaller = conn.execute("SELECT verified FROM dbdedup.pairs WHERE image_a = %s AND image_b = %s",
                           sorted((ids["flat.png"], ids["flat_smaller.png"]))).fetchone()
    assert smaller is None or smaller[0] is not True, smaller
    assert groups(conn) == {frozenset({"flat.png", "flat_copy.png", "flat_reencoded.webp"})}


def test_a_pair_without_a_signature_stays_pending_and_unlinked_until_checked_by_its_pixels(conn, tmp_path):
    original = photo(31)
    save(original, tmp_path / "a.png")
    save(reencoded(original, 50), tmp_path / "b.jpg")
    ids = load(conn, tmp_path)
    # as if b.jpg had been loaded before signatures were stored
    conn.execute("UPDATE dbdedup.images SET colour_signature = NULL, quality = NULL WHERE id = %s", (ids["b.jpg"],))
    conn.commit()
    result = clusters.build_clusters(conn, ClusterSettings())  # SQL only: dbdedup.build_clusters
    found = pair(conn, ids, "a.png", "b.jpg")
    assert found["distance"] <= 2 and found["verified"] is None and found["reason"] is None
    assert result.clusters == 0 and groups(conn) == set()
    assert conn.execute("SELECT pending FROM dbdedup.verify_pairs()").fetchone()[0] == 1  # still pending
    # the match pipeline checks it by its pixels (and stores the missing signature), then clusters it
    result = clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    assert result.verification is not None and result.verification.pending == 1
    assert pair(conn, ids, "a.png", "b.jpg")["verified"] is True
    assert groups(conn) == {frozenset({"a.png", "b.jpg"})}
    assert conn.execute("SELECT colour_signature IS NOT NULL FROM dbdedup.images WHERE id = %s",
                        (ids["b.jpg"],)).fetchone()[0]


def test_a_trimmed_variant_pair_is_verified_when_the_whole_pictures_agree_else_left_to_geometry(conn, tmp_path):
    # An upscaled icon's soft border trims differently from its mirror's, so the matcher can record the
    # pair through 'trim+flip_h' rather than 'flip_h'; the whole pictures still agree in that orientation.
    # Found through a trimmed variant under a flip, the pair is left to the check by pixels (which asks its
    # least alike region too, of the pictures trimmed: a mirror drawn again) and verified there by the signatures.
    original = photo(33, (200, 150))
    save(original, tmp_path / "a.png")
    save(ImageOps.mirror(original), tmp_path / "mirror.png")
    save(ImageOps.expand(original, border=40, fill=(250, 20, 20)), tmp_path / "framed.png")
    ids = load(conn, tmp_path)
    conn.execute("DELETE FROM dbdedup.pairs")
    for other, transform in (("mirror.png", "trim+flip_h"), ("framed.png", "trim")):
        a, b = sorted((ids["a.png"], ids[other]))
        assert a == ids["a.png"]  # the transform turns image_a (loaded first) into image_b
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, transform, "
                     "transform_distance) VALUES ('phash', %s, %s, 30, false, %s, 0)", (a, b, transform))
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")
    # a frame the whole signatures see: only the trimmed comparison or geometry may decide, by the pixels
    found = pair(conn, ids, "a.png", "framed.png")
    assert found["verified"] is None, found
    assert pair(conn, ids, "a.png", "mirror.png")["verified"] is None
    conn.commit()
    verify_pending_pairs(conn, workers=1)
    found = pair(conn, ids, "a.png", "mirror.png")
    assert found["verified"] is True and found["reason"] == "signature", found


def test_an_aligned_pair_apart_in_colour_beyond_what_a_crop_explains_is_rejected_without_the_geometric_check(conn, tmp_path):
    # Copies cropped by 4% (layouts 0.3-0.6 apart: a range the geometric check may align again),
    # each apart in colour. Settled in SQL: contrast 0.45 (a spread ratio about 2) and a greyscale
    # copy darkened to 0.8 (about 12 L* units from the colour one's conversion), which the aligned
    # overlap would not pass either. Left to the geometric check: contrast 0.65 (ratio about 1.45,
    # apart by its chroma layout) and the plain greyscale copy (about 3 units), which it verifies.
    from dbdedup.verify_workers import PairChecker
    from test_verify_workers import pending as pending_pair

    original = textured_photo(53, (320, 240))
    w, h = original.size
    cropped = original.crop((round(w * 0.04), round(h * 0.04), w, h)).resize(original.size)
    grey = cropped.convert("L").convert("RGB")
    copies = {"pale.png": (ImageEnhance.Contrast(cropped).enhance(0.45), "colour"),
              "grey_dark.png": (ImageEnhance.Brightness(grey).enhance(0.8), "colour"),
              "muted.png": (ImageEnhance.Contrast(cropped).enhance(0.65), None),
              "grey.png": (grey, None)}
    save(original, tmp_path / "a.png")
    for name, (image, _) in copies.items():
        save(image, tmp_path / name)
    ids = load(conn, tmp_path)
    conn.execute("DELETE FROM dbdedup.pairs")
    for other in copies:
        assert ids["a.png"] < ids[other]
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact) "
                     "VALUES ('phash', %s, %s, 8, false)", (ids["a.png"], ids[other]))
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")
    stored = {i: verify.Features(q, np.asarray(s, dtype=np.float32)) for i, q, s in conn.execute(
        "SELECT id, quality, colour_signature FROM dbdedup.images")}
    a = stored[ids["a.png"]]
    for other, (_, settled) in copies.items():
        d = verify.compare_signatures(a.signature, stored[ids[other]].signature)
        apart = d.gain > d.gain_limit or (d.chroma or 0) > verify.MAX_CHROMA or (d.grey_light or 0) > verify.MAX_GREY_LIGHT
        assert verify.SETTLED < d.worst <= verify.HOPELESS and apart, (other, d)
        found = pair(conn, ids, "a.png", other)
        expected = aligned_verdict(a, stored[ids[other]], "identity", closest=8)
        if settled:
            assert (found["verified"], found["reason"]) == (False, "colour"), (other, found, d)
            assert expected is not None and (expected.verified, expected.reason) == (False, "colour")
        else:
            assert found["verified"] is None and expected is None, (other, found, expected, d)
    # what the geometric check says of each: keypoints align all four; the aligned overlaps of the
    # settled two are apart in colour all the same, the plain greyscale copy is verified
    checker = PairChecker()
    for other, (_, settled) in copies.items():
        pending = pending_pair(conn, ids["a.png"], ids[other])
        seen_a, seen_b = checker._seen(pending.a, True), checker._seen(pending.b, True)
        match = verify.geometric_match(checker._keypoints(pending.a, "identity"), checker._keypoints(pending.b, "identity"))
        assert match.inliers >= verify.MIN_INLIERS_ALIGNED, (other, match)
        verdict = verify.geometric_verdict(seen_a.features, seen_b.features, match,
                                           min_inliers=verify.MIN_INLIERS_ALIGNED, max_detail=verify.MAX_DETAIL_FAR)
        if settled:
            assert not verdict.verified, (other, verdict)
    assert checker.verdict(pending_pair(conn, ids["a.png"], ids["grey.png"])).verified


def _card(seed: int, size=(200, 300)) -> Image.Image:
    """A playing card: clubs and letters of one colour on a cream card with a black edge, on white."""
    import random

    from PIL import ImageFont

    rng = random.Random(seed)
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rounded_rectangle((4, 4, w - 5, h - 5), radius=14, fill=(250, 250, 240), outline=(0, 0, 0), width=2)
    colour = (0, 0, 0) if rng.random() < 0.5 else (200, 20, 30)
    for _ in range(rng.randint(5, 9)):
        x, y = rng.randint(30, w - 60), rng.randint(30, h - 60)
        draw.ellipse((x, y, x + 14, y + 14), fill=colour)
        draw.ellipse((x + 12, y, x + 26, y + 14), fill=colour)
        draw.ellipse((x + 6, y - 10, x + 20, y + 4), fill=colour)
        draw.polygon([(x + 13, y + 6), (x + 7, y + 24), (x + 19, y + 24)], fill=colour)
    rank, font = str(rng.randint(2, 9)), ImageFont.load_default(size=22)
    draw.text((12, 10), rank, fill=colour, font=font)
    draw.text((w - 30, h - 36), rank, fill=colour, font=font)
    for _ in range(6):
        draw.text((rng.randint(20, w - 40), rng.randint(20, h - 40)), rng.choice("AKQJ"), fill=colour,
                  font=ImageFont.load_default(size=12))
    return image


def test_an_aligned_pair_apart_only_in_its_layout_is_left_to_the_geometric_check(conn, tmp_path):
    """A card turned by 8-10 degrees keeps a close pHash (aligned) while its white corners and moved edges put
    its lightness layout beyond verify.HOPELESS from the card's: the SQL step no longer settles that (it refused
    such copies for their layout before session 27); the workers align the two and verify the copy. Another card
    of the deck (pips moved), at a pHash distance as close, is refused there."""
    import random

    keeper = _card(4).resize((400, 600), Image.Resampling.BICUBIC)
    save(keeper, tmp_path / "card.png")
    turned = {"turned_8.png": _card(4).rotate(8, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255)),
              "turned_10.png": _card(4).rotate(10, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))}
    for name, image in turned.items():
        save(image, tmp_path / name)
    # another card of the deck: the same card with three pips moved (one turned by 8 degrees too)
    others = {}
    for seed, degrees in ((6, 8), (11, 0), (13, 0)):
        other = _card(4)
        draw, rng = ImageDraw.Draw(other), random.Random(seed)
        for _ in range(3):
            x, y = rng.randint(30, 140), rng.randint(30, 240)
            draw.rectangle((x, y, x + 30, y + 30), fill=(250, 250, 240))
            x, y = rng.randint(30, 140), rng.randint(30, 240)
            draw.ellipse((x, y, x + 26, y + 26), fill=(0, 0, 0))
        others[f"other_{seed}.png"] = other.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    for name, image in others.items():
        save(image, tmp_path / name)
    ids = load(conn, tmp_path)
    conn.execute("SELECT * FROM dbdedup.match(12)")
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")
    stored = {i: verify.Features(q, np.asarray(s, dtype=np.float32)) for i, q, s in conn.execute(
        "SELECT id, quality, colour_signature FROM dbdedup.images")}
    for name in turned:
        found = pair(conn, ids, "card.png", name)
        assert found["distance"] <= verify.ALIGNED_DISTANCE, found
        d = verify.compare_signatures(stored[ids["card.png"]].signature, stored[ids[name]].signature)
        # (what the test is about: apart in layout beyond the geometric range, not in colour)
        assert d.light > verify.MAX_LIGHT and d.worst > verify.HOPELESS and d.gain <= d.gain_limit, (name, d)
        assert found["verified"] is None, (name, found)
        assert aligned_verdict(stored[ids["card.png"]], stored[ids[name]], "identity", found["distance"]) is None
    conn.commit()
    verify_pending_pairs(conn, workers=1)
    for name in turned:
        found = pair(conn, ids, "card.png", name)
        assert found["verified"] is True and found["reason"] in ("geometry", "dense"), (name, found)
    other_pairs = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE verified) FROM dbdedup.pairs WHERE hash_kind = 'phash' "
        "AND (image_a = %(k)s OR image_b = %(k)s) AND (image_a = ANY(%(o)s) OR image_b = ANY(%(o)s))",
        {"k": ids["card.png"], "o": [ids[name] for name in others]}).fetchone()
    assert other_pairs[0] >= 2 and other_pairs[1] == 0, other_pairs


def test_a_greyscale_copy_that_is_the_colour_pictures_conversion_may_spread_its_tones_otherwise(conn, tmp_path):
    # A red, blue and white flag and its greyscale copy: the copy's lightness is the colour one's luma
    # cell by cell (grey_light within 1 L* unit), but L* spreads blue and red otherwise than luma does
    # (a spread ratio of about 1.35, over the 1.3 a greyscale picture otherwise gets against a colour
    # one): verified, in SQL and by the twin. A grey drawing that is not a blue one's conversion keeps 1.3.
    original = flag([(255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 255)])
    save(original, tmp_path / "a.png")
    save(original.convert("L"), tmp_path / "grey.png")
    ids = load(conn, tmp_path)
    matching.find_pairs(conn, threshold=8)
    stored = {i: verify.Features(q, np.asarray(s, dtype=np.float32)) for i, q, s in conn.execute(
        "SELECT id, quality, colour_signature FROM dbdedup.images")}
    a, grey = stored[ids["a.png"]], stored[ids["grey.png"]]
    d = verify.compare_signatures(a.signature, grey.signature)
    assert verify.MAX_GAIN < d.gain <= verify.MAX_GAIN_CONVERTED and d.grey_light <= verify.CONVERTED_GREY_LIGHT, d
    assert d.gain_limit == verify.MAX_GAIN_CONVERTED
    found = pair(conn, ids, "a.png", "grey.png")
    assert (found["verified"], found["reason"]) == (True, "signature"), (found, d)
    twin = aligned_verdict(a, grey, "identity", closest=found["distance"])
    assert twin is not None and (twin.verified, twin.reason) == (True, "signature")
    other = verify.compare_signatures(verify.colour_signature(drawing((0, 0, 255))),
                                      verify.colour_signature(drawing((0, 0, 255)).convert("L").convert("RGB")))
    assert other.grey_light > verify.CONVERTED_GREY_LIGHT and other.gain_limit == verify.MAX_GAIN


def confetti(seed: int, size: int = 256, blob: int = 3, count: int = 800) -> Image.Image:
    """Small saturated squares of four colours over soft grey patches: JPEG's chroma quantisation
    moves such a picture's chroma layout far without turning any hue."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        grey = int(rng.integers(60, 200))
        draw.ellipse((x - 40, y - 40, x + 40, y + 40), fill=(grey, grey, grey))
    palette = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 200, 30)]
    for _ in range(count):
        x, y = (int(v) for v in rng.integers(0, size - blob, 2))
        draw.rectangle((x, y, x + blob, y + blob), fill=palette[int(rng.integers(0, 4))])
    return image


def hue_turned(image: Image.Image, degrees: float) -> Image.Image:
    hue, saturation, value = image.convert("HSV").split()
    hue = hue.point(lambda x: (x + round(degrees * 256 / 360)) % 256)
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")


def test_a_copy_whose_chroma_moved_but_no_hue_turned_is_verified_and_a_turned_palette_is_not(conn, tmp_path):
    # JPEG at quality 10 leaves the confetti's chroma layout 0.30-0.45 from the original's (the chroma
    # limit is 0.30) with every cell's hue where it was: verified by its signature. The same picture
    # with every hue turned by 25 degrees is as far by that measure, at as close a lightness layout,
    # and stays apart in colour: another palette.
    original = confetti(1)
    save(original, tmp_path / "a.png")
    save(original, tmp_path / "q10.jpg", quality=10)
    save(hue_turned(original, 25), tmp_path / "turned.png")
    ids = load(conn, tmp_path)
    matching.find_pairs(conn, threshold=8)
    stored = {i: verify.Features(q, np.asarray(s, dtype=np.float32)) for i, q, s in conn.execute(
        "SELECT id, quality, colour_signature FROM dbdedup.images")}
    for other, verified, reason in (("q10.jpg", True, "signature"), ("turned.png", False, "colour")):
        d = verify.compare_signatures(stored[ids["a.png"]].signature, stored[ids[other]].signature)
        assert verify.MAX_CHROMA < d.chroma <= verify.MAX_CHROMA_SAME_HUE and d.light <= verify.SAME_HUE_LIGHT, (other, d)
        assert d.gain <= d.gain_limit and d.detail <= verify.MAX_DETAIL, (other, d)
        found = pair(conn, ids, "a.png", other)
        if other == "turned.png" and found["verified"] is None:
            # rejected for colour, then found close to one tone edit by the signatures' cells (the
            # confetti is mostly grey): pending until the files' pixels say it is not one
            tone_fit = conn.execute("SELECT tone_fit FROM dbdedup.pairs WHERE image_a = %s AND image_b = %s",
                                    sorted((ids["a.png"], ids[other]))).fetchone()[0]
            assert tone_fit is not None and tone_fit == tone_fit, (other, found, tone_fit)
            verify_pending_pairs(conn, workers=1)
            found = pair(conn, ids, "a.png", other)
        assert (found["verified"], found["reason"]) == (verified, reason), (other, found, d)
        # the workers' twin of the SQL verdict says the same
        twin = aligned_verdict(stored[ids["a.png"]], stored[ids[other]], "identity", closest=found["distance"])
        assert twin is not None and (twin.verified, twin.reason) == (verified, reason), (other, twin)
    turned = verify.compare_signatures(stored[ids["a.png"]].signature, stored[ids["turned.png"]].signature)
    assert turned.hue_shift > verify.MAX_HUE_SHIFT


def test_verify_pairs_turns_the_first_image_of_each_pair_by_its_orientation_as_python_does(conn, tmp_path):
    # verify_pairs makes each image's layout once and turns it for the pair's orientation: every
    # orientation (rotate_90 and rotate_270 are each other's inverse), a copy verified, an edited
    # copy (other colours, another picture, much brighter) rejected with the score Python gives
    from dbdedup.variants import PIL_TRANSPOSE

    original = photo(53, (200, 150))
    save(original, tmp_path / "a.png")
    others = [Image.merge("RGB", original.split()[::-1]), photo(54, (200, 150)), brighter(original, 1.6)]
    for k, (name, operation) in enumerate(PIL_TRANSPOSE.items()):
        save(original.transpose(operation), tmp_path / f"copy_{name}.png")
        save(others[k % 3].transpose(operation), tmp_path / f"edit_{name}.png")
    ids = load(conn, tmp_path)
    conn.execute("DELETE FROM dbdedup.pairs")
    for name in PIL_TRANSPOSE:
        for other in (f"copy_{name}.png", f"edit_{name}.png"):
            assert ids["a.png"] < ids[other]  # the transform turns image_a into image_b
            conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, transform, "
                         "transform_distance) VALUES ('phash', %s, %s, 30, false, %s, 2)", (ids["a.png"], ids[other], name))
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")
    stored = {i: verify.Features(q, np.asarray(s, dtype=np.float32)) for i, q, s in conn.execute(
        "SELECT id, quality, colour_signature FROM dbdedup.images")}
    outcomes = set()
    for name in PIL_TRANSPOSE:
        for other in (f"copy_{name}.png", f"edit_{name}.png"):
            found = pair(conn, ids, "a.png", other)
            a, b = stored[ids["a.png"]], stored[ids[other]]
            distance = verify.compare_signatures(verify.orient_signature(a.signature, name), b.signature)
            expected = aligned_verdict(a, b, name, closest=2)
            if expected is None:  # apart in detail only: left to the geometric check, as the workers leave it
                assert found["verified"] is None, (other, found, distance)
            else:
                assert (found["verified"], found["reason"]) == (expected.verified, expected.reason), (other, found)
                assert found["score"] == pytest.approx(max(0.0, 1.0 - distance.worst), abs=1e-6), (other, found)
            outcomes.add((other.split("_")[0], found["verified"]))
    assert {("copy", True), ("edit", False)} <= outcomes and ("copy", False) not in outcomes \
        and ("copy", None) not in outcomes


def test_verdicts_are_kept_for_unchanged_pairs_and_given_again_when_an_image_changes(conn, tmp_path):
    original = photo(41)
    save(original, tmp_path / "a.png")
    save(resized(original, 0.5), tmp_path / "b.png")
    save(flag([(206, 17, 38), (255, 255, 255), (0, 122, 61), (255, 205, 0)]), tmp_path / "flag_a.png")
    save(flag([(0, 122, 61), (255, 255, 255), (206, 17, 38), (255, 205, 0)]), tmp_path / "flag_b.png")
    ids = load(conn, tmp_path)
    first = clusters.ensure_clusters(conn, ClusterSettings())
    assert first.match.verification.pairs == 2
    assert conn.execute("SELECT count(*) FROM dbdedup.pairs WHERE verified IS NULL").fetchone()[0] == 0
    assert groups(conn) == {frozenset({"a.png", "b.png"})}
    # a verdict is not given twice: a sentinel score survives another verification run
    conn.execute("UPDATE dbdedup.pairs SET verify_score = 0.123 WHERE verified")
    conn.commit()
    assert conn.execute("SELECT pairs FROM dbdedup.verify_pairs()").fetchone()[0] == 0
    # flag_b.png becomes a copy of flag_a.png in other colours... of the same colours: the pair is new
    save(flag([(206, 17, 38), (255, 255, 255), (0, 122, 61), (255, 205, 0)]).resize((200, 133)), tmp_path / "flag_b.png")
    ids = load(conn, tmp_path)
    second = clusters.ensure_clusters(conn, ClusterSettings())
    assert second.match.verification.pairs == 1  # only the changed image's pair
    assert pair(conn, ids, "flag_a.png", "flag_b.png")["reason"] == "signature"
    assert pair(conn, ids, "a.png", "b.png")["score"] == pytest.approx(0.123)
    assert groups(conn) == {frozenset({"a.png", "b.png"}), frozenset({"flag_a.png", "flag_b.png"})}


def test_refresh_verifies_in_sql(conn, tmp_path):
    save(drawing((200, 30, 30)), tmp_path / "red.png")
    save(drawing((40, 70, 200)), tmp_path / "blue.png")
    save(drawing((200, 30, 30)).resize((150, 150)), tmp_path / "red_small.png")
    ids = load(conn, tmp_path)
    clusters.save_settings(conn, ClusterSettings(rule="transforms"))
    conn.execute("CALL dbdedup.refresh()")
    conn.commit()
    assert pair(conn, ids, "red.png", "blue.png")["verified"] is False
    assert pair(conn, ids, "red.png", "red_small.png")["reason"] == "signature"
    assert groups(conn) == {frozenset({"red.png", "red_small.png"})}


def test_a_full_transform_rematch_keeps_the_verdicts_of_pairs_found_again_with_the_same_variant(conn, tmp_path):
    original = photo(51)
    save(original, tmp_path / "a.png")
    save(ImageOps.mirror(original), tmp_path / "mirror.png")
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings(rule="transforms"))
    assert pair(conn, ids, "a.png", "mirror.png")["reason"] == "signature"
    conn.execute("UPDATE dbdedup.pairs SET verify_score = 0.123 WHERE verified")  # a sentinel: not given again
    conn.commit()
    assert conn.execute("SELECT mode FROM dbdedup.match_transforms(2, 'auto', true)").fetchone()[0] == "full"
    conn.commit()
    found = pair(conn, ids, "a.png", "mirror.png")
    assert found["transform"] == "flip_h" and found["verified"] is True and found["score"] == pytest.approx(0.123)
    # a wider variant threshold finds the same variant: still the same verdict
    conn.execute("SELECT * FROM dbdedup.match_transforms(4)")
    conn.commit()
    assert pair(conn, ids, "a.png", "mirror.png")["score"] == pytest.approx(0.123)


def test_match_through_the_cli_says_what_verification_decided(db_dsn, tmp_path):
    from click.testing import CliRunner

    from dbdedup.cli.main import cli

    for name, colour in (("red", (200, 30, 30)), ("blue", (40, 70, 200)), ("green", (40, 150, 40))):
        save(drawing(colour), tmp_path / f"folder_{name}.png")
    save(drawing((200, 30, 30)).resize((120, 120)), tmp_path / "folder_red_small.png")
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db_dsn, "load", str(tmp_path)], catch_exceptions=False).exit_code == 0
    result = runner.invoke(cli, ["--db", db_dsn, "match"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # four drawings pair by pHash (six pairs); only the red one and its smaller copy are one picture
    assert "verification of 6 pairs without a verdict: 1 the same picture, 5 not" in result.stderr, result.stderr
    assert "1 clusters with 2 images" in result.stderr
    report = runner.invoke(cli, ["--db", db_dsn, "report", "--format", "json"], catch_exceptions=False)
    assert report.exit_code == 0
    assert "folder_red_small.png" in report.stdout and "folder_blue.png" not in report.stdout


def test_a_full_embedding_rematch_keeps_the_verdicts_of_neighbour_pairs_found_again(conn):
    from test_matching import flip_bits, insert_images

    rng = np.random.default_rng(3)
    first = int(rng.integers(-(2**62), 2**62))
    ids = insert_images(conn, [first, flip_bits(rng, first, 20), flip_bits(rng, first, 40)])
    direction = rng.normal(size=64)
    for image_id, noise in zip(ids, (0.0, 0.05, 3.0)):  # two close vectors, one far
        vector = direction + noise * rng.normal(size=64)
        vector /= np.linalg.norm(vector)
        conn.execute("INSERT INTO dbdedup.image_embeddings (image_id, embedder, raw, embedding) "
                     "VALUES (%s, 'test', '\\x00', %s::text::vector)", (image_id, "[" + ",".join(map(str, vector)) + "]"))
    conn.commit()
    result = matching.find_pairs(conn, threshold=8, embeddings=True, min_similarity=0.9)
    assert result.verification.pending == 1  # found by the neighbour search only, pHash 20 apart: for the pixels
    # the check by pixels gives its verdict
    conn.execute("UPDATE dbdedup.pairs SET verified = true, verify_score = 0.77, verify_reason = 'geometry' "
                 "WHERE verified IS NULL")
    conn.commit()
    assert conn.execute("SELECT mode FROM dbdedup.match_embeddings(0.9, 10, true)").fetchone()[0] == "full"
    conn.commit()
    rows = conn.execute("SELECT image_a, image_b, verified, verify_score, verify_reason FROM dbdedup.pairs").fetchall()
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [(ids[0], ids[1], True, "geometry")]
    assert rows[0][3] == pytest.approx(0.77)


def test_verification_runs_on_a_server_without_pgvector(plain_pg_dsn, tmp_path):
    import os

    import psycopg

    from test_signals import fresh_plain_database

    dsn = fresh_plain_database(plain_pg_dsn, f"verification_{os.getpid()}")
    with psycopg.connect(dsn) as plain:
        assert plain.execute("SELECT dbdedup.vector_schema()").fetchone()[0] is None
        a, b = verify.colour_signature(photo(7)), verify.colour_signature(ImageOps.mirror(photo(7)).convert("RGB"))
        expected = verify.compare_signatures(verify.orient_signature(a, "flip_h"), b)
        light, chroma, gain, detail, *_ = _sql_distance(plain, a, b, "flip_h")
        assert (light, chroma, gain, detail) == pytest.approx((expected.light, expected.chroma, expected.gain,
                                                               expected.detail), abs=1e-4)
        save(flag([(206, 17, 38), (255, 255, 255), (0, 122, 61), (255, 205, 0)]), tmp_path / "flag_a.png")
        save(flag([(0, 122, 61), (255, 255, 255), (206, 17, 38), (255, 205, 0)]), tmp_path / "flag_b.png")
        save(reencoded(photo(8), 50), tmp_path / "photo.jpg")
        save(resized(photo(8), 0.5), tmp_path / "photo_small.png")
        ids = load(plain, tmp_path)
        clusters.ensure_clusters(plain, ClusterSettings())
        assert pair(plain, ids, "flag_a.png", "flag_b.png")["verified"] is False
        assert pair(plain, ids, "photo.jpg", "photo_small.png")["reason"] == "signature"
        assert groups(plain) == {frozenset({"photo.jpg", "photo_small.png"})}


def star_flag(star, size=(240, 160)) -> Image.Image:
    """A red field with a five-pointed star in the middle: one layout, any star colour."""
    w, h = size
    image = Image.new("RGB", size, (218, 37, 29))
    points = [(w / 2 + h * (0.3 if k % 2 == 0 else 0.114) * np.cos(-np.pi / 2 + k * np.pi / 5),
               h / 2 + h * (0.3 if k % 2 == 0 else 0.114) * np.sin(-np.pi / 2 + k * np.pi / 5)) for k in range(10)]
    ImageDraw.Draw(image).polygon(points, fill=star)
    return image


def assert_framed_copy_joins_alone(conn, ids: dict[str, int], look_alike: str, large_bordered: bool) -> None:
    """framed.png and the look-alike bordered as the loader saw them (large.png as ``large_bordered``), framed.png
    aligned with large.png by its pHash; then, after a report's clustering: framed.png verified `dense` against
    large.png (a plain pHash pair), the look-alike refused, and those two the only cluster."""
    bordered = {p.rsplit("/", 1)[1]: b for p, b in conn.execute(
        "SELECT path, phash_variants[8] IS NOT NULL FROM dbdedup.images").fetchall()}
    assert bordered == {"large.png": large_bordered, "framed.png": True, look_alike: True}
    assert phash_distance(conn, ids, "large.png", "framed.png") <= verify.ALIGNED_DISTANCE  # (aligned: its signatures judge it)
    clusters.ensure_clusters(conn, ClusterSettings())
    copy = pair(conn, ids, "large.png", "framed.png")
    assert copy["transform"] is None and (copy["verified"], copy["reason"]) == (True, "dense"), copy
    other = pair(conn, ids, "large.png", look_alike)
    assert other["verified"] is False, other
    assert groups(conn) == {frozenset({"large.png", "framed.png"})}


def test_a_copy_in_a_frame_is_verified_by_what_the_frame_held_and_a_recoloured_one_in_that_frame_is_not(conn, tmp_path):
    # A black frame round a flag moves its whole colour signature as far as another flag would: the aligned pair of
    # the framed copy and the flag enlarged, which its pHash finds, was refused for colour by the signatures. With
    # exactly one of the two bordered, the SQL step leaves it to the check by pixels, which aligns what the frame
    # held with the other picture (verify_workers.framed_verdict). The flag with a white star in the same frame
    # (another flag) stays apart.
    save(star_flag((255, 222, 0), (960, 640)), tmp_path / "large.png")
    save(ImageOps.expand(star_flag((255, 222, 0), (480, 320)), border=26, fill="black"), tmp_path / "framed.png")
    save(ImageOps.expand(star_flag((255, 255, 255), (480, 320)), border=26, fill="black"), tmp_path / "white_star_framed.png")
    ids = load(conn, tmp_path)
    assert_framed_copy_joins_alone(conn, ids, "white_star_framed.png", large_bordered=False)


def canton_flag(canton, size=(480, 320)) -> Image.Image:
    """Red and white stripes with a canton in the top left corner: one layout, any canton colour."""
    w, h = size
    image = Image.new("RGB", size, (218, 37, 29))
    draw = ImageDraw.Draw(image)
    for k in range(0, 7, 2):
        draw.rectangle([0, k * h // 7, w, (k + 1) * h // 7], fill=(255, 255, 255))
    draw.rectangle([0, 0, w * 2 // 5, h * 4 // 7], fill=canton)
    return image


def test_a_drawing_on_a_margin_framed_is_verified_by_what_the_frame_held_and_a_recoloured_one_is_not(conn, tmp_path):
    # A flag on a white margin, enlarged, and the same flag on its margin in a yellow frame: the loader trims a
    # uniform border off both (the margin of the one, the frame of the other, stopping at the margin), so both are
    # bordered, and the frame moves the whole colour signatures apart (refused for colour by the signatures). The
    # framed one trimmed has nearly the other's pHash (dbdedup.one_in_frame): the check by pixels aligns what the
    # frame held with the other. The flag with a green canton on the same margin in the same frame stays apart.
    def on_margin(canton, frame=None):
        image = ImageOps.expand(canton_flag(canton), border=320 // 6, fill="white")
        return image if frame is None else ImageOps.expand(image, border=frame, fill=(255, 255, 0))

    large = on_margin((0, 40, 104))
    save(large.resize((large.width * 2, large.height * 2), Image.BICUBIC), tmp_path / "large.png")
    save(on_margin((0, 40, 104), frame=16), tmp_path / "framed.png")
    save(on_margin((0, 110, 50), frame=16), tmp_path / "green_framed.png")
    ids = load(conn, tmp_path)
    framed_trimmed_to_large = conn.execute(
        "SELECT dbdedup.hamming(f.phash_variants[8], l.phash), dbdedup.one_in_frame(f.phash, f.phash_variants, l.phash, "
        "l.phash_variants, %s) FROM dbdedup.images f, dbdedup.images l WHERE f.id = %s AND l.id = %s",
        (verify.ALIGNED_DISTANCE, ids["framed.png"], ids["large.png"])).fetchone()
    assert framed_trimmed_to_large[0] <= verify.ALIGNED_DISTANCE and framed_trimmed_to_large[1] is True
    assert_framed_copy_joins_alone(conn, ids, "green_framed.png", large_bordered=True)
