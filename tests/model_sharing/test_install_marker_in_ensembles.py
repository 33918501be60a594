"""An install of a zip with an ensemble (nnUNetv2_export_model_to_zip --exp_cv_preds) into a dataset that has an
ensembles folder already: the install's marker (model_sharing.model_update) belongs into model folders only, the
ones predictions load. In <dataset>/ensembles it was taken for an ensemble by nnUNetv2_export_model_to_zip, which
failed with a ValueError traceback while an install ran, and for good after a killed one (its marker stays)."""
from __future__ import annotations

import os
import zipfile

import pytest

import nnunetv2.model_sharing.model_import as model_import
from _model_sharing_helpers import DATASET, MODEL, make_fake_results_tree
from nnunetv2.model_sharing.model_export import export_pretrained_model
from nnunetv2.model_sharing.model_import import install_model_from_zip_file
from nnunetv2.model_sharing.model_update import MODEL_UPDATE_PREFIX

ENSEMBLE = "ensemble___nnUNetTrainer__nnUNetPlans__3d_fullres___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1"


@pytest.fixture
def results(nnunet_dirs):
    results = nnunet_dirs["nnUNet_results"]
    make_fake_results_tree(str(results))
    ens_dir = results / DATASET / "ensembles" / ENSEMBLE
    ens_dir.mkdir(parents=True)
    (ens_dir / "summary.json").write_text("{}")
    return results


def _markers(folder) -> list:
    return [n for n in os.listdir(folder) if n.startswith(MODEL_UPDATE_PREFIX)]


def test_install_marks_the_model_folder_not_the_ensembles_folder(results, tmp_path, monkeypatch):
    zip_file = tmp_path / "m.zip"
    export_pretrained_model(DATASET, str(zip_file), configurations=("3d_fullres",), folds=(0, 1))
    with zipfile.ZipFile(zip_file) as zf:
        assert f"{DATASET}/ensembles/{ENSEMBLE}/summary.json" in zf.namelist()
    seen, real_move = [], model_import._move_into_place

    def move(src, dst):
        if not seen:
            seen.append((_markers(results / DATASET / MODEL), _markers(results / DATASET / "ensembles")))
        real_move(src, dst)

    monkeypatch.setattr(model_import, "_move_into_place", move)
    install_model_from_zip_file(str(zip_file))
    assert len(seen[0][0]) == 1 and seen[0][1] == [], seen


def test_export_ignores_a_marker_left_in_the_ensembles_folder(results, tmp_path):
    (results / DATASET / "ensembles" / (MODEL_UPDATE_PREFIX + "killed")).mkdir()  # a kill -9 of an older install
    out = tmp_path / "m.zip"
    export_pretrained_model(DATASET, str(out), configurations=("3d_fullres",), folds=(0, 1))
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert f"{DATASET}/ensembles/{ENSEMBLE}/summary.json" in names
    assert not any(MODEL_UPDATE_PREFIX in n for n in names)
