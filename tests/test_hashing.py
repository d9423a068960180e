"""Hashing: bit-identical to imagehash on the decoded image, robust decoding, clear errors."""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib

import imagehash
import numpy as np
import pytest
from PIL import Image

from dbdedup import fingerprint, hashes
from dbdedup import resample as matrices
from dbdedup.decode import ImageError, decode_image
from dbdedup.fingerprint import hash_image_file
from dbdedup.hashes import compute_hashes, hash_to_int64
from images import photo, save


def distance(a: int, b: int) -> int:
    return bin((a ^ b) & 0xFFFF_FFFF_FFFF_FFFF).count("1")


def imagehash_values(image: Image.Image) -> tuple[int, int, int]:
    return (hash_to_int64(imagehash.phash(image)), hash_to_int64(imagehash.dhash(image)),
            hash_to_int64(imagehash.average_hash(image)))


def ours(image: Image.Image) -> tuple[int, int, int]:
    h = compute_hashes(image)
    return h.phash, h.dhash, h.ahash


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


@pytest.mark.parametrize("seed,size,mode", [
    (1, (256, 192), "RGB"), (2, (128, 128), "RGB"), (3, (97, 61), "RGB"), (4, (640, 480), "L"),
    (5, (32, 32), "RGB"), (6, (9, 8), "L"), (7, (1000, 300), "RGB"),
])
def test_hashes_are_bit_identical_to_imagehash(seed, size, mode):
    image = photo(seed, size).convert(mode)
    assert ours(image) == imagehash_values(image)


