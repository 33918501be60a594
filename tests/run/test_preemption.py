"""Preemption-safe training on the tiny CPU dataset: a stop signal ends the training between two iterations with
checkpoint_latest.pth written and a documented exit status (128 + signal number); --c continues from there and ends
exactly where an uninterrupted run ends. Also the time-based checkpoint (nnUNet_checkpoint_minutes)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunetv2.run.run_training import run_training
from nnunetv2.training.nnUNetTrainer._checkpointing import CHECKPOINT_KEYS, RESUME_KEY, read_checkpoint
from nnunetv2.training.nnUNetTrainer._preemption import CHECKPOINT_MINUTES_ENV, TrainingInterrupted
from _kill9 import run_command

REPO_ROOT = Path(__file__).resolve().parents[2]
EPOCHS, ITERATIONS, VAL_ITERATIONS = 3, 4, 2

TRAINER = '''
import os, signal, time
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _maybe_signal(trainer, kind, count):
    if os.environ.get("T2_SIGNAL_RANK", str(trainer.local_rank)) != str(trainer.local_rank):
        return
    if os.environ.get(f"T2_SIGNAL_AT_{{kind}}") == str(count):
        os.kill(os.getpid(), getattr(signal, os.environ.get("T2_SIGNAL", "SIGTERM")))


class {name}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch = {epochs}, {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
        self.steps = self.val_steps = 0

    def train_step(self, batch):
        out = super().train_step(batch)
        self.steps += 1
        time.sleep(float(os.environ.get("T2_STEP_SLEEP", "0")))
        _maybe_signal(self, "TRAIN_STEP", self.steps)
        if os.environ.get("T2_CRASH_AT_TRAIN_STEP") == str(self.steps):
            raise RuntimeError("simulated crash")
        return out

    def on_train_epoch_start(self):
        if os.environ.get("T2_NEW_OPTIMIZER_AT_EPOCH") == str(self.current_epoch):
            # as the warm-up trainers do at a stage boundary: a new optimizer and scheduler
            self.optimizer, self.lr_scheduler = self.configure_optimizers()
        super().on_train_epoch_start()

    def validation_step(self, batch):
        out = super().validation_step(batch)
        self.val_steps += 1
        _maybe_signal(self, "VAL_STEP", self.val_steps)
        return out

    def perform_actual_validation(self, save_probabilities=False):
        pass  # not under test; keeps the runs short
'''


def _install_trainer(t2, monkeypatch, name: str) -> Path:
    ext = t2.env["results"].parent / "ext"
    ext.mkdir(exist_ok=True)
    (ext / f"{name.lower()}.py").write_text(textwrap.dedent(TRAINER.format(
        name=name, epochs=EPOCHS, iterations=ITERATIONS, val_iterations=VAL_ITERATIONS)))
    monkeypatch.setenv("nnUNet_extTrainer", str(ext))
    monkeypatch.setenv(CHECKPOINT_MINUTES_ENV, "0")  # only the checkpoints under test
    for v in ("T2_SIGNAL_AT_TRAIN_STEP", "T2_SIGNAL_AT_VAL_STEP", "T2_CRASH_AT_TRAIN_STEP", "T2_STEP_SLEEP",
              "T2_SIGNAL_RANK", "T2_SIGNAL", "T2_NEW_OPTIMIZER_AT_EPOCH"):
        monkeypatch.delenv(v, raising=False)
    return t2.fold_folder(t2.env["results"], name)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _train(name: str, **kwargs) -> None:
    run_training("321", "3d_fullres", "0", name, device=torch.device("cpu"), **kwargs)


def _load(path: Path) -> dict:
    return read_checkpoint(str(path), torch.device("cpu"))  # the safe loader that --c uses


def _assert_complete(out: Path) -> dict:
    final = _load(out / "checkpoint_final.pth")
    assert final["current_epoch"] == EPOCHS
    assert all(len(v) == EPOCHS for v in final["logging"].values())
    assert not (out / "checkpoint_latest.pth").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".nnunet_tmp_")]
    return final


def _assert_mid_epoch_checkpoint(out: Path, epoch: int, iteration: int) -> None:
    latest = _load(out / "checkpoint_latest.pth")
    assert set(latest) == set(CHECKPOINT_KEYS) | {RESUME_KEY}
    assert latest["current_epoch"] == epoch  # completed epochs: the reference repeats the interrupted one
    assert all(len(v) == epoch for v in latest["logging"].values())
    assert latest[RESUME_KEY]["epoch"] == epoch and latest[RESUME_KEY]["iteration"] == iteration
    assert len(latest[RESUME_KEY]["train_outputs"]) == iteration


def test_stops_resume_exactly_where_an_uninterrupted_run_ends(t2, monkeypatch):
    """SIGTERM in epoch 1 (training), SIGUSR1 in epoch 2 (validation), each resumed with --c: the final weights and
    every logged loss equal those of a run that was never interrupted. Epoch 1 starts with a new optimizer (the
    resumed run must still continue with the interrupted epoch's momentum)."""
    out = _install_trainer(t2, monkeypatch, "T2PreemptTrainer")
    monkeypatch.setenv("T2_NEW_OPTIMIZER_AT_EPOCH", "1")
    _seed(1)
    _train("T2PreemptTrainer")
    uninterrupted = _assert_complete(out)
    for p in out.iterdir():
        if p.is_file():
            p.unlink()

    _seed(1)
    monkeypatch.setenv("T2_SIGNAL_AT_TRAIN_STEP", str(ITERATIONS + 2))  # epoch 1, after its 2nd iteration
    with pytest.raises(TrainingInterrupted) as stopped:
        _train("T2PreemptTrainer")
    assert isinstance(stopped.value, SystemExit) and stopped.value.code == 128 + signal.SIGTERM == 143
    _assert_mid_epoch_checkpoint(out, epoch=1, iteration=2)
    assert not (out / "checkpoint_final.pth").exists()
    assert "Received SIGTERM: stopped in epoch 1 after 2 of 4 training iterations" in t2.read_log(out)

    _seed(2)  # another random state: the checkpoint's must take over
    monkeypatch.delenv("T2_SIGNAL_AT_TRAIN_STEP")
    monkeypatch.setenv("T2_SIGNAL", "SIGUSR1")
    # the resumed run does epoch 1's last 2 iterations, its validation, then epoch 2's; stop in epoch 2's validation
    monkeypatch.setenv("T2_SIGNAL_AT_VAL_STEP", str(VAL_ITERATIONS + 1))
    with pytest.raises(TrainingInterrupted) as stopped:
        _train("T2PreemptTrainer", continue_training=True)
    assert stopped.value.code == 128 + signal.SIGUSR1 == 138
    _assert_mid_epoch_checkpoint(out, epoch=2, iteration=ITERATIONS)

    _seed(3)
    monkeypatch.delenv("T2_SIGNAL_AT_VAL_STEP")
    _train("T2PreemptTrainer", continue_training=True)
    resumed = _assert_complete(out)
    log = t2.read_log(out)
    assert "Continuing epoch 1 after training iteration 2" in log and "Continuing epoch 2 after training iteration 4" \
        in log
    for key in ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice", "lrs"):
        assert resumed["logging"][key] == uninterrupted["logging"][key], key
    for k, v in uninterrupted["network_weights"].items():
        assert torch.equal(resumed["network_weights"][k], v), k


def test_time_based_checkpoint_survives_a_crash(t2, monkeypatch):
    """nnUNet_checkpoint_minutes tiny: checkpoint_latest.pth after every iteration; a crash (no signal, like a
    SIGKILL) in epoch 1 loses only the iteration in progress, and --c completes the training."""
    out = _install_trainer(t2, monkeypatch, "T2ClockTrainer")
    monkeypatch.setenv(CHECKPOINT_MINUTES_ENV, "1e-9")
    monkeypatch.setenv("T2_CRASH_AT_TRAIN_STEP", str(ITERATIONS + 3))
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train("T2ClockTrainer")
    _assert_mid_epoch_checkpoint(out, epoch=1, iteration=2)
    monkeypatch.delenv("T2_CRASH_AT_TRAIN_STEP")
    monkeypatch.setenv(CHECKPOINT_MINUTES_ENV, "0")
    _train("T2ClockTrainer", continue_training=True)
    _assert_complete(out)


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_from_outside(t2, monkeypatch):
    """nnUNetv2_train with two augmentation workers; SIGTERM to every process of the group (as SLURM does) at some
    moment of epoch 1: exit status 143, no traceback, a loadable checkpoint_latest.pth; --c completes it."""
    out = _install_trainer(t2, monkeypatch, "T2GroupTrainer")
    env = dict(os.environ, nnUNet_n_proc_DA="2", OMP_NUM_THREADS="1", T2_STEP_SLEEP="0.1", PYTHONFAULTHANDLER="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    outcome = run_command([sys.executable, "-m", "nnunetv2.run.run_training", "321", "3d_fullres", "0", "-tr",
                           "T2GroupTrainer", "-device", "cpu"], env, sig=signal.SIGTERM, whole_group=True,
                          kill_when=lambda: ": Epoch 1" in (t2.read_log(out) if out.is_dir() else ""), timeout=300)
    assert outcome.killed and not outcome.left_behind, outcome
    assert outcome.returncode == 143, outcome.stdout[-2000:] + outcome.stderr[-3000:]
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    latest = _load(out / "checkpoint_latest.pth")
    assert latest["current_epoch"] in (1, 2)  # where exactly the signal landed depends on the machine's load
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    _train("T2GroupTrainer", continue_training=True)
    _assert_complete(out)


