"""Images with no hash signal of their own (flat, one colour) match only as the same pixels: issue 11's bad-input
rule. dbdedup.match_same_size pairs such images of one size (or that size turned by a quarter), and the check by
pixels verifies a pair only when the two are the same pixels up to re-encoding (verify_reason 'pixels'). Another
colour, or the same colour at another size, stays out. Real images made with Pillow, loaded by the real loader
into a real database, clustered by the real `report`."""

from __future__ import annotations

import json

import numpy as np
import psycopg
from PIL import Image, ImageDraw

from dbdedup import verify
from dbdedup.load import load_paths
from images import save
from test_report_sample import run_cli

GREY = (119, 118, 123)
NAVY = (37, 31, 49)  # JPEG at quality 10 moves this one by 8 levels in blue


def flat(colour, size=(300, 200)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_same_pixels_verdict_takes_re_encoding_and_a_quarter_turn_and_refuses_other_pixels(tmp_path):
    def pixels(image: Image.Image, name: str, **options) -> np.ndarray:
        path = save(image, tmp_path / name, **options)
        return verify.working_pixels(Image.open(path))

    navy = pixels(flat(NAVY), "navy.png")
    reencoded = verify.same_pixels_verdict(navy, pixels(flat(NAVY), "navy_q10.jpg", quality=10))
    assert reencoded.verified and reencoded.reason == "pixels" and 0.97 < reencoded.score < 1, reencoded
    turned = pixels(flat(NAVY).transpose(Image.Transpose.ROTATE_90), "navy_turned.png")
    assert turned.shape != navy.shape
    assert verify.same_pixels_verdict(navy, turned).reason == "pixels"
    # another colour 12 levels away in every channel, a small mark on the same colour, a faint line across it
    assert verify.same_pixels_verdict(navy, pixels(flat((49, 43, 61)), "lighter.png")).reason == "low_quality"
    marked = flat(NAVY)
    marked.paste((255, 255, 255), (140, 90, 146, 96))
    assert verify.same_pixels_verdict(navy, pixels(marked, "marked.png")).reason == "low_quality"
    lined = flat(NAVY)
    ImageDraw.Draw(lined).line((10, 20, 290, 180), fill=(49, 43, 61), width=1)
    assert verify.same_pixels_verdict(navy, pixels(lined, "lined.png")).reason == "low_quality"


def test_flat_copies_cluster_as_the_same_pixels_and_other_colours_and_sizes_do_not(db_dsn, tmp_path):
    root = tmp_path / "images"
    save(flat(GREY), root / "grey.png")
    save(flat(GREY), root / "grey_q10.jpg", quality=10)
    save(flat(GREY).transpose(Image.Transpose.ROTATE_90), root / "grey_turned.png")
    save(flat(GREY).convert("L"), root / "grey_greyscale.png")
    save(flat(NAVY), root / "navy.png")
    save(flat(NAVY), root / "navy_q30.webp", quality=30)
    save(flat((90, 150, 60)), root / "green.png")  # another colour, same size
    save(flat(GREY, (150, 100)), root / "grey_small.png")  # the same colour at half the size: not the same pixels
    run_cli(db_dsn, "-q", "load", str(root))
    report = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)
    groups = {frozenset(m["path"].rsplit("/", 1)[1] for m in c["members"]) for c in report["clusters"]}
    assert groups == {frozenset({"grey.png", "grey_q10.jpg", "grey_turned.png", "grey_greyscale.png"}),
                      frozenset({"navy.png", "navy_q30.webp"})}, groups
    members = [m for c in report["clusters"] for m in c["members"] if not m["keeper"]]
    assert {m["verify_reason"] for m in members} == {"pixels"}, members
    # the terminal report and the pair listing say why, in words
    assert "same pixels, re-encoded" in run_cli(db_dsn, "report").stdout
    listed = run_cli(db_dsn, "pairs", "--format", "json").stdout
    assert '"matched_by": "same_size", "transform": null, "transform_distance": 0' in listed, listed[:2000]


def test_flat_images_pair_by_size_only(conn, tmp_path):
    for name, image in (("a.png", flat(GREY)), ("b.png", flat(GREY).transpose(Image.Transpose.ROTATE_90)),
                        ("c.png", flat(GREY, (150, 100))), ("d.png", flat(NAVY))):
        save(image, tmp_path / name)
    load_paths(conn, [tmp_path], workers=1, embedder=None)
    conn.execute("SELECT * FROM dbdedup.match(8)")
    conn.execute("SELECT dbdedup.match_same_size()")
    names = dict(conn.execute("SELECT id, regexp_replace(path, '.*/', '') FROM dbdedup.images").fetchall())
    pairs = {frozenset((names[a], names[b])): (transform, reason) for a, b, transform, reason in conn.execute(
        "SELECT image_a, image_b, transform, verify_reason FROM dbdedup.pairs")}
    assert conn.execute("SELECT dbdedup.match_same_size()").fetchone()[0] == 0  # already stored: nothing new
    # a.png, b.png and d.png are one size (b turned), c.png is smaller: it pairs with none
    assert set(pairs) == {frozenset({"a.png", "b.png"}), frozenset({"a.png", "d.png"}), frozenset({"b.png", "d.png"})}, pairs
    assert {transform for transform, _ in pairs.values()} == {"same_size"}


def test_many_blank_pages_of_one_size_pair_a_few_each_and_join_one_cluster(db_dsn, tmp_path):
    # a scanner's blank pages: the same pixels in different files (each names its page in a text chunk); each is
    # paired with its next 8 of that size in the order of colour, not with every other page, and all end in one
    # cluster, each verified with the keeper itself
    from PIL.PngImagePlugin import PngInfo

    root = tmp_path / "scans"
    for i in range(30):
        text = PngInfo()
        text.add_text("page", str(i))
        save(flat((250, 250, 248), (240, 320)), root / f"page{i:02d}.png", pnginfo=text)
    save(flat((250, 250, 248), (240, 320)), root / "page_q30.jpg", quality=30)
    run_cli(db_dsn, "-q", "load", str(root))
    report = json.loads(run_cli(db_dsn, "report", "--format", "json").stdout)
    with psycopg.connect(db_dsn) as conn:
        files = conn.execute("SELECT count(DISTINCT sha256) FROM dbdedup.images").fetchone()[0]
        paired = conn.execute("SELECT count(*) FROM dbdedup.pairs WHERE transform = 'same_size'").fetchone()[0]
    assert files == 31
    assert paired <= 8 * files, paired
    assert len(report["clusters"]) == 1 and len(report["clusters"][0]["members"]) == 31, report["clusters"]
    assert {m["verify_reason"] for m in report["clusters"][0]["members"] if not m["keeper"]} <= {"pixels", "exact"}
