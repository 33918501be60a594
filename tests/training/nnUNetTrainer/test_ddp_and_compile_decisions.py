"""The device-dependent decisions of training, checked without a GPU: distributed backend, per-process device and
threads, the DDP wrapper on the CPU, torch.compile (spec 03 §2.4.27), and the gradient all-gather of the batch Dice
across two gloo processes (spec 03 §5, AllGatherGrad)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunetv2.run import run_training as rt
from nnunetv2.training.nnUNetTrainer import _setup


def test_backend_follows_the_device():
    assert rt.ddp_backend(torch.device("cuda")) == "nccl"
    assert rt.ddp_backend(torch.device("cuda", 3)) == "nccl"
    assert rt.ddp_backend(torch.device("cpu")) == "gloo"
    assert rt.ddp_backend("cpu") == "gloo"


def test_device_of_a_ddp_process(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert _setup.select_device(cuda, True, 3) == torch.device("cuda", 3)  # -num_gpus (one node): the rank
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun, second node: global rank 5 is GPU 1 of its node
    assert _setup.select_device(cuda, True, 5) == torch.device("cuda", 1)
    assert _setup.select_device(cuda, False, 5) == torch.device("cuda", 0)  # no DDP: always cuda:0
    assert _setup.select_device(cpu, True, 5) == cpu  # gloo on the CPU
    assert _setup.select_device(torch.device("mps"), False, 0) == torch.device("mps")


def test_cpu_threads_are_shared_out(monkeypatch):
    monkeypatch.setattr(rt.multiprocessing, "cpu_count", lambda: 16)
    assert [rt.cpu_threads_per_process(n) for n in (1, 2, 3, 16, 40, 0)] == [16, 8, 5, 1, 1, 16]


@pytest.mark.parametrize("device, value, os_name, expected, logged", [
    ("cuda", None, "posix", True, False),  # compile is the default on CUDA/Linux
    ("cuda", "true", "posix", True, False), ("cuda", "T", "posix", True, False), ("cuda", "1", "posix", True, False),
    ("cuda", "false", "posix", False, False), ("cuda", "0", "posix", False, False),
    ("cuda", "yes", "posix", False, False),
    ("cpu", None, "posix", False, False), ("cpu", "true", "posix", False, True),
    ("mps", "1", "posix", False, True), ("cuda", "true", "nt", False, True), ("cuda", None, "nt", False, False),
])
def test_compile_decision(monkeypatch, device, value, os_name, expected, logged):
    if value is None:
        monkeypatch.delenv("nnUNet_compile", raising=False)
    else:
        monkeypatch.setenv("nnUNet_compile", value)
    log = []
    monkeypatch.setattr(_setup.os, "name", os_name)
    try:
        got = _setup.do_i_compile(torch.device(device), lambda *a: log.append(" ".join(map(str, a))))
    finally:
        monkeypatch.undo()  # os.name back before anything else runs
    assert got is expected
    assert bool(log) is logged and all("torch.compile disabled" in line for line in log)


def test_wrap_for_ddp_on_the_cpu(tmp_path):
    """On the CPU: no SyncBatchNorm (its forward needs an accelerator), no device ids; training still runs."""
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.BatchNorm3d(2), torch.nn.InstanceNorm3d(2))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = _setup.wrap_for_ddp(net, torch.device("cpu"))
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel) and wrapped.device_ids is None
        assert type(wrapped.module[1]) is torch.nn.BatchNorm3d and _setup.unwrap_network(wrapped) is net
        wrapped.train()
        wrapped(torch.randn(2, 1, 5, 5, 5)).sum().backward()
        assert net[0].weight.grad is not None
    finally:
        dist.destroy_process_group()


def _batch_dice_rank(rank: int, world_size: int, store: str, inputs, target, out_folder: str) -> None:
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        x = inputs[rank::world_size].clone().requires_grad_(True)
        loss = MemoryEfficientSoftDiceLoss(apply_nonlin=None, batch_dice=True, do_bg=False, smooth=1e-5, ddp=True)
        value = loss(x, target[rank::world_size])
        value.backward()
        torch.save({"loss": value.detach(), "grad": x.grad}, os.path.join(out_folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_batch_dice_is_gathered_over_two_gloo_ranks(tmp_path):
    """Each rank's batch Dice equals the single-process batch Dice of the whole batch; AllGatherGrad hands every
    rank the summed gradient of all ranks' (equal) losses for its own samples."""
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(4, 3, 6, 6, generator=g)
    target = torch.randint(0, 3, (4, 1, 6, 6), generator=g)
    mp.spawn(_batch_dice_rank, args=(2, str(tmp_path / "store"), inputs, target, str(tmp_path)), nprocs=2,
             join=True)
    x = inputs.clone().requires_grad_(True)
    full = MemoryEfficientSoftDiceLoss(apply_nonlin=None, batch_dice=True, do_bg=False, smooth=1e-5, ddp=False)
    expected = full(x, target)
    expected.backward()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(got["loss"], expected.detach(), atol=1e-6)
        assert torch.allclose(got["grad"], 2 * x.grad[rank::2], atol=1e-6)
