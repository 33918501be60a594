"""Evaluation, cross-validation, ensembling and postprocessing commands at their default worker counts (-np 8 where
the command has it) on the 15 predicted cases of the shared workspace, checked against values computed here."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from _commands_helpers import (DATASET_ID, FOLDS, N_TRAIN, TRAINER, case_ids, model_folder, read_seg,
                               run_command)

CASES = [f"case_{i:03d}" for i in range(N_TRAIN)]


def _dice(gt: np.ndarray, pred: np.ndarray, label: int) -> float:
    tp = np.sum((gt == label) & (pred == label))
    fp_fn = np.sum((gt == label) != (pred == label))
    return float("nan") if tp + fp_fn == 0 else 2 * tp / (2 * tp + fp_fn)


def _assert_dice_per_case(summary: dict, gt_folder, pred_folder) -> None:
    per_case = {m["prediction_file"].rsplit("/", 1)[-1]: m["metrics"] for m in summary["metric_per_case"]}
    assert sorted(per_case) == [f"{c}.nii.gz" for c in CASES]
    for case in CASES:
        gt, pred = read_seg(gt_folder / f"{case}.nii.gz"), read_seg(pred_folder / f"{case}.nii.gz")
        for label in (1, 2):
            np.testing.assert_allclose(per_case[f"{case}.nii.gz"][str(label)]["Dice"], _dice(gt, pred, label),
                                       rtol=1e-6, err_msg=f"{case} label {label}")


def test_evaluate_folder_and_simple(predicted, tmp_path):
    ws = predicted.ws
    pred = predicted.out["3d_fullres"]
    gt = ws.raw / "labelsTr"
    run_command(["nnUNetv2_evaluate_folder", str(gt), str(pred), "-djfile", str(pred / "dataset.json"),
                 "-pfile", str(pred / "plans.json"), "-o", str(tmp_path / "folder.json")], ws.env)
    run_command(["nnUNetv2_evaluate_simple", str(gt), str(pred), "-l", "1", "2", "-o", str(tmp_path / "simple.json")],
                ws.env)
    for name in ("folder.json", "simple.json"):
        _assert_dice_per_case(json.loads((tmp_path / name).read_text()), gt, pred)


def test_accumulate_crossval_results(predicted, tmp_path):
    ws = predicted.ws
    merged = tmp_path / "crossval"
    run_command(["nnUNetv2_accumulate_crossval_results", str(DATASET_ID), "-c", "3d_fullres", "-tr", TRAINER,
                 "-o", str(merged)], ws.env)
    assert case_ids(merged) == CASES
    for fold in FOLDS:
        for case in predicted.splits[int(fold)]["val"]:
            validation = model_folder(ws, "3d_fullres") / f"fold_{fold}" / "validation"
            assert np.array_equal(read_seg(merged / f"{case}.nii.gz"), read_seg(validation / f"{case}.nii.gz"))
    _assert_dice_per_case(json.loads((merged / "summary.json").read_text()), ws.preprocessed / "gt_segmentations",
                          merged)


@pytest.fixture(scope="module")
def best(predicted):
    """``nnUNetv2_find_best_configuration D -c 2d 3d_fullres`` (five folds, ensembling, postprocessing)."""
    ws = predicted.ws
    log = run_command(["nnUNetv2_find_best_configuration", str(DATASET_ID), "-c", "2d", "3d_fullres",
                       "-tr", TRAINER], ws.env)
    return json.loads((ws.results / "inference_information.json").read_text()), log


def test_find_best_configuration(best, predicted):
    ws = predicted.ws
    info, log = best
    ensemble = f"ensemble___{TRAINER}__nnUNetPlans__2d___{TRAINER}__nnUNetPlans__3d_fullres___0_1_2_3_4"
    sources = {f"{TRAINER}__nnUNetPlans__{c}": model_folder(ws, c) / "crossval_results_folds_0_1_2_3_4"
               for c in ("2d", "3d_fullres")}
    sources[ensemble] = ws.results / "ensembles" / ensemble
    assert set(info["all_results"]) == set(sources)
    for key, folder in sources.items():
        assert case_ids(folder) == CASES, key
        summary = json.loads((folder / "summary.json").read_text())
        assert info["all_results"][key] == pytest.approx(summary["foreground_mean"]["Dice"], nan_ok=True)
    chosen = info["best_model_or_ensemble"]
    assert chosen["result_on_crossval_pre_pp"] == max(v for v in info["all_results"].values() if v == v)
    assert (ws.results / "inference_instructions.txt").read_text().strip().splitlines()[-1].startswith(
        "nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file ")
    assert "*Best*" in log.stdout


def test_ensemble(predicted, tmp_path):
    ws = predicted.ws
    out = tmp_path / "ensemble"
    run_command(["nnUNetv2_ensemble", "-i", str(predicted.out["3d_fullres"]), str(predicted.out["2d"]),
                 "-o", str(out)], ws.env)
    assert case_ids(out) == CASES
    for case in CASES[:4]:
        mean = (np.load(predicted.out["3d_fullres"] / f"{case}.npz")["probabilities"]
                + np.load(predicted.out["2d"] / f"{case}.npz")["probabilities"]) / 2
        seg = read_seg(out / f"{case}.nii.gz")
        assert (mean.argmax(0) == seg).mean() > 0.999, case  # a tie may break either way


def test_determine_and_apply_postprocessing(predicted, best, tmp_path):
    """determine_postprocessing on a copy of the 3d_fullres predictions, then apply_postprocessing as
    find_best_configuration prints it (without -np): removal only, every case written."""
    ws = predicted.ws
    folder = tmp_path / "pred"
    shutil.copytree(predicted.out["3d_fullres"], folder)
    run_command(["nnUNetv2_determine_postprocessing", "-i", str(folder), "-ref", str(ws.raw / "labelsTr")], ws.env)
    with open(folder / "postprocessing.pkl", "rb") as f:
        functions, kwargs = pickle.load(f)
    assert len(functions) == len(kwargs)
    assert case_ids(folder / "postprocessed") == CASES
    described = json.loads((folder / "postprocessing.json").read_text())
    assert described["postprocessing_fns"] == [fn.__name__ for fn in functions]
    _assert_dice_per_case(json.loads((folder / "summary.json").read_text()), ws.raw / "labelsTr", folder)

    chosen = best[0]["best_model_or_ensemble"]
    out = tmp_path / "pp"
    run_command(["nnUNetv2_apply_postprocessing", "-i", str(predicted.out["3d_fullres"]), "-o", str(out),
                 "-pp_pkl_file", chosen["postprocessing_file"], "-plans_json", chosen["some_plans_file"]], ws.env)
    assert case_ids(out) == CASES
    for case in CASES:
        before = read_seg(predicted.out["3d_fullres"] / f"{case}.nii.gz")
        after = read_seg(out / f"{case}.nii.gz")
        changed = before != after
        assert np.all(after[changed] == 0), case  # postprocessing only removes components
