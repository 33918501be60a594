"""Two-process DDP training on the CPU (gloo), started the two supported ways: torchrun (``python -m
torch.distributed.run --nproc_per_node 2 -m nnunetv2.run.run_training ... -device cpu``) and ``-num_gpus 2 -device
cpu`` (torch.multiprocessing.spawn). A test trainer records, per rank, what DDP must guarantee (spec 03 §1.6,
§2.4.3, §2.4.14-§2.4.19, §9): split batch size and oversampling, rank-0-only logging and checkpoints, identical
weights on all ranks, losses and pseudo Dice gathered over the ranks, the final validation split across ranks.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunetv2.training.nnUNetTrainer._checkpointing import CHECKPOINT_KEYS

ITERATIONS, VAL_ITERATIONS = 2, 1
REPO_ROOT = Path(__file__).resolve().parents[2]

RECORDING_TRAINER = '''
import hashlib, json, os
import numpy as np
import torch
from torch import distributed as dist
from nnunetv2.training.nnUNetTrainer import _checkpointing
from nnunetv2.training.nnUNetTrainer._setup import unwrap_network
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.collate_outputs import collate_outputs

SAVED = []
_save = _checkpointing.save_checkpoint_atomically


def _counting_save(checkpoint, filename):
    SAVED.append(os.path.basename(filename))
    _save(checkpoint, filename)


_checkpointing.save_checkpoint_atomically = _counting_save


def state_hash(state_dict):
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode())
        h.update(state_dict[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class {name}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
        self.rec = dict(rank=self.local_rank, is_ddp=self.is_ddp, device=str(self.device),
                        world_size=dist.get_world_size() if self.is_ddp else 1,
                        backend=dist.get_backend() if self.is_ddp else None, threads=torch.get_num_threads(),
                        local_rank_env=os.environ.get("LOCAL_RANK"),
                        train_batches=[], train_losses=[], val=[], plots=0)
        plot = self.logger.plot_progress_png

        def counting_plot(folder):
            self.rec["plots"] += 1
            plot(folder)
        self.logger.plot_progress_png = counting_plot

    def on_train_start(self):
        super().on_train_start()
        dl = self.dataloader_train.data_loader  # nnUNet_n_proc_DA=0: the loader itself
        self.rec.update(batch_size=self.batch_size, oversample=self.oversample_foreground_percent,
                        loader_batch_size=dl.batch_size, loader_oversample=dl.oversample_foreground_percent,
                        network_type=type(self.network).__name__,
                        initial_hash=state_hash(unwrap_network(self.network).state_dict()))

    def train_step(self, batch):
        data = batch["data"]
        self.rec["train_batches"].append([int(data.shape[0]), hashlib.sha256(data.numpy().tobytes()).hexdigest()])
        return super().train_step(batch)

    def on_train_epoch_end(self, train_outputs):
        self.rec["train_losses"].append([float(o["loss"]) for o in train_outputs])
        super().on_train_epoch_end(train_outputs)

    def on_validation_epoch_end(self, val_outputs):
        c = collate_outputs(val_outputs)
        self.rec["val"].append({{k: np.sum(c[k], 0).tolist() for k in ("tp_hard", "fp_hard", "fn_hard")}})
        self.rec["val"][-1]["losses"] = [float(l) for l in c["loss"]]
        super().on_validation_epoch_end(val_outputs)

    def on_train_end(self):
        self.rec["final_hash"] = state_hash(unwrap_network(self.network).state_dict())
        super().on_train_end()

    def perform_actual_validation(self, save_probabilities=False):
        if not os.environ.get("T2_DDP_SKIP_VALIDATION"):
            super().perform_actual_validation(save_probabilities)
        self.rec["saved"] = SAVED
        with open(os.path.join(os.environ["T2_DDP_RECORDS"], f"rank{{self.local_rank}}.json"), "w") as f:
            json.dump(self.rec, f)
'''


def _state_hash(state_dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode())
        h.update(state_dict[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(t2, tmp_path, name: str, launcher: str, epochs: int, validate: bool):
    """Train 2 ranks in subprocesses; returns (fold folder, [rank0 record, rank1 record])."""
    ext, records = tmp_path / "ext", tmp_path / "records"
    ext.mkdir()
    records.mkdir()
    (ext / f"{name.lower()}.py").write_text(textwrap.dedent(RECORDING_TRAINER.format(
        name=name, epochs=epochs, iterations=ITERATIONS, val_iterations=VAL_ITERATIONS)))
    # the package must be importable in the subprocesses whatever the install looks like
    python_path = os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = dict(os.environ, nnUNet_extTrainer=str(ext), T2_DDP_RECORDS=str(records), nnUNet_n_proc_DA="0",
               nnUNet_def_n_proc="1", OMP_NUM_THREADS="1", MASTER_PORT=str(_free_port()), PYTHONPATH=python_path)
    if not validate:
        env["T2_DDP_SKIP_VALIDATION"] = "1"
    for v in ("nnUNet_compile", "RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "MASTER_ADDR"):
        env.pop(v, None)
    train_args = ["321", "3d_fullres", "0", "-tr", name, "-device", "cpu"]
    if launcher == "two_nodes":
        # two "nodes" of one process each, as `torchrun --nnodes 2 --node_rank R` on two machines: LOCAL_RANK is 0
        # on both, the global ranks are 0 and 1
        port = env.pop("MASTER_PORT")
        nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
                                   str(r), "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port",
                                   port, "-m", "nnunetv2.run.run_training", *train_args], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO_ROOT))
                 for r in (0, 1)]
        for node in nodes:
            out, err = node.communicate(timeout=600)
            assert node.returncode == 0, out[-3000:] + err[-5000:]
    else:
        if launcher == "torchrun":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                   env.pop("MASTER_PORT"), "-m", "nnunetv2.run.run_training", *train_args]
        else:
            cmd = [sys.executable, "-m", "nnunetv2.run.run_training", *train_args, "-num_gpus", "2"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=str(REPO_ROOT))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    recs = [json.loads((records / f"rank{r}.json").read_text()) for r in (0, 1)]
    return t2.fold_folder(t2.env["results"], name), recs


def _check_ddp_run(t2, out: Path, recs, name: str, epochs: int, validated: bool, two_nodes: bool = False) -> None:
    r0, r1 = recs
    # -- both ranks in one gloo group of two, on the CPU, sharing the cores of their node
    assert [r["rank"] for r in recs] == [0, 1] and all(r["is_ddp"] and r["world_size"] == 2 for r in recs)
    assert all(r["backend"] == "gloo" and r["device"] == "cpu" for r in recs)
    assert all(r["threads"] == max(1, os.cpu_count() // (1 if two_nodes else 2)) for r in recs)
    # set by torchrun (per node), or by run_ddp for -num_gpus
    assert [r["local_rank_env"] for r in recs] == (["0", "0"] if two_nodes else ["0", "1"])
    assert all(r["network_type"] == "DistributedDataParallel" for r in recs)

    # -- global batch 2 split 1 + 1; the forced-foreground sample (the last of the global batch) is rank 1's
    assert debug_batch_size(out) == "1"  # debug.json is rank 0's view
    assert [(r["batch_size"], r["oversample"]) for r in recs] == [(1, 0.0), (1, 1.0)]
    assert [(r["loader_batch_size"], r["loader_oversample"]) for r in recs] == [(1, 0.0), (1, 1.0)]
    assert all([b[0] for b in r["train_batches"]] == [1] * (epochs * ITERATIONS) for r in recs)
    # each rank draws its own patches (no shared random stream)
    assert not {b[1] for b in r0["train_batches"]} & {b[1] for b in r1["train_batches"]}

    # -- same start (DDP broadcasts rank 0's weights), trained, and still identical after training
    assert r0["initial_hash"] == r1["initial_hash"]
    assert r0["final_hash"] == r1["final_hash"] != r0["initial_hash"]
    ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert set(ckpt) == set(CHECKPOINT_KEYS) and ckpt["current_epoch"] == epochs and ckpt["trainer_name"] == name
    assert not any(k.startswith("module.") for k in ckpt["network_weights"])
    assert _state_hash(ckpt["network_weights"]) == r0["final_hash"]

    # -- checkpoints written by rank 0 only, the final one once; no stray temporary files
    assert r0["saved"].count("checkpoint_final.pth") == 1 and r1["saved"] == []
    assert {p.name for p in out.glob("checkpoint_*.pth")} == {"checkpoint_final.pth", "checkpoint_best.pth"}
    assert not [p for p in out.iterdir() if p.name.startswith(".nnunet_tmp_")]

    # -- logged values are over both ranks: mean loss of all iterations, pseudo Dice from the summed tp/fp/fn
    log = ckpt["logging"]
    for e in range(epochs):
        assert np.isclose(log["train_losses"][e], np.mean(r0["train_losses"][e] + r1["train_losses"][e]))
        assert np.isclose(log["val_losses"][e], np.mean(r0["val"][e]["losses"] + r1["val"][e]["losses"]))
        tp, fp, fn = (np.add(r0["val"][e][k], r1["val"][e][k]) for k in ("tp_hard", "fp_hard", "fn_hard"))
        expected = [2 * a / (2 * a + b + c) if 2 * a + b + c > 0 else np.nan for a, b, c in zip(tp, fp, fn)]
        assert np.allclose(log["dice_per_class_or_region"][e], expected, equal_nan=True)

    # -- only rank 0 writes the training log and progress.png
    assert [r["plots"] for r in recs] == [epochs, 0] and (out / "progress.png").is_file()
    logs = list(out.glob("training_log_*.txt"))
    assert len(logs) == 1
    text = logs[0].read_text()
    # rank 1 writing too would double every line (same file name) or leave a second log (another second)
    assert all(len(re.findall(rf": Epoch {e}\s*$", text, re.M)) == 1 for e in range(epochs))

    # -- the final validation: the cases were split over the ranks, rank 0 summarised all of them
    if not validated:
        assert not (out / "validation").exists()
        return
    val_cases = json.loads((t2.env["preprocessed"] / "splits_final.json").read_text())[0]["val"]
    for c in val_cases:
        assert (out / "validation" / f"{c}.nii.gz").is_file()
    summary = json.loads((out / "validation" / "summary.json").read_text())
    assert sorted(Path(c["prediction_file"]).name for c in summary["metric_per_case"]) == \
        sorted(f"{c}.nii.gz" for c in val_cases)
    assert "Validation complete" in text and ", rank 0" in text and ", rank 1" not in text


def debug_batch_size(out: Path) -> str:
    return json.loads((out / "debug.json").read_text())["batch_size"]


@pytest.mark.slow
def test_torchrun_two_cpu_ranks(t2, tmp_path):
    """The main path: torchrun, two epochs, the final validation split over the ranks (~60 s CPU in all)."""
    name = "T2DDPTorchrunTrainer"
    out, recs = _run_two_ranks(t2, tmp_path, name, "torchrun", epochs=2, validate=True)
    _check_ddp_run(t2, out, recs, name, epochs=2, validated=True)


@pytest.mark.slow
def test_torchrun_two_nodes(t2, tmp_path):
    """Multi-node: two torchrun agents (--nnodes 2, one process each) sharing one file system, one epoch and the
    final validation. Everything only the first process may do (splits, checkpoints, log, summary) must be tied to
    the global rank: LOCAL_RANK is 0 on every node."""
    name = "T2DDPTwoNodesTrainer"
    out, recs = _run_two_ranks(t2, tmp_path, name, "two_nodes", epochs=1, validate=True)
    _check_ddp_run(t2, out, recs, name, epochs=1, validated=True, two_nodes=True)


@pytest.mark.slow
def test_num_gpus_2_on_cpu_spawns_two_gloo_ranks(t2, tmp_path):
    """-num_gpus 2 -device cpu: torch.multiprocessing.spawn, one epoch, no final validation (kept short)."""
    name = "T2DDPSpawnTrainer"
    out, recs = _run_two_ranks(t2, tmp_path, name, "spawn", epochs=1, validate=False)
    _check_ddp_run(t2, out, recs, name, epochs=1, validated=False)


def test_num_gpus_under_torchrun_is_a_user_error(t2, monkeypatch):
    from nnunetv2.errors import UserError
    from nnunetv2.run.run_training import run_training
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "t2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="torchrun --nproc_per_node sets the number of processes"):
        run_training("321", "3d_fullres", "0", num_gpus=2, device=torch.device("cpu"))


@pytest.mark.parametrize("num_gpus, torchrun", [(2, False), (1, True)])
def test_distributed_mps_is_a_user_error(t2, monkeypatch, num_gpus, torchrun):
    from nnunetv2.errors import UserError
    from nnunetv2.run import run_training as rt
    monkeypatch.setattr(rt, "_check_device", lambda device: None)  # pretend this machine has MPS
    if torchrun:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "t2")
        monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="does not support -device mps"):
        rt.run_training("321", "3d_fullres", "0", num_gpus=num_gpus, device=torch.device("mps"))


@pytest.mark.parametrize("fails", [False, True])
def test_leaving_the_process_group_frees_the_trainer_first(monkeypatch, fails):
    """A rank leaves the group only after all ranks met (success only: a failed peer never arrives) and after
    its trainer, which holds the DDP reducer and so the group, was freed; freeing a gloo group at interpreter
    shutdown aborted a rank now and then ('terminate called without an active exception', seen in CI)."""
    import weakref

    from nnunetv2.run import run_training as rt

    class CyclicTrainer:  # a reference cycle, like the trainer's logger callbacks: only gc frees it
        def __init__(self):
            self.me = self

    events, alive = [], []

    def build():
        trainer = CyclicTrainer()
        alive.append(weakref.ref(trainer))
        return trainer

    def train(trainer, *args):
        events.append(("train", args))
        if fails:
            raise RuntimeError("rank failed")

    monkeypatch.setattr(rt, "_train_in_this_process", train)
    monkeypatch.setattr(rt.dist, "barrier", lambda: events.append(("barrier", alive[0]() is None)))
    monkeypatch.setattr(rt.dist, "destroy_process_group", lambda: events.append(("destroy", alive[0]() is None)))
    if fails:
        with pytest.raises(RuntimeError, match="rank failed"):
            rt._train_in_process_group(build, (1, 2))
    else:
        rt._train_in_process_group(build, (1, 2))
    if fails:  # no barrier; the exception's traceback references the trainer until it is handled
        assert [e[0] for e in events] == ["train", "destroy"]
    else:
        assert events == [("train", (1, 2)), ("barrier", False), ("destroy", True)]


def test_a_real_ddp_trainer_is_freed_before_its_group_is_destroyed(t2, tmp_path, monkeypatch):
    """The same order with nnUNetTrainer itself (a one-rank gloo group in this process): nothing (loggers,
    data loaders, hooks) keeps the trainer or its DDP network alive once the run is over."""
    import weakref

    from torch import distributed as dist

    from nnunetv2.run import run_training as rt
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class OneStepTrainer(nnUNetTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 1, 1

        def perform_actual_validation(self, save_probabilities=False):
            pass

    refs = {}

    def build():
        from nnunetv2.run.run_training import _load_plans_and_dataset_json
        plans, dataset_json = _load_plans_and_dataset_json(t2.dataset_name, "nnUNetPlans", "3d_fullres")
        trainer = OneStepTrainer(plans, "3d_fullres", 0, dataset_json, torch.device("cpu"))
        refs["trainer"] = weakref.ref(trainer)
        return trainer

    destroy = dist.destroy_process_group
    alive_at_destroy = []

    def spying_destroy(*args, **kwargs):
        alive_at_destroy.append({k: r() is not None for k, r in refs.items()})
        destroy(*args, **kwargs)

    def remember_network(trainer, *args):
        trainer.run_training()
        refs["ddp_network"] = weakref.ref(trainer.network)
        assert type(trainer.network).__name__ == "DistributedDataParallel"

    monkeypatch.setattr(rt.dist, "destroy_process_group", spying_destroy)
    monkeypatch.setattr(rt, "_train_in_this_process", remember_network)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        rt._train_in_process_group(build, ())
    finally:
        if dist.is_initialized():
            destroy()
    assert alive_at_destroy == [{"trainer": False, "ddp_network": False}]
