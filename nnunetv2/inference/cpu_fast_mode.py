"""The opt-in fast CPU mode: the network in bfloat16 and channels-last, where the CPU computes bfloat16 natively.

Turned on with ``nnUNet_cpu_fast=1`` (or ``nnUNetPredictor.cpu_fast = True``). The default stays exact: the same
logits as the reference, bit for bit. Fast mode gives them up for speed:

* convolutions run in bfloat16, which CPUs with AVX512-BF16 or AMX compute at twice the fp32 rate or more; the
  first encoder stage (it sees the image itself, whose fine intensity steps bfloat16 would round away) and the
  segmentation heads (the logits that decide the labels) stay fp32;
* activations are kept channels-last, the layout oneDNN computes in without reordering around every convolution;
  instance normalisation runs as a group normalisation with one group per channel (the same formula), which torch
  computes in that layout without copies; pointwise heads run as matrix products on it.

Without native bfloat16 (oneDNN would emulate it, slower than fp32) fast mode is refused with one log line and the
exact path runs. Agreement with the exact mode is measured by ``benchmarks/inference.py`` and tested on the golden
models (voxels equal, per-label Dice).
"""
from __future__ import annotations

import copy
import functools
import logging
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2.configuration import flag_from_env

logger = logging.getLogger(__name__)

FAST_ENV = 'nnUNet_cpu_fast'
_INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}
_FP32_ONLY = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def fast_mode_requested() -> bool:
    return flag_from_env(FAST_ENV)


def _cpu_flags() -> set:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX) and torch's oneDNN can use it."""
    if not torch.backends.mkldnn.is_available():
        return False
    for probe in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:
                pass
    return bool(_cpu_flags() & {'avx512_bf16', 'amx_bf16'})


def full_precision_parts(network: nn.Module) -> Optional[List[str]]:
    """Names of the submodules that stay fp32: the encoder's stem and first stage, and the segmentation heads.
    None where ``network`` does not have the U-Net layout this is known for (encoder.stages, decoder.seg_layers)."""
    encoder, decoder = getattr(network, 'encoder', None), getattr(network, 'decoder', None)
    stages, heads = getattr(encoder, 'stages', None), getattr(decoder, 'seg_layers', None)
    if not isinstance(stages, nn.Sequential) or len(stages) == 0 or not isinstance(heads, nn.ModuleList):
        return None
    parts = ['encoder.stages.0', 'decoder.seg_layers']
    if isinstance(getattr(encoder, 'stem', None), nn.Module):
        parts.insert(0, 'encoder.stem')
    return parts


class _GroupNormPerChannel(nn.Module):
    """Instance normalisation as a group normalisation with one group per channel (same mean, variance, formula)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)


class _InFloat32(nn.Module):
    """A parameterless layer torch has no bfloat16 CPU kernel for (average pooling: residual U-Nets pool their
    skips), run in fp32 and handed back in the dtype it got."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float()).to(x.dtype)


class _PointwiseHead(nn.Module):
    """A 1x1 convolution as a matrix product over the channels of a channels-last tensor, contiguous fp32 output."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().reshape(conv.out_channels, -1).float(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x.movedim(1, -1).float()
        return F.linear(last, self.weight, self.bias).movedim(-1, 1).contiguous()


def _is_plain_pointwise(m: nn.Module) -> bool:
    return isinstance(m, _CONVOLUTIONS) and all(k == 1 for k in m.kernel_size) and all(s == 1 for s in m.stride) \
        and all(p == 0 for p in m.padding) and m.groups == 1 and all(d == 1 for d in m.dilation)


def _replace_children(module: nn.Module, make: Callable[[nn.Module], Optional[nn.Module]]) -> None:
    for name, child in list(module.named_children()):
        replacement = make(child)
        if replacement is not None:
            setattr(module, name, replacement)
        else:
            _replace_children(child, make)


def _cast_inputs_to(dtype: torch.dtype):
    def hook(module, args):
        return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype != dtype
                     else a for a in args)
    return hook


def _inside(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + '.') for p in prefixes)


def build_fast_network(network: nn.Module, fp32_parts: Sequence[str]) -> nn.Module:
    """A bfloat16, channels-last copy of ``network`` (eval mode, no gradients) whose ``fp32_parts`` stay fp32.

    Every leaf with parameters casts its floating inputs to its own dtype, so the parts meet whatever dtype the
    previous part produced; the output of an fp32 head is fp32 and contiguous.
    """
    fast = copy.deepcopy(network).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    heads = {n for n, m in fast.named_modules() if _is_plain_pointwise(m) and _inside(n, ['decoder.seg_layers'])}
    _replace_children(fast, lambda m: _GroupNormPerChannel(m) if isinstance(m, _INSTANCE_NORMS) and m.affine
                      and not m.track_running_stats else None)
    _replace_children(fast, lambda m: _InFloat32(m) if isinstance(m, _FP32_ONLY) else None)
    for name in heads:
        parent, _, child = name.rpartition('.')
        setattr(fast.get_submodule(parent), child, _PointwiseHead(fast.get_submodule(name)))
    for name, m in fast.named_modules():  # rounding an fp32 part to bfloat16 and back would lose its precision
        if not _inside(name, fp32_parts) and not isinstance(m, _PointwiseHead):
            for p in m.parameters(recurse=False):
                p.data = p.data.to(torch.bfloat16)
            for key, b in m.named_buffers(recurse=False):
                if b.is_floating_point():
                    setattr(m, key, b.to(torch.bfloat16))
    for m in fast.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            m.weight.data = m.weight.data.contiguous(memory_format=_CHANNELS_LAST[m.weight.ndim])
        params = list(m.parameters(recurse=False))
        if params and not list(m.children()) and not isinstance(m, _PointwiseHead):
            m.register_forward_pre_hook(_cast_inputs_to(params[0].dtype))
    if any(p.dtype == torch.bfloat16 for p in fast.parameters()):
        # an fp32 part that is not a head hands on bfloat16, once (its output also feeds skip connections)
        for name in fp32_parts:
            outermost = not any(other != name and _inside(name, [other]) for other in fp32_parts)
            if name and outermost and not _inside(name, ['decoder.seg_layers']):
                fast.get_submodule(name).register_forward_hook(_output_to(torch.bfloat16))
    return fast


def _output_to(dtype: torch.dtype):
    def hook(module, args, output):
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            return output.to(dtype)
        return output
    return hook


def fast_network_for(network, device: torch.device) -> Optional[nn.Module]:
    """The fast copy of ``network`` where fast mode is requested and possible, else None (with one log line saying
    why, where it was requested)."""
    if device.type != 'cpu' or not isinstance(network, nn.Module):
        return None
    parts = full_precision_parts(network)
    if parts is None:
        _warn_once(f"{FAST_ENV} is set but the network has no encoder.stages/decoder.seg_layers (not a dynamic-"
                   f"network-architectures U-Net): predicting in the exact (fp32) mode.")
        return None
    if not native_bf16_cpu():
        _warn_once(f"{FAST_ENV} is set but this CPU has no native bfloat16 (AVX512-BF16 or AMX): predicting in the "
                   f"exact (fp32) mode, which is faster here.")
        return None
    return build_fast_network(network, parts)


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    """Once per process, not once per image."""
    logger.warning(message)
