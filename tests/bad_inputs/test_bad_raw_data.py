"""Raw-dataset mistakes: each one is named by the checks that always run (fingerprint extraction), and
``--verify_dataset_integrity`` reports it instead of crashing. The raw data stays byte-identical.

Each row: (id, how the copy of the base dataset is broken -> the path the message must name, what else it must say).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from _bad_inputs_helpers import Snapshot, assert_clean_failure, run_console, run_entry
from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import (extract_fingerprint_entry,
                                                                         plan_and_preprocess_entry)


def _rewrite(path: Path, fn, dtype=None) -> None:
    img = sitk.ReadImage(str(path))
    arr = fn(sitk.GetArrayFromImage(img))
    out = sitk.GetImageFromArray(arr if dtype is None else arr.astype(dtype))
    out.CopyInformation(img)
    sitk.WriteImage(out, str(path))


def float_labels(ds: Path):
    label = ds / "labelsTr" / "case_001.nii.gz"
    _rewrite(label, lambda a: a.astype(np.float32) * np.float32(0.9999))  # 1 -> 0.9999, 2 -> 1.9998
    return label, "not whole numbers"


def dangling_symlink(ds: Path):
    image = ds / "imagesTr" / "case_002_0000.nii.gz"
    image.unlink()
    os.symlink(ds / "nowhere" / "case_002_0000.nii.gz", image)
    return image, "does not exist"


def symlink_loop(ds: Path):
    image = ds / "imagesTr" / "case_002_0000.nii.gz"
    image.unlink()
    os.symlink(ds / "imagesTr" / "loop_b.nii.gz", image)
    os.symlink(image, ds / "imagesTr" / "loop_b.nii.gz")
    return image, "symbolic link loop"


def label_4d(ds: Path):
    label = ds / "labelsTr" / "case_001.nii.gz"
    img = sitk.ReadImage(str(label))
    sitk.WriteImage(sitk.JoinSeries([img, img]), str(label))
    return label, "4-D"


def image_4d(ds: Path):
    image = ds / "imagesTr" / "case_001_0000.nii.gz"
    img = sitk.ReadImage(str(image))
    sitk.WriteImage(sitk.JoinSeries([img, img]), str(image))
    return image, "2 channels"


def stray_channel_file(ds: Path):
    shutil.copy(ds / "imagesTr" / "case_001_0000.nii.gz", ds / "imagesTr" / "case_001_0001.nii.gz")
    return ds / "imagesTr" / "case_001_0001.nii.gz", "stray file"


def vector_pixels(ds: Path):
    image = ds / "imagesTr" / "case_001_0000.nii.gz"
    img = sitk.ReadImage(str(image))
    sitk.WriteImage(sitk.Compose([img, img, img]), str(image))
    return image, "3 components per voxel"


def file_ending_without_dot(ds: Path):
    dj = json.loads((ds / "dataset.json").read_text())
    dj["file_ending"] = "nii.gz"
    (ds / "dataset.json").write_text(json.dumps(dj))
    return ds / "dataset.json", "start"


def zero_slices(ds: Path):
    import nibabel
    target = ds / "imagesTr" / "case_001_0000.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((16, 16, 0), np.float32), np.eye(4)), str(target))
    return target, "no voxels"


def inf_voxel_mha(ds: Path):
    # a format whose reader keeps inf: training statistics would be inf; the fingerprint refuses it
    dj = json.loads((ds / "dataset.json").read_text())
    dj["file_ending"] = ".mha"
    (ds / "dataset.json").write_text(json.dumps(dj))
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        for f in list((ds / folder).glob("*.nii.gz")):
            sitk.WriteImage(sitk.ReadImage(str(f)), str(f)[:-len(".nii.gz")] + ".mha")
            f.unlink()
    image = ds / "imagesTr" / "case_003_0000.mha"
    _rewrite(image, lambda a: np.where(a == a.max(), np.inf, a).astype(np.float32))
    return image, "inf"


CASES = [dangling_symlink, symlink_loop, label_4d, image_4d, stray_channel_file, vector_pixels,
         file_ending_without_dot, zero_slices, inf_voxel_mha]


@pytest.mark.parametrize("verify", [False, True], ids=["always_on", "verify_dataset_integrity"])
@pytest.mark.parametrize("breakage", CASES, ids=[c.__name__ for c in CASES])
def test_raw_dataset_mistake_is_named(breakage, verify, clone_dataset, capsys):
    dataset_id, ds = clone_dataset()
    path, what = breakage(ds)
    snapshot = Snapshot(ds)
    argv = ["-d", dataset_id, "-np", "1", "--no_pbar"] + (["--verify_dataset_integrity"] if verify else [])
    code, err = run_entry(extract_fingerprint_entry, argv, capsys)
    line = assert_clean_failure(code, err, path)
    assert what in line
    snapshot.assert_unchanged()
    fingerprint = ds.parent.parent / "nnUNet_preprocessed" / ds.name / "dataset_fingerprint.json"
    assert not fingerprint.exists()


def test_float_labels_warn_in_fingerprint_and_fail_in_default_preprocessing(clone_dataset, capsys, caplog):
    """Labels that are not whole numbers: the fingerprint warns naming the file (the reference accepts them, and
    regression stacks such as segforge's use continuous maps with their own preprocessor); the default preprocessor,
    which would truncate them, fails naming the file; --verify_dataset_integrity fails at the fingerprint."""
    dataset_id, ds = clone_dataset()
    path, what = float_labels(ds)
    snapshot = Snapshot(ds)
    with caplog.at_level(logging.WARNING):
        code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar"], capsys)
    assert code == 0
    assert any(str(path) in r.getMessage() and what in r.getMessage() for r in caplog.records)
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-np", "1", "-npfp", "1", "-c", "3d_fullres",
                                                      "--no_pbar"], capsys)
    assert what in assert_clean_failure(code, err, path)
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar", "--clean",
                                                      "--verify_dataset_integrity"], capsys)
    assert what in assert_clean_failure(code, err, path)
    snapshot.assert_unchanged()


def test_nan_hidden_by_simpleitk_is_reported(clone_dataset, capsys, caplog):
    """SimpleITK reads NaN/inf of a NIfTI file as 0 (the reference trains on those zeros without a word): the
    fingerprint warns naming the file; --verify_dataset_integrity fails naming it."""
    dataset_id, ds = clone_dataset()
    image = ds / "imagesTr" / "case_002_0000.nii.gz"
    _rewrite(image, lambda a: np.where(a == a.max(), np.nan, a).astype(np.float32))
    assert not np.isnan(sitk.GetArrayFromImage(sitk.ReadImage(str(image)))).any()  # the premise: NaN is hidden
    snapshot = Snapshot(ds)
    with caplog.at_level(logging.WARNING):
        code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar"], capsys)
    assert code == 0
    assert any(str(image) in r.getMessage() and "NaN/inf" in r.getMessage() for r in caplog.records)
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar", "--clean",
                                                      "--verify_dataset_integrity"], capsys)
    assert "NaN/inf" in assert_clean_failure(code, err, image)
    snapshot.assert_unchanged()


def test_console_script_prints_one_line(clone_dataset):
    """The same check through the installed command in a fresh process: what a user sees."""
    dataset_id, ds = clone_dataset()
    path, what = label_4d(ds)
    env = {k: os.environ[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    code, out = run_console(["nnUNetv2_extract_fingerprint", "-d", dataset_id, "-np", "1", "--no_pbar"], env)
    assert what in assert_clean_failure(code, out, path)


def test_labels_outside_the_declared_range_fail_in_default_preprocessing(clone_dataset, capsys):
    """A binary mask saved as 0/255 (declared labels 0..2): the reference preprocesses it and training stops at its
    first batch ("index 255 is out of bounds"; on a GPU "device-side assert triggered"). The default preprocessor
    names the file, the values and the likely cause; the raw data stays as it was."""
    dataset_id, ds = clone_dataset()
    label = ds / "labelsTr" / "case_002.nii.gz"
    _rewrite(label, lambda a: (a > 0).astype(np.uint8) * 255)
    snapshot = Snapshot(ds)
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-np", "1", "-npfp", "1", "-c", "3d_fullres",
                                                      "--no_pbar"], capsys)
    line = assert_clean_failure(code, err, label)
    assert "label value(s) 255, but dataset.json declares labels 0..2 only" in line and "Map 255 to 1" in line
    snapshot.assert_unchanged()


def test_label_range_check():
    from nnunetv2.errors import UserError
    from nnunetv2.utilities.input_checks import check_label_range
    check_label_range(np.array([[0, 1, 3]], np.int16), "a.nii.gz", 3)  # the ignore label is the highest allowed
    check_label_range(np.zeros((1, 0), np.uint8), "empty.nii.gz", 1)
    check_label_range(np.array([[-1, 0, 1]], np.int8), "preprocessed.nii.gz", 1, lowest_label=-1)
    with pytest.raises(UserError, match=r"b.nii.gz holds label value\(s\) -1, 7, but dataset.json declares labels "
                                        r"0..3 only") as e:
        check_label_range(np.array([[0, -1, 7, 7, 2]], np.int16), "b.nii.gz", 3)
    assert "255" not in str(e.value)
    with pytest.raises(UserError, match=r"1, 2, 3, 4, 5, \.\.\."):
        check_label_range(np.arange(8, dtype=np.uint8), "c.png", 0)


def test_labels_with_a_gap_fail_in_default_preprocessing(clone_dataset, capsys):
    """dataset.json declares labels 0, 1, 3 and the files use 3: training takes label k for output channel k (3
    channels here), so the reference stops at its first batch with an index error; the default preprocessor names
    file and value. The raw data stays as it was."""
    dataset_id, ds = clone_dataset()
    dj = json.loads((ds / "dataset.json").read_text())
    names = [k for k, v in dj["labels"].items() if v == 2]
    dj["labels"][names[0]] = 3
    (ds / "dataset.json").write_text(json.dumps(dj))
    for label in sorted((ds / "labelsTr").glob("*.nii.gz")):
        _rewrite(label, lambda a: np.where(a == 2, 3, a).astype(a.dtype))
    snapshot = Snapshot(ds)
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-np", "1", "-npfp", "1", "-c", "3d_fullres",
                                                      "--no_pbar"], capsys)
    assert code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "holds label value(s) 3, but the labels dataset.json declares (0, 1, 3) are not consecutive" in line
    assert "Renumber the labels 0, 1, 2" in line
    snapshot.assert_unchanged()


def test_labels_are_channels_check():
    from nnunetv2.errors import UserError
    from nnunetv2.utilities.input_checks import check_labels_are_channels
    check_labels_are_channels(np.array([0, 1, 3]), "a.nii.gz", [0, 1, 2, 3], None)  # consecutive: nothing to check
    check_labels_are_channels(np.array([0, 1, 1]), "b.nii.gz", [0, 1, 3], None)  # the gap is never used
    check_labels_are_channels(np.array([0, 1, 4, -1]), "c.nii.gz", [0, 1, 3], 4)  # ignore label and outside mask
    with pytest.raises(UserError, match=r"d.nii.gz holds label value\(s\) 3, but"):
        check_labels_are_channels(np.array([0, 3, 4]), "d.nii.gz", [0, 1, 3], 4)


def test_16_bit_binary_masks_fail_in_default_preprocessing(clone_dataset, capsys):
    """Binary masks saved as 16-bit 0/65535: 65535 fits no declared label, and preprocessing's int16 label storage
    would wrap it to -1 (outside the image), so the reference preprocessed them without a word and training learnt
    the object as background. The default preprocessor names the file, the value and the likely cause; the raw data
    stays as it was."""
    dataset_id, ds = clone_dataset()
    for label in sorted((ds / "labelsTr").glob("*.nii.gz")):
        _rewrite(label, lambda a: (a > 0).astype(np.uint16) * 65535)
    snapshot = Snapshot(ds)
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-np", "1", "-npfp", "1", "-c", "3d_fullres",
                                                      "--no_pbar"], capsys)
    assert code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "holds label value(s) 65535, but dataset.json declares labels 0..2 only" in line
    assert "Map 65535 to 1" in line
    snapshot.assert_unchanged()


def test_labels_fit_int16_check():
    from nnunetv2.errors import UserError
    from nnunetv2.utilities.input_checks import check_labels_fit_int16
    check_labels_fit_int16(np.array([0, 1, -1, 32767], np.float32), "a.nii.gz", 1)  # fits: the range check's job
    check_labels_fit_int16(np.zeros(0, np.uint16), "empty.nii.gz", 1)
    with pytest.raises(UserError, match=r"b.nii.gz holds label value\(s\) 65535, but dataset.json declares labels "
                                        r"0..2 only"):
        check_labels_fit_int16(np.array([0, 65535], np.uint16), "b.nii.gz", 2)
    with pytest.raises(UserError, match=r"c.nii.gz: dataset.json declares labels up to 40000, but nnU-Net stores "
                                        r"label maps as 16-bit integers"):
        check_labels_fit_int16(np.array([0, 40000], np.float32), "c.nii.gz", 40000)


def test_negative_labels_fail_in_default_preprocessing(clone_dataset, capsys):
    """-1 marking unannotated voxels (other frameworks' ignore index): preprocessing's own -1 marks voxels outside the
    image, which training reads as background, so the reference trained them as background without a word. The
    default preprocessor names the file and the value and points to nnU-Net's ignore label; the raw data stays."""
    dataset_id, ds = clone_dataset()
    label = ds / "labelsTr" / "case_001.nii.gz"
    _rewrite(label, lambda a: np.where(np.arange(a.shape[0])[:, None, None] < 2, -1, a.astype(np.int16)))
    snapshot = Snapshot(ds)
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-np", "1", "-npfp", "1", "-c", "3d_fullres",
                                                      "--no_pbar"], capsys)
    line = assert_clean_failure(code, err, label)
    assert "holds label value(s) -1, but dataset.json declares labels 0..2 only" in line
    assert 'Declare an ignore label in dataset.json (the highest label value, e.g. "ignore": 3)' in line
    assert "declare the values under" not in line
    snapshot.assert_unchanged()


