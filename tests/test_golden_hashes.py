"""Golden values: pinned hashes of images drawn with Pillow, as literals.

The other hashing tests compare dbdedup with imagehash, and both resize with Pillow: a Pillow
release that changed its resampling would move both sides and pass them. These values were
computed once (Pillow 13.0, numpy 2, scipy's DCT) and are written here, so any change in the
decode, the resize, the DCT or the bit order fails here. Stored hashes are compared across
loads, so such a change is a real break for users, not a detail: if it is intended, say so in
the changelog and re-pin.

Each fixture is first checked pixel for pixel (a SHA-256 of its bytes): if that check fails,
Pillow's drawing changed, not the hashes, and the fixture must be re-pinned as a whole.
"""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image, ImageDraw

from dbdedup import hashes, resample
from dbdedup.decode import decode_image
from dbdedup.fingerprint import Extras, file_records, hash_image_file
from dbdedup.hashes import compute_hashes, int64_to_hex
from dbdedup.variants import ORIENTATIONS, compute_variants


def drawing(name: str) -> Image.Image:
    """A fixture image drawn with ImageDraw only (lines, ellipses, rectangles, polygons; no resize, no text)."""
    if name == "shapes":
        image = Image.new("RGB", (256, 192))
        draw = ImageDraw.Draw(image)
        for x in range(256):  # a colour ramp, one line per column
            draw.line([(x, 0), (x, 191)], fill=(x, 255 - x, (3 * x) % 256))
        draw.ellipse((30, 20, 130, 120), fill=(250, 240, 30))
        draw.rectangle((150, 60, 230, 170), fill=(20, 40, 160))
        draw.polygon([(40, 180), (120, 130), (200, 185)], fill=(200, 30, 30))
        return image
    if name == "rings":  # greyscale, odd size
        image = Image.new("L", (97, 61), 40)
        draw = ImageDraw.Draw(image)
        for k in range(8):
            draw.ellipse((4 * k, 3 * k, 96 - 5 * k, 60 - 2 * k), outline=40 + 27 * k, width=2)
        return image
    if name == "bars":  # large enough to be box-reduced when loaded from a file
        image = Image.new("RGB", (800, 600), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        for k in range(12):
            draw.rectangle((k * 66, 0, k * 66 + 30, 600 - 40 * k), fill=(20 * k, 100, 255 - 20 * k))
        draw.line([(0, 0), (799, 599)], fill=(0, 0, 0), width=9)
        return image
    if name == "framed":  # "shapes" inside a 20-pixel black frame: its trimmed variant is shapes' pHash
        image = Image.new("RGB", (296, 232), (0, 0, 0))
        image.paste(drawing("shapes"), (20, 20))
        return image
    if name == "tiny":  # dHash's own size
        image = Image.new("L", (9, 8), 0)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, 4, 3), fill=255)
        draw.point([(8, 7), (6, 1)], fill=128)
        return image
    raise KeyError(name)


PIXELS = {
    "shapes": "309810908422c22dd4e4a24ecc5bb11e231027e7c44dc561f8b227d230754f7a",
    "rings": "b96ac3ea184d45938738d81470505223c955d55d62a15d4202f9fa089c39cc8f",
    "bars": "515e811300ef6c67dcbff049b13a1b8e083b24cccb595eb2b168f3c95d8ac1d4",
    "framed": "deb8a67f8e3c1162ba5f29e0f2c950da839b59d260eeaf2e5cc7baa786e5f48d",
    "tiny": "4c94a7eba7e0fb1110fb2d4f3d53f6ce1f65b8f993042313d09d0dc96f15cad4",
}

# name -> (phash, dhash, ahash), imagehash's hex strings
HASHES = {
    "shapes": ("cac6333b8c789d38", "49c0e3e3c3438303", "e8f8f8f0f0e0c0c0"),
    "rings": ("c33c0c7331cf639c", "71f0f0c8ccc8f071", "003c7c6c667c3c18"),
    "bars": ("807ac21ff48bf952", "dd6db3dfacb3e1d4", "01000107071f3f7f"),
    "framed": ("c0c63b392e683f96", "92c2e2e2e2828282", "007e7a7878706000"),
    "tiny": ("ccccaa13a9cd6933", "0004000000000001", "f8fcf8f800000001"),
}

