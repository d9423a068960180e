"""Image embeddings: a raw descriptor per image, reduced by a PCA fitted on the corpus.

Pure functions and small classes, no database. Two embedders:

- ``grey-v1`` (the default, ``load_embedder("default")``): a hand-made
  descriptor of the decoded working image (``decode.decode_image``), computed
  from greyscale only, because JPEGs are decoded as small greyscale drafts and a
  PNG and its JPEG copy must describe alike. No downloaded weights. See
  ``GreyEmbedder`` for the design.
- ``onnx:<sha256 prefix>`` (``load_embedder("onnx:PATH")``): a user's ONNX image
  model run with onnxruntime on CPU (optional extra ``dbdedup[onnx]``).

Raw descriptors are stored compactly (``raw_to_bytes``) so a refit can
re-project everything without decoding again; ``fit_reduction`` fits a PCA to
``EMBEDDING_DIM`` dimensions on any number of rows (the basis is completed
deterministically when there are fewer rows than dimensions), and ``project``
returns unit rows, so cosine similarity is a dot product (pgvector ``<=>``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .embedding_defaults import DEFAULT_CONFIRM_DISTANCE, DEFAULT_MIN_SIMILARITY, EMBEDDING_DIM  # noqa: F401
from .errors import DbdedupError
from .resample import resize_grey, resize_stack


_THUMB = 32          # the descriptor works on a 32x32 thumbnail of the trimmed greyscale image
_DCT_BAND = 8        # low-frequency DCT block kept (8x8 minus DC)
_HOG_CELLS = 4       # gradient-orientation histograms on a 4x4 grid of 8x8-pixel cells
_HOG_BINS = 8        # unsigned orientations, bin centres at multiples of 22.5 degrees
_REDUCE_TO = 64     # larger working images are box-reduced to about this short side first
_HIST_BINS = 16      # histogram of the contrast-normalised intensities
_TRIM_TOLERANCE = 10  # grey levels: a border row/column is "uniform" within this of the border colour
_TRIM_MAX_FRACTION = 0.4  # never trim more than this of a side from one edge (a flat image keeps its middle)

# Block weights (each block is L2-normalised first): what the similarity listens to.
_W_DCT = 1.0
_W_HOG = 0.8
_W_HIST = 0.5


class Embedder:
    """An image descriptor: ``name`` (stable id stored with the vectors), ``raw_dim`` and ``describe``.

    ``describe(image)`` takes the decoded working image (mode 'L' or 'RGB') and
    returns a finite float32 vector of shape ``(raw_dim,)``. Embedders may be
    built in a parent process and used in forked workers.
    """

    name: str = ""
    raw_dim: int = 0

    def describe(self, image: Image.Image) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


# ---------------------------------------------------------------- the default descriptor


def _dct_matrix(n: int, rows: int) -> np.ndarray:
    k = np.arange(rows)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


_DCT = _dct_matrix(_THUMB, _DCT_BAND)
_CELL = _THUMB // _HOG_CELLS
_CELL_INDEX = ((np.arange(_THUMB)[:, None] // _CELL) * _HOG_CELLS
               + (np.arange(_THUMB)[None, :] // _CELL)).ravel()


def trim_box(grey: np.ndarray, tolerance: int = _TRIM_TOLERANCE,
             max_fraction: float = _TRIM_MAX_FRACTION) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of ``grey`` without uniform borders (at most max_fraction of a side each).

    A border is a run of outer rows/columns within ``tolerance`` of the corner
    colour; two passes, so a frame around an image on a flat background goes too.
    """
    top, bottom, left, right = 0, grey.shape[0], 0, grey.shape[1]
    limit_y = int(grey.shape[0] * max_fraction)
    limit_x = int(grey.shape[1] * max_fraction)
    for _ in range(2):
        view = grey[top:bottom, left:right].astype(np.int16)
        if view.shape[0] < 8 or view.shape[1] < 8:
            break
        corners = sorted((int(view[0, 0]), int(view[0, -1]), int(view[-1, 0]), int(view[-1, -1])))
        corner = int((corners[1] + corners[2]) / 2)  # numpy.median's value, truncated
        # most photos have no uniform outer row or column: nothing to trim, decided from the edges alone
        if not any((np.abs(edge - corner) <= tolerance).all()
                   for edge in (view[0], view[-1], view[:, 0], view[:, -1])):
            break
        flat = np.abs(view - corner) <= tolerance
        rows = flat.all(axis=1)
        cols = flat.all(axis=0)
        if rows.all() or cols.all():
            break
        t = int(np.argmin(rows))
        b = int(np.argmin(rows[::-1]))
        lf = int(np.argmin(cols))
        rt = int(np.argmin(cols[::-1]))
        t, b = min(t, limit_y - top), min(b, limit_y - (grey.shape[0] - bottom))
        lf, rt = min(lf, limit_x - left), min(rt, limit_x - (grey.shape[1] - right))
        t, b, lf, rt = max(t, 0), max(b, 0), max(lf, 0), max(rt, 0)
        if not (t or b or lf or rt):
            break
        top, bottom, left, right = top + t, bottom - b, left + lf, right - rt
    return top, bottom, left, right


