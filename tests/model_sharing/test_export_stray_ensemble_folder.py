"""A folder put into <dataset>/ensembles by hand, whose name is not ensemble___<models>___<folds>, must not stop
the export (it is no ensemble of the exported models)."""
from __future__ import annotations

import zipfile

import pytest

from _model_sharing_helpers import DATASET, make_fake_results_tree
from nnunetv2.model_sharing.model_export import export_pretrained_model


@pytest.mark.parametrize("name", ["old_ensemble", "ensemble___junk___0_1", "ensemble___a__b___c__d__e__f___0"])
def test_stray_ensemble_folder_is_left_out(nnunet_dirs, tmp_path, name):
    results = nnunet_dirs["nnUNet_results"]
    make_fake_results_tree(str(results))
    (results / DATASET / "ensembles" / name).mkdir(parents=True)
    (results / DATASET / "ensembles" / name / "summary.json").write_text("{}")
    out = tmp_path / "model.zip"
    export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0, 1))
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert not any("/ensembles/" in n for n in names)
    assert f"{DATASET}/inference_information.json" in names