@pytest.mark.slow
def test_ddp_ranks_stop_together_when_one_is_signalled(t2, monkeypatch):
    """-num_gpus 2 -device cpu (gloo); only rank 1 gets SIGTERM, in epoch 1: both ranks stop after the same
    iteration, rank 0 writes the checkpoint, the launcher exits with 143; --c completes the training."""
    import socket
    out = _install_trainer(t2, monkeypatch, "T2DDPPreemptTrainer")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, nnUNet_n_proc_DA="0", OMP_NUM_THREADS="1", MASTER_PORT=str(port),
               T2_SIGNAL_AT_TRAIN_STEP=str(ITERATIONS + 2), T2_SIGNAL_RANK="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "MASTER_ADDR"):
        env.pop(v, None)
    proc = subprocess.run([sys.executable, "-m", "nnunetv2.run.run_training", "321", "3d_fullres", "0", "-tr",
                           "T2DDPPreemptTrainer", "-device", "cpu", "-num_gpus", "2"], env=env, cwd=str(REPO_ROOT),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 143, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Terminating process" not in proc.stderr  # the launcher let the ranks leave the group by themselves
    _assert_mid_epoch_checkpoint(out, epoch=1, iteration=2)
    assert "Received SIGTERM: stopped in epoch 1 after 2 of 4 training iterations" in t2.read_log(out)
    _train("T2DDPPreemptTrainer", continue_training=True)
    _assert_complete(out)
