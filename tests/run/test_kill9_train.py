"""nnUNetv2_train killed at random moments and continued with --c until it completes.

* With augmentation workers (nnUNet_n_proc_DA=2): SIGKILL of the main process (workers, export workers exit by
  themselves), Ctrl-C (SIGINT) or SIGTERM to the whole process group (130 / 143, or the default -15 outside the
  training loop; no traceback from any process; augmentation workers stay quiet). Every file loads after each kill;
  the continued training ends with all its epochs and the files of an uninterrupted run.
* In the main process with a checkpoint after every iteration (nnUNet_checkpoint_minutes tiny, seeded trainer):
  SIGKILL anywhere loses at most the iteration in progress, and the weights and logged losses at the end equal those
  of an uninterrupted run.

SIGTERM -> checkpoint -> --c at one chosen moment, and exact resumption after a signal: test_preemption.
"""
from __future__ import annotations

import random
import shutil
import signal
import textwrap
from pathlib import Path

import pytest
import torch

from _kill9 import (assert_clean_interruption, assert_final_files_load, assert_ran, command_env, console_script,
                    kill_seed, run_command)

EPOCHS, ITERATIONS, VAL_ITERATIONS = 3, 4, 2
LATE_SIGNAL_S = 1.0  # a signal this close to the command's end came as it was exiting
TRAINER = "KillNineTrainer"
TRAINER_SOURCE = f'''
import random
import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {TRAINER}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        random.seed(0)  # the same initial weights and random streams in every process (a resumed one loads them)
        np.random.seed(0)
        torch.manual_seed(0)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch = {EPOCHS}, {ITERATIONS}
        self.num_val_iterations_per_epoch = {VAL_ITERATIONS}
'''


@pytest.fixture
def train_env(tiny_preprocessed, tmp_path):
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "kill_nine_trainer.py").write_text(textwrap.dedent(TRAINER_SOURCE))

    def env(results: Path, **extra: str) -> dict:
        return command_env(nnUNet_raw=str(tiny_preprocessed["raw"]),
                           nnUNet_preprocessed=str(tiny_preprocessed["preprocessed"]), nnUNet_results=str(results),
                           nnUNet_extTrainer=str(ext), **extra)
    return env


def _train(env: dict, resume: bool, **kill):
    return run_command([console_script("nnUNetv2_train"), "321", "3d_fullres", "0", "-tr", TRAINER, "-device",
                        "cpu"] + (["--c"] if resume else []), env, **kill)


def _fold(results: Path) -> Path:
    return results / "Dataset321_T2Tiny" / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_0"


def _final_state(results: Path) -> dict:
    """The completed training: all epochs logged, validation summary written, no leftover checkpoint_latest."""
    out = _fold(results)
    final = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == EPOCHS
    assert all(len(v) == EPOCHS for v in final["logging"].values())
    assert not (out / "checkpoint_latest.pth").exists()
    assert (out / "validation" / "summary.json").is_file()
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                   and not p.name.startswith("training_log_") and not p.name.startswith(".nnunet_tmp_"))
    return {"final": final, "names": names}


def _kill_chains(env_for, root: Path, n_chains: int, kills_per_chain: int, signals, extra: dict,
                 exact: bool) -> None:
    reference = root / "uninterrupted"
    uninterrupted = _train(env_for(reference, **extra), resume=False)
    assert_ran(uninterrupted, "nnUNetv2_train")
    expected = _final_state(reference)
    rng = random.Random(kill_seed())
    for chain in range(n_chains):
        results = root / f"killed_{chain}"
        shutil.rmtree(results, ignore_errors=True)
        env = env_for(results, **extra)
        for k in range(kills_per_chain):
            at = rng.uniform(0.0, uninterrupted.seconds)
            sig = rng.choice(signals)
            outcome = _train(env, resume=k > 0, kill_at=at, sig=sig, whole_group=sig != signal.SIGKILL)
            where = f"chain {chain}, kill {k}: {signal.Signals(sig).name} at {at:.1f} s"
            if outcome.killed and sig == signal.SIGINT:
                assert_clean_interruption(outcome, 130, where)
            elif outcome.killed and sig == signal.SIGTERM:
                # 143 from the training loop; outside it (start-up, final validation) SIGTERM ends the process;
                # 0 only where it came as the command was exiting after its work (it cannot change the status then;
                # a lost SIGTERM would leave the command running much longer)
                exiting = outcome.returncode == 0 and outcome.seconds - at < LATE_SIGNAL_S
                assert outcome.returncode in (143, -signal.SIGTERM) or exiting, (where, outcome.returncode,
                                                                                  outcome.seconds,
                                                                                  outcome.stderr[-3000:])
                assert "Traceback" not in outcome.stderr, (where, outcome.stderr[-5000:])
            assert not outcome.left_behind, f"{where}: processes left behind"
            assert_final_files_load(results)
        assert_ran(_train(env, resume=True), f"nnUNetv2_train --c after chain {chain}")
        state = _final_state(results)
        assert state["names"] == expected["names"]
        if exact:
            for key in ("train_losses", "val_losses", "mean_fg_dice", "lrs"):
                assert state["final"]["logging"][key] == expected["final"]["logging"][key], (chain, key)
            for name, weights in expected["final"]["network_weights"].items():
                assert torch.equal(state["final"]["network_weights"][name], weights), (chain, name)


WITH_WORKERS = {"nnUNet_n_proc_DA": "2"}
EVERY_ITERATION = {"nnUNet_n_proc_DA": "0", "nnUNet_checkpoint_minutes": "1e-9"}
ALL_SIGNALS = (signal.SIGKILL, signal.SIGKILL, signal.SIGINT, signal.SIGTERM)


def test_train_killed_at_a_few_moments(train_env, tmp_path):
    _kill_chains(train_env, tmp_path, 1, 1, ALL_SIGNALS, WITH_WORKERS, exact=False)


@pytest.mark.killtest
def test_train_with_workers_killed_at_many_moments(train_env, tmp_path):
    _kill_chains(train_env, tmp_path, 3, 4, ALL_SIGNALS, WITH_WORKERS, exact=False)


@pytest.mark.killtest
def test_train_killed_at_many_moments_resumes_exactly(train_env, tmp_path):
    _kill_chains(train_env, tmp_path, 2, 4, (signal.SIGKILL,), EVERY_ITERATION, exact=True)
