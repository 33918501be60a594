"""verify_dataset_integrity reports every problem of a raw dataset, each naming the file and the fix."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.verify_dataset_integrity import (DatasetIntegrityError, dataset_problems,
                                                                   verify_dataset_integrity)


@pytest.fixture
def dataset(tmp_path):
    return make_synthetic_dataset(str(tmp_path), 7, "Check", num_train=4, num_test=0, num_channels=2,
                                  shape=(6, 12, 10))


def _snapshot(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[p] = (os.path.getsize(p), os.path.getmtime(p))
    return out


def _problems(folder):
    return dataset_problems(folder, num_processes=1)


def _rewrite(path, transform):
    img = sitk.ReadImage(path)
    new = transform(img)
    sitk.WriteImage(new, path, True)


def _with_array(img, arr):
    new = sitk.GetImageFromArray(arr)
    new.CopyInformation(img)
    return new


def test_clean_dataset_has_no_problems_and_is_untouched(dataset):
    before = _snapshot(dataset)
    verify_dataset_integrity(dataset, num_processes=2)
    assert _snapshot(dataset) == before


def test_all_problems_are_reported_at_once(dataset):
    os.remove(os.path.join(dataset, "labelsTr", "case_000.nii.gz"))           # image without label
    os.remove(os.path.join(dataset, "imagesTr", "case_001_0001.nii.gz"))      # missing channel
    _rewrite(os.path.join(dataset, "labelsTr", "case_002.nii.gz"),            # undeclared label value
             lambda img: _with_array(img, np.where(sitk.GetArrayFromImage(img) == 2, 5, sitk.GetArrayFromImage(img))
                                     .astype(np.uint8)))
    before = _snapshot(dataset)
    with pytest.raises(DatasetIntegrityError) as e:
        verify_dataset_integrity(dataset, num_processes=1)
    problems = e.value.problems
    assert _snapshot(dataset) == before
    assert any("labelsTr/case_000.nii.gz" in p and "missing" in p for p in problems)
    assert any("case_001_0001.nii.gz" in p and "missing" in p for p in problems)
    assert any("case_002.nii.gz" in p and "5" in p and "not declared" in p for p in problems)
    assert isinstance(e.value, UserError) and "3 problem(s)" in e.value.one_line()


def test_label_without_image(dataset):
    os.remove(os.path.join(dataset, "imagesTr", "case_003_0000.nii.gz"))
    os.remove(os.path.join(dataset, "imagesTr", "case_003_0001.nii.gz"))
    problems = _problems(dataset)
    assert any("labelsTr/case_003.nii.gz" in p and "label without image" in p for p in problems)
    assert any("numTraining is 4 but 3" in p for p in problems)


def test_wrong_file_ending(dataset):
    with open(os.path.join(dataset, "imagesTr", "case_009_0000.nii"), "wb") as f:
        f.write(b"x")
    problems = _problems(dataset)
    assert any("case_009_0000.nii:" in p and "does not end with '.nii.gz'" in p for p in problems)


def test_corrupt_image(dataset):
    with open(os.path.join(dataset, "imagesTr", "case_000_0000.nii.gz"), "wb") as f:
        f.write(b"not an image at all")
    problems = _problems(dataset)
    assert len(problems) == 1 and "cannot read" in problems[0] and "case_000_0000.nii.gz" in problems[0]


@pytest.mark.parametrize("what", ["shape", "spacing", "origin", "direction"])
def test_geometry_mismatch_between_image_and_label(dataset, what):
    label = os.path.join(dataset, "labelsTr", "case_001.nii.gz")

    def change(img):
        if what == "shape":
            return sitk.GetImageFromArray(sitk.GetArrayFromImage(img)[:-1])
        if what == "spacing":
            img.SetSpacing([s * 1.5 for s in img.GetSpacing()])
        elif what == "origin":
            img.SetOrigin([o + 7 for o in img.GetOrigin()])
        else:
            img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
        return img

    _rewrite(label, change)
    problems = _problems(dataset)
    assert any(p.startswith(label) and what in p for p in problems), problems


def _as_nrrd(folder):
    """Convert a .nii.gz dataset to .nrrd (SimpleITK's NIfTI reader silently turns NaN/inf into 0; NRRD keeps them)."""
    for sub in ("imagesTr", "labelsTr"):
        for f in os.listdir(os.path.join(folder, sub)):
            src = os.path.join(folder, sub, f)
            sitk.WriteImage(sitk.ReadImage(src), src[:-len(".nii.gz")] + ".nrrd")
            os.remove(src)
    dj = os.path.join(folder, "dataset.json")
    content = json.load(open(dj))
    content["file_ending"] = ".nrrd"
    json.dump(content, open(dj, "w"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_image(dataset, bad):
    _as_nrrd(dataset)
    f = os.path.join(dataset, "imagesTr", "case_002_0001.nrrd")
    img = sitk.ReadImage(f)
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[0, 0, 0] = bad
    sitk.WriteImage(_with_array(img, arr), f)
    problems = _problems(dataset)
    assert len(problems) == 1
    assert "case_002_0001.nrrd" in problems[0] and ("NaN" if np.isnan(bad) else "inf") in problems[0]


def test_channel_count_mismatch(dataset):
    dj = os.path.join(dataset, "dataset.json")
    content = json.load(open(dj))
    content["channel_names"] = {"0": "CT"}
    json.dump(content, open(dj, "w"))
    for i in range(4):
        os.remove(os.path.join(dataset, "imagesTr", f"case_{i:03d}_0001.nii.gz"))
    verify_dataset_integrity(dataset, num_processes=1)  # consistent again: no problem


def test_broken_dataset_json_is_reported(dataset):
    dj = os.path.join(dataset, "dataset.json")
    with open(dj, "w") as f:
        f.write("{not json")
    with pytest.raises(UserError) as e:
        verify_dataset_integrity(dataset, num_processes=1)
    assert "dataset.json" in e.value.one_line()


def test_missing_keys_in_dataset_json(dataset):
    dj = os.path.join(dataset, "dataset.json")
    content = json.load(open(dj))
    del content["file_ending"], content["numTraining"]
    json.dump(content, open(dj, "w"))
    problems = _problems(dataset)
    assert any("file_ending" in p for p in problems) and any("numTraining" in p for p in problems)


def test_2d_file_given_to_3d_only_reader(tmp_path):
    folder = tmp_path / "Dataset008_Flat"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    img = sitk.GetImageFromArray(np.zeros((8, 9), np.float32))
    sitk.WriteImage(img, str(folder / "imagesTr" / "a_0000.nii"))
    sitk.WriteImage(sitk.Cast(img, sitk.sitkUInt8), str(folder / "labelsTr" / "a.nii"))
    json.dump({"channel_names": {"0": "x"}, "labels": {"background": 0}, "numTraining": 1, "file_ending": ".nii"},
              open(folder / "dataset.json", "w"))
    problems = _problems(str(folder))
    assert problems and "a_0000.nii" in problems[0] and "2" in problems[0]
