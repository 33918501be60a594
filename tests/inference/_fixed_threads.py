"""A network whose every pass runs with one fixed torch thread count, whichever thread calls it.

Whether a convolution's result depends on the thread count is a property of the CPU: oneDNN picks its kernels and how
it splits the sums among threads by the instruction set it finds. On a Zen 4 only the point-wise convolutions differ
(the product pins those); on an Intel Xeon with AVX-512 FP16 (Sapphire Rapids class) a 3x3x3 convolution of 32
channels on a 4x4x4 input does too. The product therefore checks a configuration before it uses it. The tests of the
concurrent plumbing (ordering, mirrored sums, grad mode, thread counts restored) wrap their network in this, so that
what they compare cannot depend on the machine's kernels; the check itself is tested with a network that depends on
the count on purpose.
"""
from __future__ import annotations

import torch
from torch import nn


class FixedThreadCount(nn.Module):
    """``network`` run with ``threads`` torch threads (default: the count when it is wrapped) in every call."""

    def __init__(self, network: nn.Module, threads: int = 0):
        super().__init__()
        self.network = network
        self.threads = threads or torch.get_num_threads()

    def forward(self, x):
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self.network(x)
        finally:
            torch.set_num_threads(before)
