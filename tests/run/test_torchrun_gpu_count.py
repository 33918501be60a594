"""A torchrun with more processes per node than the node has GPUs: each surplus rank stops with a one-line error
before it joins the process group (checked without a GPU: the GPU count and the process group are stand-ins)."""
from __future__ import annotations

import pytest
import torch

from nnunetv2.errors import UserError
from nnunetv2.run import run_training as rt


class _Joined(Exception):
    pass


@pytest.fixture
def two_gpus(monkeypatch):
    joined = []

    def init_process_group(*args, **kwargs):
        joined.append(args)
        raise _Joined()  # stop here: what follows needs a real group

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(rt.dist, "init_process_group", init_process_group)
    return joined


def test_a_rank_without_a_gpu_stops_before_joining(two_gpus, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(UserError, match=r"GPU 3 of its node .* only 2 GPU\(s\) are visible.*--nproc_per_node"):
        rt._init_ddp_process(torch.device("cuda"))
    assert two_gpus == []


def test_ranks_with_a_gpu_join(two_gpus, monkeypatch):
    monkeypatch.setenv("RANK", "5")  # second node, GPU 1 of it
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(_Joined):
        rt._init_ddp_process(torch.device("cuda"))
    assert two_gpus == [("nccl",)]


def test_cpu_ranks_need_no_gpu(two_gpus, monkeypatch):
    monkeypatch.setenv("RANK", "7")
    monkeypatch.setenv("LOCAL_RANK", "7")
    with pytest.raises(_Joined):
        rt._init_ddp_process(torch.device("cpu"))
