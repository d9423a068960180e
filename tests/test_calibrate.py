"""`dbdedup calibrate`: the valley search, and a suggestion between planted near-duplicates and unrelated images."""

from __future__ import annotations

import itertools
import json

import psycopg
from PIL import Image

from dbdedup.calibrate import suggest_threshold
from images import brighter, photo, reencoded, resized, save
from test_report_sample import load, make_collection, run_cli


def _hist(counts: dict[int, int]) -> list[int]:
    h = [0] * 65
    for d, n in counts.items():
        h[d] = n
    return h


def test_threshold_is_the_middle_of_an_empty_gap():
    s = suggest_threshold(_hist({0: 3, 2: 2, 4: 1, 6: 2, 18: 1, 20: 3, 22: 5, 24: 4, 26: 2}))
    # the middle of the gap is 12: too far, unrelated pictures join there on real collections
    assert s.clear_valley and (s.near_mode_end, s.unrelated_start, s.threshold) == (6, 18, 8)
    assert any("middle of that gap is 12" in r for r in s.reasoning)
    wide = suggest_threshold(_hist({0: 3, 2: 2, 4: 1, 6: 2, 18: 1, 20: 3, 22: 5, 24: 4, 26: 2}), precise_up_to=12)
    assert wide.threshold == 12
    assert s.near_images == 8 and s.unrelated_images == 15


def test_threshold_in_the_valley_when_modes_overlap():
    counts = {0: 40, 1: 30, 2: 25, 3: 15, 4: 8, 5: 3, 6: 1, 7: 1, 8: 3, 9: 10, 10: 40, 11: 90, 12: 120, 13: 90, 14: 40}
    s = suggest_threshold(_hist(counts))
    assert s.clear_valley and 5 <= s.threshold <= 7


def test_phash_parity_comb_is_not_read_as_gaps():
    """pHash distances are nearly always even. This is the shape measured on bench/accuracy's
    9,435 images: a falling near-duplicate mode, a floor from 4 to 8 bits, a rising unrelated mode."""
    measured = {0: 3824, 2: 533, 3: 4, 4: 205, 6: 219, 7: 1, 8: 229, 9: 1, 10: 389, 12: 874, 14: 1313,
                15: 5, 16: 1360, 18: 455, 20: 23}
    s = suggest_threshold(_hist(measured))
    assert s.clear_valley and 5 <= s.threshold <= 7
    assert "overlap" in s.reasoning[0] and not any("no image has" in r for r in s.reasoning)


def test_no_near_duplicate_mode_stays_below_the_unrelated_ones():
    s = suggest_threshold(_hist({15: 3, 17: 2, 20: 10, 22: 5}), default_threshold=10)
    assert not s.clear_valley and s.threshold == 10
    s = suggest_threshold(_hist({7: 1, 9: 4, 12: 10, 14: 6}), default_threshold=10)
    assert s.threshold == 6  # below the closest neighbours


def test_every_image_close_keeps_the_default():
    s = suggest_threshold(_hist({0: 30, 1: 20, 2: 5, 3: 1}), default_threshold=10)
    assert not s.clear_valley and s.threshold == 10


def _distance(a: int, b: int) -> int:
    return bin((a ^ b) & (2**64 - 1)).count("1")


