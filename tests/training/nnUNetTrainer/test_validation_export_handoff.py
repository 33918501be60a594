"""The final validation hands each case's logits to the export workers as a numpy array, inside the task, as
nnUNetv2_predict does. A torch tensor would travel as a file descriptor fetched from this process's
multiprocessing resource-sharer thread, and a worker stopped halfway through fetching it (Ctrl-C during the
validation: the pool is terminated) makes that thread print a ConnectionResetError traceback (seen in
tests/run/test_kill9_train.py::test_train_with_workers_killed_at_many_moments)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.nnUNetTrainer import _validation


class _Stop(Exception):
    pass


class _RecordingPool:
    """Stands in for the export WatchedPool: records the first submitted task, then stops the validation."""

    submitted = []

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def wait_for_capacity(self, tasks, allowed_queued):
        pass

    def submit(self, fn, args=(), name=None):
        _RecordingPool.submitted.append((fn, args, name))
        raise _Stop


class _Dataset:
    def __init__(self, folder, keys, folder_with_segs_from_previous_stage=None):
        self.identifiers = list(keys)

    def load_case(self, key):
        return np.zeros((1, 4, 4, 4), np.float32), None, None, {'case': key}


def test_validation_sends_numpy_logits_to_the_export_workers(monkeypatch, tmp_path):
    logits = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    monkeypatch.setattr(nnUNetPredictor, 'manual_initialization', lambda self, *a, **k: None)
    monkeypatch.setattr(nnUNetPredictor, 'predict_sliding_window_return_logits', lambda self, data: logits.clone())
    monkeypatch.setattr(_validation, 'WatchedPool', _RecordingPool)
    _RecordingPool.submitted = []
    trainer = SimpleNamespace(
        set_deep_supervision_enabled=lambda enabled: None, network=torch.nn.Identity(), is_ddp=False, batch_size=2,
        enable_deep_supervision=False, _do_i_compile=lambda: False, device=torch.device('cpu'),
        print_to_log_file=lambda *a, **k: None, plans_manager=None,
        configuration_manager=SimpleNamespace(next_stage_names=None), dataset_json={},
        inference_allowed_mirroring_axes=(0,), output_folder=str(tmp_path), label_manager=None,
        do_split=lambda: ([], ['case_000']), dataset_class=_Dataset, preprocessed_dataset_folder=str(tmp_path),
        folder_with_segs_from_previous_stage=None, is_cascaded=False, local_rank=0)
    with pytest.raises(_Stop):
        _validation.perform_actual_validation(trainer)
    (fn, args, name), = _RecordingPool.submitted
    assert name == 'case_000'
    assert not any(isinstance(a, torch.Tensor) for a in args), [type(a) for a in args]
    assert isinstance(args[0], np.ndarray)
    np.testing.assert_array_equal(args[0], logits.numpy())