def normalised_thumbnail(image: Image.Image) -> np.ndarray:
    """The 32x32 float32 thumbnail the grey descriptor sees: greyscale, borders trimmed, zero mean, unit std."""
    grey = image if image.mode == "L" else image.convert("L")
    factor = min(grey.size) // _REDUCE_TO
    if factor >= 2:
        # box-reduce first: trimming and resizing then touch a few thousand pixels
        grey = grey.reduce(factor)
    arr = np.asarray(grey)
    top, bottom, left, right = trim_box(arr)
    # the reduce may have blended the border into the first image row/column: drop that one too
    top, left = top + (top > 0), left + (left > 0)
    bottom, right = bottom - (bottom < arr.shape[0]), right - (right < arr.shape[1])
    if (top, left) != (0, 0) or (bottom, right) != arr.shape:
        arr, grey = arr[top:bottom, left:right], None
    thumb = resize_grey(grey, arr, (_THUMB, _THUMB), Image.Resampling.BILINEAR).astype(np.float32)
    std = float(thumb.std())
    return (thumb - thumb.mean()) / std if std > 1.0 else np.zeros_like(thumb)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def _orientation_bins(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """The unsigned gradient orientation of each pixel, in _HOG_BINS hard bins (int64, the shape of ``gy``)."""
    angle = np.arctan2(gy, gx)
    # (folded onto 0..pi by adding pi to the negative ones: every bin as ``angle % np.pi`` gives it, pi itself
    # falling in the first bin either way, at a third of the cost of numpy's floating remainder)
    unsigned = np.where(angle < 0, angle + np.pi, angle)
    return np.rint(unsigned * (_HOG_BINS / np.pi)).astype(np.int64) % _HOG_BINS


def grey_features(z: np.ndarray) -> np.ndarray:
    """The raw grey-v1 descriptor of a normalised 32x32 thumbnail (see GreyEmbedder)."""
    dct = (_DCT @ z @ _DCT.T).ravel()[1:]
    # gradients by central differences; unsigned orientation, magnitude-weighted hard bins
    gy = np.zeros_like(z)
    gx = np.zeros_like(z)
    gy[1:-1] = z[2:] - z[:-2]
    gx[:, 1:-1] = z[:, 2:] - z[:, :-2]
    magnitude = np.sqrt(gx * gx + gy * gy).ravel()
    bins = _orientation_bins(gy, gx).ravel()
    hog = np.bincount(_CELL_INDEX * _HOG_BINS + bins, weights=magnitude,
                      minlength=_HOG_CELLS * _HOG_CELLS * _HOG_BINS)
    hog = np.sqrt(hog)  # Hellinger-style: a few strong edges do not drown the rest
    hist = np.bincount(np.clip(((z.ravel() + 2.5) * (_HIST_BINS / 5.0)).astype(np.int64), 0, _HIST_BINS - 1),
                       minlength=_HIST_BINS)
    hist = np.sqrt(hist / z.size)
    return np.concatenate([
        _W_DCT * _unit(dct), _W_HOG * _unit(hog), _W_HIST * _unit(hist),
    ]).astype(np.float32)


class GreyEmbedder(Embedder):
    """The default embedder, ``grey-v1``: no weights, greyscale only, cheap beside the decode.

    The working image is converted to greyscale, uniform borders are trimmed
    (up to 40% of a side from each edge: added frames, letterboxing, flat backgrounds), and it is
    squashed to a 32x32 thumbnail normalised to zero mean and unit standard
    deviation (brightness and contrast drop out). Three blocks, each
    L2-normalised and weighted:

    - the 63 lowest 2-D DCT coefficients (8x8 minus DC): the coarse layout, the
      same information pHash thresholds to bits, kept as magnitudes;
    - square-rooted gradient-orientation histograms (8 unsigned orientations) on
      a 4x4 grid of cells: edge structure, tolerant of blur and small shifts;
    - a 16-bin square-rooted histogram of the normalised intensities:
      position-free, so crops move it little.
    """

    name = "grey-v1"
    raw_dim = _DCT_BAND * _DCT_BAND - 1 + _HOG_CELLS * _HOG_CELLS * _HOG_BINS + _HIST_BINS

    def describe(self, image: Image.Image) -> np.ndarray:
        """The raw descriptor of a decoded working image (float32, shape (raw_dim,))."""
        return grey_features(normalised_thumbnail(image))

    def describe_many(self, images: list[Image.Image]) -> list[np.ndarray]:
        """``describe`` of each image (equal within float32 rounding), stacking those that allow it.

        Greyscale working images of one shape with no uniform edge to trim (most photos) share
        one resize, normalisation and feature computation; the others are described one by one.
        """
        out: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            if image.mode == "L" and min(image.size) // _REDUCE_TO < 2 and min(image.size) >= 8:
                groups.setdefault(image.size, []).append(index)
            else:
                out[index] = self.describe(image)
        for members in groups.values():
            stack = np.stack([np.asarray(images[i]) for i in members])
            plain = _untrimmed(stack)
            together = [i for i, keep in zip(members, plain) if keep]
            thumbs = (resize_stack(stack[plain], (_THUMB, _THUMB), Image.Resampling.BILINEAR)
                      if len(together) > 1 else None)
            if thumbs is not None:
                for i, vector in zip(together, grey_features_many(_normalise_many(thumbs.astype(np.float32)))):
                    out[i] = vector
            for i in members:
                if out[i] is None:
                    out[i] = self.describe(images[i])
        return out



def _untrimmed(stack: np.ndarray, tolerance: int = _TRIM_TOLERANCE) -> np.ndarray:
    """For (n, h, w) uint8 images: True where ``trim_box`` keeps the whole image for lack of a flat edge."""
    count = stack.shape[0]
    corners = np.sort(stack[:, [0, 0, -1, -1], [0, -1, 0, -1]].astype(np.int16), axis=1)
    corner = ((corners[:, 1] + corners[:, 2]) // 2)[:, None]  # trim_box's median, truncated
    flat_edge = np.zeros(count, dtype=bool)
    for edge in (stack[:, 0, :], stack[:, -1, :], stack[:, :, 0], stack[:, :, -1]):
        flat_edge |= (np.abs(edge.astype(np.int16) - corner) <= tolerance).all(axis=1)
    return ~flat_edge


def _normalise_many(thumbs: np.ndarray) -> np.ndarray:
    # normalised_thumbnail's last step on a stack: zero mean, unit std, flat images all zeros
    mean = thumbs.mean(axis=(1, 2), keepdims=True)
    std = thumbs.std(axis=(1, 2), keepdims=True)
    varied = std > 1.0
    return np.where(varied, (thumbs - mean) / np.where(varied, std, 1.0), 0.0).astype(np.float32)


def _units(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.where(norms > 1e-12, rows / np.where(norms > 1e-12, norms, 1.0), rows)


def grey_features_many(z: np.ndarray) -> list[np.ndarray]:
    """``grey_features`` of a stack of normalised thumbnails (n, 32, 32), within float32 rounding."""
    count = z.shape[0]
    dct = (_DCT @ z @ _DCT.T).reshape(count, -1)[:, 1:]
    gy = np.zeros_like(z)
    gx = np.zeros_like(z)
    gy[:, 1:-1] = z[:, 2:] - z[:, :-2]
    gx[:, :, 1:-1] = z[:, :, 2:] - z[:, :, :-2]
    magnitude = np.sqrt(gx * gx + gy * gy).reshape(count, -1)
    bins = _orientation_bins(gy, gx).reshape(count, -1)
    cells = _HOG_CELLS * _HOG_CELLS * _HOG_BINS
    offsets = (np.arange(count) * cells)[:, None]
    # one bincount for the stack: each image's values are added in the same order as alone
    hog = np.bincount((offsets + _CELL_INDEX * _HOG_BINS + bins).ravel(), weights=magnitude.ravel(),
                      minlength=count * cells).reshape(count, cells)
    hog = np.sqrt(hog)
    levels = np.clip(((z.reshape(count, -1) + 2.5) * (_HIST_BINS / 5.0)).astype(np.int64), 0, _HIST_BINS - 1)
    hist = np.bincount((levels + (np.arange(count) * _HIST_BINS)[:, None]).ravel(),
                       minlength=count * _HIST_BINS).reshape(count, _HIST_BINS)
    hist = np.sqrt(hist / z[0].size)
    features = np.concatenate([_W_DCT * _units(dct), _W_HOG * _units(hog), _W_HIST * _units(hist)], axis=1)
    return list(features.astype(np.float32))


# ---------------------------------------------------------------- ONNX models

# Inputs are scaled to [0, 1] and normalised with ImageNet's mean and std, the convention
# of torchvision and timm exports; a one-channel model gets greyscale with the averages.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DYNAMIC_SIDE = 224  # input height/width used when the model leaves them dynamic

_ONNX_HINT = "pass --embedder onnx:PATH with an image model exported to ONNX (NCHW float32 input), or --embedder default"


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise DbdedupError("the ONNX embedder needs onnxruntime, which is not installed",
                           hint="pip install 'dbdedup[onnx]' (or pip install onnxruntime)") from exc
    return onnxruntime


class OnnxEmbedder(Embedder):
    """A user's ONNX image model run with onnxruntime on CPU: the flattened first output is the descriptor.

    The model's first input must be a float32 NCHW image tensor with 1 or 3
    channels; dynamic height/width become 224. The working image is converted
    to RGB (greyscale for a one-channel model), resized to the input size
    (bilinear), scaled to [0, 1] and normalised with ImageNet's mean/std.
    ``name`` is "onnx:" plus the first 16 hex digits of the model file's SHA-256,
    so a changed file is a different embedder. The onnxruntime session is made
    lazily in each process (one intra-op thread), so an embedder built in the
    parent works in forked workers.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DbdedupError(f"ONNX model not found: {self.path}", hint=_ONNX_HINT)
        ort = _import_onnxruntime()
        data = self.path.read_bytes()
        self.name = "onnx:" + hashlib.sha256(data).hexdigest()[:16]
        self._session = None
        self._session_pid = None
        try:
            session = ort.InferenceSession(data, sess_options=self._options(ort),
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise DbdedupError(f"{self.path} is not an ONNX model onnxruntime can load ({detail[:200]})",
                               hint=_ONNX_HINT) from exc
        model_input = session.get_inputs()[0]
        self.input_name = model_input.name
        shape = list(model_input.shape)
        if model_input.type != "tensor(float)" or len(shape) != 4:
            raise DbdedupError(
                f"{self.path}: the model's input {model_input.name!r} is {model_input.type} of shape {shape}, "
                "not an image (a 4-D float32 NCHW tensor)", hint=_ONNX_HINT)
        if not isinstance(shape[1], int) and isinstance(shape[3], int) and 0 < shape[3] <= 4:
            # [batch, height, width, 3] with a dynamic height: channels last, which the width's place would
            # otherwise take as a 3-pixel-wide picture
            raise DbdedupError(
                f"{self.path}: the model's input {model_input.name!r} of shape {shape} is channels-last (NHWC); "
                "an image model here takes NCHW", hint=_ONNX_HINT)
        channels = shape[1] if isinstance(shape[1], int) else 3
        if channels not in (1, 3):
            raise DbdedupError(
                f"{self.path}: the model's input has {channels} channels; an image model takes 1 or 3 (NCHW)",
                hint=_ONNX_HINT)
        self.channels = channels
        self.height = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else DYNAMIC_SIDE
        self.width = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else DYNAMIC_SIDE
        self._session, self._session_pid = session, os.getpid()
        try:
            probe = self._run(Image.new("RGB", (self.width, self.height), (128, 128, 128)))
        except DbdedupError:
            raise
        except Exception as exc:
            raise DbdedupError(f"{self.path}: the model fails on a {self.width}x{self.height} image ({exc})",
                               hint=_ONNX_HINT) from exc
        if probe.size == 0:
            raise DbdedupError(f"{self.path}: the model's first output is empty", hint=_ONNX_HINT)
        self.raw_dim = int(probe.size)

    @staticmethod
    def _options(ort):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # fatal only: a model that fails raises, and says why in dbdedup's one line; onnxruntime's own coloured
        # ERROR line before it was a second, garbled one
        options.log_severity_level = 4
        return options

    def _get_session(self):
        # A session made in another process (before a fork) must not be used: its
        # threads and allocator state belong to the parent.
        if self._session is None or self._session_pid != os.getpid():
            ort = _import_onnxruntime()
            self._session = ort.InferenceSession(str(self.path), sess_options=self._options(ort),
                                                 providers=["CPUExecutionProvider"])
            self._session_pid = os.getpid()
        return self._session

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_session"] = None
        state["_session_pid"] = None
        return state

    def _input(self, image: Image.Image) -> np.ndarray:
        if self.channels == 1:
            pixels = image if image.mode == "L" else image.convert("L")
            mean = np.float32(sum(IMAGENET_MEAN) / 3)
            std = np.float32(sum(IMAGENET_STD) / 3)
        else:
            pixels = image if image.mode == "RGB" else image.convert("RGB")
            mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
            std = np.asarray(IMAGENET_STD, dtype=np.float32)
        pixels = pixels.resize((self.width, self.height), Image.Resampling.BILINEAR)
        arr = np.asarray(pixels, dtype=np.float32) / 255.0
        arr = (arr - mean) / std
        if self.channels == 1:
            return arr[None, None, :, :]
        return np.ascontiguousarray(arr.transpose(2, 0, 1))[None]

    def _run(self, image: Image.Image) -> np.ndarray:
        output = self._get_session().run(None, {self.input_name: self._input(image)})[0]
        return np.nan_to_num(np.asarray(output, dtype=np.float32).ravel(), posinf=0.0, neginf=0.0)

    def describe(self, image: Image.Image) -> np.ndarray:
        """The model's first output for the image, flattened (float32, shape (raw_dim,))."""
        vector = self._run(image)
        if vector.size != self.raw_dim:
            raise DbdedupError(f"{self.path}: the model's output size changed ({vector.size}, not {self.raw_dim})",
                               hint=_ONNX_HINT)
        return vector


def load_embedder(spec: str) -> Embedder:
    """The embedder for ``spec``: "default" (or "grey-v1") or "onnx:PATH"; raises DbdedupError."""
    if spec in ("default", GreyEmbedder.name):
        return GreyEmbedder()
    if spec.startswith("onnx:"):
        path = spec[len("onnx:"):]
        if not path:
            raise DbdedupError("--embedder onnx: needs a model path, as in onnx:/models/resnet18.onnx",
                               hint=_ONNX_HINT)
        return OnnxEmbedder(path)
    raise DbdedupError(f"unknown embedder {spec!r}", hint="use --embedder default, none or onnx:PATH")


# ---------------------------------------------------------------- raw storage

_FLOAT16_MAX = 65504.0


def raw_to_bytes(vector: np.ndarray) -> bytes:
    """A raw descriptor as compact bytes: float16 little-endian when every value fits, else float32."""
    vector = np.asarray(vector, dtype=np.float32).ravel()
    if np.isfinite(vector).all() and float(np.abs(vector).max(initial=0.0)) <= _FLOAT16_MAX:
        return vector.astype("<f2").tobytes()
    return vector.astype("<f4").tobytes()


def raw_descriptors(embedder: Embedder, images: list[Image.Image]) -> list[bytes | None]:
    """Each image's raw descriptor as stored (``raw_to_bytes``), or None for an image the embedder fails on.

    A model that fails on one image must not lose that image's hashes: its file gets no
    descriptor, and the next load tries again.
    """
    describe_many = getattr(embedder, "describe_many", None)
    if describe_many is not None and len(images) > 1:
        try:
            return [raw_to_bytes(vector) for vector in describe_many(images)]
        except Exception:
            pass  # one image at a time, so only the one that fails loses its descriptor
    out: list[bytes | None] = []
    for image in images:
        try:
            out.append(raw_to_bytes(embedder.describe(image)))
        except Exception:
            out.append(None)
    return out


def raw_from_bytes(data: bytes, raw_dim: int) -> np.ndarray:
    """The float32 vector stored by ``raw_to_bytes`` (its length tells float16 from float32)."""
    if len(data) == 2 * raw_dim:
        return np.frombuffer(data, dtype="<f2").astype(np.float32)
    if len(data) == 4 * raw_dim:
        return np.frombuffer(data, dtype="<f4").astype(np.float32)
    raise ValueError(f"{len(data)} bytes are not a raw descriptor of {raw_dim} values")


# ---------------------------------------------------------------- reduction

_REDUCTION_MAGIC = b"DBDRED1\n"


@dataclass
class Reduction:
    """A fitted linear reduction: ``project`` maps raw rows to unit vectors of ``dim``.

    ``mean`` (raw_dim,) and ``components`` (dim, raw_dim), float32, orthonormal
    rows (all-zero rows when dim > raw_dim). ``fitted_rows`` counts the rows the
    PCA saw.
    """

    embedder: str
    raw_dim: int
    dim: int
    mean: np.ndarray
    components: np.ndarray
    fitted_rows: int

    def to_bytes(self) -> bytes:
        """The reduction as one bytes value (a JSON header, then float32 little-endian arrays)."""
        header = json.dumps({"embedder": self.embedder, "raw_dim": self.raw_dim, "dim": self.dim,
                             "fitted_rows": self.fitted_rows}).encode()
        return (_REDUCTION_MAGIC + struct.pack("<I", len(header)) + header
                + np.asarray(self.mean, dtype="<f4").tobytes()
                + np.asarray(self.components, dtype="<f4").tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> "Reduction":
        """The reduction stored by ``to_bytes``."""
        data = bytes(data)
        if not data.startswith(_REDUCTION_MAGIC):
            raise ValueError("not a stored dbdedup reduction")
        offset = len(_REDUCTION_MAGIC)
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4
        header = json.loads(data[offset:offset + size])
        offset += size
        raw_dim, dim = int(header["raw_dim"]), int(header["dim"])
        arrays = np.frombuffer(data, dtype="<f4", offset=offset).astype(np.float32)
        if arrays.size != raw_dim * (dim + 1):
            raise ValueError("stored reduction has the wrong number of values")
        return cls(embedder=header["embedder"], raw_dim=raw_dim, dim=dim, mean=arrays[:raw_dim].copy(),
                   components=arrays[raw_dim:].reshape(dim, raw_dim).copy(),
                   fitted_rows=int(header["fitted_rows"]))


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    # Each component's largest-magnitude entry is made positive, so a refit on the same rows
    # gives the same vectors whatever sign the SVD happened to return.
    for row in vectors:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    return vectors


def fit_reduction(embedder_name: str, raw: np.ndarray, dim: int = EMBEDDING_DIM, seed: int = 0) -> Reduction:
    """Fit a PCA of ``raw`` (n, raw_dim) to ``dim`` dimensions; works for any n >= 1.

    Components beyond the data's rank are seeded random directions made
    orthonormal to the principal ones (deterministic for a seed); beyond
    raw_dim they are zero.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[0] < 1:
        raise ValueError("fit_reduction needs a 2-D array with at least one row")
    n, raw_dim = raw.shape
    mean = raw.mean(axis=0)
    centred = raw - mean
    if n >= raw_dim:
        values, vectors = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(values)[::-1]
        strengths, basis = np.sqrt(np.clip(values[order], 0, None)), vectors[:, order].T
    else:
        _, strengths, basis = np.linalg.svd(centred, full_matrices=False)
    keep = strengths > (strengths[0] * 1e-6 if strengths.size and strengths[0] > 0 else np.inf)
    basis = _fix_signs(basis[keep][:dim].copy())
    usable = min(dim, raw_dim)
    if basis.shape[0] < usable:
        rng = np.random.default_rng(seed)
        extra = rng.standard_normal((usable - basis.shape[0], raw_dim))
        # orthogonalise the random rows against the principal ones and each other
        q, _ = np.linalg.qr(np.concatenate([basis, extra]).T)
        basis = np.concatenate([basis, _fix_signs(q.T[basis.shape[0]:usable].copy())])
    components = np.zeros((dim, raw_dim))
    components[:basis.shape[0]] = basis
    return Reduction(embedder=embedder_name, raw_dim=raw_dim, dim=dim, mean=mean.astype(np.float32),
                     components=components.astype(np.float32), fitted_rows=n)


def project(reduction: Reduction, raw: np.ndarray) -> np.ndarray:
    """Raw rows (n, raw_dim) -> (n, dim) float32 unit rows (cosine similarity = dot product).

    A row equal to the fitted mean has no direction; it becomes the first unit
    vector rather than zeros (pgvector's cosine of a zero vector is NaN).
    """
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim == 1:
        raw = raw[None, :]
    if raw.shape[1] != reduction.raw_dim:
        raise ValueError(f"raw rows have {raw.shape[1]} values, the reduction expects {reduction.raw_dim}")
    out = (raw - reduction.mean) @ reduction.components.T
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    flat = norms[:, 0] <= 1e-9
    out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 1e-9)
    out[flat, 0] = 1.0
    return out.astype(np.float32)
