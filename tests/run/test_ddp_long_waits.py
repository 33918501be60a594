"""The final wait of the DDP ranks outlasts the default group's collective timeout (under NCCL 10 minutes, after
which a watchdog aborts the rank): the other ranks wait there while rank 0 computes the validation metrics. Two
gloo ranks on the CPU, whose default group gets a 2 s timeout; rank 0 takes 5 s."""
from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
import torch.multiprocessing as mp
from torch import distributed as dist

RANK0_SECONDS, GROUP_TIMEOUT_S = 5, 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out_dir: str) -> None:
    from nnunetv2.run import run_training as rt
    from nnunetv2.training.nnUNetTrainer import _ddp_sync
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=GROUP_TIMEOUT_S))
    _ddp_sync.open_side_group()  # as _init_ddp_process does
    control = dist.new_group(backend="gloo", timeout=timedelta(seconds=GROUP_TIMEOUT_S))
    outcomes = []

    def train(trainer, *args):
        if rank == 0:
            time.sleep(RANK0_SECONDS)  # the validation metrics
        else:  # the control: a plain barrier with the short timeout gives up while rank 0 is busy
            try:
                dist.barrier(group=control)
                outcomes.append("control: waited")
            except Exception as e:
                outcomes.append("control: timed out" if "timed out" in str(e).lower() else f"control: {e}")

    rt._train_in_this_process = train
    rt._train_in_process_group(lambda: object(), ())
    outcomes.append("left the group" if not dist.is_initialized() else "still in the group")
    with open(f"{out_dir}/rank{rank}.txt", "w") as f:
        f.write("; ".join(outcomes))


@pytest.mark.slow
def test_other_ranks_outwait_rank_0(tmp_path):
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    outcomes = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert outcomes == ["left the group", "control: timed out; left the group"], outcomes
