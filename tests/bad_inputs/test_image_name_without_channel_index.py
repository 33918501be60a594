"""Training images named without the 4-digit channel index (case_001.nii.gz, case_001_000.nii.gz): the most common
naming mistake. Fingerprint extraction (which always runs) names the file; it used to stop with an IndexError."""
from __future__ import annotations

import pytest

from _bad_inputs_helpers import Snapshot, assert_clean_failure, run_entry
from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import extract_fingerprint_entry


@pytest.mark.parametrize("new_name", ["case_001.nii.gz", "case_001_000.nii.gz", "case_001-0000.nii.gz"])
def test_image_without_channel_index_is_named(new_name, clone_dataset, capsys):
    dataset_id, ds = clone_dataset()
    renamed = ds / "imagesTr" / new_name
    (ds / "imagesTr" / "case_001_0000.nii.gz").rename(renamed)
    snapshot = Snapshot(ds)
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar"], capsys)
    assert "CASE_XXXX.nii.gz" in assert_clean_failure(code, err, renamed)
    snapshot.assert_unchanged()
