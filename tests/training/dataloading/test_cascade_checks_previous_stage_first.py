"""3d_cascade_fullres training started while a 3d_lowres fold is still in its final validation (another GPU), which
writes predicted_next_stage case by case: some cases have no previous-stage segmentation yet. Was: the training
started and failed midway (epochs or hours later), whenever the augmentation first picked such a case. Now: a
one-line error before the data loaders start. The trainer is a stub up to the data loader, which stands for the
start of the training (no timing involved)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import nnunetv2.training.dataloading.data_loader as data_loader
from nnunetv2.errors import UserError
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2, nnUNetDatasetNumpy
from nnunetv2.training.nnUNetTrainer import _training_data

CASES = ['c0', 'c1', 'c2', 'c3']


class _TrainingStarted(Exception):
    pass


def _stub_trainer(datasets):
    return SimpleNamespace(
        dataset_class=type(datasets[0]), preprocessed_dataset_folder=datasets[0].source_folder,
        configuration_manager=SimpleNamespace(patch_size=(4, 5, 6), use_mask_for_norm=[False]),
        _get_deep_supervision_scales=lambda: None,
        configure_rotation_dummyDA_mirroring_and_inital_patch_size=lambda: (None, False, (4, 5, 6), (0, 1, 2)),
        label_manager=SimpleNamespace(foreground_labels=[1], has_regions=False, foreground_regions=None,
                                      ignore_label=None),
        get_training_transforms=lambda *a, **k: None, get_validation_transforms=lambda *a, **k: None,
        get_tr_and_val_datasets=lambda: datasets, is_cascaded=True, batch_size=2, oversample_foreground_percent=0.33,
        probabilistic_oversampling=False)


@pytest.fixture(params=[nnUNetDatasetBlosc2, nnUNetDatasetNumpy])
def folders(tmp_path, request, monkeypatch):
    cls = request.param
    pre, prev = tmp_path / 'pre', tmp_path / 'T__P__3d_lowres' / 'predicted_next_stage' / '3d_cascade_fullres'
    pre.mkdir()
    prev.mkdir(parents=True)
    for c in CASES:
        cls.save_case(np.zeros((1, 4, 5, 6), np.float32), np.zeros((1, 4, 5, 6), np.int16), {'spacing': [1, 1, 1]},
                      str(pre / c))

    def loader(*args, **kwargs):
        raise _TrainingStarted()

    monkeypatch.setattr(data_loader, 'nnUNetDataLoader', loader)
    return cls, pre, prev


def _write_prev(cls, prev, cases):
    for c in cases:
        cls.save_seg(np.zeros((1, 4, 5, 6), np.int16), str(prev / c))


def _datasets(cls, pre, prev):
    return (cls(str(pre), ['c0', 'c1', 'c2'], folder_with_segs_from_previous_stage=str(prev)),
            cls(str(pre), ['c3'], folder_with_segs_from_previous_stage=str(prev)))


def test_cases_without_previous_stage_stop_the_training_before_it_starts(folders):
    cls, pre, prev = folders
    _write_prev(cls, prev, ['c0', 'c3'])  # the lowres fold validating c1 and c2 has not written them yet
    with pytest.raises(UserError) as e:
        _training_data.get_dataloaders(_stub_trainer(_datasets(cls, pre, prev)))
    msg = e.value.one_line()
    assert "\n" not in msg and "2 of the 3 cases have no previous stage's segmentation" in msg
    assert "(first: c1)" in msg and str(prev) in msg and "--val" in msg


def test_complete_previous_stage_starts_the_training(folders):
    cls, pre, prev = folders
    _write_prev(cls, prev, CASES)
    with pytest.raises(_TrainingStarted):
        _training_data.get_dataloaders(_stub_trainer(_datasets(cls, pre, prev)))
