"""Pillow's greyscale resize, reproduced byte for byte as matrix products.

Pillow's 8-bit resampling (libImaging/Resample.c): per output pixel, integer weights (the
filter's normalised coefficients times 2**22, rounded away from zero) summed over the input
pixels plus 2**21, shifted right by 22 and clipped to 0..255; one pass per axis, with
rounding in between. The same integer sums in float64 are exact (|sum| < 2**40), so a matrix
product per pass gives Pillow's bytes without its per-call overhead, and the product can
take a stack of images of one shape at once.

Which axis Pillow resamples first depends on the shapes (and on its version), so each
(input, output, filter) shape is checked against Pillow on random images before the matrices
are used for it (``checked_order``); a shape that cannot be matched keeps using Pillow.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

_PRECISION_BITS = 22
_ROUND_HALF = float(1 << (_PRECISION_BITS - 1))
_UNSCALE = 1.0 / (1 << _PRECISION_BITS)
_SHAPES_KEPT = 512  # distinct (input, output, filter) shapes remembered per process
_WEIGHTS_KEPT = 64  # weight matrices kept (up to 32 x 1024 float64 each: 16 MB at most per cache)
_MATRIX_MAX_SIDE = 1024  # larger inputs keep Pillow's resize (their decode dwarfs it anyway)


def grey_pixels(grey: Image.Image) -> np.ndarray:
    """The (height, width) uint8 array of an 'L' image: what ``numpy.asarray(grey)`` gives."""
    # without the array-interface detour, which costs more than the copy on small images
    return np.frombuffer(grey.tobytes(), dtype=np.uint8).reshape(grey.height, grey.width)


def limit_blas_threads() -> None:
    """Make numpy's BLAS use one thread in this process (for the loader's worker processes).

    The resize matrices are products of a few hundred rows, which OpenBLAS splits over every
    core; with one worker process per core those threads fight for the cores.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


_SUPPORT = {Image.Resampling.LANCZOS: 3.0, Image.Resampling.BILINEAR: 1.0}  # the filters' half widths


