"""A .nii.gz cut off in a copy or download: SimpleITK reads it without complaint and fills the missing voxels with 0
(the reference trains and predicts on those zeros). Every read through SimpleITKIO names the file instead; a file of
several concatenated gzip streams (as bgzip writes) is complete and still read."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from _bad_inputs_helpers import Snapshot, assert_clean_failure, run_entry
from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import extract_fingerprint_entry
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO


def _cut(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


@pytest.mark.parametrize("verify", [False, True], ids=["always_on", "verify_dataset_integrity"])
@pytest.mark.parametrize("folder,name", [("imagesTr", "case_001_0000.nii.gz"), ("labelsTr", "case_002.nii.gz")])
def test_cut_off_training_file_is_named(folder, name, verify, clone_dataset, capsys):
    dataset_id, ds = clone_dataset()
    path = _cut(ds / folder / name)
    snapshot = Snapshot(ds)
    argv = ["-d", dataset_id, "-np", "1", "--no_pbar"] + (["--verify_dataset_integrity"] if verify else [])
    code, err = run_entry(extract_fingerprint_entry, argv, capsys)
    assert "incomplete" in assert_clean_failure(code, err, path)
    snapshot.assert_unchanged()


def test_cut_off_image_to_predict_is_refused(bad_env, tmp_path):
    image = tmp_path / "x_0000.nii.gz"
    image.write_bytes((bad_env.dataset / "imagesTs" / "case_004_0000.nii.gz").read_bytes())
    _cut(image)
    with pytest.raises(UserError, match=r"x_0000\.nii\.gz is incomplete"):
        SimpleITKIO().read_images([str(image)])


def test_several_gzip_streams_are_read(bad_env, tmp_path):
    original = bad_env.dataset / "imagesTs" / "case_004_0000.nii.gz"
    content = gzip.decompress(original.read_bytes())
    multi = tmp_path / "x_0000.nii.gz"
    multi.write_bytes(gzip.compress(content[:500]) + gzip.compress(content[500:]))
    a, _ = SimpleITKIO().read_images([str(multi)])
    b, _ = SimpleITKIO().read_images([str(original)])
    np.testing.assert_array_equal(a, b)


def test_bytes_after_a_complete_stream_are_ignored_as_simpleitk_does(bad_env, tmp_path):
    """A complete .nii.gz followed by bytes that are not another gzip stream: SimpleITK (zlib) and the reference read
    it whole; it is not cut off."""
    original = bad_env.dataset / "imagesTs" / "case_004_0000.nii.gz"
    padded = tmp_path / "x_0000.nii.gz"
    padded.write_bytes(original.read_bytes() + b"GARBAGE!" * 4)
    a, _ = SimpleITKIO().read_images([str(padded)])
    b, _ = SimpleITKIO().read_images([str(original)])
    np.testing.assert_array_equal(a, b)


def test_cut_off_stream_followed_by_garbage_is_still_refused(bad_env, tmp_path):
    original = bad_env.dataset / "imagesTs" / "case_004_0000.nii.gz"
    content = gzip.decompress(original.read_bytes())
    image = tmp_path / "x_0000.nii.gz"
    # a complete first stream holding only part of the voxels, then bytes that are no stream
    image.write_bytes(gzip.compress(content[: len(content) // 2]) + b"GARBAGE!" * 4)
    with pytest.raises(UserError, match=r"x_0000\.nii\.gz is incomplete"):
        SimpleITKIO().read_images([str(image)])
