"""The planning commands end to end on a small synthetic dataset, and their one-line errors for bad input."""
import json
import os
import subprocess

import pytest

from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset

DATASET = "Dataset011_Cli"


def _run(args, dirs):
    env = dict(os.environ, **{k: str(v) for k, v in dirs.items()})
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("nnU-Net error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture
def raw_dataset(nnunet_dirs):
    make_synthetic_dataset(str(nnunet_dirs["nnUNet_raw"]), 11, "Cli", num_train=4, num_test=0, shape=(10, 24, 20))
    return nnunet_dirs


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """One full plan_and_preprocess run, shared by the tests that only read its outputs."""
    base = tmp_path_factory.mktemp("planned")
    dirs = {k: base / k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for d in dirs.values():
        d.mkdir()
    make_synthetic_dataset(str(dirs["nnUNet_raw"]), 11, "Cli", num_train=4, num_test=0, shape=(10, 24, 20))
    result = _run(["nnUNetv2_plan_and_preprocess", "-d", "11", "-c", "3d_fullres", "2d", "-np", "1", "-npfp", "1",
                   "--verify_dataset_integrity", "--no_pbar"], dirs)
    assert result.returncode == 0, result.stderr
    return dirs, result


def test_plan_and_preprocess_writes_everything(planned):
    dirs, result = planned
    pre = dirs["nnUNet_preprocessed"] / DATASET
    for f in ("dataset.json", "dataset_fingerprint.json", "nnUNetPlans.json"):
        assert (pre / f).is_file()
    plans = json.load(open(pre / "nnUNetPlans.json"))
    assert plans["dataset_name"] == DATASET and {"2d", "3d_fullres"} <= set(plans["configurations"])
    for config in ("3d_fullres", "2d"):
        folder = pre / f"nnUNetPlans_{config}"
        names = sorted(os.listdir(folder))
        assert names == sorted(f"case_{i:03d}{s}" for i in range(4) for s in (".b2nd", "_seg.b2nd", ".pkl"))
    assert sorted(os.listdir(pre / "gt_segmentations")) == [f"case_{i:03d}.nii.gz" for i in range(4)]
    assert "Fingerprint extraction..." in result.stdout and "Preprocessing..." in result.stdout
    leftovers = [f for _, _, files in os.walk(pre) for f in files if f.startswith(".nnunet_tmp_")]
    assert leftovers == []


def test_plan_before_fingerprint(raw_dataset):
    result = _run(["nnUNetv2_plan_experiment", "-d", "11"], raw_dataset)
    _assert_one_line_error(result, "nnUNetv2_extract_fingerprint")
    assert not (raw_dataset["nnUNet_preprocessed"] / DATASET / "nnUNetPlans.json").exists()


def test_unknown_planner_lists_available(raw_dataset):
    result = _run(["nnUNetv2_plan_and_preprocess", "-d", "11", "-pl", "nnUNetPlannerResEncMM", "-npfp", "1",
                   "--no_pbar"], raw_dataset)
    _assert_one_line_error(result, "nnUNetPlannerResEncMM", "nnUNetPlannerResEncM", "ExperimentPlanner")


def test_unknown_fingerprint_extractor(raw_dataset):
    result = _run(["nnUNetv2_extract_fingerprint", "-d", "11", "-fpe", "NoSuchExtractor"], raw_dataset)
    _assert_one_line_error(result, "NoSuchExtractor", "DatasetFingerprintExtractor")


def test_unknown_dataset_id(raw_dataset):
    result = _run(["nnUNetv2_extract_fingerprint", "-d", "12"], raw_dataset)
    _assert_one_line_error(result, "12")


def test_wrong_number_of_target_spacing_values(planned):
    dirs, _ = planned
    result = _run(["nnUNetv2_plan_experiment", "-d", "11", "-overwrite_target_spacing", "1", "2",
                   "-overwrite_plans_name", "Spacing"], dirs)
    _assert_one_line_error(result, "overwrite_target_spacing")
    assert not (dirs["nnUNet_preprocessed"] / DATASET / "Spacing.json").exists()


def test_configuration_missing_from_plans(planned):
    dirs, _ = planned
    result = _run(["nnUNetv2_preprocess", "-d", "11", "-c", "3d_lowres", "-np", "1"], dirs)
    _assert_one_line_error(result, "3d_lowres", "2d", "3d_fullres")


def test_np_list_of_wrong_length(planned):
    dirs, _ = planned
    result = _run(["nnUNetv2_preprocess", "-d", "11", "-c", "2d", "3d_fullres", "-np", "1", "2", "3"], dirs)
    _assert_one_line_error(result, "-np")


def test_unknown_preprocessor(planned):
    dirs, _ = planned
    pre = dirs["nnUNet_preprocessed"] / DATASET
    before = sorted(os.listdir(pre))
    result = _run(["nnUNetv2_plan_experiment", "-d", "11", "-preprocessor_name", "NoSuchPreprocessor",
                   "-overwrite_plans_name", "BadPre"], dirs)
    _assert_one_line_error(result, "NoSuchPreprocessor", "DefaultPreprocessor", "nnunetv2.preprocessing")
    assert sorted(os.listdir(pre)) == before  # no plans, no temporary file
    # plans edited by hand to an unknown name: named when preprocessing
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["plans_name"] = "BadPre"
    for c in plans["configurations"].values():
        if "preprocessor_name" in c:
            c["preprocessor_name"] = "NoSuchPreprocessor"
    (pre / "BadPre.json").write_text(json.dumps(plans))
    try:
        result = _run(["nnUNetv2_preprocess", "-d", "11", "-plans_name", "BadPre", "-c", "3d_fullres", "-np", "1"],
                      dirs)
        _assert_one_line_error(result, "NoSuchPreprocessor")
    finally:
        (pre / "BadPre.json").unlink()


@pytest.mark.parametrize("no_pp", [False, True])
def test_unknown_preprocessor_stops_plan_and_preprocess_before_writing(raw_dataset, no_pp):
    result = _run(["nnUNetv2_plan_and_preprocess", "-d", "11", "-preprocessor_name", "NoSuchPreprocessor",
                   "-c", "3d_fullres", "-np", "1", "-npfp", "1", "--no_pbar"] + (["--no_pp"] if no_pp else []),
                  raw_dataset)
    _assert_one_line_error(result, "NoSuchPreprocessor", "DefaultPreprocessor")
    assert not (raw_dataset["nnUNet_preprocessed"] / DATASET).exists()


def test_move_plans_between_datasets(planned):
    dirs, _ = planned
    make_synthetic_dataset(str(dirs["nnUNet_raw"]), 12, "Target", num_train=2, num_test=0, shape=(8, 20, 16))
    result = _run(["nnUNetv2_move_plans_between_datasets", "-s", "11", "-t", "12", "-sp", "nnUNetPlans",
                   "-tp", "nnUNetPlansFrom11"], dirs)
    assert result.returncode == 0, result.stderr
    plans = json.load(open(dirs["nnUNet_preprocessed"] / "Dataset012_Target" / "nnUNetPlansFrom11.json"))
    source = json.load(open(dirs["nnUNet_preprocessed"] / DATASET / "nnUNetPlans.json"))
    assert plans["dataset_name"] == "Dataset012_Target" and plans["plans_name"] == "nnUNetPlansFrom11"
    assert plans["configurations"]["3d_fullres"]["data_identifier"] == "nnUNetPlansFrom11_3d_fullres"
    assert plans["configurations"]["3d_fullres"]["patch_size"] == source["configurations"]["3d_fullres"]["patch_size"]
    assert plans["image_reader_writer"] == "SimpleITKIO"