@functools.lru_cache(maxsize=_WEIGHTS_KEPT)
def _weights(in_size: int, out_size: int, resample: int) -> np.ndarray:
    """The (out_size, in_size) integer weights Pillow uses along one axis, as float64.

    Pillow's float computation, done for all taps at once: on a set of images of many sizes
    every new shape needs its matrices, and a Python loop per tap cost 5x more. ``_check_shape``
    compares the result with Pillow before it is used.
    """
    support = _SUPPORT[resample]
    scale = filterscale = in_size / out_size
    filterscale = max(filterscale, 1.0)
    support *= filterscale
    inverse = 1.0 / filterscale
    rows = np.arange(out_size)
    centre = (rows + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C's int(): truncated, then >= 0
    count = np.minimum((centre + support + 0.5).astype(np.int64), in_size) - first
    taps_x = np.arange(int(count.max()))
    inside = taps_x[None, :] < count[:, None]
    x = (taps_x[None, :] + first[:, None] - centre[:, None] + 0.5) * inverse
    taps = np.where(inside, _filter_taps(x, resample), 0.0)
    total = np.cumsum(taps, axis=1)[:, -1]  # a running sum, in Pillow's order: the same float
    k = taps / np.where(total != 0.0, total, 1.0)[:, None]
    ints = np.trunc(k * (1 << _PRECISION_BITS) + np.where(k < 0, -0.5, 0.5))
    weights = np.zeros((out_size, in_size))
    out_index, tap_index = np.nonzero(inside)
    weights[out_index, first[out_index] + tap_index] = ints[out_index, tap_index]
    return weights


@functools.lru_cache(maxsize=_WEIGHTS_KEPT)
def resize_weights(in_size: int, out_size: int, resample: int) -> np.ndarray:
    """Pillow's weights along one axis ((out_size, in_size) float64, each row summing to about 1),
    without its rounding: ``weights @ pixels @ weights.T`` resizes a square stack in float."""
    weights = _weights(in_size, out_size, resample) / (1 << _PRECISION_BITS)
    weights.flags.writeable = False
    return weights


def _filter_taps(x: np.ndarray, resample: int) -> np.ndarray:
    """Pillow's filter (libImaging/Resample.c) at every element of ``x``: bilinear, or Lanczos
    (sinc(x) sinc(x / 3) on [-3, 3), sinc(t) = sin(pi t) / (pi t))."""
    if resample == Image.Resampling.BILINEAR:
        a = np.abs(x)
        return np.where(a < 1.0, 1.0 - a, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t, t3 = x * math.pi, (x / 3) * math.pi
        taps = np.where(x == 0.0, 1.0, np.sin(t) / t) * np.where(x == 0.0, 1.0, np.sin(t3) / t3)
    return np.where((x >= -3.0) & (x < 3.0), taps, 0.0)


@functools.lru_cache(maxsize=_WEIGHTS_KEPT)
def _stacked_weights(width: int, widths: tuple[int, ...], resample: int) -> np.ndarray:
    return np.concatenate([_weights(width, w, resample) for w in widths])


def _pass(weights: np.ndarray, pixels: np.ndarray, axis: int) -> np.ndarray:
    # one resampling pass over rows (axis 1: the last axis) or columns (axis 0: the one before),
    # of one image or a stack, rounded and clipped as Pillow does
    out = pixels @ weights.T if axis == 1 else weights @ pixels
    out += _ROUND_HALF
    out *= _UNSCALE
    np.floor(out, out=out)
    np.maximum(out, 0.0, out=out)
    return np.minimum(out, 255.0, out=out)


def _numpy_resize(pixels: np.ndarray, size: tuple[int, int], resample: int, horizontal_first: bool) -> np.ndarray:
    height, width = pixels.shape[-2:]
    out = pixels.astype(np.float64)
    passes = [(1, width, size[0]), (0, height, size[1])]
    if not horizontal_first:
        passes.reverse()
    for axis, in_size, out_size in passes:
        if in_size != out_size:
            out = _pass(_weights(in_size, out_size, resample), out, axis)
    return out


# (height, width, out_width, out_height, resample) -> times seen, then True/False (horizontal
# pass first) once checked, or None when Pillow must be used
_resize_shapes: dict[tuple, object] = {}


def _check_shape(key: tuple) -> bool | None:
    height, width, out_width, out_height, resample = key
    rng = np.random.default_rng(len(_resize_shapes))
    for _ in range(3):
        probe = rng.integers(0, 256, (height, width), dtype=np.uint8)
        pillow = np.asarray(Image.fromarray(probe, "L").resize((out_width, out_height), resample))
        matches = [order for order in (True, False)
                   if np.array_equal(_numpy_resize(probe, (out_width, out_height), resample, order), pillow)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            return None
    return matches[0] if matches else None


def checked_order(height: int, width: int, size: tuple[int, int],
                  resample: int = Image.Resampling.LANCZOS) -> bool | None:
    """How a (height, width) 'L' image is resized to ``size`` by matrices in this process.

    True or False (Pillow's horizontal pass first or not) once the shape was checked against
    Pillow; None while it has not been (or could not be matched), when Pillow resizes it.
    """
    state = _resize_shapes.get((height, width, size[0], size[1], int(resample)))
    return state if state is True or state is False else None


def resize_grey(grey: Image.Image | None, pixels: np.ndarray, size: tuple[int, int],
                resample: int = Image.Resampling.LANCZOS) -> np.ndarray:
    """``numpy.asarray(grey.resize(size, resample))`` ('L' image, LANCZOS or BILINEAR) as float64.

    ``pixels`` is ``grey``'s uint8 array (``grey`` may be None: made from it when needed).
    Bit-identical to Pillow: a shape is resized with matrices only after it was seen once and
    checked against Pillow, and only up to _MATRIX_MAX_SIDE pixels a side.
    """
    height, width = pixels.shape
    key = (height, width, size[0], size[1], int(resample))
    state = _resize_shapes.get(key, 0)
    if state is True or state is False:
        return _numpy_resize(pixels, size, resample, state)
    if state is not None and (height, width) != (size[1], size[0]) and max(height, width) <= _MATRIX_MAX_SIDE:
        if len(_resize_shapes) >= _SHAPES_KEPT:
            _resize_shapes.clear()
        # a shape seen once may be a one-off: checking it costs more than a Pillow resize
        _resize_shapes[key] = _check_shape(key) if state >= 1 else state + 1
    if grey is None:
        grey = Image.fromarray(np.ascontiguousarray(pixels), "L")
    return grey_pixels(grey.resize(size, resample)).astype(np.float64)


def resize_stack(pixels: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray | None:
    """``resize_grey`` of each of n images of one shape ((n, h, w) uint8) at once, or None when
    that shape has not been checked against Pillow yet (resize them one by one then)."""
    state = checked_order(pixels.shape[1], pixels.shape[2], size, resample)
    if state is None:
        return None
    return _numpy_resize(pixels, size, resample, state)


def stack_ready(height: int, width: int, sizes: tuple[tuple[int, int], ...],
                resample: int = Image.Resampling.LANCZOS) -> bool:
    """True when ``resize_many`` can resize (height, width) images to every one of ``sizes``."""
    return all(w != width and h != height and checked_order(height, width, (w, h), resample) is True
               for w, h in sizes)


def resize_many(pixels: np.ndarray, sizes: tuple[tuple[int, int], ...],
                resample: int = Image.Resampling.LANCZOS) -> list[np.ndarray] | None:
    """``pixels`` ((h, w) or a stack (n, h, w) of uint8) resized to each of ``sizes``, as float64.

    One horizontal pass serves every size; None unless ``stack_ready`` (use ``resize_grey``).
    """
    height, width = pixels.shape[-2:]
    if not stack_ready(height, width, sizes, resample):
        return None
    rows = _pass(_stacked_weights(width, tuple(w for w, _ in sizes), resample), pixels.astype(np.float64), 1)
    out, start = [], 0
    for w, h in sizes:
        out.append(_pass(_weights(height, h, resample), rows[..., start:start + w], 0))
        start += w
    return out


def resize_grey_many(grey: Image.Image, pixels: np.ndarray, sizes: tuple[tuple[int, int], ...],
                     resample: int = Image.Resampling.LANCZOS) -> list[np.ndarray]:
    """``resize_grey`` to each of ``sizes``; one horizontal pass serves them all when Pillow's order allows."""
    together = resize_many(pixels, sizes, resample)
    if together is not None:
        return together
    return [resize_grey(grey, pixels, size, resample) for size in sizes]
