"""-num_gpus launcher: when the first rank to end was stopped by a signal, the others get to end by themselves."""
from __future__ import annotations

import multiprocessing
import os
import time

import pytest


def _exit_after(seconds: float) -> None:
    time.sleep(seconds)
    os._exit(128 + 15)  # what a rank stopped by SIGTERM exits with


def test_a_slower_stopping_rank_is_waited_for():
    from nnunetv2.run.run_training import _let_stopping_ranks_exit  # not at the top: the children import this module
    ctx = multiprocessing.get_context('spawn')  # as torch.multiprocessing.spawn starts the ranks
    fast, slow = ctx.Process(target=_exit_after, args=(0,)), ctx.Process(target=_exit_after, args=(1.5,))
    fast.start()
    slow.start()
    try:
        # the exit status of the first one exists only once it is collected, a moment after its sentinel fires;
        # read too early, it looked like no stop signal and the slower rank was terminated by the join that follows
        _let_stopping_ranks_exit([fast, slow], grace_s=60)
        assert fast.exitcode == slow.exitcode == 143
    finally:
        for p in (fast, slow):
            if p.is_alive():
                p.kill()
            p.join()
