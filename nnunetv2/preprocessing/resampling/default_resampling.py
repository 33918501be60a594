"""nnU-Net's default resampling of images and segmentations.

Numerically the reference's: images are resized like ``skimage.transform.resize(order, mode='edge',
anti_aliasing=False)``, segmentations like batchgenerators' ``resize_segmentation`` (per-label argmax with the
nearest-neighbour tie-break of batchgenerators 0.25.5; see ``segmentation_resize``), and strongly anisotropic data
is resampled in-plane first, then along the low-resolution axis with ``map_coordinates(order_z, mode='nearest')``.

Faster than the reference where that changes nothing but rounding: the image path uses a separable spline zoom
(``separable_zoom``) over all slices at once instead of one skimage call per slice, and the default order-0 step
along z is an index selection instead of a full ``map_coordinates`` over the volume. Order-1 results (the
predicted logits at export) are stored exactly as the reference stores them: ``separable_zoom`` recomputes the
samples whose rounding to the output type its last bits could change.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np
from scipy.ndimage import map_coordinates

from nnunetv2.configuration import ANISO_THRESHOLD
from nnunetv2.preprocessing.resampling.segmentation_resize import resize_segmentation
from nnunetv2.preprocessing.resampling.separable_zoom import resize_like_skimage

Spacing = Union[Tuple[float, ...], List[float], np.ndarray]
Shape = Union[Tuple[int, ...], List[int], np.ndarray]


def get_do_separate_z(spacing: Spacing, anisotropy_threshold=ANISO_THRESHOLD) -> bool:
    """True if the largest spacing exceeds ``anisotropy_threshold`` times the smallest."""
    return (np.max(spacing) / np.min(spacing)) > anisotropy_threshold


def get_lowres_axis(new_spacing: Spacing) -> np.ndarray:
    """Indices of the axes with the largest spacing (one or more)."""
    spacing = np.asarray(new_spacing)
    return np.where(max(spacing) / spacing == 1)[0]


def compute_new_shape(old_shape: Shape, old_spacing: Spacing, new_spacing: Spacing) -> np.ndarray:
    """``int(round(old_spacing / new_spacing * old_shape))`` per axis (Python's round: half to even)."""
    if not (len(old_spacing) == len(old_shape) == len(new_spacing)):
        raise ValueError(f"shape {tuple(old_shape)}, current spacing {tuple(old_spacing)} and target spacing "
                         f"{tuple(new_spacing)} must have the same number of axes")
    return np.array([int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape)])


def determine_do_sep_z_and_axis(force_separate_z: bool, current_spacing, new_spacing,
                                separate_z_anisotropy_threshold: float = ANISO_THRESHOLD
                                ) -> Tuple[bool, Optional[int]]:
    """Whether to resample the low-resolution axis separately, and which axis."""
    if force_separate_z is not None:
        do_separate_z = bool(force_separate_z)
        axis = get_lowres_axis(current_spacing) if do_separate_z else None
    elif get_do_separate_z(current_spacing, separate_z_anisotropy_threshold):
        do_separate_z, axis = True, get_lowres_axis(current_spacing)
    elif get_do_separate_z(new_spacing, separate_z_anisotropy_threshold):
        do_separate_z, axis = True, get_lowres_axis(new_spacing)
    else:
        do_separate_z, axis = False, None

    if axis is not None:
        if len(axis) == 3 or len(axis) == 2:
            # e.g. spacing (0.24, 1.25, 1.25): two equally coarse axes -> no single out-of-plane axis
            do_separate_z, axis = False, None
        elif len(axis) == 1:
            axis = axis[0]  # kept a NumPy integer, as the reference returns it
        else:  # pragma: no cover - an empty axis set cannot come out of get_lowres_axis
            raise RuntimeError("could not determine the low-resolution axis")
    return do_separate_z, axis


def resample_data_or_seg_to_spacing(data: np.ndarray, current_spacing: Spacing, new_spacing: Spacing,
                                    is_seg: bool = False, order: int = 3, order_z: int = 0,
                                    force_separate_z: Optional[bool] = False,
                                    separate_z_anisotropy_threshold: float = ANISO_THRESHOLD):
    """Resample ``data`` (c, x, y, z) from ``current_spacing`` to ``new_spacing``."""
    do_separate_z, axis = determine_do_sep_z_and_axis(force_separate_z, current_spacing, new_spacing,
                                                      separate_z_anisotropy_threshold)
    if data is not None:
        if data.ndim != 4:
            raise ValueError(f"data must be 4-D (c, x, y, z), got shape {data.shape}")
    new_shape = compute_new_shape(data[0].shape, current_spacing, new_spacing)
    return resample_data_or_seg(data, new_shape, is_seg, axis, order, do_separate_z, order_z=order_z)


