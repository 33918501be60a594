"""U-Net topology from spacing and patch size: how often to pool each axis and which kernels to use.

The rule: pool an axis only while its feature map is at least ``2 * min_feature_map_size`` long and its (current)
spacing is less than twice the finest spacing among the poolable axes, so anisotropic axes are pooled later; use a
3-kernel along an axis once its spacing is within a factor 2 of the finest, a 1-kernel before that.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple, Union

import numpy as np


def get_shape_must_be_divisible_by(net_numpool_per_axis: Sequence[int]) -> np.ndarray:
    """``2 ** num_pool`` per axis: the patch must be a multiple of this to survive all poolings."""
    return 2 ** np.array(net_numpool_per_axis)


def pad_shape(shape: Sequence[Union[int, float]], must_be_divisible_by: Union[int, Sequence[int]]) -> np.ndarray:
    """Round each entry of ``shape`` up to the next multiple of its divisor (unchanged if already a multiple)."""
    if not isinstance(must_be_divisible_by, (tuple, list, np.ndarray)):
        must_be_divisible_by = [must_be_divisible_by] * len(shape)
    else:
        assert len(must_be_divisible_by) == len(shape)
    new_shp = [shape[i] + must_be_divisible_by[i] - shape[i] % must_be_divisible_by[i] for i in range(len(shape))]
    for i in range(len(shape)):
        if shape[i] % must_be_divisible_by[i] == 0:
            new_shp[i] -= must_be_divisible_by[i]
    return np.array(new_shp).astype(int)


def get_pool_and_conv_props(spacing: Sequence[float], patch_size: Sequence[Union[int, float]],
                            min_feature_map_size: int, max_numpool: int
                            ) -> Tuple[List[int], Tuple[Tuple[int, ...], ...], Tuple[Tuple[int, ...], ...],
                                       Tuple[int, ...], np.ndarray]:
    """Returns ``(num_pool_per_axis, strides, kernel_sizes, padded_patch_size, shape_must_be_divisible_by)``.

    ``strides`` starts with all ones (the first stage does not downsample); ``kernel_sizes`` ends with the
    bottleneck's all-3 kernel, so both have one entry per stage. ``patch_size`` may hold floats (a median shape
    such as 447.5); the returned patch is padded up to a multiple of ``2 ** num_pool`` per axis.
    """
    dim = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = list(patch_size)
    num_pool = [0] * dim
    kernel = [1] * dim
    strides: List[Tuple[int, ...]] = [tuple([1] * dim)]
    kernels: List[Tuple[int, ...]] = []

    while True:
        valid = [d for d in range(dim) if cur_size[d] >= 2 * min_feature_map_size]
        if len(valid) < 1:
            break
        finest = min(cur_spacing[d] for d in valid)
        valid = [d for d in valid if cur_spacing[d] / finest < 2]
        valid = [d for d in valid if num_pool[d] < max_numpool]
        # a single remaining axis is only pooled if it stays comfortably above the minimum size
        if len(valid) == 1 and cur_size[valid[0]] < 3 * min_feature_map_size:
            break
        if len(valid) < 1:
            break

        # kernel decided from the spacing *before* this pooling step; once 3, it stays 3
        global_finest = min(cur_spacing)
        for d in range(dim):
            if kernel[d] != 3 and cur_spacing[d] / global_finest < 2:
                kernel[d] = 3

        stride = [1] * dim
        for d in valid:
            stride[d] = 2
            num_pool[d] += 1
            cur_spacing[d] *= 2
            cur_size[d] = math.ceil(cur_size[d] / 2)
        strides.append(tuple(stride))
        kernels.append(tuple(kernel))

    divisor = get_shape_must_be_divisible_by(num_pool)
    padded = pad_shape(patch_size, divisor)
    kernels.append(tuple([3] * dim))
    return num_pool, tuple(strides), tuple(kernels), tuple(int(i) for i in padded), divisor
