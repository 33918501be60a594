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
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nnunetv2.preprocessing.resampling.separable_zoom import skimage_resize


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
