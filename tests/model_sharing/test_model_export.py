"""export_pretrained_model: archive content and order (spec 01 §7.1), errors, --not_strict, atomic write."""
from __future__ import annotations

import os
import shutil
import sys
import zipfile

import pytest

from _model_sharing_helpers import DATASET, MODEL, SPEC_EXAMPLE, make_fake_results_tree
from nnunetv2.errors import UserError
from nnunetv2.model_sharing.entry_points import export_pretrained_model_entry
from nnunetv2.model_sharing.model_export import export_pretrained_model


@pytest.fixture
def results(nnunet_dirs):
    make_fake_results_tree(str(nnunet_dirs["nnUNet_results"]))
    return nnunet_dirs["nnUNet_results"]


def _names(zip_file) -> list:
    with zipfile.ZipFile(zip_file) as zf:
        return zf.namelist()


def test_member_list_and_order_match_spec_example(results, tmp_path):
    out = tmp_path / "out" / "model.zip"  # the output folder is created
    export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0, 1))
    assert _names(out) == SPEC_EXAMPLE
    with zipfile.ZipFile(out) as zf:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        assert zf.read(f"{DATASET}/{MODEL}/fold_1/checkpoint_final.pth") == b"checkpoint_final.pth"
    assert os.listdir(out.parent) == ["model.zip"]  # no temporary left behind


def test_crossval_export_and_matching_ensemble(results, tmp_path):
    ens = "ensemble___nnUNetTrainer__nnUNetPlans__3d_fullres___nnUNetTrainer__nnUNetPlans__3d_fullres___0_1"
    ens_dir = results / DATASET / "ensembles" / ens
    ens_dir.mkdir(parents=True)
    for f in ("summary.json", "postprocessing.json", "x.nii.gz"):
        (ens_dir / f).write_text(f)
    out = tmp_path / "cv.zip"
    export_pretrained_model(DATASET, str(out), configurations=("3d_fullres",), folds=("0", "1"),
                            export_crossval_predictions=True)
    m = f"{DATASET}/{MODEL}/"
    e = f"{DATASET}/ensembles/{ens}/"
    assert _names(out) == [m + p for p in (
        "fold_0/debug.json", "fold_0/checkpoint_final.pth", "fold_0/progress.png", "fold_0/network_architecture.pdf",
        "fold_0/validation/case_000.nii.gz", "fold_0/validation/summary.json",
        "fold_1/checkpoint_final.pth", "fold_1/progress.png", "fold_1/validation/case_001.nii.gz",
        "fold_1/validation/summary.json",
        "crossval_results_folds_0_1/case_000.nii.gz", "crossval_results_folds_0_1/case_001.nii.gz",
        "crossval_results_folds_0_1/postprocessing.pkl", "crossval_results_folds_0_1/summary.json",
        "plans.json", "dataset_fingerprint.json", "dataset.json")] + \
        [e + "postprocessing.json", e + "summary.json", e + "x.nii.gz", f"{DATASET}/inference_information.json"]


def test_no_ensembles_folder_skips_inference_information(results, tmp_path):
    shutil.rmtree(results / DATASET / "ensembles")
    out = tmp_path / "m.zip"
    export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0,),
                            save_checkpoints=("checkpoint_final.pth", "checkpoint_best.pth"))
    names = _names(out)
    assert names[1:3] == [f"{DATASET}/{MODEL}/fold_0/checkpoint_final.pth", f"{DATASET}/{MODEL}/fold_0/checkpoint_best.pth"]
    assert not any("inference_information" in n for n in names)


def test_strict_errors_list_what_exists_and_write_nothing(results, tmp_path):
    out = tmp_path / "m.zip"
    with pytest.raises(UserError, match=r"configuration 2d.*3d_fullres"):
        export_pretrained_model(5, str(out), configurations=("3d_fullres", "2d"), folds=(0, 1))
    with pytest.raises(UserError, match=r"fold_3 does not exist.*fold_0, fold_1"):
        export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0, 3))
    with pytest.raises(UserError, match=r"fold_1: missing checkpoint_best.pth \(files in .*checkpoint_final.pth"):
        export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0, 1),
                                save_checkpoints=("checkpoint_best.pth",))
    os.remove(results / DATASET / MODEL / "dataset_fingerprint.json")
    with pytest.raises(UserError, match="dataset_fingerprint.json"):
        export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0,))
    assert not out.exists()


def test_error_listings_leave_out_temporaries(results, tmp_path):
    """A checkpoint being written (or left by a kill) and an install's marker are no files the user should look at."""
    from nnunetv2.file_io import TMP_PREFIX
    from nnunetv2.model_sharing.model_update import MODEL_UPDATE_PREFIX
    fold_1 = results / DATASET / MODEL / "fold_1"
    (fold_1 / f"{TMP_PREFIX}0123456789ab_checkpoint_best.pth").write_bytes(b"half")
    (results / DATASET / MODEL / f"{MODEL_UPDATE_PREFIX}0123456789ab").mkdir()
    with pytest.raises(UserError, match=r"missing checkpoint_best.pth \(files in [^)]*\)") as e:
        export_pretrained_model(5, str(tmp_path / "m.zip"), configurations=("3d_fullres",), folds=(0, 1),
                                save_checkpoints=("checkpoint_best.pth",))
    assert TMP_PREFIX not in str(e.value) and "checkpoint_final.pth" in str(e.value)
    with pytest.raises(UserError, match="fold_3 does not exist") as e:
        export_pretrained_model(5, str(tmp_path / "m.zip"), configurations=("3d_fullres",), folds=(0, 3))
    assert MODEL_UPDATE_PREFIX not in str(e.value) and "fold_1" in str(e.value)


def test_not_strict_skips_missing_configurations_and_folds(results, tmp_path):
    out = tmp_path / "m.zip"
    export_pretrained_model(5, str(out), configurations=("2d", "3d_fullres"), folds=(0, 1, 3), strict=False,
                            save_checkpoints=("checkpoint_best.pth",))  # fold_1 has no checkpoint_best -> skipped
    names = _names(out)
    assert not any("fold_1" in n or "fold_3" in n or "__2d" in n for n in names)
    assert f"{DATASET}/{MODEL}/fold_0/checkpoint_best.pth" in names
    # the crossval folder is named after the requested folds (0_1_3 does not exist -> not exported)
    assert not any("crossval" in n for n in names)
    with pytest.raises(UserError, match="Nothing to export"):
        export_pretrained_model(5, str(out), configurations=("2d",), strict=False)


def test_entry_point_not_strict_really_works(results, tmp_path, monkeypatch, capsys):
    out = tmp_path / "e.zip"
    argv = ["nnUNetv2_export_model_to_zip", "-d", "5", "-o", str(out), "-c", "3d_fullres", "2d", "-f", "0", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as e:
        export_pretrained_model_entry()
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnU-Net error:") and "configuration 2d" in err and "\n" not in err
    monkeypatch.setattr(sys, "argv", argv + ["--not_strict"])
    export_pretrained_model_entry()
    assert _names(out) == SPEC_EXAMPLE
