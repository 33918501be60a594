"""The gloo side group of the DDP ranks (training._ddp_sync): where the ranks cannot connect over gloo, opening it gives
up after SETUP_WAIT with a one-line error (a multi-node job whose gloo transport cannot reach the other nodes would
otherwise wait the side group's 7-day timeout at its start), while the barriers of the long waits still outlast
SETUP_WAIT (rank 0 unpacking, computing metrics). Two gloo ranks on the CPU, with SETUP_WAIT shortened to 3 s."""
from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
import torch.multiprocessing as mp
from torch import distributed as dist

SETUP_S = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out_dir: str, scenario: str) -> None:
    from nnunetv2.training.nnUNetTrainer import _ddp_sync
    _ddp_sync.SETUP_WAIT = timedelta(seconds=SETUP_S)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    outcome = ""
    if scenario == "a rank never joins the side group" and rank == 1:
        time.sleep(4 * SETUP_S + 5)  # alive, but never gets the side group going
        outcome = "stayed away"
    else:
        t0 = time.monotonic()
        try:
            _ddp_sync.open_side_group()  # as _init_ddp_process does
            if scenario == "rank 0 is busy for longer than the setup wait":
                if rank == 0:
                    time.sleep(2 * SETUP_S)  # unpacking the dataset
                _ddp_sync.wait_for_all_ranks()
            outcome = f"ok after {time.monotonic() - t0:.0f} s"
        except Exception as e:  # noqa: BLE001 - the outcome is the test's subject
            outcome = f"gave up after {time.monotonic() - t0:.0f} s: {type(e).__name__}: {e}"
    with open(f"{out_dir}/rank{rank}.txt", "w") as f:
        f.write(outcome)
    import os
    os._exit(0)  # no teardown of a group a peer never completed


def _run(tmp_path, scenario: str, deadline_s: float):
    context = mp.start_processes(_rank, args=(_free_port(), str(tmp_path), scenario), nprocs=2, join=False,
                                 start_method="spawn")
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and any(p.is_alive() for p in context.processes):
        time.sleep(0.2)
    hung = [p for p in context.processes if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    return [(tmp_path / f"rank{r}.txt").read_text() if (tmp_path / f"rank{r}.txt").exists() else "no outcome"
            for r in (0, 1)], bool(hung)


@pytest.mark.slow
def test_creating_the_side_group_gives_up_after_the_setup_wait(tmp_path):
    (rank0, rank1), hung = _run(tmp_path, "a rank never joins the side group", deadline_s=4 * SETUP_S + 30)
    assert rank1 == "stayed away"
    assert rank0.startswith("gave up after") and int(rank0.split()[3]) <= SETUP_S + 5, (rank0, hung)
    assert "UserError" in rank0 and "GLOO_SOCKET_IFNAME" in rank0, rank0


@pytest.mark.slow
def test_the_long_waits_outlast_the_setup_wait(tmp_path):
    outcomes, hung = _run(tmp_path, "rank 0 is busy for longer than the setup wait", deadline_s=60)
    assert not hung and all(o.startswith("ok after") for o in outcomes), outcomes