# name -> the 7 orientations in variants.ORIENTATIONS order, then the trimmed pHash (None: no border)
VARIANTS = {
    "shapes": (("9d93666ec92dc861", "ca3933c48c879dc7", "ca3b35c09eb470cd", "9f6c6691d9d2c892", "9f916062ca1fa567", "cac435379f4af032", "9f6e609dcae0a598"),
               None),
    "rings": (("96695966649936d9", "c3c30ccc33337373", "85795aa7659a9265", "9696599964673636", "d0d30f0f3030cfcf", "85965a596565969e", "d02c0ff330cfc734"),
               "c33c0c3332cf73cc"),
    "bars": (("d52f974aa05eac07", "8085c2e0f0f4f9fd", "aa944aa456e775e1", "d5d097b5a5a1aca8", "ff3f1f0f03452043", "ae6b4a5b56187516", "ffc01ff003ba20bc"),
               None),
    "framed": (("95926e6c7a2d6ac2", "c0383bc42e973f69", "c13b3ec83eb46b84", "956c6e917bc26a2c", "94916b666b1e2e27", "c1c43e333e4b6b32", "946e6b986be12e98"),
               "cac6333b8c789d38"),
    "tiny": (("9999ff427c983c44", "cc33aaccab3269cc", "e4392aeeee2b30e0", "9966f7993c631c90", "b9936e44bb916c4a", "ecc62b11eec4311f", "b1646cbb9a6a64b4"),
               None),
}

# (name, format) -> (width, height, phash, dhash, ahash) of the saved file as dbdedup loads it
FILES = {
    ("bars", "PNG"): (800, 600, "807ac21ff48bf952", "dd6db3deacb3e1d4", "01000107071f3f7f"),
    ("bars", "JPEG"): (800, 600, "807ac21ff48bf952", "df6db3de8cb3e1d4", "01000107071f3f7f"),
    ("shapes", "JPEG"): (256, 192, "cac6333b8c789d38", "49c0e3e3c3438303", "e8f8f8f0f0e0c0c0"),
    ("framed", "PNG"): (296, 232, "c0c63b392e683f96", "92c2e2e2e2828282", "007e7a7878706000"),
}


def hex_hashes(value: hashes.Hashes) -> tuple[str, str, str]:
    return int64_to_hex(value.phash), int64_to_hex(value.dhash), int64_to_hex(value.ahash)


@pytest.mark.parametrize("name", sorted(PIXELS))
def test_the_fixture_is_drawn_as_when_the_values_were_pinned(name):
    assert hashlib.sha256(drawing(name).tobytes()).hexdigest() == PIXELS[name], (
        "Pillow draws this fixture differently now: re-pin it (its hashes say nothing until then)")


@pytest.mark.parametrize("name", sorted(HASHES))
def test_hashes_of_each_fixture_are_the_pinned_values(name):
    image = drawing(name)
    # the first sightings of a shape go through Pillow's resize, later ones through the matrices
    # (once checked against Pillow): all must give the pinned values
    for _ in range(3):
        assert hex_hashes(compute_hashes(image)) == HASHES[name]
    grey = image.convert("L")
    if grey.size != (9, 8):
        assert resample.checked_order(grey.height, grey.width, (32, 32)) is not None, "the matrices were not used"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_of_each_fixture_are_the_pinned_values(name):
    found = compute_variants(drawing(name))
    orientations, trimmed = VARIANTS[name]
    assert len(orientations) == len(ORIENTATIONS)
    assert tuple(int64_to_hex(v) for v in found.orientations) == orientations
    assert (None if found.trimmed is None else int64_to_hex(found.trimmed)) == trimmed


def test_a_framed_picture_trims_to_the_unframed_one():
    # the pins agree with each other: cutting the frame off gives the picture's own pHash and orientations
    framed = compute_variants(drawing("framed"))
    assert int64_to_hex(framed.trimmed) == HASHES["shapes"][0]
    assert tuple(int64_to_hex(v) for v in framed.trimmed_orientations) == VARIANTS["shapes"][0]


@pytest.mark.parametrize("key", sorted(FILES))
def test_files_load_to_the_pinned_values(tmp_path, key):
    # the whole path a load takes: the encoder (JPEG: libjpeg's, bundled with Pillow), the decode
    # (JPEG drafts, box reduction of large images), then the hashes
    name, fmt = key
    path = tmp_path / f"{name}.{fmt.lower()}"
    drawing(name).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    record = hash_image_file(path)
    assert (record.width, record.height, *hex_hashes(record)) == FILES[key]


def test_files_hashed_together_give_the_pinned_values(tmp_path):
    # a chunk of files of one shape is hashed as a stack once that shape is known
    paths = []
    for k in range(4):
        path = tmp_path / f"shapes{k}.jpg"
        drawing("shapes").save(path, "JPEG", quality=90)
        paths.append(bytes(path))
    extras = Extras(orientations=True)
    for _ in range(2):
        records = file_records(paths, extras=extras)
    working = decode_image(tmp_path / "shapes0.jpg").image
    assert working.mode == "L" and hashes.stackable(working.height, working.width), "the stacked path was not used"
    _, _, *expected = FILES[("shapes", "JPEG")]
    for record in records:
        assert list(hex_hashes(record)) == expected
        assert tuple(int64_to_hex(v) for v in record.phash_variants) == VARIANTS["shapes"][0]
