"""Under DDP without torch.compile every shipped loss variant gives the lowest deep-supervision output the tiny
weight of nnUNetTrainer: with weight 0 its segmentation head gets no gradient and DDP stops at the second
iteration (the reference's loss variants all do that; ours did it for nnUNetTrainerCELoss only)."""
import numpy as np
import pytest
import torch

from nnunetv2.training.nnUNetTrainer.variants.loss.nnUNetTrainerCELoss import nnUNetTrainerCELoss
from nnunetv2.training.nnUNetTrainer.variants.loss.nnUNetTrainerDiceLoss import nnUNetTrainerDiceLoss
from nnunetv2.training.nnUNetTrainer.variants.loss.nnUNetTrainerTopkLoss import nnUNetTrainerTopk10Loss
from tests._tiny_plans import tiny_unet_plans


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerCELoss, nnUNetTrainerDiceLoss, nnUNetTrainerTopk10Loss])
@pytest.mark.parametrize("compiled", [False, True])
def test_lowest_output_weight_under_ddp(trainer_class, compiled, tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    plans = dict(tiny_unet_plans("Dataset985_DdpWeights"), continue_training=False)
    dataset_json = {"channel_names": {"0": "x"}, "labels": {"background": 0, "a": 1}, "numTraining": 5,
                    "file_ending": ".nii.gz"}
    trainer = trainer_class(plans, "3d_fullres", 0, dataset_json, torch.device("cpu"))
    trainer.is_ddp = True  # only _build_loss's view of it: no process group is needed for the weights
    monkeypatch.setattr(trainer, "_do_i_compile", lambda: compiled)
    weights = np.asarray(trainer._build_loss().weight_factors)
    # three stages -> two outputs: 1 and 1/2 before normalisation, the lower one set to 0 or 1e-6
    expected = np.array([1, 0.0 if compiled else 1e-6])
    assert np.array_equal(weights, expected / expected.sum())
