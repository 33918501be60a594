"""A dataset of tiny images gets a 2-stage U-Net (patch 14x8x14 here): its one deep-supervision output is the
full-resolution one, and setting the lowest output's weight to 0 zeroed all weights, 0/0 = NaN: the loss was NaN
from the first step, the weights NaN, every prediction background, without an error (found by fuzz round 3 on
make_synthetic_dataset.py mr3d_regions --z-range 8 10 --xy-range 16 20; the reference does the same)."""
import numpy as np
import pytest
import torch

from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper


@pytest.mark.parametrize("is_ddp, compiled", [(False, False), (True, False), (True, True)])
def test_single_output_keeps_its_weight(is_ddp, compiled):
    n = len(_setup.deep_supervision_scales([[1, 1, 1], [2, 2, 2]]))
    assert n == 1
    w = _setup.deep_supervision_weights(n, is_ddp, compiled)
    assert np.all(np.isfinite(w)) and np.allclose(w, [1.0])
    loss = DeepSupervisionWrapper(lambda x, y: (x - y).abs().mean(), w)
    assert torch.isfinite(loss((torch.ones(2, 2),), (torch.zeros(2, 2),)))
