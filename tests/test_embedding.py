"""Embeddings: the default descriptor on real edited images, the PCA reduction, and ONNX models."""

from __future__ import annotations

import functools
import io
import multiprocessing

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from dbdedup import embedding
from dbdedup.embedding import (EMBEDDING_DIM, Reduction, fit_reduction, load_embedder, project, raw_from_bytes,
                               raw_to_bytes)
from dbdedup.errors import DbdedupError
from dbdedup.decode import decode_image
from images import brighter, jpeg_bytes, mirrored, photo, resized

SEEDS = (1, 2, 3, 4, 5)
SIZE = (320, 240)


@functools.lru_cache(maxsize=None)
def picture(seed: int) -> Image.Image:
    """photo() at the test size, made once per seed."""
    return photo(seed, SIZE)


def decoded(image: Image.Image, fmt: str = "PNG", **params) -> Image.Image:
    """The working image the loader would describe for ``image`` saved as ``fmt``."""
    buf = io.BytesIO()
    (image.convert("RGB") if fmt == "JPEG" else image).save(buf, fmt, **params)
    return decode_image(buf.getvalue()).image


def cropped(image: Image.Image, keep: float) -> Image.Image:
    w, h = image.size
    dw, dh = int(w * (1 - keep) / 2), int(h * (1 - keep) / 2)
    return image.crop((dw, dh, w - dw, h - dh))


EDITS = {
    "jpeg_q30": lambda im: Image.open(io.BytesIO(jpeg_bytes(im, 30))),
    "jpeg_copy": None,  # the same image stored as a JPEG: decoded as a small greyscale draft
    "half_size": lambda im: resized(im, 0.5),
    "brighter": lambda im: brighter(im, 1.3),
    "greyscale": lambda im: im.convert("L"),
    "blur": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "crop_10pct": lambda im: cropped(im, 0.95),
    "black_border": lambda im: ImageOps.expand(im, 30, fill=(0, 0, 0)),
}


@pytest.fixture(scope="module")
def corpus():
    """Raw descriptors of 50 unrelated photo-like images and the reduction fitted on them."""
    embedder = load_embedder("default")
    raw = np.stack([embedder.describe(decoded(picture(seed))) for seed in range(100, 150)])
    return embedder, fit_reduction(embedder.name, raw)


def test_default_embedder_shape_and_name():
    embedder = load_embedder("default")
    assert embedder.name == "grey-v1"
    vector = embedder.describe(decoded(photo(1)))
    assert vector.dtype == np.float32 and vector.shape == (embedder.raw_dim,)
    assert np.isfinite(vector).all()
    # a blank image has no structure but still a finite descriptor
    assert np.isfinite(embedder.describe(Image.new("L", (80, 80), 200))).all()


def test_descriptor_is_greyscale_only_so_png_and_jpeg_copies_agree(corpus):
    embedder, reduction = corpus
    for seed in SEEDS:
        original = picture(seed)
        png, jpeg = decoded(original), decoded(original, "JPEG", quality=90)
        assert png.mode == "RGB" and jpeg.mode == "L"
        a, b = project(reduction, np.stack([embedder.describe(png), embedder.describe(jpeg)]))
        assert a @ b > 0.97


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_copies_are_closer_than_unrelated_images(corpus, edit):
    embedder, reduction = corpus
    for seed in SEEDS:
        original = picture(seed)
        copy = decoded(original, "JPEG", quality=85) if edit == "jpeg_copy" else decoded(EDITS[edit](original))
        unrelated = [decoded(picture(seed + 1000 + k)) for k in range(8)]
        vectors = project(reduction, np.stack([embedder.describe(im) for im in [decoded(original), copy, *unrelated]]))
        similarity = vectors[1:] @ vectors[0]
        assert similarity[0] > 0.9, (edit, seed, similarity[0])
        assert similarity[0] > similarity[1:].max() + 0.15, (edit, seed, similarity)


def test_flip_changes_the_descriptor_but_not_its_intensity_histogram(corpus):
    # grey-v1 is not flip-invariant (transform hashes catch flips); its histogram block is
    embedder, _ = corpus
    image = decoded(photo(3, (320, 240)))
    a, b = embedder.describe(image), embedder.describe(decoded(mirrored(photo(3, (320, 240)))))
    hist = slice(-embedding._HIST_BINS, None)
    assert np.allclose(a[hist], b[hist], atol=0.02)
    assert not np.allclose(a, b, atol=0.02)


def test_borders_are_trimmed_before_describing():
    grey = np.asarray(decoded(photo(7, (200, 150))).convert("L"))
    framed = np.pad(grey, ((12, 12), (20, 20)), constant_values=0)
    top, bottom, left, right = embedding.trim_box(framed)
    assert (top, left) == (12, 20) and (bottom, right) == (12 + 150, 20 + 200)
    # an image that is mostly flat keeps its middle: at most 40% of a side goes from each edge
    flat = np.full((100, 100), 255, np.uint8)
    flat[45:55, 45:55] = 0
    assert embedding.trim_box(flat) == (40, 60, 40, 60)
    assert embedding.trim_box(np.full((50, 50), 7, np.uint8)) == (0, 50, 0, 50)


