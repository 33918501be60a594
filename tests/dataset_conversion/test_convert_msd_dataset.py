"""MSD task conversion on tiny synthetic tasks: outputs, geometry, dataset.json, and every bad input."""
from __future__ import annotations

import filecmp
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.dataset_conversion import convert_MSD_dataset as msd
from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset, entry_point, split_4d_nifti
from nnunetv2.errors import UserError


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_4d_two_modalities(nnunet_dirs, msd_task_factory, geometry):
    task = msd_task_factory("Task07_Toy", modalities=("FLAIR", "T1w"), n_train=2, n_test=1)
    convert_msd_dataset(str(task) + "/", num_processes=1)  # one trailing slash is fine
    raw = nnunet_dirs["nnUNet_raw"]
    assert listing(raw) == ["Dataset007_Toy"]  # the staging folder is gone
    out = raw / "Dataset007_Toy"
    assert listing(out) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr"]
    assert listing(out / "imagesTr") == ["toy_000_0000.nii.gz", "toy_000_0001.nii.gz",
                                         "toy_001_0000.nii.gz", "toy_001_0001.nii.gz"]
    assert listing(out / "imagesTs") == ["toy_002_0000.nii.gz", "toy_002_0001.nii.gz"]
    assert listing(out / "labelsTr") == ["toy_000.nii.gz", "toy_001.nii.gz"]  # macOS '._' junk skipped
    for case in ("toy_000", "toy_001"):
        assert filecmp.cmp(task / "labelsTr" / f"{case}.nii.gz", out / "labelsTr" / f"{case}.nii.gz", shallow=False)

    spacing, origin, direction = geometry
    source = sitk.GetArrayFromImage(sitk.ReadImage(str(task / "imagesTs" / "toy_002.nii.gz")))
    for channel in range(2):
        image = sitk.ReadImage(str(out / "imagesTs" / f"toy_002_{channel:04d}.nii.gz"))
        assert image.GetDimension() == 3 and image.GetPixelID() == sitk.sitkFloat32
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), source[channel])
        np.testing.assert_allclose(image.GetSpacing(), spacing, rtol=1e-6)
        np.testing.assert_allclose(image.GetOrigin(), origin, atol=1e-6)
        np.testing.assert_allclose(image.GetDirection(), direction, atol=1e-6)

    text = (out / "dataset.json").read_text()
    d = json.loads(text)
    # reference order: source keys in place (labels inverted in place), then file_ending, then channel_names
    assert list(d) == ["name", "description", "reference", "licence", "relase", "tensorImageSize", "labels",
                       "numTraining", "numTest", "file_ending", "channel_names"]
    assert d["labels"] == {"background": 0, "edema": 1, "tumour": 2}
    assert d["channel_names"] == {"0": "FLAIR", "1": "T1w"}
    assert d["file_ending"] == ".nii.gz" and d["numTraining"] == 2 and d["licence"] == "CC-BY-SA 4.0"
    assert text.startswith('{\n    "name": "Toy",\n')  # indent 4, not sorted


def test_3d_single_modality_copied_unchanged_with_spawn_pool(nnunet_dirs, msd_task_factory):
    task = msd_task_factory("Task04_Hippo", modalities=("MRI",), n_train=2, n_test=1)
    convert_msd_dataset(task, num_processes=2)
    out = nnunet_dirs["nnUNet_raw"] / "Dataset004_Hippo"
    assert listing(out / "imagesTr") == ["toy_000_0000.nii.gz", "toy_001_0000.nii.gz"]
    assert listing(out / "imagesTs") == ["toy_002_0000.nii.gz"]
    for case, sub in (("toy_000", "imagesTr"), ("toy_002", "imagesTs")):
        assert filecmp.cmp(task / sub / f"{case}.nii.gz", out / sub / f"{case}_0000.nii.gz", shallow=False)
    assert json.loads((out / "dataset.json").read_text())["channel_names"] == {"0": "MRI"}


def test_overwrite_id_and_name_with_underscores(nnunet_dirs, msd_task_factory):
    task = msd_task_factory("Task08_Hepatic_Vessel", modalities=("CT",), n_train=1, n_test=0)
    convert_msd_dataset(str(task), overwrite_target_id=208, num_processes=1)
    assert listing(nnunet_dirs["nnUNet_raw"]) == ["Dataset208_Hepatic_Vessel"]