def test_case_saved_with_another_ending_is_named(clone_dataset, capsys):
    """One case converted to .nii among .nii.gz files: cases are listed by dataset.json's file_ending, so the reference
    planned and preprocessed the others without a word (numTraining, which planning uses, counting it still). Both
    are named once; planning and preprocessing go on as before."""
    dataset_id, ds = clone_dataset()
    image = ds / "imagesTr" / "case_001_0000.nii.gz"
    label = ds / "labelsTr" / "case_001.nii.gz"
    for f in (image, label):
        sitk.WriteImage(sitk.ReadImage(str(f)), str(f)[:-len(".gz")])
        f.unlink()
    n_declared = json.loads((ds / "dataset.json").read_text())["numTraining"]
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-np", "1", "-npfp", "1", "-c", "3d_fullres",
                                                      "--no_pbar"], capsys)
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2, err
    assert f"{ds / 'imagesTr'} are named like images but do not end with .nii.gz (dataset.json's file_ending) and " \
           f"are left out of the dataset: case_001_0000.nii." in warnings[0]
    assert f"numTraining is {n_declared} but {n_declared - 1} training case(s) were found" in warnings[1]


def test_declared_label_in_no_case_is_named(clone_dataset, capsys):
    """dataset.json declares a label that no label file uses: the reference trains an output channel that never sees
    a voxel of it, without a word. Preprocessing names it once per configuration and goes on (the files are fine)."""
    dataset_id, ds = clone_dataset()
    dj = json.loads((ds / "dataset.json").read_text())
    dj["labels"]["never_drawn"] = max(dj["labels"].values()) + 1
    (ds / "dataset.json").write_text(json.dumps(dj))
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-np", "1", "-npfp", "1", "-c", "3d_fullres",
                                                      "--no_pbar"], capsys)
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, err
    assert f"label(s) 'never_drawn' ({dj['labels']['never_drawn']}) of dataset.json occur in none of the " in \
           warnings[0] and "(3d_fullres)" in warnings[0]


