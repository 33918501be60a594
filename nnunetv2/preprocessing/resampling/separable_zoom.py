"""Fast, separable equivalent of ``skimage.transform.resize(img, shape, order, mode='edge', anti_aliasing=False)``.

For float64 input skimage's resize is ``scipy.ndimage.zoom(img, ..., mode='nearest', grid_mode=True)`` followed by
clipping to the input's value range. scipy's zoom is separable: the spline prefilter (after padding every axis with
12 edge values) runs axis by axis, and the tensor-product spline is evaluated from per-axis weights. scipy, however,
evaluates all 4^3 = 64 taps of an order-3 spline per output voxel. Doing the same work one axis at a time
(prefilter with scipy's own ``spline_filter1d``, then a 4-tap weighted sum along that axis) needs 3 * 4 taps per
voxel and gives the same numbers up to floating-point rounding (~1e-13 relative).

Orders 1 and 3 (what nnU-Net uses) take this path; other orders call ``scipy.ndimage.zoom`` directly.

Rounding: the separable result differs from scipy's in the last bits of float64. That is harmless unless the
result is then rounded to a narrower type and scipy's value sits exactly on (or within those last bits of) a
rounding boundary. For order 1 this is common, not rare: resampling float16 logits, an output sample halfway
between two input samples that differ by one float16 step is an exact tie. Given the type the caller stores the
result in (``out_dtype``), order-1 results are therefore made to round exactly as scipy's would: samples whose
rounding the last bits could change are recomputed with scipy's own order of operations (``linear_zoom_at``).
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Optional, Sequence, Tuple

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
                        batch_axes: Sequence[int] = (), out_dtype: Optional[np.dtype] = None) -> np.ndarray:
    """skimage ``resize(img, new_shape, order, mode='edge', anti_aliasing=False, clip=True)`` as float64.

    ``batch_axes`` are axes that are not resampled: each sub-image across them is an independent image (clipped to
    its own value range), exactly as if resize were called once per sub-image. May return ``img`` itself when
    nothing changes.

    ``out_dtype``: the type the caller will store the result in. The result then converts to exactly the values
    skimage's would (float64 itself: skimage's own numbers, computed by scipy at its speed); without it, values agree
    with skimage's to ~1e-13 relative.
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
    exact_order_1 = order == 1 and out_dtype is not None
    if order not in (1, 3) or (out_dtype is not None and np.finfo(np.float64).resolution >= _resolution(out_dtype)):
        # stored in float64 (or finer), every last bit shows (also after further interpolation): scipy's own numbers
        return _resize_with_scipy(img, new_shape, order, batch_axes)
    out = zoom_axes(img, new_shape, order, axes)
    if out is img:
        return img
    # skimage's clip=True: clip to the input's value range (per independent image)
    lo = np.min(img, axis=axes, keepdims=True)
    hi = np.max(img, axis=axes, keepdims=True)
    np.clip(out, lo, hi, out=out)
    if exact_order_1:
        _round_like_scipy(out, img, axes, lo, hi, np.dtype(out_dtype))
    elif order == 3 and out_dtype is not None and np.finfo(np.float64).resolution < _resolution(out_dtype):
        _round_cubic_like_scipy(out, img, axes, lo, hi, np.dtype(out_dtype))
    return out