def test_num_processes_none_means_one_per_cpu(nnunet_dirs, msd_task_factory, monkeypatch):
    """MONAI's nnUNetV2Runner.convert_msd_dataset passes overwrite_target_id=None and num_processes=None by
    default; the reference's pool then uses one process per CPU."""
    task = msd_task_factory("Task05_Prostate", modalities=("T2", "ADC"), n_train=1, n_test=1)
    used = []
    real_run_jobs = msd._run_jobs
    monkeypatch.setattr(msd, "_run_jobs", lambda jobs, n: (used.append(n), real_run_jobs(jobs, 1)))
    monkeypatch.setattr(msd.os, "cpu_count", lambda: 3)
    convert_msd_dataset(str(task), overwrite_target_id=None, num_processes=None)
    assert used == [3]
    out = nnunet_dirs["nnUNet_raw"] / "Dataset005_Prostate"
    assert listing(out / "imagesTr") == ["toy_000_0000.nii.gz", "toy_000_0001.nii.gz"]


def test_missing_imagests_is_tolerated(nnunet_dirs, msd_task_factory):
    task = msd_task_factory("Task09_Spleen", modalities=("CT",), n_train=1, n_test=0)
    for f in (task / "imagesTs").iterdir():
        f.unlink()
    (task / "imagesTs").rmdir()
    convert_msd_dataset(str(task), num_processes=1)
    assert listing(nnunet_dirs["nnUNet_raw"] / "Dataset009_Spleen" / "imagesTs") == []


def test_split_4d_nifti_rejects_2d(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.float32)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(UserError, match="flat.nii.gz is a 2-D image"):
        split_4d_nifti(str(tmp_path / "flat.nii.gz"), str(tmp_path))
    assert listing(tmp_path) == ["flat.nii.gz"]


# ---- bad input: a one-line UserError naming the problem, and nothing changes anywhere -------------------------

def _break_missing(sub):
    def f(task, raw):
        target = task / sub
        if target.is_dir():
            for p in target.iterdir():
                p.unlink()
            target.rmdir()
        else:
            target.unlink()
        return task
    return f


def _rename(new_name):
    return lambda task, raw: task.rename(task.parent / new_name)


def _edit_json(edit):
    def f(task, raw):
        d = json.loads((task / "dataset.json").read_text())
        edit(d)
        (task / "dataset.json").write_text(json.dumps(d))
        return task
    return f


def _write_json_text(text):
    def f(task, raw):
        (task / "dataset.json").write_text(text)
        return task
    return f


def _taken_id(task, raw):
    existing = raw / "Dataset007_Existing"
    (existing / "imagesTr").mkdir(parents=True)
    (existing / "dataset.json").write_text('{"keep": "me"}')
    return task


def _image_2d(task, raw):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), np.float32)), str(task / "imagesTr" / "toy_000.nii.gz"))
    return task


def _wrong_channels(task, raw):
    (task / "imagesTs" / "toy_002.nii.gz").unlink()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5, 6), np.float32), isVector=False),
                    str(task / "imagesTs" / "toy_002.nii.gz"))
    return task


def _vector_image(task, raw):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 2), np.float32), isVector=True),
                    str(task / "imagesTr" / "toy_001.nii.gz"))
    return task


def _label_4d(task, raw):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 5, 6), np.uint8), isVector=False),
                    str(task / "labelsTr" / "toy_001.nii.gz"))
    return task


def _corrupt_image(task, raw):
    (task / "imagesTr" / "toy_001.nii.gz").write_bytes(b"not a nifti at all")
    return task


