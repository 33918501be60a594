"""nnUNetv2_evaluate_folder with -djfile and -pfile swapped (the plans file given as dataset.json) stopped with
KeyError: 'file_ending' (the reference too); it names the file and what it lacks."""
import json
import sys

import numpy as np
import SimpleITK as sitk

from nnunetv2.evaluation.evaluate_predictions import evaluate_folder_entry_point


def _write(folder, name, arr):
    folder.mkdir(exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.asarray(arr, np.uint8)), str(folder / name))


def test_plans_given_as_dataset_json_is_named(tmp_path, monkeypatch, capsys):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    _write(ref, "a.nii.gz", [[[0, 1, 1, 2]]])
    _write(pred, "a.nii.gz", [[[0, 1, 2, 2]]])
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
                              "numTraining": 1, "file_ending": ".nii.gz"}))
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps({"dataset_name": "Dataset001_X", "plans_name": "nnUNetPlans", "configurations": {},
                                 "label_manager": "LabelManager", "image_reader_writer": "SimpleITKIO"}))
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_evaluate_folder", str(ref), str(pred), "-djfile", str(plans),
                                      "-pfile", str(dj), "-np", "1"])
    try:
        evaluate_folder_entry_point()
        code = 0
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and err.strip().startswith("nnU-Net error:")
    assert str(plans) in err and "'labels'" in err and "file_ending" in err
    assert not (pred / "summary.json").exists()
    # the right order still works
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_evaluate_folder", str(ref), str(pred), "-djfile", str(dj),
                                      "-pfile", str(plans), "-np", "1"])
    try:
        evaluate_folder_entry_point()
    except SystemExit as e:
        assert e.code in (0, None)
    assert json.loads((pred / "summary.json").read_text())["mean"]["1"]["Dice"] == 2 / 3


def test_dataset_json_with_labels_and_file_ending_only_evaluates(tmp_path, monkeypatch):
    """Evaluation reads only 'labels' and 'file_ending' of -djfile (the reference too): a reduced dataset.json written
    to evaluate another method's predictions is not refused for lacking 'channel_names'."""
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    _write(ref, "a.nii.gz", [[[0, 1, 1, 2]]])
    _write(pred, "a.nii.gz", [[[0, 1, 2, 2]]])
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz"}))
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps({"dataset_name": "Dataset001_X", "plans_name": "nnUNetPlans", "configurations": {},
                                 "label_manager": "LabelManager", "image_reader_writer": "SimpleITKIO"}))
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_evaluate_folder", str(ref), str(pred), "-djfile", str(dj),
                                      "-pfile", str(plans), "-np", "1"])
    try:
        evaluate_folder_entry_point()
    except SystemExit as e:
        assert e.code in (0, None)
    assert json.loads((pred / "summary.json").read_text())["mean"]["1"]["Dice"] == 2 / 3
