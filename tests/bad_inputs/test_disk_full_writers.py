"""A full or read-only disk while writing a checkpoint, a segmentation (SimpleITK), the training log or an evaluation
summary: one line naming the final file and the errno's meaning, nothing truncated left under a final name, earlier
files intact. Full disks are simulated (CI may not mount); where the test runs as root and may mount a tmpfs, the
real thing is tried too (skipped otherwise)."""
from __future__ import annotations

import errno
import io
import os
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from _bad_inputs_helpers import assert_clean_failure, assert_outputs_load, names, run_entry
from nnunetv2.errors import os_error_line
from nnunetv2.file_io import TMP_PREFIX

ENOSPC_TEXT = "No space left on device"
PROPS = {"sitk_stuff": {"spacing": (1.0, 1.0, 2.0), "origin": (0.0, 0.0, 0.0),
                        "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, "spacing": [2.0, 1.0, 1.0]}


def _seg(seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 3, (1, 24, 32, 32)).astype(np.uint8)


def _checkpoint(value: float) -> dict:
    return {"network_weights": {"w": torch.full((64, 64), value)}, "current_epoch": int(value)}


class _NoSpace:
    f_bavail, f_frsize = 0, 4096


def _files(folder) -> list:
    return sorted(os.listdir(folder))


# ---------------------------------------------------------------------------------------------- checkpoints
class _DiskFullAfter(io.FileIO):
    """A file on a disk that is full after ``limit`` bytes: write() stores what fits, then raises ENOSPC."""
    limit = 2000

    def write(self, b):
        b = bytes(b)
        room = max(self.limit - self.tell(), 0)
        if len(b) > room:
            super().write(b[:room])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # no file name, as from a real write()
        return super().write(b)


def test_checkpoint_on_full_disk_is_enospc_naming_it_and_keeps_the_earlier_one(tmp_path, monkeypatch):
    """torch's zip writer hides the write's ENOSPC behind "RuntimeError: [enforce fail at inline_container.cc]
    unexpected pos"; the error must be the ENOSPC, about checkpoint_latest.pth, and the older file stays."""
    from nnunetv2.training.nnUNetTrainer import _checkpointing
    final = tmp_path / "checkpoint_latest.pth"
    _checkpointing.save_checkpoint_atomically(_checkpoint(1.0), str(final))
    before = final.read_bytes()

    monkeypatch.setattr(_checkpointing, "open", lambda path, mode="r": _DiskFullAfter(path, "wb"), raising=False)
    with pytest.raises(OSError) as e:
        _checkpointing.save_checkpoint_atomically(_checkpoint(2.0), str(final))
    monkeypatch.undo()

    assert e.value.errno == errno.ENOSPC and e.value.filename == str(final)
    assert os_error_line(e.value).startswith(f"{final}: {ENOSPC_TEXT} [ENOSPC].")
    assert _files(tmp_path) == ["checkpoint_latest.pth"]  # no temporary file left
    assert final.read_bytes() == before
    assert torch.load(final, weights_only=True)["current_epoch"] == 1


def test_other_checkpoint_errors_keep_their_traceback(tmp_path, monkeypatch):
    """A RuntimeError of torch.save that is no disk problem (disk not full) stays what it is."""
    from nnunetv2.training.nnUNetTrainer import _checkpointing

    def broken_save(obj, f):
        f.write(b"PK half")
        raise RuntimeError("some bug in a custom trainer's state")

    monkeypatch.setattr(_checkpointing.torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="some bug"):
        _checkpointing.save_checkpoint_atomically(_checkpoint(1.0), str(tmp_path / "checkpoint_best.pth"))
    assert _files(tmp_path) == []


# ---------------------------------------------------------------------------------------------- SimpleITK
def _cut_off_writer(real_write):
    """sitk.WriteImage as on a full disk: the NIfTI writer writes part of the file and reports success."""
    def write(image, path, *args, **kwargs):
        real_write(image, path, *args, **kwargs)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    return write


def test_cut_off_nifti_on_full_disk_is_enospc(tmp_path, monkeypatch):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    out = tmp_path / "pred"
    out.mkdir()
    final = out / "case.nii.gz"
    SimpleITKIO().write_seg(_seg(0)[0], str(final), PROPS)  # an earlier prediction
    before = final.read_bytes()

    monkeypatch.setattr(sitk, "WriteImage", _cut_off_writer(sitk.WriteImage))
    monkeypatch.setattr(os, "statvfs", lambda path: _NoSpace())
    with pytest.raises(OSError) as e:
        SimpleITKIO().write_seg(_seg(1)[0], str(final), PROPS)
    monkeypatch.undo()

    assert e.value.errno == errno.ENOSPC and e.value.filename == str(final)
    assert TMP_PREFIX not in os_error_line(e.value)
    assert _files(out) == ["case.nii.gz"] and final.read_bytes() == before
    assert_outputs_load(out)


def test_cut_off_nifti_with_space_left_is_named(tmp_path, monkeypatch):
    """Over a quota the disk still shows free space, so no ENOSPC can be told: the cut-off file must still not be
    taken for a prediction; the error names the file asked for, and the earlier one stays."""
    from nnunetv2.errors import UserError
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    final = tmp_path / "case.nii.gz"
    SimpleITKIO().write_seg(_seg(0)[0], str(final), PROPS)
    before = final.read_bytes()
    monkeypatch.setattr(sitk, "WriteImage", _cut_off_writer(sitk.WriteImage))
    with pytest.raises(UserError) as e:
        SimpleITKIO().write_seg(_seg(1)[0], str(final), PROPS)
    monkeypatch.undo()
    assert str(final) in e.value.one_line() and "full or over its quota" in e.value.one_line()
    assert TMP_PREFIX not in e.value.one_line()
    assert _files(tmp_path) == ["case.nii.gz"] and final.read_bytes() == before


def test_empty_nifti_from_the_writer_is_named(tmp_path, monkeypatch):
    from nnunetv2.errors import UserError
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    monkeypatch.setattr(sitk, "WriteImage", lambda image, path, *a, **k: open(path, "wb").close())
    with pytest.raises(UserError, match="the file is empty"):
        SimpleITKIO().write_seg(_seg(1)[0], str(tmp_path / "case.nii.gz"), PROPS)
    assert _files(tmp_path) == []


def test_other_writer_errors_with_space_left_are_one_line(tmp_path, monkeypatch):
    from nnunetv2.errors import UserError
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    def failing(image, path, *args, **kwargs):
        raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: /src/itkNrrdImageIO.cxx:1050:\n"
                           "ITK ERROR: NrrdImageIO(0x5581): Write: Error writing case.nrrd")

    monkeypatch.setattr(sitk, "WriteImage", failing)
    with pytest.raises(UserError) as e:
        SimpleITKIO().write_seg(_seg(0)[0], str(tmp_path / "case.nrrd"), PROPS)
    assert e.value.one_line().startswith(f"SimpleITK could not write {tmp_path / 'case.nrrd'}: ITK ERROR: NrrdImageIO")
    assert _files(tmp_path) == []


def test_complete_nifti_on_an_almost_full_disk_is_kept(tmp_path, monkeypatch):
    """The read-back check must not reject a file that was written completely."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    monkeypatch.setattr(os, "statvfs", lambda path: _NoSpace())
    final = tmp_path / "case.nii.gz"
    SimpleITKIO().write_seg(_seg(2)[0], str(final), PROPS)
    monkeypatch.undo()
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(final))), _seg(2)[0])
    assert _files(tmp_path) == ["case.nii.gz"]


def test_nrrd_writer_error_on_full_disk_is_enospc(tmp_path, monkeypatch):
    """The NRRD/MetaImage writers raise a bare RuntimeError on a full disk."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    def failing(image, path, *args, **kwargs):
        open(path, "wb").close()
        raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: itkNrrdImageIO.cxx")

    monkeypatch.setattr(sitk, "WriteImage", failing)
    monkeypatch.setattr(os, "statvfs", lambda path: _NoSpace())
    with pytest.raises(OSError) as e:
        SimpleITKIO().write_seg(_seg(0)[0], str(tmp_path / "case.nrrd"), PROPS)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "case.nrrd")
    assert _files(tmp_path) == []