BAD_INPUTS = {
    "no_imagesTr": (_break_missing("imagesTr"), r"has no 'imagesTr' subfolder"),
    "no_labelsTr": (_break_missing("labelsTr"), r"has no 'labelsTr' subfolder"),
    "no_dataset_json": (_break_missing("dataset.json"), r"has no dataset.json"),
    "name_without_id": (_rename("Prostate"), r"folder name 'Prostate'"),
    "name_bad_id": (_rename("TaskAB_Prostate"), r"folder name 'TaskAB_Prostate'"),
    "name_without_name": (_rename("Task07"), r"folder name 'Task07'"),
    "json_unreadable": (_write_json_text("{not json"), r"Cannot read .*dataset.json"),
    "json_not_object": (_write_json_text("[1, 2]"), r"does not contain a JSON object"),
    "json_no_modality": (_edit_json(lambda d: d.pop("modality")), r"lacks the key 'modality'"),
    "json_v2_labels": (_edit_json(lambda d: d.update(labels={"background": 0})), r"label key 'background'"),
    "json_duplicate_label_names": (_edit_json(lambda d: d["labels"].update({"2": "edema"})), r"'edema' is used"),
    "id_taken": (_taken_id, r"id 7 is already taken by: Dataset007_Existing"),
    "image_2d": (_image_2d, r"toy_000.nii.gz is a 2-D image"),
    "channel_mismatch": (_wrong_channels, r"toy_002.nii.gz has 3 channel\(s\) but .* declares 2"),
    "vector_image": (_vector_image, r"toy_001.nii.gz has 2 values per voxel"),
    "label_4d": (_label_4d, r"labelsTr/toy_001.nii.gz is a 4-D label map"),
    "corrupt_image": (_corrupt_image, r"Cannot read the image header of .*toy_001.nii.gz"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_changes_nothing(case, nnunet_dirs, msd_task_factory, take_snapshot):
    breaker, message = BAD_INPUTS[case]
    raw = nnunet_dirs["nnUNet_raw"]
    (raw / "Dataset001_Other" / "labelsTr").mkdir(parents=True)
    (raw / "Dataset001_Other" / "dataset.json").write_text("{}")
    task = breaker(msd_task_factory("Task07_Toy", modalities=("FLAIR", "T1w"), n_train=2, n_test=1), raw)
    before = take_snapshot(task.parent, raw)
    with pytest.raises(UserError, match=message) as e:
        convert_msd_dataset(str(task), num_processes=1)
    assert "\n" not in e.value.one_line()
    assert take_snapshot(task.parent, raw) == before


def test_nonexistent_source_folder(nnunet_dirs, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        convert_msd_dataset(str(tmp_path / "Task01_Nothing"))
    assert listing(nnunet_dirs["nnUNet_raw"]) == []


def test_crash_midway_leaves_no_partial_dataset(nnunet_dirs, msd_task_factory, monkeypatch):
    task = msd_task_factory("Task07_Toy", modalities=("FLAIR", "T1w"), n_train=2, n_test=1)
    calls = []

    def flaky(job):
        calls.append(job)
        if len(calls) == 2:
            raise OSError("disk full")
        split_4d_nifti(*job)

    monkeypatch.setattr(msd, "_split_job", flaky)
    with pytest.raises(OSError, match="disk full"):
        convert_msd_dataset(str(task), num_processes=1)
    assert len(calls) == 2
    assert listing(nnunet_dirs["nnUNet_raw"]) == []  # neither Dataset007_Toy nor the hidden staging folder


# ---- command line ------------------------------------------------------------------------------------------------

def test_cli_success_and_flags(nnunet_dirs, msd_task_factory, monkeypatch):
    task = msd_task_factory("Task03_Liver", modalities=("CT",), n_train=1, n_test=0)
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_convert_MSD_dataset", "-i", str(task), "-overwrite_id", "503",
                                      "-np", "1"])
    entry_point()
    assert listing(nnunet_dirs["nnUNet_raw"]) == ["Dataset503_Liver"]


def test_cli_bad_input_in_process(nnunet_dirs, msd_task_factory, monkeypatch, capsys):
    task = msd_task_factory("Task03_Liver", modalities=("CT",), n_train=1, n_test=0)
    (nnunet_dirs["nnUNet_raw"] / "Dataset003_Taken").mkdir()
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_convert_MSD_dataset", "-i", str(task)])
    with pytest.raises(SystemExit) as e:
        entry_point()
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nnU-Net error: Target dataset id 3 is already taken by: Dataset003_Taken. Pick a free id with "
                   "-overwrite_id (overwrite_target_id) or remove/rename those datasets."]


def test_cli_subprocess_exit_code_and_one_line(nnunet_dirs, tmp_path):
    bad = tmp_path / "Task02_Heart"
    bad.mkdir()
    result = subprocess.run([sys.executable, "-m", "nnunetv2.dataset_conversion.convert_MSD_dataset", "-i", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnU-Net error: MSD folder") and "'imagesTr'" in lines[0]
