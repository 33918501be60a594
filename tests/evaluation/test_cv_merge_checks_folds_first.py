"""nnUNetv2_find_best_configuration / accumulate_crossval_results run while a fold is not trained or validated yet
(it is still training on another GPU): the run is refused before the merged folder is touched. Was: the folds
before the missing one were copied into crossval_results_folds_*, which was left behind half-filled (no
summary.json), and an earlier complete merge of the same folds was deleted."""
from __future__ import annotations

import os
import shutil

import pytest

from _fake_results_tree import DATASET, make_fake_results_tree
import nnunetv2.evaluation.accumulate_cv_results as acc
from nnunetv2.errors import UserError
from nnunetv2.file_io import load_json

FOLDS = (0, 1)


@pytest.fixture
def model(tmp_path, monkeypatch):
    dirs = make_fake_results_tree(str(tmp_path), configurations=('3d_fullres',), folds=FOLDS)
    for k, v in dirs.items():
        monkeypatch.setenv(k, v)
    return os.path.join(dirs['nnUNet_results'], DATASET, 'nnUNetTrainer__nnUNetPlans__3d_fullres')


def test_missing_fold_leaves_no_half_merged_folder(model):
    shutil.rmtree(os.path.join(model, 'fold_1'))  # fold 1 is still training: no validation folder yet
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    with pytest.raises(UserError, match='fold 1 of model'):
        acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    assert not os.path.exists(merged)


def test_refused_run_keeps_the_earlier_merge(model):
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    before = sorted(os.listdir(merged))
    summary = load_json(os.path.join(merged, 'summary.json'))
    # fold 1's validation is being redone (nnUNetv2_train ... 1 --val after deleting it): not finished yet
    shutil.rmtree(os.path.join(model, 'fold_1', 'validation'))
    with pytest.raises(UserError, match='fold 1 of model'):
        acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    assert sorted(os.listdir(merged)) == before
    assert load_json(os.path.join(merged, 'summary.json')) == summary
