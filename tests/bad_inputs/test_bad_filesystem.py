"""File-system errors end in one line naming the path and the errno's meaning; nothing truncated is left under a
final name. Full or read-only disks are simulated (a real one needs root to mount); where the test runs as a normal
user, a read-only folder is also tried for real."""
from __future__ import annotations

import errno
import os
import zipfile

import numpy as np
import pytest

from _bad_inputs_helpers import Snapshot, assert_clean_failure, assert_outputs_load, names, run_entry
from nnunetv2.ensembling.ensemble import entry_point_ensemble_folders as ensemble
from nnunetv2.errors import exit_on_user_error, os_error_line
from nnunetv2.file_io import TMP_PREFIX


@pytest.mark.parametrize("err, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device [ENOSPC]"),
    (OSError(errno.ENOSPC, "x", "/data/out/case.npz"), "/data/out/case.npz: No space left on device"),
    (PermissionError(errno.EROFS, "x", "/ro/out"), "/ro/out: Read-only file system [EROFS]"),
    (PermissionError(errno.EACCES, "x", "/root/out"), "/root/out: Permission denied [EACCES]"),
    (NotADirectoryError(errno.ENOTDIR, "x", "/a/file/sub"), "/a/file/sub: Not a directory [ENOTDIR]"),
    (OSError(errno.EDQUOT, "x", "/q/out"), "Disk quota exceeded"),
], ids=["full_disk_no_path", "full_disk", "read_only", "permission", "file_as_folder", "quota"])
def test_os_errors_of_the_users_disk_are_one_line(err, expected, capsys):
    @exit_on_user_error
    def command():
        raise err

    with pytest.raises(SystemExit) as e:
        command()
    assert e.value.code == 1
    assert expected in assert_clean_failure(1, capsys.readouterr().err)


@pytest.mark.parametrize("err", [FileNotFoundError(errno.ENOENT, "x", "/internal/file"), OSError(errno.EACCES, "x"),
                                 ValueError("a bug")], ids=["enoent", "no_path", "not_os_error"])
def test_other_errors_keep_their_traceback(err):
    """A missing internal file or an OSError without a path may be a bug: it is not turned into a user message."""
    assert os_error_line(err) is None

    @exit_on_user_error
    def command():
        raise err

    with pytest.raises(type(err)):
        command()


def test_output_path_that_is_a_file(prediction_folders, tmp_path, capsys):
    f, out = prediction_folders, tmp_path / "not_a_folder.nii.gz"
    out.write_bytes(b"the user's file")
    snapshot = Snapshot(f.a, f.b, out)
    code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", out, "-np", "1"], capsys)
    assert_clean_failure(code, err, out, "not a folder")
    code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", out / "sub", "-np", "1"], capsys)
    assert_clean_failure(code, err, out, "[ENOTDIR]")
    snapshot.assert_unchanged()


def test_read_only_output_simulated(prediction_folders, tmp_path, capsys, monkeypatch):
    """Renaming into place fails (as on a read-only disk): the final name is reported, no temporary file stays."""
    f, out = prediction_folders, tmp_path / "ensemble"
    real_replace = os.replace

    def read_only_replace(src, dst, *a, **k):
        if TMP_PREFIX in str(src) and str(dst).endswith(".nii.gz"):
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), src)
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", read_only_replace)
    snapshot = Snapshot(f.a, f.b)
    code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", out, "-np", "1"], capsys)
    line = assert_clean_failure(code, err, out / "c0.nii.gz", "Read-only file system")
    assert TMP_PREFIX not in line
    snapshot.assert_unchanged()
    assert not any(n.endswith(".nii.gz") for n in names(assert_outputs_load(out)))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_output_for_real(prediction_folders, tmp_path, capsys):
    f, out = prediction_folders, tmp_path / "read_only"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", out, "-np", "1"], capsys)
        assert_clean_failure(code, err, out, "Permission denied")
    finally:
        out.chmod(0o755)


def test_full_disk_while_writing_probabilities(prediction_folders, tmp_path, capsys, monkeypatch):
    f, out = prediction_folders, tmp_path / "ensemble"
    real = np.savez_compressed

    def half_then_full(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() raises: no file name

    monkeypatch.setattr(np, "savez_compressed", half_then_full)
    code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", out, "-np", "1", "--save_npz"], capsys)
    monkeypatch.setattr(np, "savez_compressed", real)
    assert_clean_failure(code, err, out / "c0.npz", "No space left on device")
    assert "c0.npz" not in names(assert_outputs_load(out))


def test_full_disk_while_preprocessing_a_case(tmp_path, monkeypatch):
    """blosc2 reports a failed write without errno; a disk without free space turns it into ENOSPC naming the file,
    and the preprocessing worker pool passes that error through as it is."""
    import nnunetv2.utilities.blosc2_storage as storage
    from nnunetv2.utilities.worker_processes import WorkerFailure

    blosc2 = storage._blosc2()
    real_asarray = blosc2.asarray

    def partial_write(arr, urlpath=None, **kwargs):
        if urlpath is None:  # in-memory compression trials (filter selection)
            return real_asarray(arr, **kwargs)
        with open(urlpath, "wb") as fh:
            fh.write(b"b2frame, cut off")
        raise RuntimeError("Error while creating the NDArray")

    class NoSpace:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(blosc2, "asarray", partial_write)
    monkeypatch.setattr(os, "statvfs", lambda path: NoSpace())
    final = tmp_path / "case_000.b2nd"
    with pytest.raises(OSError) as e:
        storage.write_b2nd(np.zeros((1, 4, 4, 4), np.float32), str(final), [1, 4, 4, 4], [1, 4, 4, 4])
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(final)
    assert os.listdir(tmp_path) == []
    with pytest.raises(OSError) as again:
        WorkerFailure(e.value).reraise("preprocessing worker (case case_000)")
    assert os_error_line(again.value).startswith(f"{final}: No space left on device")


def _model_zip(path) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for member in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth"):
            z.writestr(f"Dataset779_Zip/nnUNetTrainer__nnUNetPlans__3d_fullres/{member}", "{}")
    return str(path)


def test_full_disk_while_installing_a_model(tmp_path, capsys, monkeypatch):
    from nnunetv2.model_sharing.entry_points import install_from_zip_entry_point
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setenv("nnUNet_results", str(results))
    archive = _model_zip(tmp_path / "model.zip")
    calls = []
    real_extract = zipfile.ZipFile.extract

    def extract_until_full(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_extract(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", extract_until_full)
    code, err = run_entry(install_from_zip_entry_point, [archive], capsys)
    assert_clean_failure(code, err, "No space left on device", results / "Dataset779_Zip")
    assert os.listdir(results) == []  # nothing half-installed, no temporary folder


def test_results_variable_naming_a_file(tmp_path, capsys, monkeypatch):
    from nnunetv2.model_sharing.entry_points import install_from_zip_entry_point
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("notes")
    monkeypatch.setenv("nnUNet_results", str(not_a_folder))
    code, err = run_entry(install_from_zip_entry_point, [_model_zip(tmp_path / "model.zip")], capsys)
    assert_clean_failure(code, err, f"nnUNet_results={not_a_folder}", "is a file")
    assert not_a_folder.read_text() == "notes"
