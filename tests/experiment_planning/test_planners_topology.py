"""Pooling/convolution topology (spec 02 §3.8). Expected values are those of nnU-Net 2.8.1 for the same inputs."""
from __future__ import annotations

import numpy as np
import pytest

from nnunetv2.experiment_planning.experiment_planners import planning_rules as rules
from nnunetv2.experiment_planning.experiment_planners.network_topology import (
    get_pool_and_conv_props, get_shape_must_be_divisible_by, pad_shape)


def _plain(r):
    return ([int(i) for i in r[0]], [list(s) for s in r[1]], [list(k) for k in r[2]], list(r[3]),
            [int(i) for i in r[4]])


def test_worked_example_a_3d():
    num_pool, strides, kernels, patch, divisor = _plain(
        get_pool_and_conv_props((3.0, 0.8, 0.8), (40, 100, 100), 4, 999999))
    assert num_pool == [3, 4, 4] and divisor == [8, 16, 16] and patch == [40, 112, 112]
    assert strides == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert kernels == [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]


def test_worked_example_a_2d():
    num_pool, strides, kernels, patch, divisor = _plain(get_pool_and_conv_props((0.8, 0.8), (100, 100), 4, 999999))
    assert num_pool == [4, 4] and patch == [112, 112] and len(strides) == len(kernels) == 5
    assert kernels == [[3, 3]] * 5


@pytest.mark.parametrize('spacing, patch, expected', [
    # float (median) patch sizes are allowed; results as produced by the reference
    ((2.399, 5.756, 1.1), (435.0, 237.0, 400.0),
     ([6, 5, 6], [[1, 1, 1], [1, 1, 2], [2, 1, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 1]],
      [[1, 1, 3], [3, 1, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [448, 256, 448],
      [64, 32, 64])),
    ((5.685, 3.275, 2.664), (133.0, 387.5, 228.0),
     ([5, 6, 6], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
      [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [160, 448, 256], [32, 64, 64])),
    ((2.486, 4.813), (265.0, 284.5),
     ([6, 6], [[1, 1]] + [[2, 2]] * 6, [[3, 3]] * 7, [320, 320], [64, 64])),
])
def test_reference_cases(spacing, patch, expected):
    assert _plain(get_pool_and_conv_props(spacing, patch, 4, 999999)) == expected


def test_single_axis_needs_three_times_min_size():
    # only axis 1 can be pooled (axis 0 spacing too coarse); 11 < 12 -> stop
    num_pool, strides, _, patch, _ = _plain(get_pool_and_conv_props((10.0, 1.0), (4, 11), 4, 999999))
    assert num_pool == [0, 0] and strides == [[1, 1]] and patch == [4, 11]


def test_max_numpool_caps_pooling():
    num_pool, _, _, patch, _ = _plain(get_pool_and_conv_props((1.0, 1.0, 1.0), (256, 256, 256), 4, 3))
    assert num_pool == [3, 3, 3] and patch == [256, 256, 256]


def test_pad_shape_and_divisor():
    assert list(pad_shape([100, 112, 447.5], [16, 16, 64])) == [112, 112, 448]
    assert list(pad_shape([7, 8], 4)) == [8, 8]
    assert list(get_shape_must_be_divisible_by([0, 3, 5])) == [1, 8, 32]


def test_rules_small_functions():
    assert rules.transpose_from_spacing([0.8, 3.0, 0.8]) == ([1, 0, 2], [1, 0, 2])
    assert rules.transpose_from_spacing([0.7, 0.8, 3.0]) == ([2, 0, 1], [1, 2, 0])
    assert list(rules.compute_new_shape([30, 101, 96], [4.5, 0.75, 0.75], [3.0, 0.75, 0.75])) == [45, 101, 96]
    assert list(rules.compute_new_shape([5, 2], [1.0, 1.0], [2.0, 2.0])) == [2, 1]  # 2.5 -> 2, 1.0 -> 1
    assert rules.axis_to_shrink([64, 64, 64], [100, 100, 100]) == 2  # ties -> last axis
    assert rules.axis_to_shrink([64, 64, 32], [100, 64, 64]) == 1
    assert list(rules.initial_patch_size((3.0, 0.8, 0.8), (40, 100, 100))) == [40, 100, 100]
    assert list(rules.initial_patch_size((1.0, 1.0), (4000, 447.5))) == [2048, 447.5]
    np.testing.assert_allclose(rules.next_lowres_spacing(np.array([1.5, 0.7, 0.7])), [1.5, 0.721, 0.721])
    np.testing.assert_allclose(rules.next_lowres_spacing(np.array([1.0, 0.7, 0.7])), [1.03, 0.721, 0.721])
    # batch size: VRAM share, capped by dataset coverage, at least the minimum
    assert rules.batch_size_from_estimate(560e6, 134628480, 2, 1.6e6, 0.05, (40, 112, 112), 2) == 2
    assert rules.batch_size_from_estimate(85e6, 3851008, 12, 1.6e6, 0.05, (112, 112), 2) == 6
