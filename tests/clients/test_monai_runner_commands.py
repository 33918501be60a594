"""The console commands MONAI's nnUNetV2Runner builds, run with exactly its arguments and environment.

Observed with monai 1.6.1 (tools/client_trials/monai_runner_trial.py): ``train_single_model`` runs
``nnUNetv2_train <id> <config> <fold> -tr <trainer> -num_gpus 1 --npz`` with CUDA_VISIBLE_DEVICES set to the GPU id
and has no way to pass ``-device``. On a machine without CUDA the only way through is a trainer that picks its own
device; the reference honours it. No MONAI needed here: the argv is the runner's, the command runs in-process.
"""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

DATASET_ID = 88
TRAINER = "nnUNetTrainer_RunnerPicksCPU"


@pytest.fixture
def planned(nnunet_dirs, tmp_path, monkeypatch):
    """A planned (not preprocessed) tiny dataset and an external trainer that trains on the CPU whatever it is
    given, with training and validation replaced by a record of how they were called."""
    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                     plan_experiment_dataset)

    make_synthetic_dataset(str(nnunet_dirs["nnUNet_raw"]), DATASET_ID, "Runner", kind="3d", num_train=2,
                           num_test=0, shape=(8, 16, 16))
    extract_fingerprint_dataset(DATASET_ID, num_processes=1, verbose=False, show_progress_bar=False)
    plan_experiment_dataset(DATASET_ID)
    trainers = tmp_path / "trainers"
    trainers.mkdir()
    (trainers / "runner_picks_cpu.py").write_text(textwrap.dedent(f"""
        import json, os
        import torch
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


        class {TRAINER}(nnUNetTrainer):
            def __init__(self, plans, configuration, fold, dataset_json, device=torch.device('cuda')):
                super().__init__(plans, configuration, fold, dataset_json, torch.device('cpu'))

            def run_training(self):
                self._calls = ['run_training']

            def perform_actual_validation(self, save_probabilities: bool = False):
                with open(os.path.join(self.output_folder, 'calls.json'), 'w') as f:
                    json.dump({{'calls': self._calls + ['validation'], 'npz': save_probabilities,
                               'device': str(self.device)}}, f)
        """))
    monkeypatch.setenv("nnUNet_extTrainer", str(trainers))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the runner sets it to its gpu_id
    return nnunet_dirs


def _runner_train_argv(config: str, fold: int) -> list:
    # train_single_model_command(config, fold, gpu_id=0, kwargs={}) with export_validation_probabilities=True
    return ["nnUNetv2_train", str(DATASET_ID), config, str(fold), "-tr", TRAINER, "-num_gpus", "1", "--npz"]


def test_train_single_model_command_with_a_trainer_that_picks_the_cpu(planned, monkeypatch):
    import torch

    from nnunetv2.run.run_training import run_training_entry

    # the command, as a fresh process would, sets torch's thread counts for -device cuda: kept away from this
    # process (the interop count cannot change once torch has computed, and one thread would slow later tests)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch, "set_num_interop_threads", lambda n: None)
    monkeypatch.setattr(sys, "argv", _runner_train_argv("3d_fullres", 0))
    run_training_entry()  # no -device: cuda is requested; without the trainer's choice this needs a GPU
    fold = planned["nnUNet_results"] / f"Dataset0{DATASET_ID}_Runner" / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_0"
    assert json.loads((fold / "calls.json").read_text()) == {"calls": ["run_training", "validation"], "npz": True,
                                                            "device": "cpu"}