def test_raw_bytes_roundtrip_half_and_full_precision():
    vector = load_embedder("default").describe(decoded(photo(2)))
    data = raw_to_bytes(vector)
    assert len(data) == 2 * vector.size
    np.testing.assert_allclose(raw_from_bytes(data, vector.size), vector, atol=1e-3)
    big = np.array([1e6, -3.5, 0.25], dtype=np.float32)  # beyond float16: stored as float32
    assert len(raw_to_bytes(big)) == 12
    np.testing.assert_array_equal(raw_from_bytes(raw_to_bytes(big), 3), big)
    with pytest.raises(ValueError):
        raw_from_bytes(data, vector.size + 1)


@pytest.mark.parametrize("n", [1, 10, 1000])
def test_fit_works_for_any_row_count_and_gives_orthonormal_components(n):
    rng = np.random.default_rng(n)
    # low-rank data plus noise, like descriptors: a few directions carry most variance
    raw = (rng.standard_normal((n, 5)) @ rng.standard_normal((5, 207)) * 3
           + rng.standard_normal((n, 207)) * 0.1).astype(np.float32)
    reduction = fit_reduction("grey-v1", raw)
    assert reduction.components.shape == (EMBEDDING_DIM, 207) and reduction.fitted_rows == n
    gram = reduction.components.astype(np.float64) @ reduction.components.T
    np.testing.assert_allclose(gram, np.eye(EMBEDDING_DIM), atol=1e-4)
    vectors = project(reduction, raw)
    assert vectors.shape == (n, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # refitting the same rows gives the same reduction (deterministic signs and completion)
    again = fit_reduction("grey-v1", raw)
    np.testing.assert_array_equal(again.components, reduction.components)
    if n == 1000:
        # the first five components span the planted directions: they hold nearly all variance
        centred = raw - reduction.mean
        share = np.linalg.norm(centred @ reduction.components[:5].T) ** 2 / np.linalg.norm(centred) ** 2
        assert share > 0.99


def test_reduction_bytes_roundtrip_and_projection_of_new_rows():
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((300, 40)).astype(np.float32)
    reduction = fit_reduction("onnx:0123456789abcdef", raw, dim=16)
    restored = Reduction.from_bytes(reduction.to_bytes())
    assert (restored.embedder, restored.raw_dim, restored.dim, restored.fitted_rows) == \
        ("onnx:0123456789abcdef", 40, 16, 300)
    np.testing.assert_array_equal(restored.mean, reduction.mean)
    np.testing.assert_array_equal(restored.components, reduction.components)
    new = rng.standard_normal((5, 40)).astype(np.float32)
    np.testing.assert_array_equal(project(restored, new), project(reduction, new))
    with pytest.raises(ValueError):
        Reduction.from_bytes(b"something else")


def test_dim_beyond_raw_dim_pads_with_zero_components_and_mean_row_is_a_unit_vector():
    raw = np.random.default_rng(1).standard_normal((4, 10)).astype(np.float32)
    reduction = fit_reduction("x", raw, dim=EMBEDDING_DIM)
    assert not reduction.components[10:].any()
    vectors = project(reduction, np.concatenate([raw, reduction.mean[None]]))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_unknown_embedder_spec_is_a_user_error():
    with pytest.raises(DbdedupError) as info:
        load_embedder("clip")
    assert info.value.hint


# ---------------------------------------------------------------- ONNX


def build_model(path, *, side: int | str = 32, channels: int = 3, filters: int = 8, dtype=None, scale: float = 1.0,
                input_shape: list | None = None):
    """A small CNN saved as ONNX: fixed random 3x3 convolution, ReLU, global average pool, flatten, times ``scale``
    (1e6: outputs past float16's range). ``input_shape`` replaces the input's declared NCHW shape."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(42)
    weights = rng.standard_normal((filters, channels, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["relu"]),
         helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
         helper.make_node("Flatten", ["pool"], ["flat"]),
         helper.make_node("Mul", ["flat", "scale"], ["features"])],
        "tiny",
        [helper.make_tensor_value_info("image", dtype or TensorProto.FLOAT,
                                       input_shape or ["batch", channels, side, side])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", filters])],
        initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b"),
                     numpy_helper.from_array(np.array([scale], dtype=np.float32), "scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _describe_in_child(embedder, image_bytes):
    return embedder.describe(Image.open(io.BytesIO(image_bytes)))


@pytest.fixture
def onnx_model(tmp_path):
    pytest.importorskip("onnxruntime")
    return build_model(tmp_path / "tiny.onnx")


def test_onnx_embedder_describes_images(onnx_model):
    embedder = load_embedder(f"onnx:{onnx_model}")
    assert embedder.name.startswith("onnx:") and len(embedder.name) == len("onnx:") + 16
    assert embedder.raw_dim == 8 and (embedder.height, embedder.width) == (32, 32)
    image = decoded(photo(4))
    a = embedder.describe(image)
    assert a.dtype == np.float32 and a.shape == (8,) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, embedder.describe(image.copy()))
    # a greyscale working image (a JPEG draft) is converted to RGB, not rejected
    grey = embedder.describe(decoded(photo(4), "JPEG", quality=90))
    assert grey.shape == (8,)
    assert not np.allclose(a, embedder.describe(decoded(photo(5))))


def test_onnx_name_follows_the_model_file(tmp_path):
    pytest.importorskip("onnxruntime")
    one = load_embedder(f"onnx:{build_model(tmp_path / 'a.onnx', filters=8)}")
    same = load_embedder(f"onnx:{build_model(tmp_path / 'b.onnx', filters=8)}")
    other = load_embedder(f"onnx:{build_model(tmp_path / 'c.onnx', filters=6)}")
    assert one.name == same.name != other.name
    assert other.raw_dim == 6


def test_onnx_dynamic_side_uses_224(tmp_path):
    pytest.importorskip("onnxruntime")
    embedder = load_embedder(f"onnx:{build_model(tmp_path / 'dynamic.onnx', side='side')}")
    assert (embedder.height, embedder.width) == (224, 224)
    assert embedder.describe(decoded(photo(1))).shape == (8,)


def test_onnx_embedder_works_in_forked_workers(onnx_model):
    embedder = load_embedder(f"onnx:{onnx_model}")
    images = [photo(seed, (96, 64)) for seed in (1, 2, 3)]
    payloads = []
    for image in images:
        buf = io.BytesIO()
        image.save(buf, "PNG")
        payloads.append(buf.getvalue())
    in_parent = [embedder.describe(Image.open(io.BytesIO(p))) for p in payloads]  # parent session exists
    with multiprocessing.get_context("fork").Pool(2) as pool:
        in_children = pool.starmap(_describe_in_child, [(embedder, p) for p in payloads])
    for a, b in zip(in_parent, in_children):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_onnx_errors_are_user_errors_with_hints(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(DbdedupError, match="not found") as info:
        load_embedder(f"onnx:{tmp_path / 'missing.onnx'}")
    assert info.value.hint
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf model at all" * 10)
    with pytest.raises(DbdedupError, match="not an ONNX model") as info:
        load_embedder(f"onnx:{junk}")
    assert info.value.hint
    with pytest.raises(DbdedupError, match="channels"):
        load_embedder(f"onnx:{build_model(tmp_path / 'five.onnx', channels=5)}")
    with pytest.raises(DbdedupError, match="needs a model path"):
        load_embedder("onnx:")


def test_onnx_model_whose_input_is_channels_last_with_a_dynamic_side_is_refused(tmp_path):
    # [batch, h, w, 3] took the 3 for a width: a 224x3 picture, and a load that succeeded
    pytest.importorskip("onnxruntime")
    path = build_model(tmp_path / "nhwc.onnx", input_shape=["batch", "h", "w", 3])
    with pytest.raises(DbdedupError, match="channels-last") as info:
        load_embedder(f"onnx:{path}")
    assert info.value.hint


def test_onnx_model_whose_outputs_pass_float16s_range_is_fitted_on_its_own_values(conn, tmp_path):
    # such a descriptor is stored as float32; the fit took its 32 bytes a value... as 2 float16 values each: twice
    # the values, garbage vectors, and every embedding similarity NaN (an invalid JSON report)
    pytest.importorskip("onnxruntime")
    from dbdedup.load import load_paths
    from images import resized, save

    model = build_model(tmp_path / "loud.onnx", scale=1e6)
    root = tmp_path / "set"
    for seed in (1, 2, 3, 4, 5):
        save(photo(seed), root / f"o{seed}.jpg", quality=92)
        save(resized(photo(seed), 0.5), root / f"o{seed}_small.jpg", quality=90)
    summary = load_paths(conn, [root], workers=1, embedder=f"onnx:{model}")
    assert summary.embedded == 10
    assert conn.execute("SELECT raw_dim FROM dbdedup.embedding_reductions").fetchone() == (8,)
    rows = conn.execute("SELECT a.embedding <=> b.embedding FROM dbdedup.image_embeddings a, dbdedup.image_embeddings b "
                        "WHERE a.image_id < b.image_id").fetchall()
    assert rows and all(np.isfinite(r[0]) for r in rows)


def test_onnx_model_with_a_non_image_input_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "flat.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DbdedupError, match="not an image") as info:
        load_embedder(f"onnx:{path}")
    assert info.value.hint


def test_missing_onnxruntime_is_a_user_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    model = tmp_path / "model.onnx"
    model.write_bytes(b"whatever")
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(DbdedupError, match="onnxruntime") as info:
        load_embedder(f"onnx:{model}")
    assert "dbdedup[onnx]" in info.value.hint