def _drawings_with_ties() -> list[Image.Image]:
    # Pictures whose DCT has coefficients of equal magnitude (many exactly zero: a flat grey, a
    # mirror-symmetric drawing, a centred disc), where rounding decides their pHash bits and ours must
    # round as imagehash's scipy transform does, then two without (a checkerboard, an icon on white).
    from PIL import ImageDraw

    flat = Image.new("RGB", (120, 90), (128, 128, 128))
    mirrored = Image.new("RGB", (100, 100), "white")
    ImageDraw.Draw(mirrored).rectangle((20, 30, 79, 70), fill=(200, 30, 30))
    checker = Image.fromarray(((np.indices((64, 64)).sum(axis=0) // 8) % 2 * 255).astype(np.uint8)).convert("RGB")
    disc = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(disc).ellipse((16, 16, 79, 79), fill=(20, 90, 200))
    icon = Image.new("RGB", (48, 48), "white")
    ImageDraw.Draw(icon).polygon([(8, 40), (24, 6), (40, 40)], fill=(240, 200, 0), outline=(0, 0, 0))
    return [flat, mirrored, disc, checker, icon]


def test_drawings_whose_dct_has_ties_hash_bit_identically_to_imagehash_in_every_orientation():
    import scipy.fftpack

    from dbdedup.variants import compute_variants, orientation_hashes

    for index, image in enumerate(_drawings_with_ties()):
        assert ours(image) == imagehash_values(image)
        thumb = matrices.grey_pixels(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)).astype(np.float64)
        assert hashes._tied(hashes.LOW_DCT[None] @ thumb[None] @ hashes.LOW_DCT.T)[0] == (index < 3)
        exact = scipy.fftpack.dct(scipy.fftpack.dct(thumb, axis=0), axis=1)[:8, :8]
        assert compute_variants(image).orientations == orientation_hashes(exact)
    # a stack of their thumbnails with photos' (the loader hashes images of one size together): each
    # block is the one of its image alone, tied or not
    pictures = [*_drawings_with_ties(), *(photo(seed, (64, 64)) for seed in range(5))]
    thumbs = np.stack([matrices.grey_pixels(p.convert("L").resize((32, 32), Image.Resampling.LANCZOS))
                       for p in pictures])
    stacked = hashes.low_frequency_block(thumbs)
    assert all(np.array_equal(block, hashes.low_frequency_block(thumb)) for block, thumb in zip(stacked, thumbs))
    assert hashes.low_frequency_block(np.zeros((0, 32, 32))).shape == (0, 8, 8)


def _phash_in_a_fresh_process(path, module: str) -> tuple[int, bool]:
    """The pHash of the picture at ``path`` as ``compute_hashes`` gives it in a new Python process, and whether
    ``module`` was imported there by then."""
    import subprocess
    import sys

    code = ("import sys; from PIL import Image; from dbdedup.hashes import compute_hashes; "
            f"print(compute_hashes(Image.open({str(path)!r}).convert('RGB')).phash); "
            f"print({module!r} in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    value, imported = done.stdout.split()
    return int(value), imported == "True"


def test_a_photo_is_hashed_without_importing_scipy(tmp_path):
    # scipy's import takes 0.25-0.5 s in each loader worker and in `dbdedup similar FILE`; a picture with no
    # two DCT coefficients of one magnitude is hashed by the matrix product alone, with imagehash's bits
    path = tmp_path / "photo.jpg"
    photo(3, (200, 150)).save(path, quality=90)
    value, imported = _phash_in_a_fresh_process(path, "scipy")
    with Image.open(path) as image:
        assert value == hash_to_int64(imagehash.phash(image.convert("RGB")))
    assert not imported


def test_tied_drawings_are_hashed_with_scipys_own_dct_routine_without_importing_scipy_fftpack(tmp_path):
    # A block with ties needs scipy's own DCT bit for bit; importing scipy.fftpack for it took 0.2-0.3 s in each
    # loader worker (8% of the workers' time on 10,000 small photos), the routine it ends in, loaded alone, 1 ms.
    # The routine's output equals scipy.fftpack.dct's exactly, along either axis, tied stacks or not; a drawing
    # with ties is hashed as imagehash hashes it, and scipy.fftpack is not imported.
    import scipy.fftpack

    assert hashes._pocketfft_dct() is not None  # this scipy has it where it is looked for
    rng = np.random.default_rng(5)
    stacks = [np.zeros((3, 32, 32)), np.full((2, 32, 32), 7.0), rng.random((4, 32, 32)) * 255,
              np.tile(np.arange(32.0), (2, 32, 1)), np.round(rng.random((3, 32, 32)) * 3) * 80]
    for stack in stacks:
        for axis in (-2, -1, 0, 1, 2):
            assert np.array_equal(hashes.dct(stack, axis), scipy.fftpack.dct(stack, axis=axis)), axis
    for index, image in enumerate(_drawings_with_ties()[:3]):
        path = tmp_path / f"tied-{index}.png"
        image.save(path)
        value, imported = _phash_in_a_fresh_process(path, "scipy.fftpack")
        with Image.open(path) as saved:
            assert value == hash_to_int64(imagehash.phash(saved.convert("RGB")))
        assert not imported


def test_stored_encoding_round_trips_imagehash_hex():
    image = photo(11)
    ph = imagehash.phash(image)
    value = compute_hashes(image).phash
    assert hashes.int64_to_hex(value) == str(ph)
    assert hashes.hex_to_int64(str(ph)) == value
    assert -(1 << 63) <= value < (1 << 63)
    # the high bit is imagehash's first bit: a hash starting with 1 is negative
    assert (value < 0) == bool(ph.hash.flatten()[0])


@pytest.mark.parametrize("fmt,params", [
    ("PNG", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("JPEG", {"quality": 95}),
])
def test_decoded_image_hashes_match_imagehash_for_every_format(fmt, params):
    data = encode(photo(21, (200, 150)).convert("P") if fmt == "GIF" else photo(21, (200, 150)), fmt, **params)
    decoded = decode_image(data)
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (200, 150)
    assert ours(decoded.image) == imagehash_values(decoded.image)
    # and the same image as everyone else decodes it is at most a few bits away
    assert distance(compute_hashes(decoded.image).phash, imagehash_values(Image.open(io.BytesIO(data)))[0]) <= 4


def test_small_png_file_hashes_exactly_like_imagehash_on_the_file(tmp_path):
    path = save(photo(22, (120, 90)), tmp_path / "a.png")
    info = hash_image_file(path)
    with Image.open(path) as im:
        assert (info.phash, info.dhash, info.ahash) == imagehash_values(im)
    assert info.sha256 == __import__("hashlib").sha256(path.read_bytes()).digest()
    assert (info.width, info.height, info.format, info.frames) == (120, 90, "PNG", 1)


def test_large_jpeg_uses_draft_decoding_and_stays_close_to_full_decode(tmp_path):
    big = photo(23, (400, 300)).resize((4000, 3000), Image.Resampling.BICUBIC)
    path = save(big, tmp_path / "big.jpg", quality=90)
    decoded = decode_image(path.read_bytes())
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert max(decoded.image.size) <= 1000  # draft: libjpeg scaled the decode down
    with Image.open(path) as full:
        assert distance(compute_hashes(decoded.image).phash, hash_to_int64(imagehash.phash(full))) <= 6


def test_exif_orientation_is_applied(tmp_path):
    upright = photo(24, (300, 200))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = save(stored, tmp_path / "rot.jpg", quality=95, exif=exif.tobytes())
    info = hash_image_file(path)
    assert (info.width, info.height) == (300, 200)
    assert distance(info.phash, compute_hashes(upright).phash) <= 6
    assert distance(info.phash, compute_hashes(stored).phash) > 12


def test_16_bit_png_matches_its_8_bit_twin(tmp_path):
    grey8 = np.asarray(photo(25, (160, 120)).convert("L"))
    twin8 = save(Image.fromarray(grey8, "L"), tmp_path / "eight.png")
    twin16 = save(Image.fromarray(grey8.astype(np.uint16) * 257), tmp_path / "sixteen.png")
    with Image.open(twin16) as im:
        assert im.mode.startswith("I")
        naive = hash_to_int64(imagehash.phash(im))  # Pillow's convert('L') clips 16-bit data to white
    a, b = hash_image_file(twin8), hash_image_file(twin16)
    assert distance(a.phash, b.phash) <= 2 and distance(a.dhash, b.dhash) <= 2
    assert distance(naive, a.phash) > 10


def test_cmyk_jpeg_matches_rgb(tmp_path):
    rgb = photo(26, (200, 150))
    path = save(rgb.convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    assert distance(hash_image_file(path).phash, compute_hashes(rgb).phash) <= 6


def test_transparency_is_flattened_on_white(tmp_path):
    base = photo(27, (160, 120))
    rgba = base.convert("RGBA")
    alpha = Image.new("L", base.size, 0)
    alpha.paste(255, (20, 20, 140, 100))
    rgba.putalpha(alpha)
    on_white = Image.new("RGB", base.size, "white")
    on_white.paste(base, mask=alpha)
    expected = compute_hashes(on_white).phash
    palette = rgba.convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    paths = [save(rgba, tmp_path / "rgba.png"), save(rgba.convert("LA"), tmp_path / "la.png")]
    for path in paths:
        assert distance(hash_image_file(path).phash, expected) <= 6, path
    # palette + transparency: the transparent part must come out white, not black
    p_image = Image.new("P", (160, 120), 0)
    p_image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    p_image.paste(1, (40, 30, 120, 90))
    p_path = save(p_image, tmp_path / "p.png", transparency=0)
    flat = Image.new("RGB", (160, 120), "white")
    flat.paste((200, 30, 30), (40, 30, 120, 90))
    assert distance(hash_image_file(p_path).ahash, compute_hashes(flat).ahash) <= 2


def test_animated_gif_hashes_its_first_frame(tmp_path):
    frames = [photo(30 + i, (120, 90)).convert("P") for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    info = hash_image_file(path)
    assert info.frames == 3
    with Image.open(path) as im:
        im.seek(0)
        assert info.phash == hash_to_int64(imagehash.phash(im.convert("RGB")))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name,content,reason", [
    ("empty.jpg", b"", "empty_file"),
    ("text.jpg", b"this is not a picture\n" * 20, "not_an_image"),
    ("bomb.png", bomb_png(100_000, 100_000), "too_many_pixels"),
    ("header.png", b"\x89PNG\r\n\x1a\n\0\0", "decode_error"),
])
def test_bad_files_raise_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        hash_image_file(path)
    assert info.value.reason == reason
    assert info.value.detail and len(info.value.detail) < 300


def test_truncated_files(tmp_path):
    for fmt, name in (("JPEG", "cut.jpg"), ("PNG", "cut.png")):
        data = encode(photo(40, (300, 200)), fmt)
        path = tmp_path / name
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageError) as info:
            hash_image_file(path)
        assert info.value.reason == "truncated", (fmt, info.value.detail)


def test_max_pixels_is_checked_from_the_header(tmp_path):
    path = save(photo(41, (100, 100)), tmp_path / "a.png")
    with pytest.raises(ImageError) as info:
        hash_image_file(path, max_pixels=9_999)
    assert info.value.reason == "too_many_pixels" and "100x100" in info.value.detail
    assert hash_image_file(path, max_pixels=10_000).width == 100


def test_worker_record_never_raises(tmp_path):
    missing = bytes(tmp_path / "nope.jpg")
    record = fingerprint.file_record(missing)
    assert record.path == missing and record.reason == "unreadable" and record.sha256 is None
    assert (record.size_bytes, record.device) == (0, None)
    good = bytes(save(photo(42, (64, 64)), tmp_path / "ok.png"))
    record = fingerprint.file_record(good)
    assert record.reason is None and record.detail is None and record.sha256 is not None
    assert (record.width, record.format, record.size_bytes) == (64, "PNG", os.path.getsize(good))


@pytest.mark.parametrize("size", [(64, 64), (500, 375), (375, 500), (97, 61), (61, 97), (300, 40), (9, 8), (33, 200)])
def test_matrix_resize_is_pillows_resize_byte_for_byte(size):
    # A shape is resized with matrices from its second sighting on (after a check against
    # Pillow): the hashes of every later image of that shape must still be imagehash's.
    rng = np.random.default_rng(size[0] * 1000 + size[1])
    images = [photo(40 + k, size) for k in range(3)] + [Image.fromarray(rng.integers(0, 256, size[::-1], np.uint8))]
    for image in images + images:
        assert ours(image) == imagehash_values(image), size
        grey = image.convert("L")
        pixels = np.asarray(grey)
        for resample in (Image.Resampling.LANCZOS, Image.Resampling.BILINEAR):
            for out in ((32, 32), (9, 8)):
                expected = np.asarray(grey.resize(out, resample))
                assert np.array_equal(matrices.resize_grey(grey, pixels, out, resample), expected)
                assert np.array_equal(matrices.resize_grey(None, pixels, out, resample), expected)
    checked = [matrices.checked_order(size[1], size[0], out, method)
               for out in ((32, 32), (9, 8)) if out != size  # Pillow copies an image of the same size
               for method in (Image.Resampling.LANCZOS, Image.Resampling.BILINEAR)]
    assert None not in checked, "the matrix path was not used"


def test_hash_files_gives_each_files_own_result_when_stacking(tmp_path):
    from dbdedup.embedding import GreyEmbedder, raw_from_bytes
    from PIL import ImageOps

    paths = []
    for k in range(10):
        image = photo(60 + k, (128, 128))
        if k in (3, 7):
            image = ImageOps.expand(image.resize((112, 112)), 8, fill=(0, 0, 0))  # a frame to trim
        paths.append(save(image, tmp_path / f"p{k}.jpg", quality=90))
    paths.append(save(photo(80, (96, 64)), tmp_path / "colour.png"))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    paths.append(tmp_path / "bad.jpg")
    paths = [bytes(p) for p in paths]
    extras = fingerprint.Extras(orientations=True, embedder=GreyEmbedder())
    for _ in range(2):  # the second time, the 64x64 drafts' shape is known and they are stacked
        batch = fingerprint.file_records(paths, extras=extras)
    assert hashes.stackable(64, 64)
    for path, got in zip(paths, batch):
        alone = fingerprint.file_record(path, extras=extras)
        assert dataclasses.replace(got, raw_descriptor=None) == dataclasses.replace(alone, raw_descriptor=None), path
        if alone.raw_descriptor is not None:
            dim = GreyEmbedder.raw_dim
            assert np.allclose(raw_from_bytes(got.raw_descriptor, dim), raw_from_bytes(alone.raw_descriptor, dim),
                               atol=1e-3)
    assert batch[-1].reason == "not_an_image" and batch[0].reason is None
    assert sum(record.raw_descriptor is not None for record in batch) == len(batch) - 1


def test_a_file_too_large_to_hold_is_decoded_from_the_file_it_hashed(tmp_path, monkeypatch):
    # above fingerprint.IN_MEMORY_LIMIT a file is hashed in blocks, then decoded from the file again: by path, so a
    # FIFO put there in between blocked the worker forever, and a file swapped in was decoded under the old one's hash
    save(photo(1), tmp_path / "big.jpg", quality=92)
    held = fingerprint.file_record(tmp_path / "big.jpg")
    monkeypatch.setattr(fingerprint, "IN_MEMORY_LIMIT", 1000)
    streamed = fingerprint.file_record(tmp_path / "big.jpg")
    assert streamed.reason is None and (streamed.phash, streamed.sha256) == (held.phash, held.sha256)

    read = fingerprint._read_file

    def read_then_swap(path, make):
        result = read(path)
        os.unlink(path)
        make(path)
        return result

    monkeypatch.setattr(fingerprint, "_read_file", lambda path: read_then_swap(path, os.mkfifo))
    assert fingerprint.file_record(tmp_path / "big.jpg").reason == "not_a_file"
    os.unlink(tmp_path / "big.jpg")
    save(photo(1), tmp_path / "big.jpg", quality=92)
    monkeypatch.setattr(fingerprint, "_read_file",
                        lambda path: read_then_swap(path, lambda p: save(photo(2), p, quality=92)))
    swapped = fingerprint.file_record(tmp_path / "big.jpg")
    assert swapped.reason == "unreadable" and "replaced while loading" in swapped.detail
