"""One shared workspace for the console-command tests: every ``nnUNetv2_*`` command runs as a subprocess of its
installed console script, as the documentation shows it, with its DEFAULT worker counts (no ``-np``/``-npfp``/
``-npp``/``-nps``, no ``nnUNet_*`` variables but the three folders and ``nnUNet_extTrainer``). On a 2-core machine
the defaults mean more worker processes than cores, which is what most users have.

Built once per session and kept small: 15 synthetic 3D cases of 12x24x24 voxels (so that a fold validates 3 cases),
plans edited to a tiny network, and a trainer with one very short epoch. The expensive steps (planning, training,
prediction) are session fixtures; each test only reads their outputs or runs one cheap command on them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from _commands_helpers import (DATASET, DATASET_ID, FOLDS, N_TEST, N_TRAIN, TRAINER, TRAINER_SOURCE,
                               model_folder, run_command, shrink_network, user_environment)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """Raw dataset, fingerprint, plans (tiny network) and preprocessed data, made with the three separate planning
    commands at their default worker counts."""
    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset

    base = tmp_path_factory.mktemp("commands")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "custom_trainers"):
        (base / name).mkdir()
    (base / "custom_trainers" / "commands_tiny_trainer.py").write_text(TRAINER_SOURCE)
    env = user_environment(base)
    raw = Path(make_synthetic_dataset(env["nnUNet_raw"], DATASET_ID, "Commands", kind="3d", num_train=N_TRAIN,
                                      num_test=N_TEST, shape=(12, 24, 24)))
    d = str(DATASET_ID)
    logs = {"extract_fingerprint": run_command(["nnUNetv2_extract_fingerprint", "-d", d,
                                                "--verify_dataset_integrity"], env),
            "plan_experiment": run_command(["nnUNetv2_plan_experiment", "-d", d], env)}
    preprocessed = base / "nnUNet_preprocessed" / DATASET
    shrink_network(preprocessed / "nnUNetPlans.json")
    logs["preprocess"] = run_command(["nnUNetv2_preprocess", "-d", d], env)
    return SimpleNamespace(base=base, env=env, raw=raw, preprocessed=preprocessed,
                           results=base / "nnUNet_results" / DATASET, logs=logs)


@pytest.fixture(scope="session")
def trained(workspace):
    """Fold 0 of 3d_fullres and 2d trained with ``nnUNetv2_train D C 0 --npz -device cpu`` (default DA workers and
    validation export workers). Folds 1-4 reuse fold 0's checkpoint so that the five-fold commands (predict -f 0 1 2
    3 4, find_best_configuration, accumulate_crossval_results) run as documented without training five times."""
    ws = workspace
    logs = {}
    for configuration in ("3d_fullres", "2d"):
        logs[configuration] = run_command(["nnUNetv2_train", str(DATASET_ID), configuration, "0", "--npz",
                                           "-tr", TRAINER, "-device", "cpu"], ws.env)
        fold0 = model_folder(ws, configuration) / "fold_0"
        for fold in FOLDS[1:]:
            (fold0.parent / f"fold_{fold}").mkdir()
            for name in ("checkpoint_final.pth", "progress.png", "debug.json"):
                shutil.copy(fold0 / name, fold0.parent / f"fold_{fold}" / name)
    return SimpleNamespace(ws=ws, logs=logs)


@pytest.fixture(scope="session")
def predicted(trained):
    """The 15 training images predicted with both models (five folds, probabilities saved), with
    ``nnUNetv2_predict`` (3d_fullres) and ``nnUNetv2_predict_from_modelfolder`` (2d) at their default -npp/-nps.
    Each fold's validation cases are then copied into fold_K/validation (K = 1..4) and evaluated there, standing in
    for the validation of folds that were not trained."""
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    ws = trained.ws
    images = ws.raw / "imagesTr"
    out = {"3d_fullres": ws.base / "pred_3d_fullres", "2d": ws.base / "pred_2d"}
    logs = {"3d_fullres": run_command(
        ["nnUNetv2_predict", "-i", str(images), "-o", str(out["3d_fullres"]), "-d", str(DATASET_ID), "-c",
         "3d_fullres", "-tr", TRAINER, "-f", *FOLDS, "--save_probabilities", "-device", "cpu"], ws.env)}
    logs["2d"] = run_command(
        ["nnUNetv2_predict_from_modelfolder", "-i", str(images), "-o", str(out["2d"]), "-m",
         str(model_folder(ws, "2d")), "-f", *FOLDS, "--save_probabilities", "-device", "cpu"], ws.env)
    splits = json.loads((ws.preprocessed / "splits_final.json").read_text())
    for configuration, folder in out.items():
        for fold in FOLDS[1:]:
            validation = model_folder(ws, configuration) / f"fold_{fold}" / "validation"
            validation.mkdir()
            for case in splits[int(fold)]["val"]:
                for ending in (".nii.gz", ".npz", ".pkl"):
                    shutil.copy(folder / f"{case}{ending}", validation / f"{case}{ending}")
            compute_metrics_on_folder(str(ws.preprocessed / "gt_segmentations"), str(validation),
                                      str(validation / "summary.json"), SimpleITKIO(), ".nii.gz", [1, 2],
                                      num_processes=1)
    return SimpleNamespace(ws=ws, out=out, logs=logs, splits=splits)
