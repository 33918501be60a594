"""One CPU thread for GPU work: a second command in the same process must not fail on torch's inter-op pool."""
from __future__ import annotations

import sys

import pytest
import torch

import nnunetv2.run.run_training as run_training_module
from nnunetv2.utilities.torch_threads import one_cpu_thread_for_gpu_work


@pytest.fixture
def fake_torch_threads(monkeypatch):
    """torch's thread setters, recorded instead of applied (one thread would slow the rest of the suite), with an
    inter-op pool that already exists (4 threads) and so refuses any change, as after a first command."""
    calls = []

    def refuse_interop(n):
        calls.append(("interop", n))
        raise RuntimeError("Error: cannot set number of interop threads after parallel work has started or "
                           "set_num_interop_threads called")

    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("intra", n)))
    monkeypatch.setattr(torch, "set_num_interop_threads", refuse_interop)
    monkeypatch.setattr(torch, "get_num_interop_threads", lambda: 4)
    return calls


def test_an_existing_interop_pool_is_kept(fake_torch_threads):
    one_cpu_thread_for_gpu_work()
    assert fake_torch_threads == [("intra", 1), ("interop", 1)]


def test_a_pool_of_one_is_left_alone(fake_torch_threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_interop_threads", lambda: 1)
    one_cpu_thread_for_gpu_work()
    assert fake_torch_threads == [("intra", 1)]


def test_train_entry_twice_in_one_process_with_device_cuda(fake_torch_threads, monkeypatch):
    """nnUNetv2_train -device cuda, then nnUNetv2_train --c, from one Python process (a notebook, a script calling
    the entry point in turn): the second call used to die on torch.set_num_interop_threads before training."""
    received = []
    monkeypatch.setattr(run_training_module, "run_training", lambda *a, **kw: received.append((a, kw)))
    for extra in ([], ["--c"]):
        monkeypatch.setattr(sys, "argv", ["nnUNetv2_train", "321", "3d_fullres", "0", "-device", "cuda", *extra])
        run_training_module.run_training_entry()
    assert len(received) == 2
    assert [kw["device"] for _, kw in received] == [torch.device("cuda")] * 2
    assert [a[8] for a, _ in received] == [False, True]  # continue_training
    assert fake_torch_threads.count(("intra", 1)) == 2
