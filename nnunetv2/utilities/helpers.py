"""Tiny torch helpers used across training and inference (part of the public import surface)."""
from __future__ import annotations

import torch


def softmax_helper_dim0(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, 0)


def softmax_helper_dim1(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, 1)


def empty_cache(device: torch.device) -> None:
    """Release cached accelerator memory; nothing to do on CPU."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        from torch import mps
        mps.empty_cache()


class dummy_context(object):
    """A context manager that does nothing (stands in for autocast where it is not wanted)."""

    def __enter__(self):
        pass

    def __exit__(self, exc_type, exc_val, exc_tb):
        pass