def test_apply_postprocessing_on_full_disk_fails_cleanly(prediction_folders, tmp_path, capsys, monkeypatch):
    """End to end: a command whose outputs SimpleITK cuts off must not exit 0 with empty .nii.gz files."""
    from _bad_inputs_helpers import pp_pickle
    from nnunetv2.postprocessing.remove_connected_components import entry_point_apply_postprocessing as apply_pp
    f, out = prediction_folders, tmp_path / "pp_out"
    monkeypatch.setattr(sitk, "WriteImage", _cut_off_writer(sitk.WriteImage))
    monkeypatch.setattr(os, "statvfs", lambda path: _NoSpace())
    code, err = run_entry(apply_pp, ["-i", f.a, "-o", out, "-pp_pkl_file", pp_pickle(tmp_path / "pp.pkl"),
                                     "-np", "1"], capsys)
    monkeypatch.undo()
    assert_clean_failure(code, err, ENOSPC_TEXT, str(out))
    assert not any(n.endswith(".nii.gz") for n in names(assert_outputs_load(out)))


# ---------------------------------------------------------------------------------------------- training log
def test_training_log_on_full_disk_warns_once_without_retries(tmp_path, monkeypatch, capsys):
    from nnunetv2.training.nnUNetTrainer import _training_data
    log = str(tmp_path / "training_log.txt")
    sleeps = []

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_training_data, "open", full, raising=False)
    monkeypatch.setattr(_training_data, "sleep", sleeps.append)
    for i in range(3):
        _training_data.append_to_log(log, ("epoch", i), add_timestamp=True)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert sleeps == []
    warnings = [line for line in err.splitlines() if line.startswith("nnU-Net warning:")]
    assert len(warnings) == 1 and f"{log}: {ENOSPC_TEXT}" in warnings[0]
    assert "Traceback" not in err and "traceback object" not in err


