"""Torch's CPU thread settings for work whose arithmetic runs on a GPU."""
from __future__ import annotations

import torch


def one_cpu_thread_for_gpu_work() -> None:
    """One intra-op and (where still possible) one inter-op CPU thread: with the network on a GPU, more torch threads
    only compete with the data-augmentation and export processes for the cores.

    Torch fixes the inter-op pool the first time it is used and raises on any later change, so a second command run
    in the same Python process (a notebook, a script calling the entry points in turn) keeps the pool it has."""
    torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # the pool exists already: nothing to gain from failing the whole command
            pass
