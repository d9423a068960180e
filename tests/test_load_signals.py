"""The verification signals a load stores per image: hash quality, colour signature, or why none.

Real images made with Pillow, loaded by ``load_paths`` into a real database, read back from
dbdedup.images and compared with ``dbdedup.verify`` applied to the decoded file.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from dbdedup import fingerprint, verify
from dbdedup.decode import decode_image
from dbdedup.hashes import hashes_and_dct_block
from dbdedup.load import load_paths
from images import photo, save

FINE_CELLS = verify.FINE * verify.FINE
CHROMA_CELLS = verify.GRID * verify.GRID


def drawing(fill: tuple[int, int, int], size: tuple[int, int] = (160, 120)) -> Image.Image:
    """One drawing (a disc, a bar and a triangle on white) in the colour ``fill``."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 70, 70), fill=fill)
    draw.rectangle((90, 20, 150, 40), fill=fill)
    draw.polygon([(90, 110), (150, 110), (120, 60)], fill=fill)
    return image


def load(conn, root, **options) -> dict[str, tuple]:
    """Load ``root`` (no embeddings: not what is tested) and return file name -> stored row."""
    load_paths(conn, [root], workers=1, embedder=None, **options)
    rows = conn.execute("SELECT path, status, phash, quality, colour_signature, signature_error, change_seq "
                        "FROM dbdedup.images").fetchall()
    return {os.path.basename(row[0]): row[1:] for row in rows}


def stored_signature(value) -> np.ndarray:
    assert value is not None
    return np.asarray(value, dtype=np.float32)


