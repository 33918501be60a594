"""Fixtures of the evaluation tests: a fake results tree (see _fake_results_tree) with the nnU-Net folders set."""
from __future__ import annotations

import os

import pytest

from _fake_results_tree import DATASET, make_fake_results_tree


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """The whole fake tree (2d and 3d_fullres, folds 0 and 1); the environment points at it."""
    for k, v in make_fake_results_tree(str(tmp_path)).items():
        monkeypatch.setenv(k, v)
    return tmp_path


@pytest.fixture
def model(tmp_path, monkeypatch):
    """One trained model (3d_fullres, the default folds) of a fake tree; its folder."""
    dirs = make_fake_results_tree(str(tmp_path), configurations=('3d_fullres',))
    for k, v in dirs.items():
        monkeypatch.setenv(k, v)
    return os.path.join(dirs['nnUNet_results'], DATASET, 'nnUNetTrainer__nnUNetPlans__3d_fullres')
