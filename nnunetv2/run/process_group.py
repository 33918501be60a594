"""Joining and leaving the torch.distributed process group of a training: the backend for a device, this process's
GPU or share of the CPU cores, and the reference's ``setup_ddp``/``cleanup_ddp`` (importable from run_training, as in
the reference)."""
from __future__ import annotations

import multiprocessing
import os
from typing import Optional

import torch
import torch.distributed as dist

from nnunetv2.errors import UserError
from nnunetv2.training.nnUNetTrainer import _ddp_sync


def ddp_backend(device: torch.device) -> str:
    """The torch.distributed backend for ``device``: NCCL between GPUs, gloo between CPU processes."""
    return 'nccl' if torch.device(device).type == 'cuda' else 'gloo'


def cpu_threads_per_process(n_processes_on_node: int) -> int:
    """Torch threads for each of ``n_processes_on_node`` CPU training processes: the cores shared out, at least 1
    (every process taking all cores would oversubscribe the CPU)."""
    return max(1, multiprocessing.cpu_count() // max(1, n_processes_on_node))


def _init_ddp_process(device: torch.device, rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
    """Join the process group (env:// rendezvous: MASTER_ADDR/MASTER_PORT, plus RANK/WORLD_SIZE under torchrun)
    and bind this process to its GPU (CUDA) or its share of the cores (CPU)."""
    from nnunetv2.training.nnUNetTrainer._setup import ddp_gpu_index
    if device.type == 'cuda':
        _check_gpu_of_this_process(ddp_gpu_index(int(os.environ.get('RANK', '0')) if rank is None else rank))
    if rank is None:
        dist.init_process_group(ddp_backend(device))
    else:
        dist.init_process_group(ddp_backend(device), rank=rank, world_size=world_size)
    # waits that may outlast the NCCL timeout (rank 0 unpacking or computing metrics) go through a gloo group
    _ddp_sync.open_side_group()
    if device.type == 'cuda':
        torch.cuda.set_device(torch.device('cuda', ddp_gpu_index(dist.get_rank())))
    else:
        local_world_size = int(os.environ.get('LOCAL_WORLD_SIZE', dist.get_world_size()))
        torch.set_num_threads(cpu_threads_per_process(local_world_size))


def setup_ddp(rank: int, world_size: int) -> None:
    """Join the process group as ``rank`` of ``world_size`` (MASTER_ADDR/MASTER_PORT from the environment; NCCL where
    CUDA is available, else gloo), as the reference's function of this name did for its ``run_ddp``: for training
    scripts built on a copy of it."""
    _init_ddp_process(torch.device('cuda' if torch.cuda.is_available() else 'cpu'), rank, world_size)


def cleanup_ddp() -> None:
    """Leave the process group that ``setup_ddp`` (or a training) joined; nothing if there is none."""
    if dist.is_initialized():
        _ddp_sync.destroy_process_groups()


def _check_gpu_of_this_process(index: int) -> None:
    """Before joining the process group: a torchrun started with more processes per node than the node has GPUs
    would otherwise stop those ranks with CUDA's 'invalid device ordinal' traceback (-num_gpus checks this up front)."""
    visible = torch.cuda.device_count()
    if index >= visible:
        raise UserError(f"This process would train on GPU {index} of its node (LOCAL_RANK {index}), but only {visible} "
                        f"GPU(s) are visible.", "Start torchrun with --nproc_per_node at most the number of GPUs of "
                        "the node (see CUDA_VISIBLE_DEVICES).")
