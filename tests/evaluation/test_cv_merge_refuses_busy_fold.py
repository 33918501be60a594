"""nnUNetv2_find_best_configuration / accumulate_crossval_results while nnUNetv2_train is (re)training or
re-validating one of the folds (another GPU, or `--val --npz` to add the probabilities): the fold's validation
folder still holds the predictions and summary.json of the model being replaced. Was: merged silently, exit code 0,
the cross-validation score and the postprocessing chosen for a model that was about to change. Now: a one-line
error naming the fold. The training is simulated by the claim nnUNetv2_train takes on its fold folder, held by
another thread until the test releases it (no timing involved)."""
from __future__ import annotations

import contextlib
import os
import threading

import pytest

from _fake_results_tree import DATASET, make_fake_results_tree
import nnunetv2.evaluation.accumulate_cv_results as acc
from nnunetv2.errors import UserError
from nnunetv2.file_io import load_json
from nnunetv2.run._fold_claim import claim_fold_folder

FOLDS = (0, 1)


@pytest.fixture
def model(tmp_path, monkeypatch):
    dirs = make_fake_results_tree(str(tmp_path), configurations=('3d_fullres',), folds=FOLDS)
    for k, v in dirs.items():
        monkeypatch.setenv(k, v)
    return os.path.join(dirs['nnUNet_results'], DATASET, 'nnUNetTrainer__nnUNetPlans__3d_fullres')


@contextlib.contextmanager
def _fold_being_trained(fold_folder):
    claimed, release, errors = threading.Event(), threading.Event(), []

    def training():
        try:
            with contextlib.ExitStack() as held:
                claim_fold_folder(fold_folder, held)
                claimed.set()
                release.wait(60)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
            claimed.set()

    t = threading.Thread(target=training, daemon=True)
    t.start()
    assert claimed.wait(60) and errors == []
    try:
        yield
    finally:
        release.set()
        t.join(60)
    assert errors == []


def test_fold_being_trained_is_refused_and_the_earlier_merge_kept(model):
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    before = sorted(os.listdir(merged))
    with _fold_being_trained(os.path.join(model, 'fold_1')):
        with pytest.raises(UserError, match=r"training or validating fold 1 right now"):
            acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
        assert sorted(os.listdir(merged)) == before
    # once that run has ended, the merge goes through again
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    assert len(load_json(os.path.join(merged, 'summary.json'))['metric_per_case']) == 4


def test_the_check_does_not_take_the_fold_from_a_training(model):
    """The check only looks: a training started after it can still claim the fold."""
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    with _fold_being_trained(os.path.join(model, 'fold_0')):
        pass
    assert not any(n.startswith('.') for n in os.listdir(os.path.join(model, 'fold_0')))  # no lock file left