def test_calibrate_suggests_a_threshold_between_planted_and_unrelated(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    # two harder edits, so the near-duplicate mode is not all zeros
    for seed, name in ((104, "o104_edit.jpg"), (105, "o105_edit.jpg")):
        edited = reencoded(brighter(resized(photo(seed), 0.4), 1.3), 25)
        save(edited, col.root / "copies" / name, quality=50)
        col.near[name] = (f"o{seed}", col.root / "copies" / name)
    load(db_dsn, col.root)
    with psycopg.connect(db_dsn) as conn:
        phash = dict(conn.execute("SELECT path, phash FROM dbdedup.images WHERE status = 'ok'").fetchall())
    planted = [_distance(phash[str(p)], phash[str(col.originals[o])]) for o, p in col.near.values()]
    unrelated = [_distance(phash[str(a)], phash[str(b)]) for a, b in itertools.combinations(col.originals.values(), 2)]
    assert max(planted) < min(unrelated)

    result = json.loads(run_cli(db_dsn, "calibrate", "--format", "json").stdout)
    assert max(planted) <= result["suggested_threshold"] < min(unrelated)
    assert result["near_mode_end"] == max(planted)
    nearest = {p: min(_distance(h, other) for q, other in phash.items() if q != p) for p, h in phash.items()}
    assert result["unrelated_start"] == min(d for d in nearest.values() if d > max(planted))
    assert {int(d): n for d, n in result["histogram"].items()} == {
        d: list(nearest.values()).count(d) for d in set(nearest.values())}
    assert result["clear_valley"] and result["reasoning"]

    # (into a folder not made yet, as `report -o` writes: both make it)
    text = run_cli(db_dsn, "calibrate", "--png", str(tmp_path / "charts" / "h.png")).stdout
    assert f"suggested threshold: {result['suggested_threshold']}" in text
    assert "near-duplicate mode ends at" in text
    with Image.open(tmp_path / "charts" / "h.png") as png:
        assert png.format == "PNG" and png.size == (900, 420)
        assert png.getextrema() != ((255, 255), (255, 255), (255, 255))  # something was drawn


def test_calibrate_samples_only_beyond_the_stored_pairs(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    full = json.loads(run_cli(db_dsn, "calibrate", "--format", "json").stdout)
    part = json.loads(run_cli(db_dsn, "calibrate", "--format", "json", "--sample", "4").stdout)
    # the 8 clustered images have exact distances from dbdedup.pairs; the 9 others are measured
    assert full["beyond_images"] == 9 and full["sampled_hashes"] == full["beyond_hashes"] == 9
    assert part["sampled_hashes"] == 4 and any("sample of 4" in r for r in part["reasoning"])
    exact = {d: n for d, n in full["histogram"].items() if int(d) <= full["exact_up_to"]}
    assert exact == {d: n for d, n in part["histogram"].items() if int(d) <= part["exact_up_to"]}
    assert sum(exact.values()) == 8
    assert abs(sum(part["histogram"].values()) - 17) <= 2  # scaled estimate of the 9


def test_calibrate_needs_images(db_dsn):
    result = run_cli(db_dsn, "calibrate", ok=False)
    assert result.exit_code == 1 and "at least two" in result.stderr


def test_png_draws_tiny_bars_beside_a_tall_peak(tmp_path):
    from dbdedup.calibrate import Calibration, histogram_png

    hist = _hist({0: 5000, 3: 1, 14: 2, 20: 900})
    c = Calibration(hash_kind="phash", histogram=hist, images=sum(hist), exact_up_to=8, beyond_images=902,
                    beyond_hashes=902, sampled_hashes=902, suggestion=suggest_threshold(hist))
    histogram_png(c, tmp_path / "h.png")
    with Image.open(tmp_path / "h.png") as png:
        rgb = png.convert("RGB")
        # the bar at distance 3 (one image) is drawn, in the near-duplicate colour, just above the axis
        bar_w = (900 - 60 - 20) / 23  # 23 bins: distances 0..22 (the largest present + 2)
        x = int(60 + 3.5 * bar_w)
        assert rgb.getpixel((x, 420 - 50 - 1)) == (46, 125, 50)
        assert rgb.getpixel((int(60 + 5.5 * bar_w), 420 - 50 - 1)) == (255, 255, 255)  # distance 5: empty


def test_calibrate_on_the_sample_stays_where_unrelated_images_do_not_join(db_dsn, tmp_path):
    """examples/ has an empty gap from 3 to 21 bits: its middle (12) is where the README measures unrelated
    pictures joining; the suggestion stays at the 99%-precise default and says why."""
    import shutil
    from pathlib import Path

    from dbdedup.matching import DEFAULT_THRESHOLD

    sample = shutil.copytree(Path(__file__).resolve().parent.parent / "examples", tmp_path / "examples")
    load(db_dsn, sample)
    data = json.loads(run_cli(db_dsn, "calibrate", "--format", "json").stdout)
    assert data["suggested_threshold"] == DEFAULT_THRESHOLD
    assert data["near_mode_end"] < DEFAULT_THRESHOLD < data["unrelated_start"]
    assert any("middle of that gap is 12" in r for r in data["reasoning"])