def resample_data_or_seg_to_shape(data, new_shape: Shape, current_spacing: Spacing, new_spacing: Spacing,
                                  is_seg: bool = False, order: int = 3, order_z: int = 0,
                                  force_separate_z: Optional[bool] = False,
                                  separate_z_anisotropy_threshold: float = ANISO_THRESHOLD):
    """Resample ``data`` (c, x, y, z; numpy or torch) to ``new_shape``; spacings only decide separate-z."""
    if not isinstance(data, np.ndarray):
        import torch
        if isinstance(data, torch.Tensor):
            data = data.cpu().numpy()
    do_separate_z, axis = determine_do_sep_z_and_axis(force_separate_z, current_spacing, new_spacing,
                                                      separate_z_anisotropy_threshold)
    if data.ndim != 4:
        raise ValueError(f"data must be 4-D (c, x, y, z), got shape {data.shape}")
    return resample_data_or_seg(data, new_shape, is_seg, axis, order, do_separate_z, order_z=order_z)


def resample_data_or_seg(data: np.ndarray, new_shape: Union[Tuple[float, ...], List[float], np.ndarray],
                         is_seg: bool = False, axis: Optional[int] = None, order: int = 3,
                         do_separate_z: bool = False, order_z: int = 0, dtype_out=None):
    """Core resampler; returns ``data`` itself if its spatial shape already equals ``new_shape``.

    The result has ``dtype_out`` (default: the input's dtype); the work is done in float64.
    """
    if data.ndim != 4:
        raise ValueError(f"data must be 4-D (c, x, y, z), got shape {data.shape}")
    if len(new_shape) != data.ndim - 1:
        raise ValueError(f"new_shape {tuple(new_shape)} must have {data.ndim - 1} entries")
    new_shape = tuple(int(i) for i in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data
    if dtype_out is None:
        dtype_out = data.dtype
    out = np.zeros((data.shape[0], *new_shape), dtype=dtype_out)
    if do_separate_z:
        if axis is None:
            raise ValueError("do_separate_z needs the index of the low-resolution axis")
        for c in range(data.shape[0]):
            out[c] = _resample_channel_separate_z(data[c], new_shape, is_seg, int(axis), order, order_z, out.dtype)
    else:
        for c in range(data.shape[0]):
            out[c] = _resize_channel(data[c], new_shape, is_seg, order, out_dtype=out.dtype)
    return out


def _resize_channel(img: np.ndarray, new_shape: Tuple[int, ...], is_seg: bool, order: int,
                    batch_axes: Tuple[int, ...] = (), out_dtype=None) -> np.ndarray:
    """One channel, all non-batch axes resized at once (batch axes: independent images). ``out_dtype``: the type
    the result is stored in (order-1 images then round exactly like skimage's result)."""
    img = img.astype(np.float64, copy=False)
    if not is_seg:
        return resize_like_skimage(img, new_shape, order, batch_axes=batch_axes, out_dtype=out_dtype)
    if not batch_axes:
        return resize_segmentation(img, new_shape, order)
    # per slice, like the reference: the label set and the tie-break are decided per 2-D image
    (a,) = batch_axes
    inner = tuple(s for i, s in enumerate(new_shape) if i != a)
    return np.stack([resize_segmentation(np.take(img, k, axis=a), inner, order) for k in range(img.shape[a])],
                    axis=a)


def _resample_channel_separate_z(img: np.ndarray, new_shape: Tuple[int, ...], is_seg: bool, axis: int,
                                 order: int, order_z: int, out_dtype=None) -> np.ndarray:
    """In-plane resize of every slice perpendicular to ``axis``, then ``axis`` alone with ``order_z``."""
    inplane_shape = tuple(img.shape[axis] if i == axis else s for i, s in enumerate(new_shape))
    # the reference stores the in-plane result in float64, so only a plain slice selection along z (order_z 0)
    # passes it on unchanged to the output type
    vol = _resize_channel(img, inplane_shape, is_seg, order, batch_axes=(axis,),
                          out_dtype=out_dtype if order_z == 0 else np.float64)
    if vol.shape[axis] == new_shape[axis]:
        return vol
    in_len, out_len = vol.shape[axis], new_shape[axis]
    # coordinate of output index i along each axis: in/out * (i + 0.5) - 0.5 (only `axis` changes)
    coords_axis = in_len / out_len * (np.arange(out_len) + 0.5) - 0.5
    if order_z == 0:
        # map_coordinates at order 0 picks floor(c + 0.5), clamped ('nearest'); the other coordinates are exact
        # integers, so this is a plain selection of slices
        idx = np.clip(np.floor(coords_axis + 0.5).astype(np.int64), 0, in_len - 1)
        return np.take(vol, idx, axis=axis)
    coord_map = _coordinate_grid(vol.shape, new_shape)
    if not is_seg:
        return map_coordinates(vol, coord_map, order=order_z, mode='nearest')
    res = np.zeros(new_shape, dtype=vol.dtype)
    for label in np.sort(np.unique(vol)):
        res[np.round(map_coordinates((vol == label).astype(float), coord_map, order=order_z,
                                     mode='nearest')) > 0.5] = label
    return res


def _coordinate_grid(old_shape: Tuple[int, ...], new_shape: Tuple[int, ...]) -> np.ndarray:
    grids = np.mgrid[tuple(slice(0, s) for s in new_shape)].astype(np.float64)
    for k, (o, n) in enumerate(zip(old_shape, new_shape)):
        grids[k] = o / n * (grids[k] + 0.5) - 0.5
    return grids