def _resolution(dtype) -> float:
    """Relative precision of ``dtype``; 1 for integer types (rounding to them is coarser than to any float)."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).resolution) if dtype.kind == 'f' else 1.0


# The separable and scipy's order-1 sums differ by a few float64 rounding errors of the largest input magnitude:
# each is bounded by (2**d taps + d axis passes) * eps * max|img|; this factor leaves a wide margin on top.
_ROUNDING_MARGIN = 8
_CHUNK = 2 ** 20  # values per slab of the boundary check (bounds its temporaries)


def _round_like_scipy(out: np.ndarray, img: np.ndarray, axes: Sequence[int], lo: np.ndarray, hi: np.ndarray,
                      out_dtype: np.dtype) -> None:
    """Recompute, in place, the samples of the clipped separable order-1 result ``out`` whose conversion to
    ``out_dtype`` could differ from that of scipy's (clipped) result.

    scipy's unclipped sum lies within ``tol`` of ours, and clipping cannot widen that gap, so the clipped results
    are within ``tol`` too. Conversion is monotone: where both ends of [v - tol, v + tol] convert to the same
    value, scipy's does as well. Everywhere else (ties and near-ties) scipy's sum is recomputed with its own
    arithmetic.
    """
    magnitude = max(float(np.max(np.abs(lo))), float(np.max(np.abs(hi))))
    tol = _ROUNDING_MARGIN * (2 ** len(axes) + len(axes)) * np.finfo(np.float64).eps * magnitude
    if tol == 0:
        return  # an all-zero image: every sum is exactly zero
    step = max(1, _CHUNK // max(1, int(np.prod(out.shape[1:]))))
    for start in range(0, out.shape[0], step):
        block = out[start:start + step]
        if out_dtype == np.float16:
            points = np.argwhere(_float16_boundary_candidates(block, tol))
        else:
            points = np.argwhere((block - tol).astype(out_dtype) != (block + tol).astype(out_dtype))
        if len(points) == 0:
            continue
        points[:, 0] += start
        exact = linear_zoom_at(img, out.shape, points, axes)
        bounds = tuple(points[:, a] if lo.shape[a] > 1 else 0 for a in range(out.ndim))
        out[tuple(points.T)] = np.clip(exact, lo[bounds], hi[bounds])


# The separable and scipy's order-3 results differ by at most ~26 float64 rounding errors of max|img| (measured:
# white noise, smooth and piecewise-constant images, 2-D and 3-D, up- and downsampling); margin ~40x on top.
_CUBIC_TOLERANCE = 1024


def _round_cubic_like_scipy(out: np.ndarray, img: np.ndarray, axes: Sequence[int], lo: np.ndarray, hi: np.ndarray,
                            out_dtype: np.dtype) -> None:
    """Recompute, in place, the samples of the clipped separable order-3 result ``out`` whose conversion to
    ``out_dtype`` could differ from that of scipy's (the image resampling stores float32: a sample within the
    separable sum's last bits of a float32 rounding boundary would otherwise round the other way, seen once in a few
    million voxels). scipy's value at a point is ``map_coordinates`` at the coordinate its zoom uses there, which
    equals the zoom's value bit for bit; it is computed per independent image (batch axes) that has such points."""
    magnitude = float(np.max(np.abs(img))) if img.size else 0.0
    tol = _CUBIC_TOLERANCE * np.finfo(np.float64).eps * magnitude
    if tol == 0:
        return
    points = []
    step = max(1, _CHUNK // max(1, int(np.prod(out.shape[1:]))))
    for start in range(0, out.shape[0], step):
        block = out[start:start + step]
        found = np.argwhere((block - tol).astype(out_dtype) != (block + tol).astype(out_dtype))
        found[:, 0] += start
        points.append(found)
    points = np.concatenate(points) if points else np.zeros((0, out.ndim), dtype=np.int64)
    if len(points) == 0:
        return
    axes = sorted(axes)
    batch = [a for a in range(out.ndim) if a not in axes]
    keys = points[:, batch] if batch else np.zeros((len(points), 0), dtype=np.int64)
    for key in np.unique(keys, axis=0):
        mine = points[np.all(keys == key, axis=1)] if batch else points
        index = [slice(None)] * out.ndim
        for a, k in zip(batch, key):
            index[a] = int(k)
        image = img[tuple(index)]
        coordinates = np.stack([(mine[:, a] + 0.5) * (np.float64(img.shape[a]) / np.float64(out.shape[a])) - 0.5
                                for a in axes])
        exact = ndimage.map_coordinates(image, coordinates, order=3, mode='nearest', prefilter=True)
        bounds = tuple(mine[:, a] if lo.shape[a] > 1 else 0 for a in range(out.ndim))
        out[tuple(mine.T)] = np.clip(exact, lo[bounds], hi[bounds])


def _float16_boundary_candidates(values: np.ndarray, tol: float) -> np.ndarray:
    """Mask that includes every value within ``tol`` of a float16 rounding boundary (and a few more), four times
    cheaper than converting ``values -+ tol`` to float16.

    A boundary (the midpoint of two neighbouring float16 values) has 12 significant bits, so in float32 its 13 bits
    below float16's mantissa read 0x1000. Where ``tol`` is at most half a float32 step, a value within ``tol`` of a
    boundary rounds to float32 within one step of it, so those bits read 0x1000 +- 1. Magnitudes where that does
    not hold (float16 subnormals, steps finer than ``tol``) and near float16's overflow are all included.
    """
    bits = values.astype(np.float32).view(np.uint32)
    low = bits & np.uint32(0x1FFF)
    mask = (low - np.uint32(0x1000 - 2)) <= np.uint32(4)  # unsigned: values below 0x0FFE wrap to large numbers
    magnitude = bits & np.uint32(0x7FFFFFFF)  # ordered like |value| (NaNs at the top)
    small = 2.0 * max(2.0 ** -14, tol * 2.0 ** 25)  # twice max(smallest normal float16, where tol = step / 2)
    mask |= magnitude < np.float32(small).view(np.uint32)
    mask |= magnitude >= np.float32(65000).view(np.uint32)  # largest finite float16: 65504
    return mask


@lru_cache(maxsize=64)
def _scipy_linear_taps(in_len: int, out_len: int) -> Tuple[Tuple[np.ndarray, np.ndarray],
                                                            Tuple[np.ndarray, np.ndarray]]:
    """((first tap, second tap), (their weights)) per output sample, computed as scipy's order-1 grid-mode zoom
    with mode 'nearest' computes them: the coordinate is not clamped, taps outside the line take its edge value,
    and the second weight is 1 minus the first (not the fraction itself)."""
    zoom = np.float64(in_len) / np.float64(out_len)
    coordinate = (np.arange(out_len, dtype=np.float64) + 0.5) * zoom - 0.5
    floor = np.floor(coordinate)
    w_first = 1.0 - (coordinate - floor)
    w_second = 1.0 - w_first
    first = floor.astype(np.int64)
    taps = (np.clip(first, 0, in_len - 1), np.clip(first + 1, 0, in_len - 1)), (w_first, w_second)
    for arr in (*taps[0], *taps[1]):
        arr.setflags(write=False)
    return taps


def linear_zoom_at(img: np.ndarray, new_shape: Sequence[int], points: np.ndarray,
                   axes: Sequence[int]) -> np.ndarray:
    """scipy's order-1 zoom (grid mode, mode 'nearest') of float64 ``img`` to ``new_shape`` along ``axes``, bit for
    bit, at the output indices ``points`` (n, ndim) only; not clipped. Axes not in ``axes`` are batch axes.

    scipy's order of operations: the 2**len(axes) taps in C order (last axis fastest), each tap's value multiplied
    by the weights of the axes in increasing order, added one by one to a sum that starts at 0.0.
    """
    axes = sorted(axes)
    taps = {a: _scipy_linear_taps(img.shape[a], int(new_shape[a])) for a in axes}
    total = np.zeros(len(points), dtype=np.float64)
    for combo in itertools.product((0, 1), repeat=len(axes)):
        index = [points[:, a] for a in range(img.ndim)]
        for a, c in zip(axes, combo):
            index[a] = taps[a][0][c][points[:, a]]
        term = img[tuple(index)]
        for a, c in zip(axes, combo):
            term = term * taps[a][1][c][points[:, a]]
        total = total + term
    return total


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