def full_decode_signature(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The colour signature of a file decoded whole in colour, box-averaged to ``size`` first (the
    working size: the signature's own resize is not exact for an input of thousands of pixels)."""
    return verify.colour_signature(image.convert("RGB").resize(size, Image.Resampling.BOX))


def assert_same_colours(signature: np.ndarray, reference: np.ndarray) -> None:
    """Two signatures of one picture decoded two ways (a draft and a whole decode): equal but for
    rounding, and the same picture by every measure verification uses."""
    distance = verify.compare_signatures(signature, reference)
    assert np.abs(signature - reference).mean() < 1.0
    assert distance.light < 0.05 and distance.detail < 0.2 and distance.gain < 1.02
    assert distance.chroma is None or distance.chroma < 0.05
    assert (distance.chroma is None) == (verify.chroma(reference) < verify.MIN_CHROMA)


def parts(signature: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (signature[:FINE_CELLS], signature[FINE_CELLS:FINE_CELLS + CHROMA_CELLS],
            signature[FINE_CELLS + CHROMA_CELLS:])


@pytest.mark.parametrize("name, params", [("photo.png", {}), ("photo.jpg", {"quality": 90}),
                                          ("small.jpg", {"quality": 85}), ("big.jpg", {"quality": 88})])
def test_the_stored_signals_are_those_of_the_decoded_file(conn, tmp_path, name, params):
    size = {"small.jpg": (40, 30), "big.jpg": (1600, 1200)}.get(name, (256, 192))
    path = save(photo(7, size), tmp_path / name, **params)
    status, _, stored_quality, signature, error, _ = load(conn, tmp_path)[name]
    decoded = decode_image(path.read_bytes())
    assert status == "ok" and error is None
    assert stored_quality == verify.quality(decoded.image)
    assert np.array_equal(stored_signature(signature), verify.colour_signature(decoded.colour))
    # the colour is the file's: close to the signature of a full decode in colour
    full = full_decode_signature(Image.open(path), decoded.colour.size)
    assert_same_colours(stored_signature(signature), full)


def test_a_red_jpeg_keeps_its_chroma(conn, tmp_path):
    save(drawing((220, 20, 20)), tmp_path / "red.jpg", quality=90)
    save(drawing((220, 20, 20)).convert("L"), tmp_path / "grey.jpg", quality=90)
    rows = load(conn, tmp_path)
    _, a_red, b_red = parts(stored_signature(rows["red.jpg"][3]))
    _, a_grey, b_grey = parts(stored_signature(rows["grey.jpg"][3]))
    # red: a > 0 (towards red) and b > 0 (towards yellow) in the cells of the drawing
    assert a_red.max() > 40 and b_red.max() > 20
    assert verify.chroma(stored_signature(rows["red.jpg"][3])) > 15
    assert np.abs(a_grey).max() < 1.5 and np.abs(b_grey).max() < 1.5


@pytest.mark.parametrize("suffix, params", [("png", {}), ("jpg", {"quality": 92})])
def test_one_drawing_in_red_and_in_blue_differs_in_chroma_only(conn, tmp_path, suffix, params):
    save(drawing((210, 30, 30)), tmp_path / f"red.{suffix}", **params)
    save(drawing((30, 30, 210)), tmp_path / f"blue.{suffix}", **params)
    rows = load(conn, tmp_path)
    red, blue = stored_signature(rows[f"red.{suffix}"][3]), stored_signature(rows[f"blue.{suffix}"][3])
    distance = verify.compare_signatures(red, blue)
    assert distance.light < 0.05  # the same lightness layout, once levels are normalised
    assert distance.chroma is not None and distance.chroma > 1.0  # chroma pointing another way
    _, a_red, b_red = parts(red)
    _, a_blue, b_blue = parts(blue)
    assert a_red.max() > 30 and b_blue.min() < -30 and b_red.min() > -5


def test_quality_is_zero_for_a_flat_image_and_high_for_a_photo(conn, tmp_path):
    save(Image.new("RGB", (200, 150), (90, 140, 200)), tmp_path / "flat.png")
    save(Image.new("RGB", (200, 150), (90, 140, 200)), tmp_path / "flat.jpg", quality=90)
    for seed in range(3):
        save(photo(seed), tmp_path / f"photo{seed}.jpg", quality=90)
    rows = load(conn, tmp_path)
    assert rows["flat.png"][2] == 0 and rows["flat.jpg"][2] == 0
    assert rows["flat.png"][3] is not None  # flat, but it has a colour layout
    assert all(rows[f"photo{seed}.jpg"][2] >= 50 for seed in range(3)), rows


def test_a_tiny_image_gets_a_reason_and_the_load_goes_on(conn, tmp_path):
    save(Image.new("RGB", (1, 1), (255, 0, 0)), tmp_path / "one.png")
    save(Image.new("RGB", (2, 2), (0, 0, 255)), tmp_path / "two.jpg", quality=90)
    save(Image.new("RGB", (40, 3), (0, 255, 0)), tmp_path / "thin.png")
    save(photo(3), tmp_path / "photo.png")
    rows = load(conn, tmp_path)
    for name in ("one.png", "two.jpg", "thin.png"):
        status, phash, stored_quality, signature, error, _ = rows[name]
        assert status == "ok" and phash is not None and stored_quality is not None
        assert signature is None and error.startswith("too_small:"), (name, error)
    assert rows["photo.png"][3] is not None and rows["photo.png"][4] is None


def test_a_failing_measure_is_recorded_and_the_load_goes_on(conn, tmp_path, monkeypatch):
    save(photo(1, (90, 70)), tmp_path / "odd.png")
    save(photo(2), tmp_path / "fine.png")

    def fails_on_odd_sizes(image):
        if image.size == (90, 70):
            raise ValueError("cannot measure this one")
        return verify.colour_signature(image)

    def fails_with_odd_sizes(images):
        return np.stack([fails_on_odd_sizes(image) for image in images])

    # the load's worker processes are forked from this one, so they see the patched measure (a
    # chunk of files is measured together; when that fails, each file alone)
    monkeypatch.setattr(fingerprint, "colour_signatures", fails_with_odd_sizes)
    monkeypatch.setattr(fingerprint, "colour_signature", fails_on_odd_sizes)
    rows = load(conn, tmp_path)
    status, phash, _, signature, error, _ = rows["odd.png"]
    assert status == "ok" and phash is not None and signature is None
    assert error == "error: ValueError: cannot measure this one"
    assert rows["fine.png"][3] is not None and rows["fine.png"][4] is None


def test_a_failing_structure_thumbnail_is_recorded_and_the_file_is_not_fingerprinted_at_every_load(
        conn, tmp_path, monkeypatch):
    save(photo(1, (90, 70)), tmp_path / "odd.png")
    save(photo(2), tmp_path / "fine.png")

    def fails_on_odd_sizes(image):
        if image.size == (90, 70):
            raise ValueError("cannot reduce this one")
        return verify.structure_thumbnail(image)

    monkeypatch.setattr(fingerprint, "structure_thumbnail", fails_on_odd_sizes)  # seen by the forked workers
    rows = load(conn, tmp_path)
    status, phash, _, signature, error, change_seq = rows["odd.png"]
    # no thumbnail, no signature: the image matches only as an exact copy, and the reason is on record
    assert status == "ok" and phash is not None and signature is None
    assert error == "error: structure: ValueError: cannot reduce this one"
    assert rows["fine.png"][3] is not None and rows["fine.png"][4] is None
    assert conn.execute("SELECT count(*) FROM dbdedup.images WHERE structure IS NOT NULL").fetchone()[0] == 1
    # (a signature without its thumbnail would make every load fingerprint the file again)
    assert load(conn, tmp_path)["odd.png"][5] == change_seq


def test_a_reload_keeps_unchanged_signals_and_renews_changed_ones(conn, tmp_path):
    save(drawing((210, 30, 30)), tmp_path / "kept.png")
    changing = save(drawing((210, 30, 30)), tmp_path / "changing.png")
    first = load(conn, tmp_path)
    save(drawing((30, 30, 210)), changing)
    os.utime(changing, ns=(os.stat(changing).st_atime_ns, os.stat(changing).st_mtime_ns + 10**9))
    second = load(conn, tmp_path)
    assert second["kept.png"] == first["kept.png"]  # not rewritten: the same change_seq too
    _, _, b_before = parts(stored_signature(first["changing.png"][3]))
    _, _, b_after = parts(stored_signature(second["changing.png"][3]))
    assert b_before.min() > -5 and b_after.min() < -30  # red, then blue
    assert np.array_equal(stored_signature(second["changing.png"][3]),
                          verify.colour_signature(decode_image(changing.read_bytes()).colour))


def test_an_oriented_jpeg_has_the_signature_of_the_picture_as_shown(conn, tmp_path):
    shown = drawing((30, 150, 40), (160, 120))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    save(shown.transpose(Image.Transpose.ROTATE_90), tmp_path / "turned.jpg", quality=95, exif=exif.tobytes())
    row = load(conn, tmp_path)["turned.jpg"]
    upright = verify.colour_signature(ImageOps.exif_transpose(Image.open(tmp_path / "turned.jpg")).convert("RGB"))
    assert_same_colours(stored_signature(row[3]), upright)
    assert_same_colours(stored_signature(row[3]), verify.colour_signature(shown))


# ---------------------------------------------------------------- the colour decode keeps the hashes


def _jpegs():
    buffers = []
    for seed, (size, subsampling, progressive) in enumerate([
            ((128, 128), 2, False), ((301, 217), 2, True), ((640, 480), 1, False), ((97, 1203), 0, True),
            ((64, 64), 0, False), ((4000, 30), 2, False), ((1024, 768), 2, False)]):
        buffer = io.BytesIO()
        photo(seed, size).save(buffer, "JPEG", quality=80 + seed, subsampling=subsampling, progressive=progressive)
        buffers.append(buffer.getvalue())
    buffer = io.BytesIO()
    photo(9, (300, 200)).save(buffer, "JPEG", quality=90, keep_rgb=True)  # RGB data: libjpeg makes no YCbCr
    buffers.append(buffer.getvalue())
    buffer = io.BytesIO()
    photo(10, (300, 200)).convert("L").save(buffer, "JPEG", quality=90)
    buffers.append(buffer.getvalue())
    return buffers


@pytest.mark.parametrize("index", range(9))
def test_a_jpeg_decoded_in_colour_hashes_as_the_greyscale_draft(index):
    data = _jpegs()[index]
    coloured, grey = decode_image(data), decode_image(data, colour=False)
    assert grey.colour is None and coloured.colour is not None
    assert coloured.image.mode == grey.image.mode and coloured.image.size == grey.image.size
    assert coloured.image.tobytes() == grey.image.tobytes()
    assert hashes_and_dct_block(coloured.image)[0] == hashes_and_dct_block(grey.image)[0]
    expected_mode = "L" if index == 8 else "RGB"
    assert coloured.colour.mode == expected_mode
    full = full_decode_signature(Image.open(io.BytesIO(data)), coloured.colour.size)
    assert_same_colours(verify.colour_signature(coloured.colour), full)
