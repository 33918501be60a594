"""A tiny preprocessed dataset for training tests: 6 synthetic 3D cases, planned with our API, then the plans are
edited to a very small network (8-16-32 features, one conv per stage) so that an epoch takes about a second on CPU.

Built once per test session (fingerprint + planning + preprocessing take ~30-50 s on 2 loaded cores).
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from _training_env import one_process_training_env

DATASET_ID = 321
DATASET_NAME = "Dataset321_T2Tiny"


@pytest.fixture(scope="session")
def tiny_preprocessed(tmp_path_factory):
    """Paths of a session-wide nnUNet_raw / nnUNet_preprocessed holding Dataset321_T2Tiny (3d_fullres preprocessed,
    2d planned but not preprocessed)."""
    base = tmp_path_factory.mktemp("t2_tiny")
    raw, pp = base / "raw", base / "preprocessed"
    raw.mkdir()
    pp.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("nnUNet_raw", str(raw))
        mp.setenv("nnUNet_preprocessed", str(pp))
        mp.setenv("nnUNet_results", str(base / "unused_results"))
        from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                         plan_experiment_dataset,
                                                                         preprocess_dataset)
        make_synthetic_dataset(str(raw), DATASET_ID, "T2Tiny", kind="3d", num_train=6, num_test=0,
                               shape=(12, 24, 24))
        extract_fingerprint_dataset(DATASET_ID, num_processes=1, verbose=False, show_progress_bar=False)
        plan_experiment_dataset(DATASET_ID)
        plans_file = pp / DATASET_NAME / "nnUNetPlans.json"
        plans = json.loads(plans_file.read_text())
        arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
        assert arch["n_stages"] == 3, "the tiny-plans edit below assumes a 3-stage network"
        arch["features_per_stage"] = [8, 16, 32]
        arch["n_conv_per_stage"] = [1, 1, 1]
        arch["n_conv_per_stage_decoder"] = [1, 1]
        plans_file.write_text(json.dumps(plans, indent=4))
        preprocess_dataset(DATASET_ID, configurations=["3d_fullres"], num_processes=1, show_progress_bar=False)
    return {"raw": raw, "preprocessed": pp}


@pytest.fixture
def tiny_env(tiny_preprocessed, tmp_path, monkeypatch):
    """Environment for one training test: the shared tiny dataset, a fresh nnUNet_results, augmentation in the main
    process, one export worker and one torch thread (the test machine's cores are shared)."""
    results = tmp_path / "results"
    results.mkdir()
    with one_process_training_env(monkeypatch, tiny_preprocessed["raw"], tiny_preprocessed["preprocessed"], results):
        yield {"results": results, "preprocessed": tiny_preprocessed["preprocessed"] / DATASET_NAME,
               "raw": tiny_preprocessed["raw"] / DATASET_NAME}


def write_ext_trainer(folder: Path, class_name: str, num_epochs: int, iterations: int, val_iterations: int,
                      save_every: int = 50) -> None:
    """A trainer module for nnUNet_extTrainer: nnUNetTrainer with a short schedule."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{class_name.lower()}.py").write_text(textwrap.dedent(f"""
        import torch
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


        class {class_name}(nnUNetTrainer):
            def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                         device: torch.device = torch.device('cuda')):
                super().__init__(plans, configuration, fold, dataset_json, device)
                self.num_epochs = {num_epochs}
                self.num_iterations_per_epoch = {iterations}
                self.num_val_iterations_per_epoch = {val_iterations}
                self.save_every = {save_every}
        """))


def fold_folder(results: Path, trainer: str, fold="0", configuration: str = "3d_fullres") -> Path:
    return results / DATASET_NAME / f"{trainer}__nnUNetPlans__{configuration}" / f"fold_{fold}"


def read_log(folder: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(folder.glob("training_log_*.txt")))


@pytest.fixture
def t2(tiny_env):
    """Helpers for the training tests (fixtures, because test modules cannot import this conftest)."""
    from types import SimpleNamespace
    return SimpleNamespace(env=tiny_env, write_ext_trainer=write_ext_trainer, fold_folder=fold_folder,
                           read_log=read_log, dataset_name=DATASET_NAME)
