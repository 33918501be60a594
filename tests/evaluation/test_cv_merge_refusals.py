"""Merging the folds' validation results (nnUNetv2_find_best_configuration, accumulate_crossval_results) while a
fold is not ready: not trained or validated yet, or being trained or validated again by a running nnUNetv2_train
(another GPU, `--val --npz` to add the probabilities). The run is refused with a line naming the fold before the
merged folder is touched: an earlier complete merge stays. Was: the folds before the missing one were copied into a
half-filled crossval_results_folds_* (no summary.json) after the earlier merge had been deleted, and a fold being
retrained was merged silently from the predictions of the model about to be replaced. A running training is
simulated by the claim nnUNetv2_train takes on its fold folder, held by another thread (no timing involved)."""
from __future__ import annotations

import contextlib
import os
import shutil
import threading

import pytest

import nnunetv2.evaluation.accumulate_cv_results as acc
from _fake_results_tree import FOLDS
from nnunetv2.errors import UserError
from nnunetv2.file_io import load_json
from nnunetv2.run._fold_claim import claim_fold_folder


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


def _write_fold_summary(model, fold, prefix='/where/it/was/validated/'):
    """summary.json of the fold's validation as the trainer writes it (only what the check reads)."""
    validation = os.path.join(model, f'fold_{fold}', 'validation')
    cases = sorted(f for f in os.listdir(validation) if f.endswith('.nii.gz'))
    summary = {'metric_per_case': [{'prediction_file': prefix + f, 'reference_file': '/gt/' + f, 'metrics': {}}
                                   for f in cases]}
    with open(os.path.join(validation, 'summary.json'), 'w') as f:
        import json
        json.dump(summary, f)
    return validation, cases


def test_prediction_deleted_after_the_validation_is_named(model):
    """A model whose fold lost a scored prediction would be compared on fewer cases than the others."""
    validation, cases = _write_fold_summary(model, 0)
    os.remove(os.path.join(validation, cases[0]))
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    with pytest.raises(UserError, match=rf"1 of the {len(cases)} validation predictions of fold 0 .* missing .*"
                                        rf"first: {cases[0]}"):
        acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    assert not os.path.exists(merged)


@pytest.mark.parametrize('prefix', ['/moved/from/elsewhere/', 'C:\\Users\\me\\fold_0\\validation\\'])
def test_moved_model_with_all_scored_predictions_merges(model, prefix):
    _write_fold_summary(model, 0, prefix)
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    assert os.path.isfile(os.path.join(merged, 'summary.json'))


def test_model_exported_without_crossval_predictions_keeps_its_merged_results(model):
    """An exported model without its cross-validation predictions (the default of nnUNetv2_export_model_to_zip) has
    only summary.json in each fold's validation folder and the merged folder's summary.json and postprocessing:
    find_best_configuration --no_overwrite (accumulate with overwrite=False) uses them, as the reference does."""
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    summary = load_json(os.path.join(merged, 'summary.json'))
    for fold in FOLDS:
        validation, cases = _write_fold_summary(model, fold)
        for c in cases:
            os.remove(os.path.join(validation, c))
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1, overwrite=False)
    assert load_json(os.path.join(merged, 'summary.json')) == summary
