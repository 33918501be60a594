"""Segmentation resizing with the numbers of batchgenerators 0.25.5's ``resize_segmentation`` (which the reference
uses), without importing batchgenerators: its augmentation module imports pandas and skimage's geometry code,
about a second of CPU in every preprocessing worker process.

The rule (order >= 1): every label's indicator is resized like ``skimage.transform.resize(mode='edge',
anti_aliasing=False, clip=True)``; a voxel takes the label with the highest score, the smallest label on a tie,
except that where the nearest-neighbour label (order 0 resize) has the top score, and it is positive, that label
wins (so a voxel exactly between two labels keeps its geometric neighbour). Order 0 is the nearest-neighbour resize.
The skimage resize is reproduced here as the same ``scipy.ndimage.zoom`` call plus the same clipping, so the
scores, and hence the exact ties, are bit-identical. ``tests/preprocessing/test_segmentation_resize.py`` compares
with batchgenerators on tie-heavy inputs.

Order 1 (nnU-Net's default for segmentations) is computed without a zoom per label. An output voxel whose 2**d
interpolation taps all hold the same label gets that label: its score is a sum of positive weights, every other
label's is exactly 0, and the nearest neighbour is one of the taps. Only the other voxels (near label borders, a
few percent) need the scores, and there they are computed with scipy's own arithmetic (``linear_zoom_at``'s order
of operations on the label map), so ties are decided on the same bits.
"""
from __future__ import annotations

import itertools
from typing import Sequence, Tuple

import numpy as np

from nnunetv2.preprocessing.resampling.separable_zoom import _scipy_linear_taps, skimage_resize


def resize_segmentation(segmentation: np.ndarray, new_shape: Sequence[int], order: int = 3) -> np.ndarray:
    """Resize a label map to ``new_shape`` (same number of axes); returns the input's dtype."""
    dtype = segmentation.dtype
    new_shape = tuple(int(s) for s in new_shape)
    if segmentation.ndim != len(new_shape):
        raise ValueError(f"new shape {new_shape} must have as many axes as the segmentation {segmentation.shape}")
    if segmentation.size == 0:
        return np.zeros(new_shape, dtype=dtype)
    as_float = segmentation.astype(float)
    if np.isnan(as_float).any():
        raise ValueError("segmentation contains NaN values")
    if order == 0:
        return skimage_resize(as_float, new_shape, 0).astype(dtype)
    labels = np.unique(as_float)
    if len(labels) == 1:
        return np.full(new_shape, labels[0], dtype=dtype)
    nearest = skimage_resize(as_float, new_shape, 0)
    if order == 1:
        return _order_1_from_borders(as_float, labels, nearest, new_shape).astype(dtype, copy=False)

    # index (into labels) of the nearest-neighbour label; -1 where it is none (cannot happen with mode 'edge')
    nn_index = np.minimum(np.searchsorted(labels, nearest), len(labels) - 1)
    nn_index[labels[nn_index] != nearest] = -1
    del nearest
    index_dtype = np.int16 if len(labels) <= np.iinfo(np.int16).max else np.int64
    winner = np.zeros(new_shape, dtype=index_dtype)
    best = nn_score = None
    for i, label in enumerate(labels):
        score = skimage_resize((as_float == label).astype(float), new_shape, order)
        is_nn = nn_index == i
        if best is None:
            best = score
            nn_score = np.where(is_nn, score, -1.0)
            continue
        np.copyto(nn_score, score, where=is_nn)
        better = score > best  # strict: a tie stays with the smaller label
        np.copyto(winner, i, where=better)
        np.maximum(best, score, out=best)
        del score, better, is_nn
    nn_wins = (nn_score == best) & (nn_score > 0)
    np.copyto(winner, nn_index.astype(index_dtype, copy=False), where=nn_wins)
    return labels.astype(dtype, copy=False)[winner]


def _compact_labels(segmentation: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The label map in a small integer type (equal values stay equal, different ones different): a cast where the
    labels are small integers, else their index in ``labels``."""
    if np.all(labels == np.round(labels)) and labels.min() >= -128 and labels.max() <= 127:
        return segmentation.astype(np.int8)
    index = np.searchsorted(labels, segmentation)
    return index.astype(np.int16) if len(labels) <= np.iinfo(np.int16).max else index


def _tap_extremes(segmentation: np.ndarray, new_shape: Tuple[int, ...]) -> Tuple[np.ndarray, np.ndarray]:
    """(smallest, largest) value among each output voxel's 2**d order-1 taps; separable, axis by axis."""
    low = high = segmentation
    for axis in range(segmentation.ndim):
        (first, second), _ = _scipy_linear_taps(segmentation.shape[axis], new_shape[axis])
        low = np.minimum(np.take(low, first, axis=axis), np.take(low, second, axis=axis))
        high = np.maximum(np.take(high, first, axis=axis), np.take(high, second, axis=axis))
    return low, high


def _order_1_from_borders(segmentation: np.ndarray, labels: np.ndarray, nearest: np.ndarray,
                          new_shape: Tuple[int, ...]) -> np.ndarray:
    """The order-1 result (as float labels): the nearest label where all taps agree, the decision on the scores
    elsewhere (module docstring)."""
    low, high = _tap_extremes(_compact_labels(segmentation, labels), new_shape)
    border = np.argwhere(low != high)
    del low, high
    result = nearest  # equals the label of every voxel whose taps agree
    if len(border) == 0:
        return result
    taps = [_scipy_linear_taps(segmentation.shape[a], new_shape[a]) for a in range(segmentation.ndim)]
    scores = np.zeros((len(labels), len(border)), dtype=np.float64)
    # scipy's order of operations (as linear_zoom_at): taps in C order, each tap's value (here 1.0 or 0.0 per
    # label) multiplied by the axis weights in increasing axis order, added to a sum starting at 0.0
    for combo in itertools.product((0, 1), repeat=segmentation.ndim):
        index = tuple(taps[a][0][c][border[:, a]] for a, c in enumerate(combo))
        value = segmentation[index]
        weight = np.ones(len(border), dtype=np.float64)
        for a, c in enumerate(combo):
            weight = weight * taps[a][1][c][border[:, a]]
        for i, label in enumerate(labels):
            scores[i] += np.where(value == label, weight, 0.0)
    np.clip(scores, 0.0, 1.0, out=scores)  # skimage's clip to each indicator's range [0, 1]
    # the largest score, the smallest label on a tie; the nearest label where it has the top score and it is positive
    winner = np.argmax(scores, axis=0)
    best = scores[winner, np.arange(len(border))]
    nn_index = np.searchsorted(labels, nearest[tuple(border.T)])
    nn_score = scores[nn_index, np.arange(len(border))]
    keep_nn = (nn_score == best) & (nn_score > 0)
    winner[keep_nn] = nn_index[keep_nn]
    result[tuple(border.T)] = labels[winner]
    return result
