"""A copy saved as a low-quality JPEG (dbdedup.verify.jpeg_encoding and reencoded_verdict, the geometric check's
'reencoded' verdict): at quality 10 a faint line drawing loses its keypoints to the artefacts and a drawing's
colours move by whole blocks, so the other checks refuse the copy against its keeper. The keeper, compressed
with the copy's own quantization tables at its size, comes out as the copy's pixels; a look-alike (another
ring, other strokes, another colour) does not. Real images made with Pillow, a real database."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dbdedup import clusters, verify
from dbdedup.clusters import ClusterSettings
from dbdedup.load import load_paths
from dbdedup.verify_workers import PairChecker, PendingPair, pixels_of_file
from images import photo, save, star_ring
from test_keypoints import _image_info
from test_verification import drawing


def faint_ring(points: int = 24, step: int = 11, *, width: int = 2, tone: float = 0.75) -> Image.Image:
    """Line art as the accuracy set's star rings are drawn: thin light-grey strokes on white, 100 px."""
    ring = star_ring(points, step, width=width)
    return Image.blend(ring, Image.new("RGB", ring.size, "white"), tone)


def jpeg(image: Image.Image, quality: int, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, **options)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def enlarged(image: Image.Image) -> Image.Image:
    """The keeper: the largest copy, the picture enlarged 2x."""
    return image.resize((image.width * 2, image.height * 2), Image.Resampling.BICUBIC)


def reencoded(other: Image.Image, copy: bytes) -> verify.Verdict | None:
    """``verify.reencoded_verdict`` of a picture against a JPEG's bytes, both read as the workers read them."""
    encoding = verify.jpeg_encoding(copy)
    side = max(encoding.size)
    return verify.reencoded_verdict(pixels_of_file(png(other), side), pixels_of_file(copy, side), encoding)


def test_the_quality_a_jpeg_was_saved_at_is_read_from_its_tables():
    picture = photo(3)
    for quality in (10, 30, 50, 75, 95):
        encoding = verify.jpeg_encoding(jpeg(picture, quality))
        assert abs(encoding.quality - quality) <= 1.5, (quality, encoding.quality)
        assert encoding.mode == "RGB" and encoding.subsampling == 2 and encoding.size == picture.size
    assert verify.jpeg_encoding(jpeg(picture, 30, subsampling=0)).subsampling == 0
    grey = verify.jpeg_encoding(jpeg(picture.convert("L"), 20))
    assert grey.mode == "L" and abs(grey.quality - 20) <= 1.5
    assert verify.jpeg_encoding(png(picture)) is None
    assert verify.jpeg_encoding(b"not an image at all") is None
    # a JPEG its EXIF turns: its pixels as shown are off its block grid, so it is not compressed again
    exif = Image.Exif()
    exif[0x0112] = 6
    assert verify.jpeg_encoding(jpeg(picture, 10, exif=exif.tobytes())) is None


def test_a_faint_ring_at_quality_10_is_its_enlarged_keeper_compressed_alike_and_look_alikes_are_not():
    ring = faint_ring()
    copy = jpeg(ring, 10)
    got = reencoded(enlarged(ring), copy)
    assert got is not None and got.verified and got.reason == "reencoded" and got.score > 0.9, got
    # the compression is what makes them agree: the keeper's own pixels are far from the copy's
    plain = pixels_of_file(png(enlarged(ring)), 100).astype(np.float32) - pixels_of_file(copy, 100)
    assert np.sqrt((plain ** 2).mean()) > 1.5 * verify.REENCODE_MAX_RMS
    # the same at quality 30, and against the original itself (the same pixel grid)
    assert reencoded(enlarged(ring), jpeg(ring, 30)) is not None
    assert reencoded(ring, copy) is not None
    # look-alikes, each saved at quality 10 too: a ring of one more point, wider strokes, darker strokes
    for other in (faint_ring(25, 11), faint_ring(width=3), faint_ring(tone=0.6)):
        assert reencoded(enlarged(other), copy) is None
        assert reencoded(enlarged(ring), jpeg(other, 10)) is None
    # another framing (a different aspect) is not compared
    assert reencoded(enlarged(ring).crop((0, 0, 200, 180)), copy) is None


def soft_drawing(colour) -> Image.Image:
    """A folder-like icon on white, its edges anti-aliased as an icon's are."""
    return drawing(colour).filter(ImageFilter.GaussianBlur(1.0))


