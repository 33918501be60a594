"""Trainers published by users import DA5's random-parameter callables from the DA5 module by their reference names
(e.g. ``from ...nnUNetTrainerDA5 import _brightnessadditive_localgamma_transform_scale, ...``)."""
import numpy as np


def test_da5_helper_names_importable_and_usable():
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import (
        _brightness_gradient_additive_max_strength, _brightnessadditive_localgamma_transform_scale,
        _local_gamma_gamma)
    np.random.seed(0)
    shape = (17, 40, 30)
    for axis in range(3):
        for _ in range(50):
            w = _brightnessadditive_localgamma_transform_scale(shape, axis)
            assert shape[axis] // 6 <= w <= shape[axis]
    for _ in range(50):
        s = _brightness_gradient_additive_max_strength(shape, 0)
        assert 1 <= abs(s) <= 5
        g = _local_gamma_gamma()
        assert 0.01 <= g <= 0.8 or 1.5 <= g <= 4


def test_da5_helper_draws_match_the_formula():
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import (
        _brightnessadditive_localgamma_transform_scale)
    np.random.seed(3)
    got = _brightnessadditive_localgamma_transform_scale((12, 60, 48), 1)
    np.random.seed(3)
    assert got == np.exp(np.random.uniform(np.log(60 // 6), np.log(60)))
