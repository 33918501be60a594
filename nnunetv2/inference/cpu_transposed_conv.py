"""Transposed convolutions on the CPU without torch's slow copy of their output.

Given a contiguous input, torch's oneDNN path for a transposed convolution reorders the input to channels-last, runs
oneDNN's kernel, which writes a channels-last output, and copies that output back to the contiguous layout with a
generic strided copy. For a full-resolution decoder output that copy costs more than the convolution (measured on the
default 3d_fullres network: 196 ms of a 3 s pass on one thread). Given a channels-last input instead, torch runs the
same kernel on the same values, so the sums happen in the same order, and keeps the channels-last output; we make
it contiguous with blocked 2-D transposes (one per sample), which are several times faster than the strided copy.

Bit-identical by construction, and not taken on trust: each module's first call per input shape and thread count
computes both and keeps the fast path only where they agree in every bit.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

_MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}
_FUNCTIONS = {nn.ConvTranspose2d: F.conv_transpose2d, nn.ConvTranspose3d: F.conv_transpose3d}


def channels_last_to_contiguous(t: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of the channels-last (N, C, *S) tensor ``t``: per sample, the (prod(S), C) matrix that
    channels-last stores is transposed into (C, prod(S)), a pattern torch copies block by block."""
    n, c = t.shape[:2]
    out = torch.empty(t.shape, dtype=t.dtype, device=t.device)
    order = (*range(1, t.ndim - 1), 0)  # (C, *S) -> (*S, C): contiguous for a channels-last sample
    for i in range(n):
        out[i].view(c, -1).copy_(t[i].permute(order).reshape(-1, c).t())
    return out


class _ChannelsLastForward:
    """Replaces ``module.forward`` of a transposed convolution while :func:`fast_transposed_convolutions` is active."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.original = module.forward
        self.verdicts: Dict[Tuple, bool] = {}
        self.lock = threading.Lock()

    def _applies(self, x: torch.Tensor, output_size) -> bool:
        return (output_size is None and x.device.type == 'cpu' and x.dtype == torch.float32
                and x.ndim in _MEMORY_FORMATS and x.is_contiguous() and not torch.is_grad_enabled()
                and self.module.padding_mode == 'zeros')

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        y = _FUNCTIONS[type(m)](x.contiguous(memory_format=_MEMORY_FORMATS[x.ndim]), m.weight, m.bias, m.stride,
                                m.padding, m.output_padding, m.groups, m.dilation)
        if y.is_contiguous():
            return y
        if not y.is_contiguous(memory_format=_MEMORY_FORMATS[y.ndim]):
            return y.contiguous()
        return channels_last_to_contiguous(y)

    def __call__(self, x: torch.Tensor, output_size: Optional[list] = None) -> torch.Tensor:
        if not self._applies(x, output_size):
            return self.original(x, output_size)
        key = (tuple(x.shape), torch.get_num_threads())
        verdict = self.verdicts.get(key)
        if verdict is None:
            fast, reference = self._fast(x), self.original(x)
            verdict = torch.equal(fast, reference)
            with self.lock:
                self.verdicts[key] = verdict
            return reference
        return self._fast(x) if verdict else self.original(x)


@contextmanager
def fast_transposed_convolutions(network) -> Iterator[None]:
    """While active, the 2-D/3-D transposed convolutions of ``network`` (an ``nn.Module``; anything else is left
    alone) take the channels-last path where it is bit-identical (see the module docstring)."""
    patched = []
    if isinstance(network, nn.Module):
        for m in network.modules():
            if type(m) in _FUNCTIONS and 'forward' not in m.__dict__:
                m.forward = _ChannelsLastForward(m)
                patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward
