"""nnUNetv2_accumulate_crossval_results -o X, killed midway, must complete when run again."""
from __future__ import annotations

import json
import sys

import pytest

import nnunetv2.evaluation.accumulate_cv_results as accumulate_module
from _fake_results_tree import DATASET, make_fake_results_tree
from nnunetv2.evaluation.accumulate_cv_results import evaluate_with_dataset_labels
from nnunetv2.evaluation.find_best_configuration import accumulate_crossval_results_entry_point


class Killed(BaseException):
    """Stands for a kill -9: nothing after it runs (a BaseException passes every ``except Exception``)."""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    for k, v in make_fake_results_tree(str(tmp_path)).items():
        monkeypatch.setenv(k, v)
    return tmp_path


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
