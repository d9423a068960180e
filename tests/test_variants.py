"""Transform variants: orientation pHashes from one DCT, border-trimmed pHashes, on real decoded images."""

from __future__ import annotations

import io
from dataclasses import FrozenInstanceError

import imagehash
import numpy as np
import pytest
import scipy.fftpack
from PIL import Image, ImageOps

from dbdedup.decode import decode_image
from dbdedup.hashes import bits_to_int64, compute_hashes, hash_to_int64
from dbdedup.variants import ORIENTATIONS, PIL_TRANSPOSE, Variants, compute_variants, dct_block, trim_box
from images import photo

# Each orientation as numpy does it to a pixel array (rows = y), independently of the module's tables.
NUMPY_OPERATIONS = {
    "flip_h": lambda p: p[:, ::-1],
    "flip_v": lambda p: p[::-1, :],
    "rotate_90": lambda p: np.rot90(p, 1),
    "rotate_180": lambda p: p[::-1, ::-1],
    "rotate_270": lambda p: np.rot90(p, -1),
    "transpose": lambda p: p.T,
    "transverse": lambda p: np.rot90(p, 2).T,
}
INVERSE = {"rotate_90": "rotate_270", "rotate_270": "rotate_90"}

SIZES = [(256, 192), (128, 128), (97, 61), (640, 480), (33, 47), (1000, 300), (123, 321), (31, 29)]


def distance(a: int, b: int) -> int:
    return bin((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).count("1")


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def working(image: Image.Image, fmt: str = "JPEG", **params) -> Image.Image:
    """What the loader hashes: the image saved as a file and decoded by decode.decode_image."""
    return decode_image(encode(image, fmt, **params)).image


def reference_phash(pixels: np.ndarray) -> int:
    """imagehash's pHash steps, on a 32x32 pixel array as given."""
    dct = scipy.fftpack.dct
    low = dct(dct(np.ascontiguousarray(pixels), axis=0), axis=1)[:8, :8]
    return bits_to_int64(low > np.median(low))


def thumbnail(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS))


def test_orientation_names_and_numpy_operations_are_pils_transposes():
    assert ORIENTATIONS == ("flip_h", "flip_v", "rotate_90", "rotate_180", "rotate_270", "transpose", "transverse")
    assert set(PIL_TRANSPOSE) == set(ORIENTATIONS)
    assert PIL_TRANSPOSE["rotate_90"] is Image.Transpose.ROTATE_90
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for name in ORIENTATIONS:
        assert np.array_equal(np.asarray(Image.fromarray(array).transpose(PIL_TRANSPOSE[name])),
                              NUMPY_OPERATIONS[name](array)), name


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", SIZES)
def test_orientations_equal_the_phash_of_the_flipped_thumbnail_exactly(seed, size):
    image = photo(seed, size)
    pixels = thumbnail(image)
    assert reference_phash(pixels) == compute_hashes(image).phash  # the reference is pHash itself
    variants = compute_variants(image)
    expected = tuple(reference_phash(NUMPY_OPERATIONS[name](pixels)) for name in ORIENTATIONS)
    assert variants.orientations == expected
    assert len(set(expected)) == 7  # photo-like images are asymmetric: every orientation differs


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("size", SIZES)
def test_orientations_against_imagehash_on_the_transposed_image(size, mode):
    # Measured over 60 seeds x these sizes: flips are bit-identical to imagehash; transposing
    # orientations differ by 0 or 2 bits (2 in about 3% of cases), because Pillow rounds to 8 bits
    # between its horizontal and vertical resize passes, whose order follows the orientation.
    worst = {name: 0 for name in ORIENTATIONS}
    for seed in range(10):
        image = photo(seed, size).convert(mode)
        for name, value in zip(ORIENTATIONS, compute_variants(image).orientations):
            theirs = hash_to_int64(imagehash.phash(image.transpose(PIL_TRANSPOSE[name])))
            worst[name] = max(worst[name], distance(value, theirs))
    for name in ("flip_h", "flip_v", "rotate_180"):
        assert worst[name] == 0, (name, worst)
    for name in ("rotate_90", "rotate_270", "transpose", "transverse"):
        assert worst[name] <= 2, (name, worst)


@pytest.mark.parametrize("name", ORIENTATIONS)
def test_a_transformed_jpeg_copy_matches_its_orientation_variant(name):
    # seeds whose every orientation is more than 20 bits from the upright pHash (about 3 in 4
    # photo-like seeds are; a transpose keeps the DCT diagonal, so some images are nearly symmetric)
    for seed in (1, 2, 4, 8):
        original = photo(seed, (300, 220))
        copy = original.transpose(PIL_TRANSPOSE[name])
        original_work, copy_work = working(original, quality=90), working(copy, quality=90)
        original_hash, copy_hash = compute_hashes(original_work).phash, compute_hashes(copy_work).phash
        assert distance(original_hash, copy_hash) > 20, (seed, name)
        # the original's variant predicts the copy's stored pHash, and the copy's inverse variant the original's
        assert distance(compute_variants(original_work).orientations[ORIENTATIONS.index(name)], copy_hash) <= 4
        inverse = ORIENTATIONS.index(INVERSE.get(name, name))
        assert distance(compute_variants(copy_work).orientations[inverse], original_hash) <= 4


