"""The structure check (dbdedup/structure_check.py): a pair the colour signatures verify is compared again by
the two images' stored thumbnails, window by window, at 32x32 and 64x64. Real images made with Pillow (one
folder drawing with two glyphs, as icon sets ship them, two star rings, and edited copies of one), loaded by
the real loader into a real database."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from dbdedup import clusters, verify
from dbdedup.clusters import ClusterSettings
from dbdedup.load import load_paths
from dbdedup.verify_plan import reopen_unchecked
from dbdedup.verify_workers import verify_pending_pairs
from images import reencoded, resized, save, star_ring


def glyph_folder(glyph: str, colour=(196, 30, 40), size: int = 192) -> Image.Image:
    """A red folder on white with a dark glyph in the middle (a plus or a cross): one drawing of an
    icon set in which only the glyph differs (as papirus' folders with their emblems)."""
    s = size / 64
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    dark = tuple(int(c * 0.35) for c in colour)
    draw.rounded_rectangle([4 * s, 8 * s, 28 * s, 18 * s], radius=2 * s, fill=tuple(int(c * 0.8) for c in colour))
    draw.rectangle([8 * s, 13 * s, 56 * s, 22 * s], fill=(235, 235, 235))
    draw.rounded_rectangle([4 * s, 18 * s, 60 * s, 56 * s], radius=2 * s, fill=colour)
    cx, cy = 32 * s, 37 * s
    if glyph == "plus":
        draw.rectangle([cx - 9 * s, cy - 2.5 * s, cx + 9 * s, cy + 2.5 * s], fill=dark)
        draw.rectangle([cx - 2.5 * s, cy - 9 * s, cx + 2.5 * s, cy + 9 * s], fill=dark)
    else:
        draw.line([cx - 8 * s, cy - 8 * s, cx + 8 * s, cy + 8 * s], fill=dark, width=int(5 * s))
        draw.line([cx - 8 * s, cy + 8 * s, cx + 8 * s, cy - 8 * s], fill=dark, width=int(5 * s))
    return image


def watermarked(image: Image.Image) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    # over the folder's lower edge, as a photographer's mark sits in a corner
    draw.text((image.width // 3, image.height - 48), "(c) 2026", fill=(255, 255, 255),
              font=ImageFont.load_default(size=14))
    return out


COPIES = {
    "plus_q30.jpg": lambda im: reencoded(im, 30),
    "plus_half.png": lambda im: resized(im, 0.5),
    "plus_grey.png": ImageOps.grayscale,
    "plus_darker.png": lambda im: ImageEnhance.Brightness(im).enhance(0.7),
    "plus_contrast.png": lambda im: ImageEnhance.Contrast(im).enhance(1.4),
    "plus_blur.png": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "plus_watermark.png": watermarked,
    "plus_mirrored.png": ImageOps.mirror,  # compared in the orientation that aligns it (flip_h)
}


def make_set(root: Path) -> None:
    plus = glyph_folder("plus")
    save(plus, root / "plus.png")
    save(glyph_folder("cross"), root / "cross.png")
    for name, edit in COPIES.items():
        save(edit(plus), root / name)


def load(conn, root: Path) -> dict[str, int]:
    load_paths(conn, [root], workers=1, embedder=None)
    return {p.rsplit("/", 1)[1]: i for i, p in conn.execute("SELECT id, path FROM dbdedup.images WHERE status = 'ok'")}


def pair(conn, ids: dict[str, int], x: str, y: str) -> dict:
    a, b = sorted((ids[x], ids[y]))
    row = conn.execute("SELECT distance, transform, verified, verify_reason, structure FROM dbdedup.pairs "
                       "WHERE hash_kind = 'phash' AND image_a = %s AND image_b = %s", (a, b)).fetchone()
    assert row is not None, f"{x} and {y} are not a candidate pair"
    return dict(zip(("distance", "transform", "verified", "reason", "structure"), row))


def add_pending_pair(conn, ids: dict[str, int], x: str, y: str, **columns) -> None:
    """Store the pending pHash pair of images ``x`` and ``y`` with ``columns`` (distance, transform, ...), as matching
    stores a pair it found; committed."""
    a, b = sorted((ids[x], ids[y]))
    names = ["hash_kind", "image_a", "image_b", "is_exact", *columns]
    conn.execute(sql.SQL("INSERT INTO dbdedup.pairs ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(sql.Placeholder() * len(names))),
        ["phash", a, b, False, *columns.values()])
    conn.commit()


def groups(conn) -> set[frozenset[str]]:
    return {frozenset(p.rsplit("/", 1)[1] for p in paths) for (paths,) in conn.execute(
        "SELECT array_agg(path) FROM dbdedup.cluster_members GROUP BY cluster_id").fetchall()}


def thumbnail(conn, image_id: int, side: int = verify.STRUCTURE_SIDE) -> np.ndarray:
    stored = conn.execute("SELECT structure FROM dbdedup.images WHERE id = %s", (image_id,)).fetchone()[0]
    return verify.structure_pixels(bytes(stored), side=side)


def windowed_agreement(a: np.ndarray, b: np.ndarray, percentile: float = 5.0) -> float:
    """The structure measure written out window by window: 8x8 windows every 4 pixels, each compared
    window (spread above 8 in either picture) scored by SSIM's structure term, their percentile."""
    scores = []
    for y in range(0, a.shape[0] - 7, 4):
        for x in range(0, a.shape[1] - 7, 4):
            wa, wb = a[y:y + 8, x:x + 8].ravel(), b[y:y + 8, x:x + 8].ravel()
            sa, sb = wa.std(), wb.std()
            if max(sa, sb) > 8.0:
                scores.append((((wa - wa.mean()) * (wb - wb.mean())).mean() + 10.0) / (sa * sb + 10.0))
    return float(np.percentile(scores, percentile)) if scores else 1.0


def test_another_glyph_passes_the_colour_signatures_but_not_the_structure_check(conn, tmp_path):
    make_set(tmp_path)
    plus, cross = glyph_folder("plus"), glyph_folder("cross")
    # what the signatures see: the same picture, by every measure and limit
    features = [verify.Features(verify.quality(im), verify.colour_signature(im)) for im in (plus, cross)]
    assert verify.signature_verdict(*features, closest=0) == verify.Verdict(True, pytest.approx(0.94, abs=0.05),
                                                                             "signature")
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    # (the report checks only what its clusters need; every pair checked, as `dbdedup verify --unchecked` does)
    reopen_unchecked(conn)
    verify_pending_pairs(conn, workers=1)

    found = pair(conn, ids, "plus.png", "cross.png")
    assert found["distance"] <= 2, found  # the hash alone links them too
    # failed the structure check: left to the geometric check, which aligns the two by their pixels and
    # finds the glyph apart again (in 16x16 detail here, which it asks of aligned pairs before structure)
    assert found["verified"] is False and found["reason"] in ("detail", "structure"), found
    expected = verify.structure_agreement(thumbnail(conn, ids["plus.png"]), thumbnail(conn, ids["cross.png"]))
    assert found["structure"] == pytest.approx(expected, abs=1e-5)
    assert found["structure"] < 0.3
    for name in COPIES:
        found = pair(conn, ids, "plus.png", name)
        assert found["verified"] is True and found["reason"] == "signature", (name, found)
        assert found["structure"] > 0.8, (name, found)
    assert pair(conn, ids, "plus.png", "plus_mirrored.png")["transform"] == "flip_h"
    assert groups(conn) == {frozenset({"plus.png", *COPIES})}


def test_the_thumbnail_is_the_hashing_images_luma_and_the_batch_measure_the_single_one(conn, tmp_path):
    make_set(tmp_path)
    ids = load(conn, tmp_path)
    stored = thumbnail(conn, ids["plus.png"])
    with Image.open(tmp_path / "plus.png") as im:
        direct = verify.structure_pixels(verify.structure_thumbnail(im.convert("RGB")))
    assert stored.shape == (verify.STRUCTURE_SIDE, verify.STRUCTURE_SIDE)
    assert np.abs(stored - direct).max() <= 2  # the loader's working image is reduced first
    names = sorted(ids)
    pictures = [thumbnail(conn, ids[n]) for n in names]
    one_by_one = [verify.structure_agreement(pictures[0], p) for p in pictures]
    batch = verify.structure_agreements(np.stack([pictures[0]] * len(pictures)), np.stack(pictures))
    assert list(batch) == pytest.approx(one_by_one)
    assert one_by_one == pytest.approx([windowed_agreement(pictures[0], p) for p in pictures], abs=1e-9)
    assert one_by_one[0] == pytest.approx(1.0)
    fine = [thumbnail(conn, ids[n], verify.FINE_STRUCTURE_SIDE) for n in names]
    assert list(verify.structure_agreements(np.stack([fine[0]] * len(fine)), np.stack(fine), 10.0)) == pytest.approx(
        [windowed_agreement(fine[0], p, 10.0) for p in fine], abs=1e-9)
    flat = np.full((verify.STRUCTURE_SIDE, verify.STRUCTURE_SIDE), 128.0)
    assert verify.structure_agreement(flat, flat + 3) == 1.0  # nothing to compare: no evidence against


def test_a_sql_only_refresh_links_by_signature_and_the_next_report_checks_the_structure(conn, tmp_path):
    make_set(tmp_path)
    ids = load(conn, tmp_path)
    clusters.save_settings(conn, ClusterSettings(rule="transforms"))
    conn.execute("CALL dbdedup.refresh()")
    conn.commit()
    found = pair(conn, ids, "plus.png", "cross.png")
    assert found["verified"] is True and found["reason"] == "signature" and found["structure"] is None
    assert any({"plus.png", "cross.png"} <= g for g in groups(conn))
    clusters.ensure_clusters(conn)  # what `dbdedup report` runs first
    assert pair(conn, ids, "plus.png", "cross.png")["verified"] is False
    assert not any("cross.png" in g for g in groups(conn))
    assert conn.execute("SELECT count(*) FROM dbdedup.pairs WHERE verified AND verify_reason = 'signature' "
                        "AND structure IS NULL").fetchone()[0] == 0


def test_images_loaded_before_the_thumbnails_keep_their_verdicts_until_the_next_load_stores_them(conn, tmp_path):
    make_set(tmp_path)
    ids = load(conn, tmp_path)
    # a database loaded before 0019: no thumbnails, pairs verified by their signatures alone
    conn.execute("UPDATE dbdedup.images SET structure = NULL")
    conn.commit()
    clusters.ensure_clusters(conn, ClusterSettings())
    found = pair(conn, ids, "plus.png", "cross.png")
    assert found["verified"] is True and found["reason"] == "signature" and np.isnan(found["structure"])
    # the next load fingerprints the unchanged files again, once, and the pair is judged again
    result = load_paths(conn, [tmp_path], workers=1, embedder=None)
    assert result.loaded == len(ids)
    assert conn.execute("SELECT count(*) FROM dbdedup.images WHERE structure IS NULL").fetchone()[0] == 0
    clusters.ensure_clusters(conn, ClusterSettings())
    found = pair(conn, ids, "plus.png", "cross.png")
    assert found["verified"] is False and found["structure"] < verify.MIN_SIGNATURE_STRUCTURE, found
    assert load_paths(conn, [tmp_path], workers=1, embedder=None).loaded == 0


def test_the_check_by_pixels_measures_the_structure_of_what_it_aligned(tmp_path):
    plus, cross = glyph_folder("plus", size=256), glyph_folder("cross", size=256)
    turned = plus.rotate(2, resample=Image.Resampling.BICUBIC, fillcolor="white")
    fa, fc = (verify.Features(verify.quality(im), verify.colour_signature(im)) for im in (plus, turned))
    pixels = verify.working_pixels(plus)
    # a copy turned by 2 degrees: aligned by its pixels (too few keypoints), the same structure
    dense = verify.dense_match(pixels, verify.working_pixels(turned))
    assert dense.structure > 0.9
    assert verify.dense_verdict(fa, fc, dense) == verify.Verdict(True, pytest.approx(1.0, abs=0.02), "dense")
    # the other glyph aligns as well, and its structure tells it apart
    other = verify.dense_match(pixels, verify.working_pixels(cross))
    assert other.correlation > verify.DENSE_MIN_CORRELATION and other.structure < 0.3
    assert verify.structure_of_pixels(pixels, verify.working_pixels(cross)) == pytest.approx(other.structure, abs=0.05)
    # where the colours and the detail of the aligned overlap agree, the structure still decides
    agreeing = verify.compare_signatures(fa.signature, fa.signature)
    for structure, expected in ((0.95, (True, "geometry")), (0.2, (False, "structure"))):
        match = verify.GeometricMatch(60, 50, np.eye(2, 3), 1.0, 1.0, agreeing, structure)
        verdict = verify.geometric_verdict(fa, fa, match)
        assert (verdict.verified, verdict.reason) == expected
    for structure, expected in ((0.95, (True, "dense")), (0.2, (False, "structure"))):
        verdict = verify.dense_verdict(fa, fa, verify.DenseMatch(0.99, agreeing, structure))
        assert (verdict.verified, verdict.reason) == expected


def test_match_and_verify_through_the_cli_say_what_the_structure_check_did(db_dsn, tmp_path):
    from click.testing import CliRunner

    from dbdedup.cli.main import cli

    make_set(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db_dsn, "load", str(tmp_path)], catch_exceptions=False).exit_code == 0
    result = runner.invoke(cli, ["--db", db_dsn, "match"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # plus and cross (and cross with each copy of plus) agree by signature; their structure does not
    assert "pairs verified by colour signature: " in result.stderr, result.stderr
    line = next(x for x in result.stderr.splitlines() if "structure check of" in x)
    apart = int(line.split(": ", 1)[1].split(" apart")[0])
    assert apart >= 1, line
    # what a SQL-only refresh() leaves (pairs verified by their signatures, not measured): `dbdedup verify` checks them
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        left = conn.execute("UPDATE dbdedup.pairs SET verified = true, verify_reason = 'signature', structure = NULL "
                            "WHERE structure < %s", (verify.MIN_SIGNATURE_STRUCTURE,)).rowcount
    assert left >= 1
    verified = runner.invoke(cli, ["--db", db_dsn, "verify"], catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
    assert (f"{left:,} pairs verified by colour signature were apart in a region by their structure, or their "
            "thumbnails off one tone edit, and checked by their pixels") in verified.stderr, verified.stderr
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM dbdedup.pairs WHERE verified AND structure < %s",
                            (verify.MIN_SIGNATURE_STRUCTURE,)).fetchone()[0] == 0


STAR_COPIES = {
    "ring_darker.png": lambda im: ImageEnhance.Brightness(im).enhance(0.7),
    "ring_half.png": lambda im: resized(im, 0.5),
    "ring_enlarged.png": lambda im: resized(im, 1.5),
    "ring_blur.png": lambda im: im.filter(ImageFilter.GaussianBlur(1)),
    "ring_contrast.png": lambda im: ImageEnhance.Contrast(im).enhance(1.4),
}


def make_star_rings(root: Path) -> None:
    """Two star rings of 49 and 61 points (pHash 1 apart, the same colours, alike at 32x32) and copies of one."""
    ring = star_ring(49, 16, size=256, width=6)
    save(ring, root / "ring.png")
    save(star_ring(61, 20, size=256, width=6), root / "other_ring.png")
    for name, edit in STAR_COPIES.items():
        save(edit(ring), root / name)


def check_every_pair(conn) -> None:
    clusters.ensure_clusters(conn, ClusterSettings())
    reopen_unchecked(conn)  # every pair checked, as `dbdedup verify --unchecked` does
    verify_pending_pairs(conn, workers=1)


def test_star_rings_alike_at_32x32_are_told_apart_by_the_64x64_thumbnails(conn, tmp_path):
    make_star_rings(tmp_path)
    ids = load(conn, tmp_path)
    stored = conn.execute("SELECT structure FROM dbdedup.images WHERE id = %s", (ids["ring.png"],)).fetchone()[0]
    assert len(stored) == verify.STORED_STRUCTURE_SIDE ** 2
    check_every_pair(conn)

    found = pair(conn, ids, "ring.png", "other_ring.png")
    assert found["distance"] <= 2, found  # aligned by the hash: the colour signatures judge it first
    # at 32x32 (the 2x2 means of the stored thumbnails) the two agree as copies do; at 64x64 they do not
    coarse = verify.structure_agreement(thumbnail(conn, ids["ring.png"]), thumbnail(conn, ids["other_ring.png"]))
    assert coarse >= verify.MIN_SIGNATURE_STRUCTURE
    assert found["structure"] < verify.MIN_SIGNATURE_FINE_STRUCTURE, found
    # left to the geometric check, which aligns them and finds the overlap apart at 64x64
    assert found["verified"] is False and found["reason"] in ("structure", "no_geometry"), found
    for name in STAR_COPIES:
        copy = pair(conn, ids, "ring.png", name)
        assert copy["verified"] is True, (name, copy)
    assert groups(conn) == {frozenset({"ring.png", *STAR_COPIES})}


def test_thumbnails_stored_at_32x32_are_compared_at_32x32_only(conn, tmp_path):
    make_star_rings(tmp_path)
    ids = load(conn, tmp_path)
    # images loaded before 0021: their thumbnails 32x32 (what the 64x64 ones average to)
    for image_id in ids.values():
        coarse = thumbnail(conn, image_id)
        conn.execute("UPDATE dbdedup.images SET structure = %s WHERE id = %s",
                     (np.round(coarse).astype(np.uint8).tobytes(), image_id))
    conn.commit()
    check_every_pair(conn)
    found = pair(conn, ids, "ring.png", "other_ring.png")
    # nothing finer to compare: the 32x32 measure stands, and the signatures' verdict with it
    assert found["verified"] is True and found["reason"] == "signature", found
    assert found["structure"] >= verify.MIN_SIGNATURE_STRUCTURE
    assert verify.structure_pixels(bytes(conn.execute(
        "SELECT structure FROM dbdedup.images WHERE id = %s", (ids["ring.png"],)).fetchone()[0]), side=64) is None


def test_a_thumbnail_of_another_length_is_not_measured_and_the_verdict_stands(conn, tmp_path):
    make_star_rings(tmp_path)
    ids = load(conn, tmp_path)
    conn.execute("UPDATE dbdedup.images SET structure = '\\x0102'::bytea WHERE id = %s", (ids["other_ring.png"],))
    conn.commit()
    check_every_pair(conn)  # no error: the pairs of that image are simply not measured
    found = pair(conn, ids, "ring.png", "other_ring.png")
    assert found["verified"] is True and found["reason"] == "signature" and np.isnan(found["structure"]), found
    # the other pictures' pairs are measured as usual
    measured = [pair(conn, ids, "ring.png", name)["structure"] for name in STAR_COPIES]
    assert any(value >= verify.MIN_SIGNATURE_STRUCTURE for value in measured), measured


PURPLE, BLUE_VIOLET = (133, 55, 180), (108, 93, 239)  # two colours of one folder drawing, as an icon set ships them


def test_two_colourings_of_one_folder_that_the_signatures_pass_are_refused_for_colour(conn, tmp_path):
    """Purple and blue-violet are close enough in hue, chroma and lightness for the colour signatures, but no
    brightness or contrast edit turns one into the other (each channel moved its own way): the structure check's
    pass refuses that verdict, and keeps every copy's, the brightened one's too."""
    purple, violet = glyph_folder("plus", PURPLE), glyph_folder("plus", BLUE_VIOLET)
    features = [verify.Features.of(im) for im in (purple, violet)]
    assert verify.signature_verdict(*features, closest=0).reason == "signature"  # what SQL's verdict will be
    assert verify.tones_apart(features[0].signature, features[1].signature)
    save(purple, tmp_path / "plus.png")
    save(violet, tmp_path / "violet.png")
    copies = {**COPIES, "plus_brighter.png": lambda im: ImageEnhance.Brightness(im).enhance(1.3)}
    for name, edit in copies.items():
        save(edit(purple), tmp_path / name)
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    reopen_unchecked(conn)
    verify_pending_pairs(conn, workers=1)

    found = pair(conn, ids, "plus.png", "violet.png")
    assert found["distance"] <= 2 and found["verified"] is False and found["reason"] == "colour", found
    assert found["structure"] > 0.8  # (one drawing: the structure alone would have kept it)
    for name in copies:
        found = pair(conn, ids, "plus.png", name)
        assert found["verified"] is True and found["reason"] == "signature", (name, found)
    assert groups(conn) == {frozenset({"plus.png", *copies})}


# an icon theme's folder in two colourings each, as papirus ships them: the second of each pair is every hue of the
# first turned one way (by about 16 and 10 degrees), close enough to one line for SIGNATURE_MAX_TONE_RESIDUAL
HUE_TURNED = {"blue": ((92, 107, 192), (126, 87, 194)), "red": ((226, 82, 82), (163, 0, 2))}
TONE_EDITS = {"brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
              "contrast": lambda im: ImageEnhance.Contrast(im).enhance(1.3),
              "darker": lambda im: ImageEnhance.Brightness(im).enhance(0.7)}


@pytest.mark.parametrize("colours", HUE_TURNED.values(), ids=HUE_TURNED.keys())
def test_two_colourings_with_every_hue_turned_one_way_are_apart_and_the_tone_edits_are_not(colours, monkeypatch):
    """The signatures verify the two colourings, and their cells are near enough one line for the first bound of
    ``verify.tones_apart``; the turn of every hue one way sets them apart. Brightness and contrast edits of the
    first, which turn hues less or stay nearer one line, are not."""
    first, second = (glyph_folder("plus", colour) for colour in colours)
    a, b = verify.Features.of(first), verify.Features.of(second)
    assert verify.signature_verdict(a, b, closest=0).reason == "signature"  # what SQL's verdict will be
    assert verify.tones_apart(a.signature, b.signature) and verify.tones_apart(b.signature, a.signature)
    # the first one mirrored, compared under the flip (as a pair found through its flip variant): apart from the
    # second colouring, and not from the first
    mirrored = verify.Features.of(ImageOps.mirror(first)).signature
    assert verify.tones_apart(mirrored, b.signature, "flip_h")
    assert not verify.tones_apart(mirrored, a.signature, "flip_h")
    for name, edit in TONE_EDITS.items():
        edited = verify.Features.of(edit(first)).signature
        assert not verify.tones_apart(a.signature, edited), name
    # the turn of the hues is what tells them: without it, the line alone leaves the two colourings together
    monkeypatch.setattr(verify, "SIGNATURE_HUE_TURN", 360.0)
    assert not verify.tones_apart(a.signature, b.signature)


@pytest.mark.parametrize("colours", HUE_TURNED.values(), ids=HUE_TURNED.keys())
def test_a_colouring_with_every_hue_turned_one_way_stays_out_of_the_folders_cluster(conn, tmp_path, colours):
    """The second colouring of a folder is found at pHash distance 0 and verified by the signatures in SQL; the
    structure check's pass refuses it for colour, and keeps the folder's copies (brightened, more contrast,
    darker, re-encoded, halved) in its cluster."""
    save(glyph_folder("plus", colours[0]), tmp_path / "plus.png")
    save(glyph_folder("plus", colours[1]), tmp_path / "recoloured.png")
    copies = {f"plus_{name}.png": edit for name, edit in TONE_EDITS.items()}
    copies.update({name: COPIES[name] for name in ("plus_q30.jpg", "plus_half.png")})
    for name, edit in copies.items():
        save(edit(glyph_folder("plus", colours[0])), tmp_path / name)
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings())
    reopen_unchecked(conn)
    verify_pending_pairs(conn, workers=1)

    found = pair(conn, ids, "plus.png", "recoloured.png")
    assert found["verified"] is False and found["reason"] == "colour", found
    for name in copies:
        found = pair(conn, ids, "plus.png", name)
        assert found["verified"] is True, (name, found)
    assert frozenset({"plus.png", *copies}) in groups(conn)
    assert not any("recoloured.png" in group and "plus.png" in group for group in groups(conn))


def test_the_check_by_pixels_refuses_a_signature_verdict_on_colours_no_tone_edit_explains(tmp_path):
    """A keeper pair the workers judge (no SQL verdict before it): their own verdict by the signatures is refused
    the same way, and a brightened copy's is kept."""
    from dbdedup.verify_workers import PairChecker, PendingPair
    from test_keypoints import _image_info as info

    save(glyph_folder("plus", PURPLE), tmp_path / "keeper.png")
    save(glyph_folder("plus", BLUE_VIOLET), tmp_path / "violet.png")
    save(ImageEnhance.Brightness(glyph_folder("plus", PURPLE)).enhance(1.3), tmp_path / "brighter.png")
    keeper, checker = info(1, tmp_path / "keeper.png"), PairChecker()
    for image_id, (name, wanted) in enumerate((("violet.png", (False, "colour")),
                                               ("brighter.png", (True, "signature"))), start=2):
        got = checker.verdict(PendingPair("phash", 1, image_id, 0, False, None, None, None, keeper,
                                          info(image_id, tmp_path / name)))
        assert (got.verified, got.reason) == wanted, (name, got)


def colour_blocks(seed: int = 0) -> Image.Image:
    """An 8x8 grid of flat blocks in random colours: turned by a few degrees, its colours move to other cells."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(image)
    for row in range(8):
        for column in range(8):
            draw.rectangle([column * 32, row * 32, column * 32 + 31, row * 32 + 31],
                           fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def test_a_copy_turned_a_little_has_its_colours_misplaced_not_apart(monkeypatch):
    original = colour_blocks()
    turned = original.rotate(6, resample=Image.Resampling.BICUBIC, fillcolor="white")
    a, b = verify.Features.of(original).signature, verify.Features.of(turned).signature
    assert not verify.tones_apart(a, b)
    # its cells in place are as far off one line as two colourings' (what the sorted cells' fit is for)
    monkeypatch.setattr(verify, "SIGNATURE_MAX_SORTED_TONE_RESIDUAL", -1.0)
    assert verify.tones_apart(a, b)
    # and two colourings of one folder are apart either way
    monkeypatch.undo()
    purple, violet = (verify.Features.of(glyph_folder("plus", c)).signature for c in (PURPLE, BLUE_VIOLET))
    assert verify.tones_apart(purple, violet) and verify.tones_apart(violet, purple)


def test_match_and_verify_through_the_cli_say_how_many_colourings_they_refused(db_dsn, tmp_path):
    from click.testing import CliRunner

    from dbdedup.cli.main import cli

    save(glyph_folder("plus", PURPLE), tmp_path / "purple.png")
    save(glyph_folder("plus", BLUE_VIOLET), tmp_path / "violet.png")
    save(resized(glyph_folder("plus", PURPLE), 0.5), tmp_path / "purple_half.png")
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db_dsn, "load", str(tmp_path)], catch_exceptions=False).exit_code == 0
    result = runner.invoke(cli, ["--db", db_dsn, "match"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # the purple folder and its half-size copy, each with the blue-violet one
    assert ("2 pairs verified by colour signature refused: colours no one brightness or contrast edit explains"
            in result.stderr), result.stderr
    # what a SQL-only refresh() leaves: `dbdedup verify` refuses them the same way, and says so
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        left = conn.execute("UPDATE dbdedup.pairs SET verified = true, verify_reason = 'signature', structure = NULL "
                            "WHERE verify_reason = 'colour' AND structure IS NOT NULL").rowcount
    assert left == 2
    verified = runner.invoke(cli, ["--db", db_dsn, "verify"], catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
    assert ("2 pairs verified by colour signature were refused: colours no one brightness or contrast edit "
            "explains") in verified.stderr, verified.stderr


def spinning_top(mirrored: bool = False, size: int = 192) -> Image.Image:
    """A spinning top drawn tilted on a pale gradient, its faces shaded, an F on its front face; ``mirrored``:
    the top drawn again facing the other way with its letter still readable (tuxpaint's dreidel and its mirror
    stamp: a mirror of the drawing, not of the letter). (The gradient leaves no uniform border to trim.)"""
    s = size / 64
    rows = np.linspace(0, 1, size)[:, None, None]
    sky = (1 - rows) * np.array([250, 246, 225]) + rows * np.array([205, 220, 245])
    image = Image.fromarray(np.repeat(sky, size, axis=1).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)

    def placed(points):
        return [((64 - x) * s if mirrored else x * s, y * s) for x, y in points]

    draw.polygon(placed([(6, 26), (30, 8), (58, 20), (44, 60), (10, 54)]), fill=(0, 150, 150), outline="black",
                 width=int(s))
    draw.polygon(placed([(9, 29), (30, 13), (36, 50), (13, 52)]), fill=(0, 230, 230), outline="black", width=int(s))
    draw.polygon(placed([(44, 2), (49, 5), (40, 17), (35, 14)]), fill=(0, 120, 120), outline="black", width=int(s))
    draw.text(((41 if mirrored else 23) * s, 33 * s), "F", fill="black", font=ImageFont.load_default(size=int(14 * s)),
              anchor="mm")
    return image


TOP_COPIES = {
    "top_flipped.png": ImageOps.mirror,
    "top_flipped_q30.jpg": lambda im: reencoded(ImageOps.mirror(im), 30),
    "top_turned.png": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "top_large.png": lambda im: resized(im, 2),
}


def test_a_mirror_drawn_again_with_its_letter_readable_is_not_a_flipped_copy(conn, tmp_path):
    """The top and the same top drawn facing the other way, its F still readable: compared under a flip, their
    colour signatures and structure percentiles agree as a flipped copy's do. Their least alike region (the
    letter, where both are drawn) does not, in the stored thumbnails and in the files' pixels: refused
    (structure), while the top's flipped, turned and re-encoded copies stay in its cluster."""
    top, redrawn = spinning_top(), spinning_top(mirrored=True)
    save(top, tmp_path / "top.png")
    save(redrawn, tmp_path / "top_redrawn.png")
    for name, edit in TOP_COPIES.items():
        save(edit(top), tmp_path / name)
    # what the signatures and the structure percentiles see of the two under a flip: the same picture
    features = [verify.Features(verify.quality(im), verify.colour_signature(im)) for im in (top, redrawn)]
    assert verify.signature_verdict(*features, "flip_h", closest=0).verified
    flipped = verify.structure_pixels(verify.structure_thumbnail(top), "flip_h", verify.FINE_STRUCTURE_SIDE)
    other = verify.structure_pixels(verify.structure_thumbnail(redrawn), side=verify.FINE_STRUCTURE_SIDE)
    assert verify.structure_agreement(flipped, other, verify.FINE_STRUCTURE_PERCENTILE) \
        >= verify.MIN_SIGNATURE_FINE_STRUCTURE
    assert verify.structure_agreement(verify.structure_pixels(verify.structure_thumbnail(top), "flip_h"),
                                      verify.structure_pixels(verify.structure_thumbnail(redrawn))) \
        >= verify.MIN_SIGNATURE_STRUCTURE

    ids = load(conn, tmp_path)
    check_every_pair(conn)
    a, b = sorted((ids["top.png"], ids["top_redrawn.png"]))
    transform, verified, reason, region = conn.execute(
        "SELECT transform, verified, verify_reason, region FROM dbdedup.pairs "
        "WHERE hash_kind = 'phash' AND image_a = %s AND image_b = %s", (a, b)).fetchone()
    assert transform == "flip_h"  # found through the orientation variant, and compared under it
    assert verified is False and reason == "structure", (verified, reason)
    assert region < verify.MIN_ORIENTED_REGION
    for name in TOP_COPIES:
        found = pair(conn, ids, "top.png", name)
        assert found["verified"] is True, (name, found)
    assert groups(conn) == {frozenset({"top.png", *TOP_COPIES})}
    # the measure as written: the lowest mean of 2x2 neighbouring windows, a window counting where both are drawn
    thumbs = [thumbnail(conn, ids[name], verify.FINE_STRUCTURE_SIDE) for name in ("top.png", "top_redrawn.png")]
    assert region == pytest.approx(windowed_region(verify.orient_pixels(thumbs[0], transform), thumbs[1]), abs=1e-5)


def windowed_region(a: np.ndarray, b: np.ndarray) -> float:
    """The region measure written out window by window: 8x8 windows every 4 pixels, each scored by SSIM's
    structure term where both windows spread more than 16 luma levels (else 1), the lowest mean of 2x2."""
    n = (a.shape[0] - 8) // 4 + 1
    scores = np.ones((n, n))
    for i in range(n):
        for j in range(n):
            wa, wb = a[4 * i:4 * i + 8, 4 * j:4 * j + 8].ravel(), b[4 * i:4 * i + 8, 4 * j:4 * j + 8].ravel()
            if min(wa.std(), wb.std()) > 16.0:
                scores[i, j] = (((wa - wa.mean()) * (wb - wb.mean())).mean() + 10.0) / (wa.std() * wb.std() + 10.0)
    return float(min(scores[i:i + 2, j:j + 2].mean() for i in range(n - 1) for j in range(n - 1)))


def test_the_check_by_pixels_asks_a_keypoint_alignment_under_a_mirror_for_its_least_alike_region(conn, tmp_path):
    """The signed scene, the same scene mirrored with its sign painted again readable, and the scene's flipped copy,
    both turned by 5 degrees. As candidates through the flip variant 8 bits off (stored here as matching stores such
    a pair; this scene's variant is 12 bits off, a turned drawing's on white 2), which the signatures do not settle,
    the check by pixels aligns each by keypoints under the mirror: the redrawn one is refused for the sign's region,
    the copy verified."""
    from test_verify import signed_scene

    picture = signed_scene()
    save(picture, tmp_path / "scene.png")
    save(signed_scene(mirrored=True).rotate(5, resample=Image.Resampling.BICUBIC, fillcolor="white"),
         tmp_path / "scene_redrawn.png")
    save(ImageOps.mirror(picture).rotate(5, resample=Image.Resampling.BICUBIC, fillcolor="white"),
         tmp_path / "scene_flipped.png")
    ids = load(conn, tmp_path)
    for other in ("scene_redrawn.png", "scene_flipped.png"):
        add_pending_pair(conn, ids, "scene.png", other, distance=30, transform="flip_h", transform_distance=8)
    verify_pending_pairs(conn, workers=1)
    found = pair(conn, ids, "scene.png", "scene_redrawn.png")
    assert found["verified"] is False and found["reason"] == "structure", found
    copy = pair(conn, ids, "scene.png", "scene_flipped.png")
    assert copy["verified"] is True and copy["reason"] == "geometry", copy


def test_a_signature_verdict_of_the_check_by_pixels_is_measured_again_unless_its_region_was(conn, tmp_path):
    """A pair pending with a structure measured before (a pair found again keeps it) that the check by pixels
    verifies by its signatures gets the structure check again; only a pair pending for its region, whose region the
    check by pixels has just measured from the files, keeps its measures (else the structure check would send it
    back to pending for ever)."""
    from images import photo

    original = photo(5)
    save(original, tmp_path / "photo.png")
    save(reencoded(original, 75), tmp_path / "photo_q75.jpg")
    ids = load(conn, tmp_path)
    add_pending_pair(conn, ids, "photo.png", "photo_q75.jpg", distance=0, structure=0.75, region=float("nan"))
    verify_pending_pairs(conn, workers=1)
    found = pair(conn, ids, "photo.png", "photo_q75.jpg")
    assert found["verified"] is True and found["reason"] == "signature", found
    expected = verify.structure_agreement(thumbnail(conn, ids["photo.png"]), thumbnail(conn, ids["photo_q75.jpg"]))
    assert expected > 0.9 and found["structure"] == pytest.approx(expected, abs=1e-5), found


def test_a_mirror_drawn_again_in_a_frame_found_through_the_trimmed_flip_variant_is_refused(conn, tmp_path):
    """The spinning top, its mirror drawn again and its flipped copy, both put in a wide white frame: pairs found
    through the trimmed flip variant (stored here as matching stores them), which the SQL step leaves to the check by
    pixels. The signatures of the pictures trimmed agree for both; their least alike region refuses the redrawn one
    (`structure`) and keeps the copy."""
    top = spinning_top()
    save(top, tmp_path / "top.png")
    save(ImageOps.expand(spinning_top(mirrored=True), border=48, fill="white"), tmp_path / "redrawn_framed.png")
    save(ImageOps.expand(ImageOps.mirror(top), border=48, fill="white"), tmp_path / "flipped_framed.png")
    ids = load(conn, tmp_path)
    conn.execute("DELETE FROM dbdedup.pairs")
    for other in ("redrawn_framed.png", "flipped_framed.png"):
        add_pending_pair(conn, ids, "top.png", other, distance=30, transform="trim+flip_h", transform_distance=0)
    assert conn.execute("SELECT count(*) FROM dbdedup.verify_pairs() WHERE pending = 2").fetchone()[0] == 1
    conn.commit()
    verify_pending_pairs(conn, workers=1)
    found = pair(conn, ids, "top.png", "redrawn_framed.png")
    assert found["verified"] is False and found["reason"] == "structure", found
    copy = pair(conn, ids, "top.png", "flipped_framed.png")
    assert copy["verified"] is True, copy


def measured_pairs(conn) -> dict:
    """Each pair's measures and verdict: {(hash_kind, image_a, image_b): (structure, region, tone_fit,
    overlay_cells, verified, verify_reason)}."""
    return {tuple(row[:3]): tuple(row[3:]) for row in conn.execute(
        "SELECT hash_kind, image_a, image_b, structure, region, tone_fit, overlay_cells, verified, verify_reason "
        "FROM dbdedup.pairs ORDER BY 1, 2, 3")}


def test_a_check_of_many_batches_measures_them_in_worker_processes_as_this_process_would(conn, tmp_path,
                                                                                         monkeypatch):
    """Every two images of the folder set paired twice: verified by their signatures (the structure and the colours'
    tone measured) and refused for colour (the tone-edit and overlay looks measured). In batches of 4 pairs the
    check runs in two worker processes and gives every measure and verdict it gives in this process alone; when the
    workers die on their batches, this process measures those and nothing is lost."""
    from dbdedup import structure_check

    make_set(tmp_path)
    for name, colour in (("violet.png", BLUE_VIOLET), ("purple.png", PURPLE)):
        save(glyph_folder("plus", colour), tmp_path / name)
    ids = load(conn, tmp_path)
    conn.execute("DELETE FROM dbdedup.pairs")
    for kind, verified, reason in (("phash", True, "signature"), ("dhash", False, "colour")):
        conn.execute("INSERT INTO dbdedup.pairs (hash_kind, image_a, image_b, distance, is_exact, verified, "
                     "verify_reason) SELECT %s, a.id, b.id, 0, false, %s, %s "
                     "FROM dbdedup.images a JOIN dbdedup.images b ON a.id < b.id", (kind, verified, reason))
    conn.commit()
    pairs = len(ids) * (len(ids) - 1)
    assert pairs > 100
    monkeypatch.setattr(structure_check, "BATCH_PAIRS", 4)
    measured_in = tmp_path / "measured_in"
    started = structure_check._init_worker

    def noting_worker(*args):
        # (in the worker: each batch it measures noted with its pid)
        started(*args)
        measured = structure_check._measured

        def noted(task):
            with open(measured_in, "a") as out:
                out.write(f"{os.getpid()}\n")
            return measured(task)

        structure_check._measured = noted

    monkeypatch.setattr(structure_check, "_init_worker", noting_worker)

    def checked(workers: int) -> tuple[dict, set[int]]:
        measured_in.unlink(missing_ok=True)
        with conn.transaction() as outer:
            check = structure_check.check_structure(conn, workers=workers)
            found = measured_pairs(conn)
            raise psycopg.Rollback(outer)
        assert check.measured + check.unmeasured == pairs // 2 and check.tone_measured == pairs // 2, check
        return found, set(map(int, measured_in.read_text().split())) if measured_in.exists() else set()

    alone, workers = checked(1)
    assert workers == set()
    assert sum(1 for *_, reason in alone.values() if reason is None) > 0  # (some sent back to the check by pixels)
    shared, workers = checked(2)
    assert len(workers) >= 2
    assert repr(shared) == repr(alone)  # (NaN: the same where not measurable)

    def dying_worker(*args):
        os._exit(1)  # as the OOM killer would end it

    monkeypatch.setattr(structure_check, "_init_worker", dying_worker)
    rescued, workers = checked(2)
    assert workers == set()
    assert repr(rescued) == repr(alone)

    # `dbdedup verify --workers 1`: its structure checks start no process either, whatever the cores
    from dbdedup import worker_pool

    monkeypatch.setattr(structure_check, "_init_worker", noting_worker)
    monkeypatch.setattr(worker_pool, "default_workers", lambda: 2)
    measured_in.unlink(missing_ok=True)
    summary = verify_pending_pairs(conn, workers=1)
    assert summary.structure_failed + summary.tones_apart > 0 and not measured_in.exists()


def scene_with_another_thing(scene: Image.Image, other: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """``scene`` with what ``other`` holds in ``box`` instead of its own: the same photo, another thing in one place."""
    out = scene.copy()
    out.paste(other.crop(box), box)
    return out


def test_another_thing_in_one_place_is_refused_by_the_pixels_and_edited_copies_are_not(conn, tmp_path):
    """Two photos of one scene, another thing in one corner of the second (52x52 pixels of 320x240): their colour
    signatures agree and so does their structure (the 8x8 windows average it away), and they were clustered. Their
    luma thumbnails stray from one tone edit (pairs.detail_gap above the gate), so the check by pixels compares them
    at 64 pixels: apart in that corner, by no tone edit, overlay or painted mark, aligned in place by their
    keypoints: refused (detail). The scene's copies, brightened (clipping), re-encoded at quality 30 and marked with
    a solid white name, stay verified by their signatures and in its cluster."""
    from images import textured_photo

    scene = textured_photo(11, (320, 240))
    save(scene, tmp_path / "scene.png")
    save(scene_with_another_thing(scene, textured_photo(12, (320, 240)), (200, 40, 252, 92)),
         tmp_path / "scene_other.png")
    save(ImageEnhance.Brightness(scene).enhance(1.3), tmp_path / "scene_bright.png")
    save(reencoded(scene, 30), tmp_path / "scene_q30.jpg")
    marked = scene.copy()
    ImageDraw.Draw(marked).text((20, 200), "(c) 2026", fill=(255, 255, 255), font=ImageFont.load_default(size=18))
    save(marked, tmp_path / "scene_marked.png")
    ids = load(conn, tmp_path)
    check_every_pair(conn)

    other = pair(conn, ids, "scene.png", "scene_other.png")
    assert other["transform"] is None and other["verified"] is False and other["reason"] == "detail", other
    assert other["structure"] >= verify.MIN_SIGNATURE_STRUCTURE  # (the structure alone did not see it)
    gap = conn.execute("SELECT detail_gap FROM dbdedup.pairs WHERE image_a = %s AND image_b = %s",
                       sorted((ids["scene.png"], ids["scene_other.png"]))).fetchone()[0]
    assert gap > verify.DETAIL_GATE
    for name in ("scene_bright.png", "scene_q30.jpg", "scene_marked.png"):
        found = pair(conn, ids, "scene.png", name)
        assert found["verified"] is True, (name, found)
    assert groups(conn) == {frozenset({"scene.png", "scene_bright.png", "scene_q30.jpg", "scene_marked.png"})}


def test_the_detail_gap_is_the_rms_off_the_best_tone_line_either_way():
    """``verify.detail_gaps_many`` in closed form against a least-squares fit of each pair both ways; a thumbnail
    under one brightness and contrast edit strays by nothing, one with a mark by more."""
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(4, 64 * 64)).astype(np.float64)
    b = np.stack([a[0] * 0.8 + 20, a[1][::-1], rng.integers(0, 256, size=64 * 64), a[3]]).astype(np.float64)
    b[3, :200] = 255.0
    expected = []
    for x, y in zip(a, b):
        rms = []
        for one, other in ((x, y), (y, x)):
            design = np.stack([one, np.ones_like(one)], axis=1)
            fit, *_ = np.linalg.lstsq(design, other, rcond=None)
            rms.append(np.sqrt(((other - design @ fit) ** 2).mean()))
        expected.append(min(rms))
    gaps = verify.detail_gaps_many(a, b)
    assert list(gaps) == pytest.approx(expected, abs=1e-6)
    assert gaps[0] == pytest.approx(0.0, abs=1e-6) and gaps[3] > verify.DETAIL_GATE


def test_verify_pairs_leaves_a_pair_with_a_detail_gap_above_the_gate_to_the_check_by_pixels(conn, tmp_path):
    """A pending pair whose detail gap the structure check measured above verify_settings().detail_gate is routed to
    the check by pixels by the SQL step too (a refresh() between the structure check and the workers would otherwise
    verify it by its signatures again and clear its measures); one under the gate is verified by its signatures."""
    make_set(tmp_path)
    ids = load(conn, tmp_path)
    conn.execute("DELETE FROM dbdedup.pairs")
    conn.commit()
    add_pending_pair(conn, ids, "plus.png", "plus_q30.jpg", distance=0, structure=0.95, detail_gap=verify.DETAIL_GATE + 2)
    add_pending_pair(conn, ids, "plus.png", "plus_darker.png", distance=0, structure=0.95,
                     detail_gap=verify.DETAIL_GATE - 2)
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")
    conn.commit()
    assert pair(conn, ids, "plus.png", "plus_q30.jpg")["verified"] is None
    assert (pair(conn, ids, "plus.png", "plus_darker.png")["verified"],
            pair(conn, ids, "plus.png", "plus_darker.png")["reason"]) == (True, "signature")
    assert conn.execute("SELECT detail_gate FROM dbdedup.verify_settings()").fetchone()[0] == verify.DETAIL_GATE


def _reals_about(threshold: float) -> tuple[float, float]:
    """The last real (float4, as pairs stores a measure) below ``threshold`` and the first one not below it
    (compared as PostgreSQL compares a real with the double of verify_settings(): widened, exactly)."""
    at = np.float32(threshold)
    if float(at) < threshold:
        at = np.nextafter(at, np.float32(np.inf))
    return float(np.nextafter(at, np.float32(-np.inf))), float(at)


def test_the_rule_that_leaves_a_signature_verdict_to_the_pixels_is_one_in_sql_and_python(conn):
    """dbdedup.left_to_pixels (the rule of verify_pairs, the structure check and the workers' apply_results) on
    every combination of a structure, a region and a detail gap about their thresholds in verify_settings(): NULL
    and NaN (not measured, not measurable) never send a pair; the last real below a minimum (or the first above
    the gate) does, the first one not below it (the last one not above) does not. The workers' PendingPair rule
    (structure_failed, region_failed, detail_failed, read from the same rows) agrees on each; and so does the
    rule without its structure term (dbdedup.verify_workers keeps the structure of a pair pending for its region or
    detail gap). Inlined, its thresholds constants of the plan (not computed again for each row)."""
    from dbdedup.verify_workers import PendingPair

    min_structure, min_region, gate = conn.execute(
        "SELECT min_signature_structure, min_oriented_region, detail_gate FROM dbdedup.verify_settings()").fetchone()
    assert (min_structure, min_region, gate) == (verify.MIN_SIGNATURE_STRUCTURE, verify.MIN_ORIENTED_REGION,
                                                 verify.DETAIL_GATE)
    nan = float("nan")
    structure_below, structure_at = _reals_about(min_structure)
    region_below, region_at = _reals_about(min_region)
    gate_at, gate_above = _reals_about(gate)
    if gate_above == gate:  # (a gate a real holds: the real at it is the last one not above it)
        gate_at, gate_above = gate, float(np.nextafter(np.float32(gate), np.float32(np.inf)))
    # (value, whether it sends the pair) per measure
    structures = [(None, False), (nan, False), (structure_below, True), (structure_at, False), (0.0, True),
                  (1.0, False)]
    regions = [(None, False), (nan, False), (region_below, True), (region_at, False), (-1.0, True), (1.0, False)]
    gaps = [(None, False), (nan, False), (gate_at, False), (gate_above, True), (0.0, False), (float("inf"), True)]
    cases = list(itertools.product(structures, regions, gaps))
    rows = conn.execute(
        "SELECT c.n, c.structure, c.region, c.detail_gap, dbdedup.left_to_pixels(c.structure, c.region, c.detail_gap), "
        "       dbdedup.left_to_pixels(NULL, c.region, c.detail_gap) "
        "FROM unnest(%s::real[], %s::real[], %s::real[]) WITH ORDINALITY AS c(structure, region, detail_gap, n) "
        "ORDER BY c.n",
        ([s for (s, _), _, _ in cases], [r for _, (r, _), _ in cases], [g for _, _, (g, _) in cases])).fetchall()
    assert len(rows) == len(cases) == 216
    for ((_, s_sends), (_, r_sends), (_, g_sends)), (n, structure, region, gap, left, without) in zip(cases, rows):
        assert left is (s_sends or r_sends or g_sends), (n, structure, region, gap)
        assert without is (r_sends or g_sends), (n, structure, region, gap)
        pending = PendingPair("phash", 1, 2, 0, False, None, None, None, None, None, structure=structure, region=region,
                              detail_gap=gap)
        failed = (pending.structure_failed, pending.region_failed, pending.detail_failed)
        assert failed == (s_sends, r_sends, g_sends), (n, structure, region, gap)
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN (VERBOSE) SELECT dbdedup.left_to_pixels(p.structure, p.region, p.detail_gap) FROM dbdedup.pairs p"))
    assert "left_to_pixels" not in plan and "verify_setting" not in plan, plan
    with pytest.raises(psycopg.errors.UndefinedColumn):
        conn.execute("SELECT dbdedup.verify_setting('min_structure_gate')")