# ---------------------------------------------------------------------------------------------- evaluation
def test_evaluate_folder_output_in_a_new_folder(prediction_folders, tmp_path, capsys):
    """-o in a folder that does not exist yet: created (it used to end in a FileNotFoundError traceback after the
    whole evaluation)."""
    from nnunetv2.evaluation.evaluate_predictions import evaluate_folder_entry_point
    f = prediction_folders
    out = tmp_path / "new" / "sub" / "summary.json"
    code, err = run_entry(evaluate_folder_entry_point, [f.gt, f.a, "-djfile", f.a / "dataset.json", "-pfile",
                                                        f.a / "plans.json", "-o", out, "-np", "1"], capsys)
    assert code == 0, err
    assert_outputs_load(out.parent)
    assert names(out.parent.iterdir()) == ["summary.json"]


def test_evaluate_folder_output_under_a_file(prediction_folders, tmp_path, capsys):
    from nnunetv2.evaluation.evaluate_predictions import evaluate_folder_entry_point
    f = prediction_folders
    blocker = tmp_path / "a_file"
    blocker.write_text("user data")
    code, err = run_entry(evaluate_folder_entry_point, [f.gt, f.a, "-djfile", f.a / "dataset.json", "-pfile",
                                                        f.a / "plans.json", "-o", blocker / "summary.json", "-np",
                                                        "1"], capsys)
    assert_clean_failure(code, err, str(blocker))
    assert blocker.read_text() == "user data"


# ---------------------------------------------------------------------------------------------- real tmpfs
@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs (root only); skipped where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _fill(mnt, leave_bytes: int) -> None:
    st = os.statvfs(mnt)
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave_bytes, 0))


def test_real_full_tmpfs_nifti(small_tmpfs):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    _fill(small_tmpfs, 8192)
    final = small_tmpfs / "case.nii.gz"
    big = np.random.RandomState(0).randint(0, 3, (1, 40, 64, 64)).astype(np.uint8)  # ~40 KB compressed
    with pytest.raises(OSError) as e:
        SimpleITKIO().write_seg(big[0], str(final), PROPS)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(final)
    assert _files(small_tmpfs) == ["filler"]


def test_real_full_tmpfs_checkpoint(small_tmpfs):
    from nnunetv2.training.nnUNetTrainer import _checkpointing
    final = small_tmpfs / "checkpoint_latest.pth"
    _checkpointing.save_checkpoint_atomically(_checkpoint(1.0), str(final))  # ~17 KB
    before = final.read_bytes()
    _fill(small_tmpfs, 8192)
    with pytest.raises(OSError) as e:
        _checkpointing.save_checkpoint_atomically(_checkpoint(2.0), str(final))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(final)
    assert _files(small_tmpfs) == ["checkpoint_latest.pth", "filler"]
    assert final.read_bytes() == before


# ---------------------------------------------------------------------------------------------- staging folders
def test_install_into_read_only_results_names_the_results_folder(tmp_path, capsys, monkeypatch):
    """Not the random name of the staging folder (.nnunet_install_xxxxxxxx) that could not be created."""
    import tempfile
    import zipfile
    from nnunetv2.model_sharing.entry_points import install_from_zip_entry_point as install
    results = tmp_path / "results"
    results.mkdir()
    zip_file = tmp_path / "model.zip"
    with zipfile.ZipFile(zip_file, "w") as zf:
        zf.writestr("Dataset123_X/nnUNetTrainer__nnUNetPlans__3d_fullres/plans.json", "{}")
    monkeypatch.setenv("nnUNet_results", str(results))

    def read_only(prefix=None, dir=None, **kwargs):
        name = os.path.join(dir, f"{prefix}abc123")
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), name)

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    code, err = run_entry(install, [zip_file], capsys)
    monkeypatch.undo()
    line = assert_clean_failure(code, err, f"{results}: Read-only file system")
    assert ".nnunet_install_" not in line
    assert os.listdir(results) == []


def test_full_disk_while_converting_names_the_final_dataset_folder(tmp_path):
    from nnunetv2.dataset_conversion._conversion_common import staged_dataset_folder
    final = tmp_path / "Dataset009_X"
    with pytest.raises(OSError) as e:
        with staged_dataset_folder(str(final)) as staging:
            os.makedirs(os.path.join(staging, "imagesTr"))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(staging, "imagesTr", "a_0000.nii.gz"))
    assert e.value.filename == str(final / "imagesTr" / "a_0000.nii.gz")
    assert os_error_line(e.value).startswith(f"{final}/imagesTr/a_0000.nii.gz: {ENOSPC_TEXT}")
    assert os.listdir(tmp_path) == []  # staging folder removed, final folder never created
