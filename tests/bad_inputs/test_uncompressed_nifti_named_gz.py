"""An uncompressed NIfTI file named .nii.gz (renamed by hand, or written by a tool that does not compress): SimpleITK
reads it by its content, as the reference does, so the dataset is valid. The second checks that read the file with
nibabel (NaN/inf voxels, empty axes) must read it the same way instead of failing with nibabel's traceback."""
from __future__ import annotations

import logging
from pathlib import Path

import nibabel
import numpy as np

from _bad_inputs_helpers import Snapshot, assert_clean_failure, run_entry
from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import extract_fingerprint_entry


def _save_uncompressed_as_gz(path: Path, dtype, nan: bool = False) -> None:
    img = nibabel.load(str(path))
    data = np.asarray(img.dataobj).astype(dtype)
    if nan:
        data[data == data.max()] = np.nan
    plain = path.with_name("plain.nii")
    nibabel.save(nibabel.Nifti1Image(data, img.affine), str(plain))
    plain.replace(path)
    assert path.read_bytes()[:2] != b"\x1f\x8b"  # the premise: not gzip data


def test_uncompressed_file_named_gz_is_accepted(clone_dataset, capsys):
    dataset_id, ds = clone_dataset()
    _save_uncompressed_as_gz(ds / "imagesTr" / "case_001_0000.nii.gz", np.int16)
    _save_uncompressed_as_gz(ds / "labelsTr" / "case_001.nii.gz", np.uint8)
    snapshot = Snapshot(ds)
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar",
                                                      "--verify_dataset_integrity"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    snapshot.assert_unchanged()


def test_nan_in_uncompressed_file_named_gz_is_still_found(clone_dataset, capsys, caplog):
    dataset_id, ds = clone_dataset()
    image = ds / "imagesTr" / "case_002_0000.nii.gz"
    _save_uncompressed_as_gz(image, np.float32, nan=True)
    with caplog.at_level(logging.WARNING):
        code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar"], capsys)
    assert code == 0, err
    assert any(str(image) in r.getMessage() and "NaN/inf" in r.getMessage() for r in caplog.records)
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar", "--clean",
                                                      "--verify_dataset_integrity"], capsys)
    assert "NaN/inf" in assert_clean_failure(code, err, image)