def test_labels_in_no_case():
    from nnunetv2.utilities.input_checks import labels_in_no_case
    names = {"background": 0, "liver": 1, "tumor": 2, "vessel": 3}
    assert labels_in_no_case({1, 3}, [1, 2, 3], names) == ["'tumor' (2)"]
    assert labels_in_no_case({1, 2, 3}, [1, 2, 3], names) == []
    regions = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3}
    assert labels_in_no_case({(1, 2, 3), 3}, [(1, 2, 3), [2, 3], 3], regions) == ["'core' (2, 3)"]
    assert labels_in_no_case(set(), [7], names) == ["7"]


def test_empty_image_warns_in_fingerprint(clone_dataset, capsys, caplog):
    """An image whose every voxel is 0 (a failed conversion): the reference fingerprints and preprocesses it without a
    word, and training learns that case's labels from nothing. The fingerprint names it and goes on."""
    dataset_id, ds = clone_dataset()
    image = ds / "imagesTr" / "case_002_0000.nii.gz"
    _rewrite(image, lambda a: np.zeros_like(a))
    with caplog.at_level(logging.WARNING):
        code, _ = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar"], capsys)
    assert code == 0
    named = [r.getMessage() for r in caplog.records if "every voxel of" in r.getMessage()]
    assert named == [f"WARNING: every voxel of {image} is 0: an empty image (a failed conversion or export?). "
                     f"Training learns its labels from nothing; replace or remove the case."]
