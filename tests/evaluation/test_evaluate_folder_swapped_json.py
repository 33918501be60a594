"""nnUNetv2_evaluate_folder's -djfile: with -djfile and -pfile swapped (the plans file given as dataset.json) it
stopped with KeyError: 'file_ending' (the reference too); it names the file and what it lacks. A reduced
dataset.json (labels and file_ending only) is still enough, as in the reference."""
import json
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.evaluation.evaluate_predictions import evaluate_folder_entry_point

PLANS = {"dataset_name": "Dataset001_X", "plans_name": "nnUNetPlans", "configurations": {},
         "label_manager": "LabelManager", "image_reader_writer": "SimpleITKIO"}
LABELS = {"background": 0, "a": 1, "b": 2}


@pytest.fixture
def folders(tmp_path):
    """(reference folder, prediction folder, plans file): one case whose label 1 has Dice 2/3."""
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    for folder, seg in ((ref, [[[0, 1, 1, 2]]]), (pred, [[[0, 1, 2, 2]]])):
        folder.mkdir()
        sitk.WriteImage(sitk.GetImageFromArray(np.asarray(seg, np.uint8)), str(folder / "a.nii.gz"))
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps(PLANS))
    return ref, pred, plans


def _evaluate(monkeypatch, ref, pred, djfile, pfile):
    """Exit status of nnUNetv2_evaluate_folder with these arguments."""
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_evaluate_folder", str(ref), str(pred), "-djfile", str(djfile),
                                      "-pfile", str(pfile), "-np", "1"])
    try:
        evaluate_folder_entry_point()
    except SystemExit as e:
        return e.code or 0
    return 0


def _dice_of_label_1(pred) -> float:
    return json.loads((pred / "summary.json").read_text())["mean"]["1"]["Dice"]


def test_plans_given_as_dataset_json_is_named(folders, tmp_path, monkeypatch, capsys):
    ref, pred, plans = folders
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 1,
                              "file_ending": ".nii.gz"}))
    code = _evaluate(monkeypatch, ref, pred, plans, dj)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and err.strip().startswith("nnU-Net error:")
    assert str(plans) in err and "'labels'" in err and "file_ending" in err
    assert not (pred / "summary.json").exists()
    assert _evaluate(monkeypatch, ref, pred, dj, plans) == 0  # the right order still works
    assert _dice_of_label_1(pred) == 2 / 3


def test_dataset_json_with_labels_and_file_ending_only_evaluates(folders, tmp_path, monkeypatch):
    """Evaluation reads only 'labels' and 'file_ending' of -djfile (the reference too): a reduced dataset.json written
    to evaluate another method's predictions is not refused for lacking 'channel_names'."""
    ref, pred, plans = folders
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
    assert _evaluate(monkeypatch, ref, pred, dj, plans) == 0
    assert _dice_of_label_1(pred) == 2 / 3
