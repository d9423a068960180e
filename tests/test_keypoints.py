"""dbdedup.keypoints on real images drawn with Pillow: a crop or a small rotation of a picture shares
many keys with it, an unrelated picture shares few."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dbdedup import keypoints


def scene(seed: int, size=(480, 360)) -> Image.Image:
    """A detailed drawing: many overlapping shapes and lines of random colours (corners to find)."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)))
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(160):
        x, y = rng.randint(-20, w), rng.randint(-20, h)
        dx, dy = rng.randint(6, 60), rng.randint(6, 60)
        colour = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        shape = rng.random()
        if shape < 0.4:
            draw.rectangle((x, y, x + dx, y + dy), fill=colour)
        elif shape < 0.7:
            draw.ellipse((x, y, x + dx, y + dy), fill=colour)
        else:
            draw.line((x, y, x + dx, y + dy), fill=colour, width=rng.randint(1, 4))
    return image


def crop_area(image: Image.Image, area: float, left_share: float, top_share: float) -> Image.Image:
    """A crop keeping ``area`` of the picture, placed at the given share of the free room."""
    side = area ** 0.5
    w, h = round(image.width * side), round(image.height * side)
    left, top = round((image.width - w) * left_share), round((image.height - h) * top_share)
    return image.crop((left, top, left + w, top + h))


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """A rotation about the centre on the same canvas, corners white (as bench/accuracy makes them)."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(255, 255, 255))


def shared(a: Image.Image, b: Image.Image) -> int:
    return keypoints.shared_keys(keypoints.image_keys(a), keypoints.image_keys(b))


@pytest.mark.parametrize("seed", [3, 8])
def test_half_area_crop_and_ten_degree_rotation_share_many_keys_unrelated_few(seed):
    picture = scene(seed)
    others = [scene(seed + 100 + k) for k in range(4)]
    crop = crop_area(picture, 0.5, 0.8, 0.3)
    turned = rotated(picture, 10)
    crop_shared, turn_shared = shared(picture, crop), shared(picture, turned)
    unrelated = [shared(picture, other) for other in others] + [shared(crop, other) for other in others]
    # drawings of one kind of shape share a few generic corners; a copy shares tens
    assert min(crop_shared, turn_shared) >= 40, (crop_shared, turn_shared)
    assert min(crop_shared, turn_shared) >= 4 * max(unrelated), (crop_shared, turn_shared, unrelated)


def test_candidate_pairs_of_a_collection_rank_the_copies_first():
    picture = scene(4)
    images = [picture, crop_area(picture, 0.5, 0.1, 0.9), rotated(picture, -10)] + [scene(40 + k) for k in range(8)]
    keys = [keypoints.image_keys(image) for image in images]
    a, b, count = keypoints.candidate_pairs(keys, max_df=50, min_shared=3, top_k=2)
    pairs = {(int(x), int(y)): int(c) for x, y, c in zip(a, b, count)}
    copies = {(0, 1), (0, 2), (1, 2)}
    assert copies <= set(pairs), pairs
    assert min(pairs[p] for p in copies) > max([c for p, c in pairs.items() if p not in copies], default=0)
    # every key held by all images is a stop word when max_df is below the collection's size
    common = [np.r_[k, 1 << 40] for k in keys]
    _, _, with_common = keypoints.candidate_pairs(common, max_df=len(images) - 1, min_shared=1, top_k=0)
    _, _, without = keypoints.candidate_pairs(keys, max_df=len(images) - 1, min_shared=1, top_k=0)
    assert sorted(with_common.tolist()) == sorted(without.tolist())


def test_top_k_keeps_a_pair_that_is_among_either_images_best():
    # image 0 shares 5 keys with 1, 4 with 2, 3 with 3; images 2 and 3 share nothing else
    keys = [np.arange(12), np.arange(5), np.arange(5, 9), np.arange(9, 12)]
    a, b, count = keypoints.candidate_pairs(keys, max_df=10, min_shared=3, top_k=1)
    assert {(int(x), int(y), int(c)) for x, y, c in zip(a, b, count)} == {(0, 1, 5), (0, 2, 4), (0, 3, 3)}
    a, b, count = keypoints.candidate_pairs(keys, max_df=10, min_shared=4, top_k=0)
    assert {(int(x), int(y)) for x, y in zip(a, b)} == {(0, 1), (0, 2)}


def test_a_resized_jpeg_copy_keeps_its_keys(tmp_path):
    picture = scene(5, size=(900, 600))
    path = tmp_path / "copy.jpg"
    picture.resize((450, 300), Image.Resampling.LANCZOS).save(path, quality=75)
    with Image.open(path) as copy:
        copy.load()
        assert shared(picture, copy) >= 4 * keypoints.MIN_SHARED


def test_a_flat_or_tiny_image_has_no_keys():
    assert keypoints.image_keys(Image.new("RGB", (300, 200), (30, 120, 200))).size == 0
    assert keypoints.image_keys(Image.new("L", (1, 1), 0)).size == 0


def test_keys_are_the_descriptor_bands_with_their_number():
    rng = np.random.default_rng(1)
    descriptors = rng.integers(0, 256, size=(5, 32), dtype=np.uint8)
    keys = keypoints.descriptor_keys(descriptors, bands=10, bits=24)
    assert keys.size == 50 and np.all(np.diff(keys) > 0)  # distinct and sorted
    bits = np.unpackbits(descriptors[0])
    third = int("".join(map(str, bits[48:72])), 2)  # band 2 of the first descriptor
    assert (2 << 24 | third) in set(keys.tolist())
    # one flipped bit changes the key of its band only
    changed = descriptors.copy()
    changed[0, 7] ^= 0b0000_0001  # bit 63: band 2
    other = keypoints.descriptor_keys(changed, bands=10, bits=24)
    assert keypoints.shared_keys(keys, other) == 49


def test_bands_must_fit_in_the_descriptor():
    with pytest.raises(ValueError, match="exceed"):
        keypoints.descriptor_keys(np.zeros((1, 32), np.uint8), bands=11, bits=24)
