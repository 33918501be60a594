"""Commands never overwrite what they did not write; hand-edited JSON and plans are named, not tracebacks.

Ensembling/postprocessing rows run the console entry points in this process (sys.argv), which is what the
installed scripts call; every row proves the inputs are byte-identical afterwards and that what was written loads.
"""
from __future__ import annotations

import json

import pytest

from _bad_inputs_helpers import (BASE_ID, BASE_NAME, Snapshot, assert_clean_failure, assert_outputs_load, names,
                                 pp_pickle, run_entry)
from nnunetv2.ensembling.ensemble import entry_point_ensemble_folders as ensemble
from nnunetv2.postprocessing.remove_connected_components import (
    entry_point_apply_postprocessing as apply_pp, entry_point_determine_postprocessing_folder as determine_pp)


# ------------------------------------------------------------------------------------------------------------------
# never overwrite files another command (or the user) wrote
def test_ensemble_into_an_input_folder_is_refused(prediction_folders, capsys):
    f = prediction_folders
    snapshot = Snapshot(f.a, f.b)
    code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", f.a, "-np", "1"], capsys)
    assert_clean_failure(code, err, f.a, "also an input folder")
    snapshot.assert_unchanged()


def test_ensemble_over_ground_truth_is_refused(prediction_folders, capsys):
    f = prediction_folders
    snapshot = Snapshot(f.a, f.b, f.gt)
    code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", f.gt, "-np", "1"], capsys)
    assert_clean_failure(code, err, f.gt / "c0.nii.gz", "did not write")
    snapshot.assert_unchanged()
    assert names(f.gt.iterdir()) == ["c0.nii.gz", "c1.nii.gz"]


def test_ensemble_rerun_into_its_own_folder_is_allowed(prediction_folders, tmp_path, capsys):
    f, out = prediction_folders, tmp_path / "ensemble"
    for _ in range(2):  # the second run replaces what the first wrote
        code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", out, "-np", "1", "--save_npz"], capsys)
        assert code == 0, err
    assert names(assert_outputs_load(out)) == [".nnUNetv2_ensemble.json", "c0.nii.gz", "c0.npz", "c0.pkl",
                                                "c1.nii.gz", "c1.npz", "c1.pkl", "dataset.json"]


