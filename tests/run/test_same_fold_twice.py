"""One fold trained twice at the same time (a loop started twice, two GPUs given the same fold): the second run is
refused with one line naming the fold's folder, before it writes anything, and the first run is not disturbed.
Another fold trains meanwhile, and the same fold trains again once the first run has ended (the lock dies with the
process, however it ends)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nnunetv2.errors import UserError
from nnunetv2.run.run_training import run_training, run_training_entry

REPO_ROOT = Path(__file__).resolve().parents[2]

SLOW_TRAINER = '''
import os, time
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class T2SlowTrainer(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 2, 3, 1

    def train_step(self, batch):
        time.sleep(float(os.environ.get("T2_STEP_SLEEP", "0")))
        return super().train_step(batch)

    def perform_actual_validation(self, save_probabilities=False):
        pass  # not under test
'''


def _env(t2, monkeypatch) -> dict:
    ext = t2.env["results"].parent / "ext_slow"
    ext.mkdir(exist_ok=True)
    (ext / "t2slowtrainer.py").write_text(textwrap.dedent(SLOW_TRAINER))
    monkeypatch.setenv("nnUNet_extTrainer", str(ext))
    monkeypatch.delenv("T2_STEP_SLEEP", raising=False)
    return dict(os.environ, OMP_NUM_THREADS="1", T2_STEP_SLEEP="3",
                PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def _hold(folder: Path, env: dict) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from nnunetv2.file_io import folder_lock
        with folder_lock({str(folder)!r}, 'training or validating this fold', wait=False):
            print('held', flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, cwd=str(REPO_ROOT), env=env)
    assert holder.stdout.readline().strip() == "held"
    return holder


def _snapshot(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.mark.slow
def test_second_run_of_a_training_fold_is_refused(t2, monkeypatch, capsys):
    env = _env(t2, monkeypatch)
    out = t2.fold_folder(t2.env["results"], "T2SlowTrainer")
    first = subprocess.Popen([sys.executable, "-m", "nnunetv2.run.run_training", "321", "3d_fullres", "0", "-tr",
                              "T2SlowTrainer", "-device", "cpu"], env=env, cwd=str(REPO_ROOT),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while ": Epoch 0" not in (t2.read_log(out) if out.is_dir() else "") and first.poll() is None:
            assert time.time() < deadline, "the first run did not start training"
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        before = _snapshot(out)
        # the same fold again: through the API, --c and --val included, and through the command line
        for kwargs in ({}, {"continue_training": True}, {"only_run_validation": True}):
            with pytest.raises(UserError, match="training or validating this fold") as e:
                run_training("321", "3d_fullres", "0", "T2SlowTrainer", device=torch.device("cpu"), **kwargs)
            assert str(out) in str(e.value)
        monkeypatch.setattr(sys, "argv", ["nnUNetv2_train", "321", "3d_fullres", "0", "-tr", "T2SlowTrainer",
                                          "-device", "cpu"])
        with pytest.raises(SystemExit) as e:
            run_training_entry()
        assert e.value.code == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("nnU-Net error: Another nnU-Net process is training") \
            and str(out) in err[0]
        assert first.poll() is None  # refused while the first run still trains
        # the refused runs wrote nothing: no log of their own, the first run's files only
        assert len(list(out.glob("training_log_*.txt"))) == 1
        assert set(_snapshot(out)) <= set(before) | {"progress.png", "debug.json", "checkpoint_latest.pth"}
        # another fold of the same model trains meanwhile
        monkeypatch.setenv("T2_STEP_SLEEP", "0")
        run_training("321", "3d_fullres", "1", "T2SlowTrainer", device=torch.device("cpu"))
        assert (out.parent / "fold_1" / "checkpoint_final.pth").is_file()
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert (out / "checkpoint_final.pth").is_file()
    # the first run has ended: the fold can be validated (and trained) again
    run_training("321", "3d_fullres", "0", "T2SlowTrainer", device=torch.device("cpu"), only_run_validation=True)


def test_lock_taken_by_a_killed_process_does_not_stay(t2, monkeypatch, tmp_path):
    """A process holding the fold (killed with SIGKILL, no cleanup) leaves nothing behind that refuses the next run."""
    out = t2.fold_folder(t2.env["results"], "T2SlowTrainer")
    out.mkdir(parents=True)
    holder = _hold(out, _env(t2, monkeypatch))
    try:
        with pytest.raises(UserError, match="training or validating this fold"):
            run_training("321", "3d_fullres", "0", "T2SlowTrainer", device=torch.device("cpu"))
        assert os.listdir(out) == []
    finally:
        holder.kill()
        holder.wait()
    run_training("321", "3d_fullres", "0", "T2SlowTrainer", device=torch.device("cpu"))
    assert (out / "checkpoint_final.pth").is_file()


@pytest.mark.slow
def test_ddp_run_of_a_busy_fold_is_refused_on_every_rank(t2, monkeypatch):
    """-num_gpus 2 -device cpu (gloo) while another process holds the fold: rank 0 finds it busy and every rank
    stops at once (none waits for the others), one error line, exit status 1, nothing written."""
    import socket
    env = _env(t2, monkeypatch)
    out = t2.fold_folder(t2.env["results"], "T2SlowTrainer")
    out.mkdir(parents=True)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        env["MASTER_PORT"] = str(s.getsockname()[1])
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "MASTER_ADDR"):
        env.pop(v, None)
    holder = _hold(out, env)
    try:
        proc = subprocess.run([sys.executable, "-m", "nnunetv2.run.run_training", "321", "3d_fullres", "0", "-tr",
                               "T2SlowTrainer", "-device", "cpu", "-num_gpus", "2"], env=env, cwd=str(REPO_ROOT),
                              capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("nnU-Net error: ")]
    assert errors and all("Another nnU-Net process is training or validating this fold" in e and str(out) in e
                          for e in errors)
    assert list(out.iterdir()) == []  # refused before any rank built its trainer: not even a log file
