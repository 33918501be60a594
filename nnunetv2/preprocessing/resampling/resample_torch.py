"""Resampling with ``torch.nn.functional.interpolate``, used by the *_torchres planners."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch.nn import functional as F

from nnunetv2.configuration import ANISO_THRESHOLD
from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

Shape = Union[Tuple[int, ...], List[int], np.ndarray]
Spacing = Union[Tuple[float, ...], List[float], np.ndarray]


@contextlib.contextmanager
def _torch_threads(num_threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _interp_mode(mode: str, n_spatial: int) -> str:
    """'linear' means bilinear / trilinear depending on the number of spatial axes."""
    if mode == 'linear':
        return 'bilinear' if n_spatial == 2 else 'trilinear'
    return mode


def _interpolate(x: torch.Tensor, new_shape: Tuple[int, ...], mode: str) -> torch.Tensor:
    """``x`` (c, *spatial) float -> (c, *new_shape)."""
    kwargs = {} if mode in ('nearest', 'nearest-exact', 'area') else {'align_corners': False, 'antialias': False}
    return F.interpolate(x[None], size=new_shape, mode=mode, **kwargs)[0]


def resample_torch_simple(data: Union[torch.Tensor, np.ndarray], new_shape: Shape, is_seg: bool = False,
                          num_threads: int = 4, device: torch.device = torch.device('cpu'),
                          memefficient_seg_resampling: bool = False, mode='linear'):
    """Resample ``data`` (c, *spatial) to ``new_shape`` in one go (no separate-z handling)."""
    new_shape = tuple(int(i) for i in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data
    if len(new_shape) != data.ndim - 1:
        raise ValueError(f"new_shape {new_shape} must have {data.ndim - 1} entries for data of shape {data.shape}")
    input_was_numpy = isinstance(data, np.ndarray)
    mode = _interp_mode(mode, len(new_shape))
    with torch.no_grad(), _torch_threads(num_threads):
        x = torch.from_numpy(data) if input_was_numpy else data
        x = x.to(device)
        if not is_seg:
            result = _interpolate(x.float(), new_shape, mode)
        elif memefficient_seg_resampling:
            result = _seg_memefficient(x, new_shape, mode)
        else:
            result = _seg_by_vote(x, new_shape, mode)
        result = result.cpu()
    return result.numpy() if input_was_numpy else result


def _seg_dtype(labels: torch.Tensor) -> torch.dtype:
    return torch.int8 if labels.max() < 127 else torch.int16


def _seg_by_vote(seg: torch.Tensor, new_shape: Tuple[int, ...], mode: str) -> torch.Tensor:
    """Each label's indicator (x1000) is interpolated; a value > 700 claims the voxel (later labels win), voxels
    claimed by nobody take the label with the highest (float16) interpolated value, first maximum on ties."""
    labels = torch.unique(seg)  # sorted
    result = torch.zeros((seg.shape[0], *new_shape), dtype=_seg_dtype(labels), device=seg.device)
    scores = torch.zeros((len(labels), seg.shape[0], *new_shape), dtype=torch.float16, device=seg.device)
    done = torch.zeros((seg.shape[0], *new_shape), dtype=torch.bool, device=seg.device)
    for i, u in enumerate(labels):
        scores[i] = _interpolate((seg == u).float() * 1000, new_shape, mode)
        claimed = scores[i] > 700
        result[claimed] = u.to(result.dtype)
        done |= claimed
    if not torch.all(done):
        winners = labels[scores[:, ~done].argmax(0)]
        result[~done] = winners.to(result.dtype)
    return result


def _seg_memefficient(seg: torch.Tensor, new_shape: Tuple[int, ...], mode: str) -> torch.Tensor:
    """Each label in turn claims the voxels where its interpolated indicator exceeds 0.5."""
    labels = torch.unique(seg)
    result = torch.zeros((seg.shape[0], *new_shape), dtype=_seg_dtype(labels), device=seg.device)
    for u in labels:
        result[_interpolate((seg == u).float(), new_shape, mode) > 0.5] = u.to(result.dtype)
    return result


def resample_torch_fornnunet(data: Union[torch.Tensor, np.ndarray], new_shape: Shape, current_spacing: Spacing,
                             new_spacing: Spacing, is_seg: bool = False, num_threads: int = 4,
                             device: torch.device = torch.device('cpu'), memefficient_seg_resampling: bool = False,
                             force_separate_z: Optional[bool] = None,
                             separate_z_anisotropy_threshold: float = ANISO_THRESHOLD, mode='linear',
                             aniso_axis_mode='nearest-exact'):
    """nnU-Net's torch resampler: separate-z as in the default resampler (in-plane first, then the low-resolution
    axis with ``aniso_axis_mode``), otherwise one interpolation of the whole volume."""
    new_shape = tuple(int(i) for i in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data
    do_separate_z, axis = determine_do_sep_z_and_axis(force_separate_z, current_spacing, new_spacing,
                                                      separate_z_anisotropy_threshold)
    kwargs = dict(is_seg=is_seg, num_threads=num_threads, device=device,
                  memefficient_seg_resampling=memefficient_seg_resampling)
    if not do_separate_z:
        return resample_torch_simple(data, new_shape, mode=mode, **kwargs)
    if data.ndim != 4:
        raise ValueError(f"separate-z resampling needs 4-D data (c, x, y, z), got shape {data.shape}")
    input_was_numpy = isinstance(data, np.ndarray)
    x = torch.from_numpy(data) if input_was_numpy else data
    # fold the low-resolution axis into the channels, resample in-plane (2-D), unfold
    inplane_axes = [a for a in range(3) if a != axis]
    perm = [0, axis + 1] + [a + 1 for a in inplane_axes]
    folded = x.permute(perm)
    c, n = folded.shape[:2]
    folded = folded.reshape(c * n, *folded.shape[2:])
    inplane = resample_torch_simple(folded, tuple(new_shape[a] for a in inplane_axes), mode=mode, **kwargs)
    inplane = inplane.reshape(c, n, *inplane.shape[1:])
    inverse = [perm.index(i) for i in range(4)]
    vol = inplane.permute(inverse)
    # then the whole volume to new_shape: only the low-resolution axis still changes
    result = resample_torch_simple(vol, new_shape, mode=aniso_axis_mode, **kwargs)
    if input_was_numpy and isinstance(result, torch.Tensor):
        result = result.numpy()
    return result