def test_ensemble_of_a_truncated_npz_names_it(prediction_folders, tmp_path, capsys):
    f, out = prediction_folders, tmp_path / "ensemble"
    whole = (f.b / "c1.npz").read_bytes()
    (f.b / "c1.npz").write_bytes(whole[:len(whole) // 2])
    snapshot = Snapshot(f.a, f.b)
    code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", out, "-np", "1"], capsys)
    assert_clean_failure(code, err, f.b / "c1.npz", "truncated or corrupt")
    snapshot.assert_unchanged()
    assert "c1.nii.gz" not in names(assert_outputs_load(out))


def test_ensemble_with_file_ending_without_dot_names_dataset_json(prediction_folders, tmp_path, capsys):
    f = prediction_folders
    dj = json.loads((f.a / "dataset.json").read_text())
    dj["file_ending"] = "nii.gz"
    (f.a / "dataset.json").write_text(json.dumps(dj))
    code, err = run_entry(ensemble, ["-i", f.a, f.b, "-o", tmp_path / "e", "-np", "1"], capsys)
    assert_clean_failure(code, err, f.a / "dataset.json", "dot")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("target", ["input", "ground_truth"])
def test_apply_postprocessing_never_replaces_segmentations(target, prediction_folders, tmp_path, capsys):
    f = prediction_folders
    out = f.a if target == "input" else f.gt
    snapshot = Snapshot(f.a, f.gt)
    code, err = run_entry(apply_pp, ["-i", f.a, "-o", out, "-pp_pkl_file", pp_pickle(tmp_path / "pp.pkl"),
                                     "-np", "1"], capsys)
    assert_clean_failure(code, err, out)
    snapshot.assert_unchanged()


def test_apply_postprocessing_rerun_into_its_own_folder_is_allowed(prediction_folders, tmp_path, capsys):
    f, out = prediction_folders, tmp_path / "pp_out"
    argv = ["-i", f.a, "-o", out, "-pp_pkl_file", pp_pickle(tmp_path / "pp.pkl"), "-np", "1"]
    for _ in range(2):
        code, err = run_entry(apply_pp, argv, capsys)
        assert code == 0, err
    assert names(assert_outputs_load(out)) == [".nnUNetv2_apply_postprocessing.json", "c0.nii.gz", "c1.nii.gz"]


@pytest.mark.parametrize("summary", ['{"foreground_mean": {"Dice": 1.0}, "mean": {"1": {"Dice": 0.5}}, '
                                     '"metric_per_case": []}',
                                     '{"foreground_mean": {"Dice": 1.0}}',
                                     '{"foreground_mean": {"Dice": 1.0}, "mean'],
                         ids=["other_labels", "missing_key", "not_json"])
def test_stale_summary_for_determine_postprocessing_is_named(summary, prediction_folders, capsys):
    f = prediction_folders
    (f.a / "summary.json").write_text(summary)
    snapshot = Snapshot(f.a, f.gt)
    code, err = run_entry(determine_pp, ["-i", f.a, "-ref", f.gt, "-np", "1"], capsys)
    assert_clean_failure(code, err, f.a / "summary.json")
    snapshot.assert_unchanged()


# ------------------------------------------------------------------------------------------------------------------
# plans edited by hand (preprocessing / training read them)
def _edited_plans(bad_env, name: str, edit) -> str:
    pp = bad_env.preprocessed / BASE_NAME
    plans = json.loads((pp / "nnUNetPlans.json").read_text())
    plans["plans_name"] = name
    edit(plans, plans["configurations"]["3d_fullres"])
    (pp / f"{name}.json").write_text(json.dumps(plans, indent=2))
    return name


def _own_data_identifier(configuration):  # preprocessing rewrites its output folder: keep the shared data intact
    configuration["data_identifier"] = "bad_inputs_3d_fullres"


def _metres(plans, c):
    _own_data_identifier(c)
    c["spacing"] = [s / 1000 for s in c["spacing"]]


def _missing_key(plans, c):
    _own_data_identifier(c)
    del c["normalization_schemes"]


@pytest.mark.parametrize("edit, what", [(_metres, "metres"), (_missing_key, "'normalization_schemes'")],
                         ids=["spacing_in_metres", "missing_key"])
def test_preprocess_with_edited_plans(edit, what, bad_env, capsys):
    from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import preprocess_entry
    name = _edited_plans(bad_env, f"BadPlans_{edit.__name__}", edit)
    plans_file = bad_env.preprocessed / BASE_NAME / f"{name}.json"
    snapshot = Snapshot(bad_env.dataset, plans_file)
    code, err = run_entry(preprocess_entry, ["-d", BASE_ID, "-plans_name", name, "-c", "3d_fullres", "-np", "1",
                                             "--no_pbar"], capsys)
    assert_clean_failure(code, err, what, name)
    snapshot.assert_unchanged()
    assert_outputs_load(bad_env.preprocessed / BASE_NAME / "bad_inputs_3d_fullres")


def test_plans_that_are_not_json_are_named(bad_env, capsys):
    from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import preprocess_entry
    plans_file = bad_env.preprocessed / BASE_NAME / "BadPlans_syntax.json"
    plans_file.write_text((bad_env.preprocessed / BASE_NAME / "nnUNetPlans.json").read_text()[:-3] + ",}")
    code, err = run_entry(preprocess_entry, ["-d", BASE_ID, "-plans_name", "BadPlans_syntax", "-c", "3d_fullres",
                                             "-np", "1"], capsys)
    assert_clean_failure(code, err, plans_file, "not valid JSON", "line")


def _train(bad_env, capsys, monkeypatch, plans_name: str = "nnUNetPlans"):
    from nnunetv2.run.run_training import run_training_entry
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    return run_entry(run_training_entry, [BASE_ID, "3d_fullres", "0", "-p", plans_name, "-tr",
                                          "nnUNetTrainer_1epoch", "-device", "cpu"], capsys)


def _bad_patch(plans, c):
    c["patch_size"] = [8, 15, 16]


def _bad_network(plans, c):
    c["architecture"]["network_class_name"] = "my_networks.unets.FancyUNet"


@pytest.mark.parametrize("edit, what", [(_bad_patch, "patch_size [8, 15, 16] is not divisible"),
                                        (_bad_network, "no module 'my_networks'")],
                         ids=["patch_size_not_divisible", "network_class_not_importable"])
def test_training_with_edited_plans_stops_at_start(edit, what, bad_env, capsys, monkeypatch):
    name = _edited_plans(bad_env, f"BadPlans_{edit.__name__}", edit)
    code, err = _train(bad_env, capsys, monkeypatch, name)
    assert_clean_failure(code, err, what)


@pytest.mark.parametrize("splits, what", [
    ([{"train": ["case_000", "case_001", "case_0x"], "val": ["case_003"]}], "case_0x"),
    ([{"training": ["case_000"], "val": ["case_003"]}], "'train'"),
    ({"train": ["case_000"], "val": ["case_003"]}, "list of folds"),
], ids=["unknown_case_id", "missing_key", "not_a_list"])
def test_hand_edited_splits_are_named(splits, what, bad_env, capsys, monkeypatch):
    splits_file = bad_env.preprocessed / BASE_NAME / "splits_final.json"
    splits_file.write_text(json.dumps(splits))
    try:
        snapshot = Snapshot(splits_file)
        code, err = _train(bad_env, capsys, monkeypatch)
        assert_clean_failure(code, err, splits_file, what)
        snapshot.assert_unchanged()
    finally:
        splits_file.unlink()
