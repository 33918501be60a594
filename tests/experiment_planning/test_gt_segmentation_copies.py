"""gt_segmentations: the training labels copied next to the preprocessed data, for validation and evaluation. 3-D .tif
labels carry their spacing in a side-car .json, which must come along."""
from __future__ import annotations

import json
import logging
import os

import pytest

import nnunetv2.experiment_planning.plan_and_preprocess_api as api
from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
from nnunetv2.imageio.tif_reader_writer import Tiff3DIO


@pytest.fixture
def folders(tmp_path, monkeypatch):
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    monkeypatch.setattr(api, "nnUNet_raw", str(raw))
    monkeypatch.setattr(api, "nnUNet_preprocessed", str(pre))
    return raw, pre


@pytest.mark.parametrize("ending", [".tif", ".nii.gz"])
def test_labels_are_copied_with_their_spacing_sidecars(folders, ending, caplog):
    raw, pre = folders
    folder = make_synthetic_dataset(str(raw), 12, "Copies", num_train=2, num_test=0, shape=(6, 12, 10),
                                    file_ending=ending)
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    api._copy_gt_segmentations("Dataset012_Copies", dataset_json)
    gt = pre / "Dataset012_Copies" / "gt_segmentations"
    if ending == ".nii.gz":
        assert sorted(os.listdir(gt)) == ["case_000.nii.gz", "case_001.nii.gz"]
        return
    assert sorted(os.listdir(gt)) == ["case_000.json", "case_000.tif", "case_001.json", "case_001.tif"]
    for case in ("case_000", "case_001"):
        assert (gt / f"{case}.json").read_text() == open(os.path.join(folder, "labelsTr", f"{case}.json")).read()
        with caplog.at_level(logging.WARNING):
            _, copied = Tiff3DIO().read_seg(str(gt / f"{case}.tif"))
            _, original = Tiff3DIO().read_seg(os.path.join(folder, "labelsTr", f"{case}.tif"))
        assert copied["spacing"] == original["spacing"] != (1, 1, 1)
    assert "no spacing file" not in caplog.text

    # an edited side-car is copied again; an up-to-date one is left alone
    sidecar = os.path.join(folder, "labelsTr", "case_000.json")
    with open(sidecar, "w") as f:
        json.dump({"spacing": [2.0, 1.0, 1.0]}, f)
    os.utime(sidecar, (os.path.getmtime(gt / "case_000.json") + 10,) * 2)
    before = os.path.getmtime(gt / "case_001.json")
    api._copy_gt_segmentations("Dataset012_Copies", dataset_json)
    assert json.loads((gt / "case_000.json").read_text()) == {"spacing": [2.0, 1.0, 1.0]}
    assert os.path.getmtime(gt / "case_001.json") == before
