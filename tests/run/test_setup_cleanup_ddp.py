"""``setup_ddp(rank, world_size)`` and ``cleanup_ddp()`` of nnunetv2.run.run_training, which training scripts built on
a copy of the reference's ``run_ddp`` import: two CPU processes join one group (gloo here), reduce a tensor, leave."""
from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world_size: int, results) -> None:
    import torch.distributed as dist
    from nnunetv2.run.run_training import cleanup_ddp, setup_ddp
    setup_ddp(rank, world_size)
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    results[rank] = (dist.get_backend(), dist.get_world_size(), float(value))
    cleanup_ddp()
    results[rank + world_size] = dist.is_initialized()
    cleanup_ddp()  # a second call (no group left) is nothing


def test_two_processes_join_reduce_and_leave(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(2, results), nprocs=2, join=True)
        results = dict(results)
    assert results[0] == results[1] == ("gloo", 2, 3.0)
    assert results[2] is False and results[3] is False
