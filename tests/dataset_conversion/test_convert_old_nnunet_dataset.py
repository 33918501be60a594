"""nnU-Net v1 task conversion: copied trees, translated dataset.json, and every bad input."""
from __future__ import annotations

import filecmp
import json
import logging
import subprocess
import sys

import pytest

from nnunetv2.dataset_conversion.convert_raw_dataset_from_old_nnunet_format import convert, convert_entry_point
from nnunetv2.errors import UserError

# The reference's dataset.json for this task (nnU-Net 2.8.1, byte for byte).
EXPECTED_JSON = """{
    "name": "PROSTATE",
    "description": "Prostate transitional zone and peripheral zone segmentation",
    "reference": "Radboud",
    "licence": "CC-BY-SA 4.0",
    "release": "1.0 04/05/2018",
    "labels": {
        "background": 0,
        "PZ": 1,
        "TZ": 2
    },
    "numTraining": 2,
    "channel_names": {
        "0": "T2",
        "1": "ADC"
    },
    "file_ending": ".nii.gz"
}"""


def test_convert_copies_everything(nnunet_dirs, v1_task_factory):
    task = v1_task_factory()
    convert(str(task), "Dataset005_Prostate")
    raw = nnunet_dirs["nnUNet_raw"]
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset005_Prostate"]
    out = raw / "Dataset005_Prostate"
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr", "labelsTs"]
    for sub in ("imagesTr", "imagesTs", "labelsTr", "labelsTs"):
        cmp = filecmp.dircmp(task / sub, out / sub)
        assert cmp.left_only == [] and cmp.right_only == [] and cmp.diff_files == []
        assert filecmp.cmpfiles(task / sub, out / sub, cmp.common_files, shallow=False)[0] == cmp.common_files
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        "pro_000_0000.nii.gz", "pro_000_0001.nii.gz", "pro_001_0000.nii.gz", "pro_001_0001.nii.gz"]
    assert (out / "dataset.json").read_text() == EXPECTED_JSON


def test_lenient_about_optional_v1_keys(nnunet_dirs, v1_task_factory):
    task = v1_task_factory()
    d = json.loads((task / "dataset.json").read_text())
    for key in ("tensorImageSize", "numTest", "training", "test"):
        del d[key]  # the reference raised KeyError here, after copying everything
    (task / "dataset.json").write_text(json.dumps(d))
    convert(str(task), "Dataset005_Prostate")
    out = json.loads((nnunet_dirs["nnUNet_raw"] / "Dataset005_Prostate" / "dataset.json").read_text())
    assert list(out) == ["name", "description", "reference", "licence", "release", "labels", "numTraining",
                         "channel_names", "file_ending"]


def test_unconventional_name_warns_but_converts(nnunet_dirs, v1_task_factory, caplog):
    task = v1_task_factory()
    with caplog.at_level(logging.WARNING):
        convert(str(task), "MyProstate")
    assert "does not follow the DatasetXXX_Name convention" in caplog.text
    assert (nnunet_dirs["nnUNet_raw"] / "MyProstate" / "dataset.json").is_file()


def test_same_name_in_preprocessed_is_not_a_conflict(nnunet_dirs, v1_task_factory):
    (nnunet_dirs["nnUNet_preprocessed"] / "Dataset005_Prostate").mkdir()
    convert(str(v1_task_factory()), "Dataset005_Prostate")
    assert (nnunet_dirs["nnUNet_raw"] / "Dataset005_Prostate" / "imagesTr").is_dir()


def _remove(sub):
    def f(task, dirs):
        p = task / sub
        if p.is_dir():
            for c in p.iterdir():
                c.unlink()
            p.rmdir()
        else:
            p.unlink()
    return f


def _json_text(text):
    return lambda task, dirs: (task / "dataset.json").write_text(text)


def _json_edit(edit):
    def f(task, dirs):
        d = json.loads((task / "dataset.json").read_text())
        edit(d)
        (task / "dataset.json").write_text(json.dumps(d))
    return f


def _existing_target(task, dirs):
    target = dirs["nnUNet_raw"] / "Dataset005_Prostate"
    (target / "imagesTr").mkdir(parents=True)
    (target / "imagesTr" / "keep_0000.nii.gz").write_bytes(b"precious")
    (target / "dataset.json").write_text('{"precious": true}')