def framed(image: Image.Image, colour, fraction: float = 0.08) -> Image.Image:
    return ImageOps.expand(image, border=round(fraction * max(image.size)), fill=colour)


@pytest.mark.parametrize("size", [(256, 192), (120, 90), (300, 300)])
@pytest.mark.parametrize("colour", ["white", "black", (128, 128, 128)])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_framed_copy_has_a_trimmed_hash_near_the_original(size, colour, fmt):
    for seed in range(4):
        original = photo(seed, size)
        original_hash = compute_hashes(working(original, quality=90)).phash
        copy = working(framed(original, colour), fmt)
        plain = compute_hashes(copy).phash
        variants = compute_variants(copy)
        assert variants.trimmed is not None
        assert distance(variants.trimmed, original_hash) <= 4
        assert distance(plain, original_hash) > distance(variants.trimmed, original_hash) + 2
        assert len(variants.trimmed_orientations) == 7
        # a framed and mirrored copy is found through the trimmed orientations
        mirrored = compute_variants(working(framed(ImageOps.mirror(original), colour), fmt))
        assert distance(mirrored.trimmed_orientations[ORIENTATIONS.index("flip_h")], original_hash) <= 4


def test_trimmed_values_are_the_hashes_of_the_crop():
    copy = working(framed(photo(5, (200, 150)), "white"), "PNG")
    box = trim_box(copy.convert("L"))
    left, upper, right, lower = box
    assert (left, upper) == (16, 16) and (right, lower) == (216, 166)
    crop = copy.crop(box)
    variants = compute_variants(copy)
    assert variants.trimmed == compute_hashes(crop).phash
    assert variants.trimmed_orientations == compute_variants(crop).orientations


def test_letterbox_bars_are_trimmed():
    original = photo(9, (240, 136))
    letterboxed = Image.new("RGB", (240, 200), "black")
    letterboxed.paste(original, (0, 32))
    copy = working(letterboxed, quality=90)
    scale = copy.height / 200  # JPEG draft decoding reduces the working image
    assert trim_box(copy.convert("L")) == (0, round(32 * scale), copy.width, round(168 * scale))
    assert distance(compute_variants(copy).trimmed, compute_hashes(working(original, quality=90)).phash) <= 4


@pytest.mark.parametrize("seed", range(30))
def test_borderless_photos_are_not_trimmed(seed):
    for size in [(256, 192), (97, 61)]:
        variants = compute_variants(working(photo(seed, size), quality=90))
        assert variants.trimmed is None and variants.trimmed_orientations is None


def test_thin_frames_and_small_objects_are_not_trimmed():
    thin = framed(photo(1, (400, 300)), "white", fraction=0.005)  # 2 px: under 2% on every side
    assert compute_variants(thin).trimmed is None
    small = Image.new("RGB", (200, 200), "white")
    small.paste(photo(2, (80, 80)), (60, 60))  # 16% of the area: a different picture, not a framed one
    assert compute_variants(small).trimmed is None
    medium = Image.new("RGB", (200, 200), "white")
    medium.paste(photo(2, (100, 100)), (50, 50))  # 25%
    assert compute_variants(medium).trimmed is not None


@pytest.mark.parametrize("image", [
    Image.new("RGB", (120, 80), (40, 90, 200)), Image.new("L", (1, 1), 7), Image.new("L", (3, 200), 255),
], ids=["flat", "1x1", "3x200"])
def test_flat_and_degenerate_images(image):
    variants = compute_variants(image)
    assert variants.trimmed is None and variants.trimmed_orientations is None
    assert len(variants.orientations) == 7


def test_tiny_images():
    tiny = photo(4, (8, 8))
    variants = compute_variants(tiny)
    pixels = thumbnail(tiny)
    assert variants.orientations == tuple(reference_phash(NUMPY_OPERATIONS[n](pixels)) for n in ORIENTATIONS)
    framed_tiny = ImageOps.expand(photo(4, (6, 6)), border=1, fill="white")
    assert trim_box(framed_tiny.convert("L")) == (1, 1, 7, 7)
    assert compute_variants(framed_tiny).trimmed == compute_hashes(framed_tiny.crop((1, 1, 7, 7))).phash


def test_variants_are_frozen_deterministic_int64():
    image = working(framed(photo(8, (256, 192)), "white"), quality=90)
    first, second = compute_variants(image), compute_variants(image.copy())
    assert first == second and isinstance(first, Variants)
    values = list(first.orientations) + [first.trimmed] + list(first.trimmed_orientations)
    assert all(isinstance(v, int) and -(1 << 63) <= v < (1 << 63) for v in values)
    assert any(v < 0 for v in values)  # the high bit comes out as a sign, like hashes.bits_to_int64
    assert compute_variants(image, low_block=dct_block(image.convert("L"))) == first
    with pytest.raises(FrozenInstanceError):
        first.trimmed = 0