def test_a_greyscale_jpeg_is_compressed_again_in_grey_and_tables_libjpeg_refuses_leave_the_refusal():
    ring = faint_ring().convert("L")
    copy = jpeg(ring, 10)
    assert verify.jpeg_encoding(copy).mode == "L"
    got = reencoded(enlarged(ring.convert("RGB")), copy)
    assert got is not None and got.reason == "reencoded", got
    assert reencoded(enlarged(faint_ring(25, 11).convert("L").convert("RGB")), copy) is None
    # a table of 63 values (a damaged file's, say) cannot be written: no verdict, and no exception
    encoding = verify.jpeg_encoding(jpeg(faint_ring(), 10))
    damaged = replace(encoding, tables={0: [1] * 63, 1: encoding.tables[1]})
    side = max(encoding.size)
    assert verify.reencoded_verdict(pixels_of_file(png(enlarged(faint_ring())), side),
                                    pixels_of_file(jpeg(faint_ring(), 10), side), damaged) is None


def test_a_drawing_at_quality_10_is_its_keeper_compressed_alike_and_its_other_colours_are_not():
    blue = soft_drawing((40, 90, 200))
    copy = jpeg(blue, 10)
    assert reencoded(enlarged(blue), copy) is not None
    # teal, a little redder, a little greener, orange
    for colour in ((40, 160, 200), (60, 90, 200), (40, 110, 200), (200, 90, 40)):
        assert reencoded(enlarged(soft_drawing(colour)), copy) is None, colour
        assert reencoded(enlarged(blue), jpeg(soft_drawing(colour), 10)) is None, colour


def test_the_workers_verify_a_ring_at_quality_10_that_the_other_checks_refuse(tmp_path, monkeypatch):
    ring = faint_ring()
    save(enlarged(ring), tmp_path / "keeper.png")
    (tmp_path / "copy.jpg").write_bytes(jpeg(ring, 10))
    (tmp_path / "other.jpg").write_bytes(jpeg(faint_ring(25, 11), 10))
    (tmp_path / "copy_q75.jpg").write_bytes(jpeg(faint_ring(25, 11), 75))
    keeper = _image_info(1, tmp_path / "keeper.png")

    def verdict(name: str, image_id: int, checker: PairChecker) -> verify.Verdict:
        # a keeper pair, as a cluster proposes it: no hash aligned the two
        copy = _image_info(image_id, tmp_path / name)
        return checker.verdict(PendingPair("phash", 1, image_id, 20, False, "linked", 0, None, keeper, copy))

    got = verdict("copy.jpg", 2, PairChecker())
    assert got.verified and got.reason == "reencoded", got
    assert not verdict("other.jpg", 3, PairChecker()).verified
    # a JPEG of a look-alike at a high quality is not compressed again: its artefacts explain nothing
    checker = PairChecker()
    assert not verdict("copy_q75.jpg", 4, checker).verified and checker.encodings[4].quality > 70
    # without this check, the others refuse the copy
    monkeypatch.setattr(verify, "REENCODE_MAX_QUALITY", 0)
    refused = verdict("copy.jpg", 2, PairChecker())
    assert not refused.verified and refused.reason in ("no_geometry", "colour", "detail", "layout", "structure"), refused


@pytest.mark.parametrize("copy_side", [100, 160])
def test_a_ring_at_quality_10_joins_its_keepers_cluster_through_the_database(conn, tmp_path, copy_side):
    ring = faint_ring()
    if copy_side != 100:
        ring = ring.resize((copy_side, copy_side), Image.Resampling.LANCZOS)
    save(ring, tmp_path / "ring.png")
    save(enlarged(ring), tmp_path / "ring_2x.png")
    (tmp_path / "ring_q10.jpg").write_bytes(jpeg(ring, 10))
    other = faint_ring(25, 11).resize(ring.size, Image.Resampling.LANCZOS)
    save(other, tmp_path / "other.png")
    (tmp_path / "other_q10.jpg").write_bytes(jpeg(other, 10))
    load_paths(conn, [tmp_path], workers=1)  # (the default embedding: the rings' pHashes are 12-34 bits apart)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    members = {}
    for path, cluster_id in conn.execute("SELECT path, cluster_id FROM dbdedup.cluster_members").fetchall():
        members.setdefault(cluster_id, set()).add(path.rsplit("/", 1)[1])
    ring_cluster = next((m for m in members.values() if "ring_2x.png" in m), set())
    assert {"ring.png", "ring_2x.png", "ring_q10.jpg"} <= ring_cluster, members
    assert not ring_cluster & {"other.png", "other_q10.jpg"}, members
    # the copy is in by its pair with the keeper, which this check verified
    reasons = {row[0] for row in conn.execute(
        "SELECT p.verify_reason FROM dbdedup.pairs p JOIN dbdedup.images a ON a.id = p.image_a "
        "JOIN dbdedup.images b ON b.id = p.image_b WHERE p.verified "
        "AND ARRAY[a.path, b.path] @> ARRAY[%s, %s]", (str(tmp_path / "ring_2x.png"), str(tmp_path / "ring_q10.jpg")))}
    assert reasons == {"reencoded"}, reasons
