"""A watermarked copy (text blended over the picture in white or black, dbdedup.verify.overlay_verdict): its
region of text is refused by the detail, layout and structure measures as another glyph on one folder is, and
verified because the picture stays visible through it: every changed pixel moved part of the way towards one
colour, by one alpha in every channel. Opaque text, another emblem on one icon and other colours are not. Real
images made with Pillow, loaded by the real loader into a real database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from dbdedup import clusters, verify
from dbdedup.clusters import ClusterSettings
from dbdedup.load import load_paths
from dbdedup.verify_plan import reopen_unchecked
from dbdedup.verify_workers import verify_pending_pairs
from images import photo, save, star_ring, textured_photo
from test_tone_edit import cluster_with


def watermarked(image: Image.Image, fill=(255, 255, 255, 170), text: str = "(c) dbdedup 2026") -> Image.Image:
    """``text`` drawn over the bottom right of the picture in ``fill`` (alpha 170 of 255: see-through)."""
    out = image.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=max(10, out.width // 12))
    box = draw.textbbox((0, 0), text, font=font)
    draw.text((out.width - (box[2] - box[0]) - out.width // 30, out.height - (box[3] - box[1]) - out.height // 20),
              text, font=font, fill=fill)
    return Image.alpha_composite(out, layer).convert("RGB")


def stamped(image: Image.Image, fill=(255, 255, 255, 150), text: str = "SAMPLE", size: float = 1 / 6) -> Image.Image:
    """A stock picture's preview: ``text`` in large letters across the middle, see-through."""
    out = image.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=round(out.width * size))
    box = draw.textbbox((0, 0), text, font=font)
    draw.text(((out.width - (box[2] - box[0])) // 2 - box[0], (out.height - (box[3] - box[1])) // 2 - box[1]),
              text, font=font, fill=fill)
    return Image.alpha_composite(out, layer).convert("RGB")


def folder(emblem: str | None) -> Image.Image:
    """An icon: a blue folder with a see-through white emblem (a disc or a triangle), or none."""
    image = Image.new("RGBA", (256, 256), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((20, 50, 236, 220), radius=18, fill=(52, 120, 200, 255))
    draw.rectangle((20, 36, 110, 60), fill=(40, 100, 180, 255))
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    marks = ImageDraw.Draw(layer)
    if emblem == "disc":
        marks.ellipse((98, 100, 158, 160), fill=(255, 255, 255, 170))
    elif emblem == "triangle":
        marks.polygon([(128, 95), (165, 165), (91, 165)], fill=(255, 255, 255, 170))
    return Image.alpha_composite(image, layer).convert("RGB")


def swapped(image: Image.Image) -> Image.Image:
    """The same drawing in other colours: the channels swapped round."""
    return Image.fromarray(np.ascontiguousarray(np.asarray(image)[..., [2, 0, 1]]))


def pixels(image: Image.Image) -> np.ndarray:
    return verify.working_pixels(image)


def test_a_see_through_watermark_is_one_overlay_and_opaque_text_or_other_colours_are_not():
    for original in (textured_photo(3), photo(7, (512, 384))):
        for fill in ((255, 255, 255, 170), (0, 0, 0, 150)):
            copy = watermarked(original, fill)
            fit = verify.overlay_fit(pixels(original), pixels(copy))
            assert fit.agrees() and 0 < fit.share < 0.05 and fit.colour == (255 if fill[0] else 0), fit
            assert abs(fit.alpha - fill[3] / 255) < 0.03, fit
            assert verify.overlay_cells_agree(verify.colour_signature(original), verify.colour_signature(copy))
            for one, other in ((original, copy), (copy, original)):
                verdict = verify.overlay_verdict(pixels(one), pixels(other), "identity", 4)
                assert verdict is not None and verdict.verified and verdict.reason == "overlay", verdict
            # under a mirror, as the pHash's orientation variant aligns it (at the working size: a box filter
            # does not resample a mirrored picture into the mirror of the resampled one, pixel for pixel)
            small = original.resize((256, original.height * 256 // original.width), Image.Resampling.LANCZOS)
            mirrored = verify.overlay_verdict(pixels(small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
                                              pixels(watermarked(small, fill)), "flip_h", 4)
            assert mirrored is not None and mirrored.reason == "overlay", mirrored
        # opaque text covers the picture: nothing shows through it
        opaque = verify.overlay_fit(pixels(original), pixels(watermarked(original, (255, 255, 255, 255))))
        assert not opaque.agrees() and opaque.alpha > 0.95, opaque
        assert verify.overlay_verdict(pixels(original), pixels(watermarked(original, (255, 255, 255, 255))), "identity", 4) is None
        # the watermarked copy of the picture in other colours
        assert verify.overlay_verdict(pixels(original), pixels(swapped(watermarked(original))), "identity", 4) is None
        assert not verify.overlay_cells_agree(verify.colour_signature(original),
                                              verify.colour_signature(swapped(watermarked(original))))


def test_a_see_through_emblem_on_one_folder_is_not_a_watermark():
    plain, disc, triangle = folder(None), folder("disc"), folder("triangle")
    # an icon theme draws its emblems see-through, so a folder with one is the plain folder under one overlay,
    # pixel for pixel (the accuracy set's folder-grey-open and folder-grey-remote-open); but an emblem is a
    # solid shape, where a watermark's text is strokes: most of its pixels survive a 3x3 erosion of the mask
    alone = verify.overlay_fit(pixels(plain), pixels(disc))
    assert alone.consistent >= verify.OVERLAY_MIN_CONSISTENT and alone.away <= verify.OVERLAY_MAX_AWAY, alone
    assert alone.solid > verify.OVERLAY_MAX_SOLID and not alone.agrees(), alone
    assert verify.overlay_verdict(pixels(plain), pixels(disc), "identity", 4) is None
    text = verify.overlay_fit(pixels(plain), pixels(watermarked(plain, (0, 0, 0, 150))))
    assert text.agrees() and text.solid < 0.2, text
    # two folders with other emblems are apart by pixels moved both ways (the disc gone, the triangle drawn)
    between = [verify.overlay_fit(pixels(x), pixels(y)) for x, y in ((disc, triangle), (triangle, disc))]
    assert not any(fit.agrees() for fit in between) and all(fit.away > 0.2 for fit in between), between
    assert verify.overlay_verdict(pixels(disc), pixels(triangle), "identity", 4) is None
    # and a picture of another framing is not compared
    assert verify.overlay_verdict(pixels(plain), pixels(watermarked(plain, (0, 0, 0, 150)).crop((0, 0, 256, 200))),
                                  "identity", 4) is None


def test_pictures_apart_in_more_than_a_watermark_covers_are_not_fitted_an_overlay(monkeypatch):
    fitted = []
    real = verify.overlay_fit
    monkeypatch.setattr(verify, "overlay_fit", lambda x, y: fitted.append(1) or real(x, y))
    original = photo(7, (512, 384))
    # the same photo in other colours: nearly every pixel changed, far more than OVERLAY_MAX_SHARE
    other = swapped(original)
    assert verify.changed_pixels(pixels(original), pixels(other)).mean() > verify.OVERLAY_MAX_SHARE
    assert real(pixels(original), pixels(other)).share > verify.OVERLAY_MAX_SHARE  # (so no fit could agree)
    assert verify.overlay_verdict(pixels(original), pixels(other), "identity", 4) is None and not fitted
    # a watermarked copy is fitted (and verified) as before
    verdict = verify.overlay_verdict(pixels(original), pixels(watermarked(original)), "identity", 4)
    assert verdict is not None and verdict.verified and fitted


def load(conn, root: Path) -> dict[str, int]:
    load_paths(conn, [root], workers=1, embedder=None)
    return {p.rsplit("/", 1)[1]: i for i, p in conn.execute("SELECT id, path FROM dbdedup.images WHERE status = 'ok'")}


def test_a_watermarked_copy_joins_its_picture_through_the_workers_and_a_look_alike_does_not(conn, tmp_path):
    # a proof stamped across the middle (4% of the pixels): the signatures leave the pair to the geometric
    # check, and its keypoints do not align the two (no_geometry, without the overlay); the same stamp opaque
    # is a caption over the picture, another picture
    original = photo(7, (256, 192))
    save(original.resize((original.width * 2, original.height * 2), Image.Resampling.LANCZOS), tmp_path / "harbour.png")
    save(stamped(original, text="PROOF", size=0.2), tmp_path / "harbour_watermarked.png")
    save(stamped(original, (255, 255, 255, 255), text="PROOF", size=0.2), tmp_path / "harbour_captioned.png")
    save(swapped(stamped(original, text="PROOF", size=0.2)), tmp_path / "harbour_other_colours.png")
    ids = load(conn, tmp_path)
    conn.execute("SELECT * FROM dbdedup.match(8)")
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")
    conn.commit()
    clusters.ensure_clusters(conn, ClusterSettings())
    reopen_unchecked(conn)
    verify_pending_pairs(conn, workers=1)
    clusters.ensure_clusters(conn, ClusterSettings())
    verdicts = {frozenset((a, b)): (verified, reason) for a, b, verified, reason in conn.execute(
        "SELECT image_a, image_b, verified, verify_reason FROM dbdedup.pairs WHERE hash_kind = 'phash'")}
    by_id = {i: name for name, i in ids.items()}
    named = {frozenset(by_id[i] for i in key): value for key, value in verdicts.items()}
    assert named[frozenset({"harbour.png", "harbour_watermarked.png"})] == (True, "overlay"), named
    assert named.get(frozenset({"harbour.png", "harbour_captioned.png"}), (False, None))[0] is False, named
    groups = {frozenset(p.rsplit("/", 1)[1] for p in paths) for (paths,) in conn.execute(
        "SELECT array_agg(path) FROM dbdedup.cluster_members GROUP BY cluster_id").fetchall()}
    assert groups == {frozenset({"harbour.png", "harbour_watermarked.png"})}, groups
    why = conn.execute("SELECT verify_reason FROM dbdedup.cluster_assignments WHERE NOT is_keeper").fetchall()
    assert why == [("overlay",)]


def test_a_watermark_the_signatures_refuse_gets_its_overlay_check(conn, tmp_path):
    # white letters over a dark picture move its signature as far as another colour or another layout would:
    # the SQL step refuses such a copy for its colours before any file is read; its cells (a few, all lighter)
    # send it back to the workers, which find the overlay. A layout apart alone settles nothing (a copy turned a
    # little is as far): that copy waits for the workers, whose overlay check finds it too. The same letters
    # opaque are refused there.
    from dbdedup.structure_check import check_structure

    night = ImageEnhance.Brightness(photo(7, (256, 192))).enhance(0.2)
    save(night.resize((512, 384), Image.Resampling.LANCZOS), tmp_path / "night.png")
    save(stamped(night, text="PROOF", size=0.17), tmp_path / "night_proof.png")
    save(stamped(night, text="SAMPLE", size=0.15), tmp_path / "night_sample.png")
    save(stamped(night, (255, 255, 255, 255), text="PROOF", size=0.17), tmp_path / "night_captioned.png")
    ids = load(conn, tmp_path)
    conn.execute("SELECT * FROM dbdedup.match(12)")
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")

    def pair(name: str) -> tuple | None:
        a, b = sorted((ids["night.png"], ids[name]))
        return conn.execute("SELECT verified, verify_reason, overlay_cells FROM dbdedup.pairs "
                            "WHERE hash_kind = 'phash' AND image_a = %s AND image_b = %s", (a, b)).fetchone()

    assert pair("night_proof.png") == (False, "colour", None)
    assert pair("night_sample.png") == (None, None, None)
    # the overlay look reads the colour refusals whose cells the tone look found no edit for (tone_fit NaN): one
    # stands in here for a copy refused so, and goes back to the workers
    a, b = sorted((ids["night.png"], ids["night_sample.png"]))
    conn.execute("UPDATE dbdedup.pairs SET verified = false, verify_reason = 'colour', tone_fit = 'NaN' "
                 "WHERE image_a = %s AND image_b = %s", (a, b))
    check = check_structure(conn)
    assert check.overlay_candidates >= 1 and check.overlay_measured >= check.overlay_candidates, check
    assert pair("night_sample.png") == (None, None, True)
    # (the colour refusal is close to one tone edit too: that look sends it back first, and the workers try
    # the overlay after the tone edit)
    assert pair("night_proof.png")[:2] == (None, None)
    # and they stay pending for the workers when the SQL step runs again first (a refresh() by pg_cron)
    conn.execute("SELECT * FROM dbdedup.verify_pairs()")
    assert pair("night_sample.png") == (None, None, True)
    conn.commit()
    summary = verify_pending_pairs(conn, workers=1)
    assert summary.overlay_candidates == 0  # each pair's cells are compared once
    for copy in ("night_proof.png", "night_sample.png"):
        assert pair(copy)[:2] == (True, "overlay")
    captioned = pair("night_captioned.png")
    assert captioned is None or captioned[0] is False, captioned
    # a refusal by the workers is not looked at again: the next check compares nothing
    assert check_structure(conn).overlay_measured == 0


def test_a_watermarked_keeper_pair_the_keypoints_align_is_verified_under_the_overlay(conn, tmp_path):
    # the set's watermark over a small line drawing (a star ring of thin lines): its pHash moves far from the
    # original's (20), so only a keeper pair proposes the two; the keypoints align them and find the text a
    # region apart (structure). Another star ring under the same watermark is not the same picture.
    from test_verify_workers import add_pending, verdicts

    ring = star_ring(101, 50, width=1)
    save(ring.resize((200, 200), Image.Resampling.LANCZOS), tmp_path / "ring.png")
    save(watermarked(ring, (0, 0, 0, 150)), tmp_path / "ring_watermarked.png")
    save(watermarked(star_ring(101, 49, width=1), (0, 0, 0, 150)), tmp_path / "other_ring_watermarked.png")
    ids = load(conn, tmp_path)
    for copy in ("ring_watermarked.png", "other_ring_watermarked.png"):
        add_pending(conn, ids["ring.png"], ids[copy], similarity=None, transform="linked")
    verify_pending_pairs(conn, workers=1)
    got = verdicts(conn)
    assert got[frozenset((ids["ring.png"], ids["ring_watermarked.png"]))][::2] == (True, "overlay"), got
    assert got[frozenset((ids["ring.png"], ids["other_ring_watermarked.png"]))][0] is False, got


def test_a_watermarked_copy_joins_its_keeper_twice_its_size(conn, tmp_path):
    # the keeper is the largest copy, here the picture enlarged 2x: reduced to the working size from two scales,
    # their textures differ beyond the overlay's noise all over, and the overlay is found only at the watermarked
    # copy's own size (the workers try it there when the two differ in size); opaque text is still refused
    original = photo(0, (320, 240))
    save(original.resize((640, 480), Image.Resampling.LANCZOS), tmp_path / "keeper.png")
    save(stamped(original, text="PROOF", size=0.12), tmp_path / "watermarked.png")
    save(stamped(original, (255, 255, 255, 255), text="PROOF", size=0.12), tmp_path / "captioned.png")
    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    verdicts = {frozenset((a, b)): (verified, reason) for a, b, verified, reason in conn.execute(
        "SELECT image_a, image_b, verified, verify_reason FROM dbdedup.pairs WHERE hash_kind = 'phash'")}
    assert verdicts[frozenset((ids["keeper.png"], ids["watermarked.png"]))] == (True, "overlay"), verdicts
    assert verdicts.get(frozenset((ids["keeper.png"], ids["captioned.png"])), (False,))[0] is False, verdicts
    members = cluster_with(conn, "keeper.png")
    assert members == {"keeper.png", "watermarked.png"}, members


def test_the_overlay_is_tried_again_at_the_smaller_size_only_between_pictures_reduced_from_two_sizes():
    from dbdedup.verify_workers import ImageInfo, PendingPair, own_size_side

    def pair(size_a, size_b):
        def info(i, size):
            return ImageInfo(i, "ok", b"x", 1, 1, 50, None, None, *size)
        return PendingPair("phash", 1, 2, 4, False, None, None, None, info(1, size_a), info(2, size_b))

    assert own_size_side(pair((640, 480), (320, 240))) == 320
    assert own_size_side(pair((2048, 1536), (1024, 768))) == 512  # (at most OWN_SIZE_MAX_SIDE)
    assert own_size_side(pair((320, 240), (320, 240))) is None  # one size: the working pixels were one reduction
    assert own_size_side(pair((100, 100), (50, 50))) is None  # small pictures: their working pixels are enlarged
    assert own_size_side(pair((512, 384), (256, 192))) is None  # the working size itself, already compared


def _smiley(side: int) -> Image.Image:
    """Clip art of the size icons come in: a yellow face with dark outlines on white, soft-edged as a rendering is."""
    image = Image.new("RGB", (side, side), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    s = side / 160
    draw.ellipse((10 * s, 10 * s, 150 * s, 150 * s), fill=(250, 210, 40), outline=(60, 40, 0), width=max(1, round(4 * s)))
    for x in (50, 94):
        draw.ellipse((x * s, 50 * s, (x + 16) * s, 74 * s), fill=(60, 40, 0))
    draw.arc((42 * s, 60 * s, 118 * s, 124 * s), 20, 160, fill=(60, 40, 0), width=max(1, round(6 * s)))
    return image.filter(ImageFilter.GaussianBlur(0.7))


def test_a_watermarked_small_picture_is_compared_with_its_enlarged_keeper_at_its_own_size(tmp_path, monkeypatch):
    """A 160-px picture is enlarged to the working size and its 2x keeper reduced to it: the watermark's letters,
    resampled up, no longer fit one overlay. A pair its pHash aligned unturned is compared again at the smaller
    picture's own size from OVERLAY_MIN_OWN_SIDE up (verify_workers.small_own_size_side), where they do; under it
    (star rings fit one overlay over another there) it is not."""
    import dbdedup.verify_workers as workers
    from test_keypoints import _image_info as info

    original = _smiley(160)
    keeper = info(1, save(original.resize((320, 320), Image.Resampling.BICUBIC), tmp_path / "keeper.png"))
    copy = info(2, save(watermarked(original), tmp_path / "signed.png"))
    pair = workers.PendingPair("phash", 1, 2, 4, False, None, None, None, keeper, copy)
    fa, fb = (verify.Features.of(Image.open(tmp_path / name)) for name in ("keeper.png", "signed.png"))
    refused = verify.Verdict(False, 0.0, "no_geometry")
    # (what the test is about: at the working size the two do not fit one overlay)
    checker = workers.PairChecker()
    assert verify.overlay_verdict(checker._pixels(keeper), checker._pixels(copy), "identity", 4) is None
    assert workers.own_size_side(pair) is None and workers.small_own_size_side(pair) == 160
    verdict = checker._unless_overlay(pair, fa, fb, "identity", refused)
    assert (verdict.verified, verdict.reason) == (True, "overlay"), verdict
    # not for a pair found through a variant, nor with the floor above the picture
    flipped = workers.PendingPair("phash", 1, 2, 4, False, "flip_h", 4, None, keeper, copy)
    assert workers.PairChecker()._unless_overlay(flipped, fa, fb, "identity", refused) is refused
    monkeypatch.setattr(workers, "OVERLAY_MIN_OWN_SIDE", 161)
    assert workers.PairChecker()._unless_overlay(pair, fa, fb, "identity", refused) is refused
    # under the floor, two sizes of a small picture are not compared at the smaller one's size
    def sized(i, side):
        return workers.ImageInfo(i, "ok", b"x", 1, 1, 50, None, None, side, side)

    assert workers.small_own_size_side(workers.PendingPair("phash", 1, 2, 4, False, None, None, None, sized(1, 160),
                                                           sized(2, 80))) is None
    assert workers.small_own_size_side(workers.PendingPair("phash", 1, 2, 4, False, None, None, None, sized(1, 160),
                                                           sized(2, 160))) is None  # (one size: nothing to gain)


def test_a_keeper_pair_nothing_aligned_gets_the_overlay_at_the_smaller_size_only(tmp_path):
    # a keeper pair through a member (transform linked: its pHash far, say) between a watermarked copy and its
    # 2x enlargement, which the keypoints do not align: tried as an overlay at the copy's own size, where it is
    # one; the same pair between two pictures of one size is not tried (at the working size look-alikes fit one)
    from dbdedup.verify_workers import PairChecker, PendingPair, own_size_side
    from test_keypoints import _image_info as info

    original = photo(0, (320, 240))
    keeper = info(1, save(original.resize((640, 480), Image.Resampling.LANCZOS), tmp_path / "keeper.png"))
    copy = info(2, save(stamped(original, text="PROOF", size=0.12), tmp_path / "watermarked.png"))
    plain = info(3, save(original, tmp_path / "original.png"))
    checker = PairChecker()
    linked = checker.verdict(PendingPair("phash", 1, 2, 30, False, "linked", 0, None, keeper, copy))
    assert linked.verified and linked.reason == "overlay", linked
    # (a pair only the pHash found at that distance is not a keeper pair: not tried)
    assert not checker.verdict(PendingPair("phash", 1, 2, 30, False, None, None, None, keeper, copy)).verified
    assert own_size_side(PendingPair("phash", 2, 3, 30, False, "linked", 0, None, copy, plain)) is None


def test_a_pair_compared_again_at_its_own_size_reads_each_file_there_once(tmp_path, monkeypatch):
    # a tone fit that failed at the smaller picture's own size goes on to the overlay at the same side: the
    # pixels read for the first are the second's (each file decoded there once)
    import dbdedup.verify_workers as workers
    from test_keypoints import _image_info as info

    original = photo(0, (320, 240))
    keeper = info(1, save(original.resize((640, 480), Image.Resampling.LANCZOS), tmp_path / "keeper.png"))
    copy = info(2, save(stamped(original, text="PROOF", size=0.12), tmp_path / "watermarked.png"))
    reads = []
    real = workers.read_recorded_file
    monkeypatch.setattr(workers, "read_recorded_file", lambda path, *rest: reads.append(path) or real(path, *rest))
    checker = workers.PairChecker()
    first = [checker._pixels_at(image, 320) for image in (keeper, copy)]
    again = [checker._pixels_at(image, 320) for image in (keeper, copy)]
    assert len(reads) == 2 and all(a is b for a, b in zip(first, again)), reads
    assert first[0].shape[:2] == (240, 320)
    for i in range(3, 3 + workers.RESIZED_IMAGES):  # (a bounded cache: older ones are read again)
        checker._pixels_at(workers.ImageInfo(i, "ok", copy.path, copy.size_bytes, copy.mtime_ns, 50, None, None,
                                             320, 240), 320)
    checker._pixels_at(keeper, 320)
    assert len(reads) == 3 + workers.RESIZED_IMAGES, reads


def sprite(seed: int, side: int = 108, cell: int = 3) -> Image.Image:
    """Pixel art on white, as a game's sprite: a figure of blocks of a few colours, hard-edged."""
    rng = np.random.default_rng(seed)
    blocks = side // cell
    grid = np.full((blocks, blocks, 3), 255, np.uint8)
    palette = rng.integers(0, 256, size=(6, 3))
    rows, columns = np.mgrid[0:blocks, 0:blocks]
    figure = ((rows - blocks * 0.45) / (blocks * 0.3)) ** 2 + ((columns - blocks / 2) / (blocks * 0.2)) ** 2 < 1
    grid[figure] = palette[rng.integers(0, 6, size=int(figure.sum()))]
    return Image.fromarray(grid).resize((side, side), Image.Resampling.NEAREST)


def test_a_watermarked_sprite_gets_its_overlay_check_against_its_enlarged_keeper(conn, tmp_path):
    # a sprite enlarged 2x (the keeper) and the sprite under dark text: the enlargement moves a few of the sprite's
    # lightness cells lighter while the text moves its cells darker, so fewer than 95% of the changed cells move
    # one way; the overlay, read from the files, explains the text. Another sprite under the same text does not.
    from dbdedup.decode import decode_image
    from dbdedup.fingerprint import verification_signals

    picture = sprite(1)
    save(picture.resize((216, 216), Image.Resampling.BICUBIC), tmp_path / "sprite_2x.png")
    save(watermarked(picture, (0, 0, 0, 150)), tmp_path / "sprite_watermarked.png")
    save(watermarked(sprite(2), (0, 0, 0, 150)), tmp_path / "other_watermarked.png")
    signatures = [verification_signals(decode_image((tmp_path / name).read_bytes(), colour=True))[1]
                  for name in ("sprite_2x.png", "sprite_watermarked.png")]
    light = np.asarray(signatures, dtype=np.float64)[:, :verify.FINE * verify.FINE]
    changed = np.abs(light[1] - light[0]) > verify.OVERLAY_CELL_CHANGE
    one_way = ((light[1] - light[0])[changed] < 0).mean()
    assert 0.85 <= one_way < 0.95, one_way  # (the case this gate's share is for)
    assert verify.overlay_cells_agree(*signatures)

    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    members = cluster_with(conn, "sprite_2x.png")
    assert members == {"sprite_2x.png", "sprite_watermarked.png"}, members
    reason = conn.execute("SELECT verify_reason FROM dbdedup.pairs WHERE verified AND image_a = %s AND image_b = %s",
                          sorted((ids["sprite_2x.png"], ids["sprite_watermarked.png"]))).fetchone()
    assert reason == ("overlay",), reason


def test_the_overlay_fits_median_of_channels_is_numpys_nanmedian():
    """The overlay fit takes each changed pixel's median alpha over its channels with a shortcut for rows of 3:
    the same float32 values as np.nanmedian, ties, one or two NaN channels and all-NaN rows included."""
    import warnings

    rng = np.random.default_rng(7)
    for scale, missing in ((0.05, 0.0), (1.0, 0.3), (40.0, 0.7)):
        values = rng.normal(0, scale, (50_000, 3)).astype(np.float32)
        values[rng.random(values.shape) < missing] = np.nan
        values[:1000] = np.round(values[:1000], 1)  # ties
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # (all-NaN rows)
            expected = np.nanmedian(values, axis=1)
        found = verify._nanmedian_of_channels(values)
        assert found.dtype == expected.dtype and np.array_equal(found, expected, equal_nan=True)


WORDS = ("men may seem detestable as joint stock companies and nations knaves fools murderers there be faces but "
         "man in the ideal is so noble sparkling such grand glowing creature").split()


def text_page(seed: int, size: tuple[int, int] = (516, 333), rewritten: int | None = None) -> Image.Image:
    """A scanned page of text: ten lines of words in black on white, antialiased; with ``rewritten``, that line's
    last three words are others (the same page edited)."""
    rng = np.random.default_rng(seed)
    lines = [list(rng.choice(WORDS, 6)) for _ in range(10)]
    if rewritten is not None:
        lines[rewritten][3:] = np.random.default_rng(seed + 1000).choice(WORDS, 3)
    lines = [" ".join(words) for words in lines]
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=20)
    for i, line in enumerate(lines):
        draw.text((24, 22 + 29 * i), line, font=font, fill="black")
    return image


@pytest.mark.parametrize("seed", [1, 7])
def test_a_watermarked_page_of_text_is_checked_for_its_overlay_whatever_its_cells(conn, tmp_path, seed):
    # a page of text enlarged 2x (the keeper) against the page under grey text: lines of black letters on white
    # straddle the 16x16 lightness cells, and the two scales put them a few levels apart in a cell row, lighter
    # here and darker there, so the signatures' cells do not differ as one overlay's would. Aligned by their
    # pHash and by their keypoints, the two are refused for the region the watermark covers; the files' pixels,
    # compared already, say it is an overlay.
    from dbdedup.decode import decode_image
    from dbdedup.fingerprint import verification_signals

    page = text_page(seed)
    save(page.resize((page.width * 2, page.height * 2), Image.Resampling.BICUBIC), tmp_path / "page_2x.png")
    save(watermarked(page, (0, 0, 0, 150)), tmp_path / "page_watermarked.png")
    signatures = [verification_signals(decode_image((tmp_path / name).read_bytes(), colour=True))[1]
                  for name in ("page_2x.png", "page_watermarked.png")]
    assert not verify.overlay_cells_agree(*signatures)  # (the case: the cells' gate would not read the files)

    ids = load(conn, tmp_path)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    copy = conn.execute("SELECT verified, verify_reason, distance FROM dbdedup.pairs WHERE hash_kind = 'phash' "
                        "AND image_a = %s AND image_b = %s",
                        sorted((ids["page_2x.png"], ids["page_watermarked.png"]))).fetchone()
    assert copy[:2] == (True, "overlay") and copy[2] <= verify.ALIGNED_DISTANCE, copy
    assert cluster_with(conn, "page_2x.png") == {"page_2x.png", "page_watermarked.png"}


def test_a_page_with_words_rewritten_under_the_watermark_is_not_an_overlay_of_the_page(tmp_path):
    # the same check for a page whose fifth line ends in other words, under the same watermark: the new words are
    # opaque and the old ones gone, so no overlay explains them, and the aligned pair stays refused
    from dbdedup.verify_workers import PairChecker, PendingPair
    from test_keypoints import _image_info as info

    for seed in (1, 7):
        page = text_page(seed)
        keeper = info(1, save(page.resize((page.width * 2, page.height * 2), Image.Resampling.BICUBIC),
                              tmp_path / f"page{seed}_2x.png"))
        copy = info(2, save(watermarked(page, (0, 0, 0, 150)), tmp_path / f"page{seed}_watermarked.png"))
        edited = info(3, save(watermarked(text_page(seed, rewritten=4), (0, 0, 0, 150)),
                              tmp_path / f"page{seed}_edited_watermarked.png"))
        checker = PairChecker()
        assert checker.verdict(PendingPair("phash", 1, 2, 6, False, None, None, None, keeper, copy)).reason == "overlay"
        refused = checker.verdict(PendingPair("phash", 1, 3, 6, False, None, None, None, keeper, edited))
        assert not refused.verified and refused.reason in ("colour", "detail", "structure"), refused
