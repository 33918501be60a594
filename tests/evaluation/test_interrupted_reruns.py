"""Commands of model selection killed midway, then run again: what they leave never names deleted files, and the
same command completes afterwards with what an uninterrupted run gives."""
from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

import nnunetv2.evaluation.accumulate_cv_results as accumulate_module
from _fake_results_tree import DATASET
from nnunetv2.errors import UserError
from nnunetv2.evaluation.accumulate_cv_results import evaluate_with_dataset_labels
from nnunetv2.evaluation.find_best_configuration import accumulate_crossval_results_entry_point, find_best_configuration

MODELS = [{'plans': 'nnUNetPlans', 'configuration': '2d', 'trainer': 'nnUNetTrainer'}]


class Killed(BaseException):
    """Stands for a kill -9: nothing after it runs (a BaseException passes every ``except Exception``)."""


def test_killed_rerun_leaves_no_dangling_inference_information(tree, monkeypatch):
    results = tree / 'nnUNet_results' / DATASET
    first = find_best_configuration(DATASET, MODELS, False, 1, True, (0, 1))
    expected = (results / 'inference_information.json').read_bytes()
    pp_file = first['best_model_or_ensemble']['postprocessing_file']
    assert os.path.isfile(pp_file)

    def killed(*args, **kwargs):  # after the merged folder was deleted and refilled, before its evaluation
        raise Killed()

    monkeypatch.setattr(accumulate_module, 'evaluate_with_dataset_labels', killed)
    with pytest.raises(Killed):  # the rerun deletes crossval_results_folds_0_1 (and its postprocessing.pkl) first
        find_best_configuration(DATASET, MODELS, False, 1, True, (0, 1))
    info = results / 'inference_information.json'
    if info.exists():
        best = json.loads(info.read_text())['best_model_or_ensemble']
        for key in ('postprocessing_file', 'some_plans_file'):
            assert os.path.isfile(best[key]), f"inference_information.json names {best[key]}, which is gone"
    txt = results / 'inference_instructions.txt'
    if txt.exists():
        assert pp_file not in txt.read_text() or os.path.isfile(pp_file)

    monkeypatch.undo()
    for k, v in {n: str(tree / n) for n in ('nnUNet_raw', 'nnUNet_preprocessed', 'nnUNet_results')}.items():
        monkeypatch.setenv(k, v)
    find_best_configuration(DATASET, MODELS, False, 1, True, (0, 1))  # the rerun completes and gives the same
    assert (results / 'inference_information.json').read_bytes() == expected


def test_rerun_refused_for_an_unfinished_fold_changes_nothing(tree):
    """A fold of the second model is not validated yet: the rerun is refused before the first model's merged folder
    or the earlier inference_information.json is touched."""
    results = tree / 'nnUNet_results' / DATASET
    models = MODELS + [{'plans': 'nnUNetPlans', 'configuration': '3d_fullres', 'trainer': 'nnUNetTrainer'}]
    find_best_configuration(DATASET, models, True, 1, True, (0, 1))
    info = (results / 'inference_information.json').read_bytes()
    merged_2d = results / 'nnUNetTrainer__nnUNetPlans__2d' / 'crossval_results_folds_0_1'
    before = {p.name: p.stat().st_mtime_ns for p in merged_2d.iterdir()}
    shutil.rmtree(results / 'nnUNetTrainer__nnUNetPlans__3d_fullres' / 'fold_1' / 'validation')
    with pytest.raises(UserError, match='fold 1 of model'):
        find_best_configuration(DATASET, models, True, 1, True, (0, 1))
    assert (results / 'inference_information.json').read_bytes() == info
    assert {p.name: p.stat().st_mtime_ns for p in merged_2d.iterdir()} == before


def test_accumulate_into_o_reruns_after_a_kill(tree, monkeypatch, capsys):
    """nnUNetv2_accumulate_crossval_results -o X killed midway leaves X partly filled; the same command again must
    complete (it refused X as 'not empty') and give what an uninterrupted run gives."""
    reference, out = tree / 'uninterrupted', tree / 'merged'
    monkeypatch.setattr(sys, 'argv', ['x', DATASET, '-c', '2d', '-f', '0', '1', '-o', str(reference)])
    accumulate_crossval_results_entry_point()

    def killed(*args, **kwargs):  # the cases are copied, the evaluation not written
        raise Killed()

    monkeypatch.setattr(accumulate_module, 'evaluate_with_dataset_labels', killed)
    monkeypatch.setattr(sys, 'argv', ['x', DATASET, '-c', '2d', '-f', '0', '1', '-o', str(out)])
    with pytest.raises(Killed):
        accumulate_crossval_results_entry_point()
    assert any(p.name.endswith('.nii.gz') for p in out.iterdir())

    monkeypatch.setattr(accumulate_module, 'evaluate_with_dataset_labels', evaluate_with_dataset_labels)
    accumulate_crossval_results_entry_point()
    capsys.readouterr()
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith('.'))
    assert names == sorted(p.name for p in reference.iterdir() if not p.name.startswith('.'))
    for name in names:
        if name != 'summary.json':  # it names the folder evaluated
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert (json.loads((out / 'summary.json').read_text())['foreground_mean']
            == json.loads((reference / 'summary.json').read_text())['foreground_mean'])