def _same_id_other_name(task, dirs):
    (dirs["nnUNet_results"] / "Dataset005_OldProstate").mkdir()


BAD_INPUTS = {
    "no_imagesTr": (_remove("imagesTr"), "Dataset005_Prostate", r"has no 'imagesTr' subfolder"),
    "no_labelsTr": (_remove("labelsTr"), "Dataset005_Prostate", r"has no 'labelsTr' subfolder"),
    "no_dataset_json": (_remove("dataset.json"), "Dataset005_Prostate", r"has no dataset.json"),
    "json_unreadable": (_json_text('{"modality": '), "Dataset005_Prostate", r"Cannot read .*dataset.json"),
    "json_no_labels": (_json_edit(lambda d: d.pop("labels")), "Dataset005_Prostate", r"lacks the key 'labels'"),
    "json_already_v2": (_json_edit(lambda d: d.update(labels={"background": 0, "PZ": 1})), "Dataset005_Prostate",
                        r"label key 'background' is not an integer"),
    "target_exists": (_existing_target, "Dataset005_Prostate", r"Dataset005_Prostate already exists"),
    "target_is_path": (lambda t, d: None, "../Dataset005_Prostate", r"give a name, not a path"),
    "id_taken": (_same_id_other_name, "Dataset005_Prostate", r"already used by: Dataset005_OldProstate"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_changes_nothing(case, nnunet_dirs, v1_task_factory, take_snapshot):
    breaker, target, message = BAD_INPUTS[case]
    task = v1_task_factory()
    breaker(task, nnunet_dirs)
    before = take_snapshot(task.parent.parent)  # downloads and all three nnU-Net roots
    with pytest.raises(UserError, match=message) as e:
        convert(str(task), target)
    assert "\n" not in e.value.one_line()
    assert take_snapshot(task.parent.parent) == before


def test_nonexistent_source(nnunet_dirs, tmp_path):
    with pytest.raises(UserError, match="not just its name"):
        convert("Task005_Prostate", "Dataset005_Prostate")
    assert list(nnunet_dirs["nnUNet_raw"].iterdir()) == []


def test_copy_failure_leaves_nothing(nnunet_dirs, v1_task_factory, monkeypatch):
    import shutil
    real_copytree, calls = shutil.copytree, []

    def failing_copytree(src, dst, *a, **k):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real_copytree(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copytree", failing_copytree)
    with pytest.raises(OSError, match="No space left"):
        convert(str(v1_task_factory()), "Dataset005_Prostate")
    assert list(nnunet_dirs["nnUNet_raw"].iterdir()) == []


def test_cli_in_process(nnunet_dirs, v1_task_factory, monkeypatch, capsys):
    task = v1_task_factory()
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_convert_old_nnUNet_dataset", str(task), "Dataset005_Prostate"])
    convert_entry_point()
    assert (nnunet_dirs["nnUNet_raw"] / "Dataset005_Prostate" / "dataset.json").read_text() == EXPECTED_JSON
    capsys.readouterr()  # drop the progress bar of the successful run
    with pytest.raises(SystemExit) as e:
        convert_entry_point()  # same again: the target now exists
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnU-Net error: The target dataset ") and "already exists" in err[0]


def test_cli_subprocess(nnunet_dirs, tmp_path):
    result = subprocess.run([sys.executable, "-m",
                             "nnunetv2.dataset_conversion.convert_raw_dataset_from_old_nnunet_format",
                             str(tmp_path / "Task001_Missing"), "Dataset001_X"], capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnU-Net error: nnU-Net v1 task folder") and "Task001_Missing" in lines[0]


def test_v1_dataset_json_with_a_byte_order_mark(nnunet_dirs, v1_task_factory):
    """A task's dataset.json saved by a Windows editor (UTF-8 with byte-order mark) converts like any other."""
    task = v1_task_factory()
    (task / "dataset.json").write_bytes(b"\xef\xbb\xbf" + (task / "dataset.json").read_bytes())
    convert(str(task), "Dataset005_Prostate")
    assert (nnunet_dirs["nnUNet_raw"] / "Dataset005_Prostate" / "dataset.json").read_text() == EXPECTED_JSON
