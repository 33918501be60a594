"""Worker counts below what a pool can run (-np 0 / -2 for the planning commands, negative -npp/-nps for prediction)
were taken silently (one worker, or an in-process export); the reference fails on them with a ValueError or
AssertionError traceback. They are now one line naming the flag, before anything is written."""
from __future__ import annotations

import pytest

from _bad_inputs_helpers import BASE_ID, Snapshot, assert_clean_failure, run_entry
from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import (extract_fingerprint_entry,
                                                                         plan_and_preprocess_entry, preprocess_entry)
from nnunetv2.inference.predict_cli import predict_entry_point, predict_entry_point_modelfolder


@pytest.mark.parametrize("n", ["0", "-2"])
def test_extract_fingerprint_np(clone_dataset, bad_env, capsys, n):
    dataset_id, folder = clone_dataset()
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", n, "--clean"], capsys)
    assert_clean_failure(code, err, "-np must be at least 1", f"got {n}")
    assert not (bad_env.preprocessed / folder.name).exists()


@pytest.mark.parametrize("np_args", [["0"], ["1", "-2"]])
def test_preprocess_np(bad_env, capsys, np_args):
    snapshot = Snapshot(bad_env.preprocessed)
    code, err = run_entry(preprocess_entry, ["-d", BASE_ID, "-c", "3d_fullres", "3d_fullres", "-np", *np_args],
                          capsys)
    assert_clean_failure(code, err, "-np must be at least 1", f"got {np_args[-1]}")
    snapshot.assert_unchanged()


@pytest.mark.parametrize("flags, named", [(["-npfp", "-1"], "-npfp"), (["-npfp", "1", "-np", "0"], "-np")])
def test_plan_and_preprocess_checks_both_counts_before_the_fingerprint(clone_dataset, bad_env, capsys, flags, named):
    dataset_id, folder = clone_dataset()
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-c", "3d_fullres", "--no_pbar", *flags],
                          capsys)
    assert_clean_failure(code, err, f"{named} must be at least 1")
    assert not (bad_env.preprocessed / folder.name).exists()


@pytest.mark.parametrize("entry", ["predict", "modelfolder"])
@pytest.mark.parametrize("flags, named", [(["-npp", "-2"], "-npp"), (["-nps", "-1"], "-nps")])
def test_predict_negative_worker_counts(tmp_path, bad_env, capsys, entry, flags, named):
    """Checked before the model folder is looked at: -nps -1 used to export in the main process silently."""
    out = tmp_path / "out"
    common = ["-i", tmp_path, "-o", out, "-f", "0", "-device", "cpu", *flags]
    if entry == "predict":
        code, err = run_entry(predict_entry_point, ["-d", BASE_ID, "-c", "3d_fullres", *common], capsys)
    else:
        code, err = run_entry(predict_entry_point_modelfolder, ["-m", tmp_path / "no_model", *common], capsys)
    assert_clean_failure(code, err, f"{named} must be 0 or more", f"got {flags[1]}")
    assert not out.exists()
