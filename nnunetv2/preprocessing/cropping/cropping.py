"""Cropping to the nonzero region of an image.

The nonzero mask is the union over channels of ``data[c] != 0`` with its holes filled (identical to
``scipy.ndimage.binary_fill_holes`` with its default structuring element). Holes are filled only inside the bounding
box of the raw mask: every background voxel outside that box touches the image border through background, so the
result is identical to filling the whole volume, and far cheaper when the box is small.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy.ndimage import label

Bbox = List[List[int]]


def get_bbox_from_mask(mask: np.ndarray) -> Bbox:
    """Per axis ``[first index with any True, last index with any True + 1]``; the whole image if the mask is empty."""
    bbox: Bbox = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other)) if other else np.flatnonzero(mask)
        if hits.size == 0:
            return [[0, int(s)] for s in mask.shape]
        bbox.append([int(hits[0]), int(hits[-1]) + 1])
    return bbox


def bounding_box_to_slice(bbox: Sequence[Sequence[int]]) -> Tuple[slice, ...]:
    return tuple(slice(int(lo), int(hi)) for lo, hi in bbox)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Same result as ``scipy.ndimage.binary_fill_holes(mask)`` (default structure), about 2-3x faster.

    A hole is a background component (face connectivity, i.e. the default structure's complement neighbourhood)
    that does not touch the array border. One labelling pass replaces scipy's iterated dilation.
    """
    labels, n = label(~mask)
    if n == 0:
        return mask.copy()
    faces = np.concatenate([np.take(labels, i, axis=ax).ravel() for ax in range(mask.ndim) for i in (0, -1)])
    border_labels = np.unique(faces)
    border_labels = border_labels[border_labels > 0]
    if border_labels.size <= 4:  # the usual case: one surrounding background; cheap scalar comparisons
        outside = np.zeros(mask.shape, dtype=bool)
        for lab in border_labels:
            outside |= labels == lab
    else:
        is_border = np.zeros(n + 1, dtype=bool)
        is_border[border_labels] = True
        outside = is_border[labels]
    return ~outside


def _raw_nonzero_mask(data: np.ndarray) -> np.ndarray:
    """OR over channels of ``data[c] != 0`` (one boolean volume; no copy of the whole multi-channel array)."""
    if data.ndim not in (3, 4):
        raise ValueError(f"data must have shape (C, X, Y, Z) or (C, X, Y), got an array of shape {data.shape}")
    mask = data[0] != 0
    for c in range(1, data.shape[0]):
        mask |= data[c] != 0
    return mask


def _filled_mask_and_bbox(data: np.ndarray) -> Tuple[np.ndarray, Bbox]:
    """The hole-filled nonzero mask *cropped to its bounding box*, and that box (full image if the mask is empty)."""
    mask = _raw_nonzero_mask(data)
    bbox = get_bbox_from_mask(mask)
    cropped = mask[bounding_box_to_slice(bbox)]
    # filling holes never grows the bounding box, and holes never reach outside it (see module docstring)
    return fill_holes(cropped), bbox


def create_nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Boolean mask (spatial shape of ``data``) of voxels nonzero in any channel, holes filled."""
    filled, bbox = _filled_mask_and_bbox(data)
    full = np.zeros(data.shape[1:], dtype=bool)
    full[bounding_box_to_slice(bbox)] = filled
    return full


def crop_to_nonzero(data: np.ndarray, seg: Optional[np.ndarray] = None,
                    nonzero_label: int = -1) -> Tuple[np.ndarray, np.ndarray, Bbox]:
    """Crop ``data`` (C, X, Y[, Z]) and ``seg`` to the bounding box of the hole-filled nonzero mask.

    Returns ``(data_cropped, seg_cropped, bbox)``. Like the reference, the crops are *views*: with a ``seg``, its
    voxels that are 0 and outside the mask are set to ``nonzero_label`` in place (the caller's array changes too;
    an unsigned or bool ``seg`` is widened to a signed copy first, where the reference fails).
    Without a ``seg``, an int8 map (1, ...) is returned: 0 inside the mask, ``nonzero_label`` outside.
    """
    filled, bbox = _filled_mask_and_bbox(data)
    slicer = (slice(None),) + bounding_box_to_slice(bbox)
    data = data[slicer]
    if seg is not None:
        seg = seg[slicer]
        if nonzero_label < 0 and seg.dtype.kind in 'ub':
            # an unsigned/bool map (e.g. an in-memory previous-stage prediction) cannot hold the negative label
            # (NumPy raises OverflowError): widen it, which makes the crop a copy
            seg = seg.astype(np.int16 if seg.dtype.itemsize == 1 else np.int32)
        seg[(seg == 0) & ~filled] = nonzero_label
    else:
        seg = np.where(filled, np.int8(0), np.int8(nonzero_label))[None]
    return data, seg, bbox
