"""Fast, separable equivalent of ``skimage.transform.resize(img, shape, order, mode='edge', anti_aliasing=False)``.

For float64 input skimage's resize is ``scipy.ndimage.zoom(img, ..., mode='nearest', grid_mode=True)`` followed by
clipping to the input's value range. scipy's zoom is separable: the spline prefilter (after padding every axis with
12 edge values) runs axis by axis, and the tensor-product spline is evaluated from per-axis weights. scipy, however,
evaluates all 4^3 = 64 taps of an order-3 spline per output voxel. Doing the same work one axis at a time
(prefilter with scipy's own ``spline_filter1d``, then a 4-tap weighted sum along that axis) needs 3 * 4 taps per
voxel and gives the same numbers up to floating-point rounding (~1e-13 relative).

Orders 1 and 3 (what nnU-Net uses) take this path; other orders call ``scipy.ndimage.zoom`` directly.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

_NPAD = 12  # scipy pads this many edge values before the spline prefilter when mode='nearest'


@lru_cache(maxsize=64)
def _taps(in_len: int, out_len: int, order: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices (into the padded coefficient line) and weights, each (out_len, order + 1), of scipy's
    grid-mode zoom from ``in_len`` to ``out_len`` samples."""
    npad = _NPAD if order > 1 else 0
    scale = in_len / out_len
    cc = (np.arange(out_len, dtype=np.float64) + 0.5) * scale - 0.5  # output sample -> input coordinate
    base = np.floor(cc)
    t = cc - base
    if order == 1:
        start = base
        weights = np.stack([1. - t, t], axis=1)
    elif order == 3:
        start = base - 1
        t2, t3 = t * t, t * t * t
        one_minus = 1. - t
        weights = np.stack([one_minus * one_minus * one_minus / 6.,
                            (3. * t3 - 6. * t2 + 4.) / 6.,
                            (-3. * t3 + 3. * t2 + 3. * t + 1.) / 6.,
                            t3 / 6.], axis=1)
    else:
        raise ValueError(f"separable zoom supports orders 1 and 3, not {order}")
    idx = start.astype(np.int64)[:, None] + np.arange(order + 1)[None] + npad
    # mode 'nearest': taps beyond the (padded) line repeat its edge
    np.clip(idx, 0, in_len + 2 * npad - 1, out=idx)
    idx.setflags(write=False)
    weights.setflags(write=False)
    return idx, weights


def _zoom_axis(x: np.ndarray, out_len: int, order: int, axis: int) -> np.ndarray:
    """scipy's zoom (mode 'nearest', grid mode) along one axis of a float64 array."""
    in_len = x.shape[axis]
    if order > 1:
        pad = [(0, 0)] * x.ndim
        pad[axis] = (_NPAD, _NPAD)
        coef = np.pad(x, pad, mode='edge')
        ndimage.spline_filter1d(coef, order, axis=axis, output=coef, mode='nearest')
    else:
        coef = x
    idx, weights = _taps(in_len, out_len, order)
    wshape = [1] * x.ndim
    wshape[axis] = out_len
    out = np.take(coef, idx[:, 0], axis=axis)
    out *= weights[:, 0].reshape(wshape)
    for j in range(1, order + 1):
        tap = np.take(coef, idx[:, j], axis=axis)
        tap *= weights[:, j].reshape(wshape)
        out += tap
    return out


def zoom_axes(x: np.ndarray, new_shape: Sequence[int], order: int, axes: Sequence[int]) -> np.ndarray:
    """Resample float64 ``x`` to ``new_shape`` along ``axes`` (other axes keep their length); unclipped.

    Axes whose length does not change are skipped (scipy's spline at the sample points is the identity up to
    rounding). The axis with the largest reduction goes first, to keep intermediate arrays small.
    """
    todo = [a for a in axes if x.shape[a] != new_shape[a]]
    todo.sort(key=lambda a: new_shape[a] / x.shape[a])
    for a in todo:
        x = _zoom_axis(x, int(new_shape[a]), order, a)
    return x


def resize_like_skimage(img: np.ndarray, new_shape: Sequence[int], order: int,
                        batch_axes: Sequence[int] = ()) -> np.ndarray:
    """skimage ``resize(img, new_shape, order, mode='edge', anti_aliasing=False, clip=True)`` as float64.

    ``batch_axes`` are axes that are not resampled: each sub-image across them is an independent image (clipped to
    its own value range), exactly as if resize were called once per sub-image. May return ``img`` itself when
    nothing changes.
    """
    img = np.asarray(img, dtype=np.float64)
    new_shape = tuple(int(s) for s in new_shape)
    if len(new_shape) != img.ndim:
        raise ValueError(f"new_shape {new_shape} has {len(new_shape)} entries but the image has {img.ndim} axes")
    if any(new_shape[a] != img.shape[a] for a in batch_axes):
        raise ValueError(f"batch axes {tuple(batch_axes)} cannot change length ({img.shape} -> {new_shape})")
    axes = tuple(a for a in range(img.ndim) if a not in batch_axes)
    if img.size == 0 or any(s == 0 for s in new_shape):
        raise ValueError(f"cannot resize an image of shape {img.shape} to {new_shape}")
    if order not in (1, 3):
        return _resize_with_scipy(img, new_shape, order, batch_axes)
    out = zoom_axes(img, new_shape, order, axes)
    if out is img:
        return img
    # skimage's clip=True: clip to the input's value range (per independent image)
    lo = np.min(img, axis=axes, keepdims=True)
    hi = np.max(img, axis=axes, keepdims=True)
    np.clip(out, lo, hi, out=out)
    return out


def skimage_resize(image: np.ndarray, new_shape: Sequence[int], order: int) -> np.ndarray:
    """``skimage.transform.resize(image, new_shape, order, mode='edge', clip=True, anti_aliasing=False)`` for a
    float64 ``image`` without NaNs, bit for bit (any order): scipy's grid-mode zoom, clipped to the input's range.
    Spares importing skimage's transform module."""
    factors = np.divide(image.shape, tuple(new_shape))
    out = ndimage.zoom(image, [1 / f for f in factors], order=order, mode='nearest', cval=0, grid_mode=True)
    np.clip(out, np.asarray(np.min(image)), np.asarray(np.max(image)), out=out)
    return out


def _resize_with_scipy(img: np.ndarray, new_shape: Tuple[int, ...], order: int,
                       batch_axes: Sequence[int]) -> np.ndarray:
    """The unoptimised path for other spline orders: one scipy zoom per independent image."""
    if not batch_axes:
        return skimage_resize(img, new_shape, order)
    batch_axes = tuple(batch_axes)
    moved = np.moveaxis(img, batch_axes, range(len(batch_axes)))
    inner = tuple(new_shape[a] for a in range(img.ndim) if a not in batch_axes)
    out = np.empty(moved.shape[:len(batch_axes)] + inner, dtype=np.float64)
    for index in np.ndindex(*moved.shape[:len(batch_axes)]):
        out[index] = skimage_resize(moved[index], inner, order)
    return np.moveaxis(out, range(len(batch_axes)), batch_axes)
