"""The trainer's final validation never batches the mirrored TTA passes (nnUNet_tta_batch is a prediction option
whose logits differ in the last bits from the reference's; validation scores must not)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.nnUNetTrainer import _validation


class _Stop(Exception):
    pass


def test_final_validation_ignores_nnUNet_tta_batch(monkeypatch):
    monkeypatch.setenv('nnUNet_tta_batch', '8')
    assert nnUNetPredictor(device=torch.device('cpu')).tta_passes_per_batch == 8
    seen = []

    def record_and_stop(self, *args, **kwargs):
        seen.append(self.tta_passes_per_batch)
        raise _Stop

    monkeypatch.setattr(nnUNetPredictor, 'manual_initialization', record_and_stop)
    trainer = SimpleNamespace(set_deep_supervision_enabled=lambda enabled: None, network=torch.nn.Identity(),
                              is_ddp=False, batch_size=2, enable_deep_supervision=False,
                              _do_i_compile=lambda: False, device=torch.device('cpu'), print_to_log_file=print,
                              plans_manager=None, configuration_manager=None, dataset_json={},
                              inference_allowed_mirroring_axes=(0,))
    with pytest.raises(_Stop):
        _validation.perform_actual_validation(trainer)
    assert seen == [1]
