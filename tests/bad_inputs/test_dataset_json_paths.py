"""Where dataset.json cannot be found, the message names the right path: a missing raw dataset folder (nnUNet_raw
pointing elsewhere) is named as such instead of "dataset.json not found: <folder>",
and a folder called dataset.json is named once instead of as ".../dataset.json/dataset.json"."""
from __future__ import annotations

import shutil

import pytest

from _bad_inputs_helpers import assert_clean_failure, run_entry
from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import extract_fingerprint_entry
from nnunetv2.utilities.dataset_json import load_dataset_json


def test_dataset_json_that_is_a_folder_with_verify(clone_dataset, capsys):
    dataset_id, ds = clone_dataset()
    (ds / "dataset.json").unlink()
    (ds / "dataset.json").mkdir()
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar",
                                                      "--verify_dataset_integrity"], capsys)
    line = assert_clean_failure(code, err, ds / "dataset.json")
    assert "dataset.json/dataset.json" not in line and "folder" in line


def test_missing_dataset_folder_is_named(tmp_path):
    with pytest.raises(UserError, match=r"dataset folder .*Dataset123_X does not exist"):
        load_dataset_json(str(tmp_path / "Dataset123_X"))
    (tmp_path / "dj.bak").write_text('{"a": 1}')
    assert load_dataset_json(str(tmp_path / "dj.bak")) == {"a": 1}
