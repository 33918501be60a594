"""Feature-map element count of nnU-Net's two U-Nets, computed from the plans' numbers alone (no torch).

Planning asks ``compute_conv_feature_map_size`` of a network many times. Building the network needs torch, and
importing torch costs seconds of CPU in a command that otherwise never needs it. For the two architectures nnU-Net's
planners write (``PlainConvUNet`` and ``ResidualEncoderUNet`` of dynamic_network_architectures 0.4.4, built with
their defaults: strided-conv pooling, BasicBlockD, default stem, no deep supervision) the count is plain arithmetic
on the patch size, strides, features and block counts, done here with the same floor divisions and int64 products.
Anything else (another class or version, extra keyword arguments) returns None and the caller builds the network.
``tests/experiment_planning/test_feature_map_size.py`` checks the numbers against the built networks.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

PLAIN_CONV_UNET = 'dynamic_network_architectures.architectures.unet.PlainConvUNet'
RESIDUAL_ENCODER_UNET = 'dynamic_network_architectures.architectures.unet.ResidualEncoderUNet'
_SUPPORTED_VERSION = '0.4.4'
# keyword arguments that do not change the count (they pick ops, not sizes); any other key -> build the network
_NEUTRAL = {'n_stages', 'features_per_stage', 'conv_op', 'kernel_sizes', 'strides', 'n_conv_per_stage_decoder',
            'conv_bias', 'norm_op', 'norm_op_kwargs', 'dropout_op', 'dropout_op_kwargs', 'nonlin', 'nonlin_kwargs'}
# the name of the per-stage block counts argument of each
COUNTS_KEY = {PLAIN_CONV_UNET: 'n_conv_per_stage', RESIDUAL_ENCODER_UNET: 'n_blocks_per_stage'}

_version_ok: Optional[bool] = None


def _library_version_supported() -> bool:
    global _version_ok
    if _version_ok is None:
        try:
            from importlib.metadata import version
            _version_ok = version('dynamic_network_architectures') == _SUPPORTED_VERSION
        except Exception:  # not installed as a distribution: do not guess
            _version_ok = False
    return _version_ok


def _prod(channels: int, size: Sequence[int]) -> np.int64:
    return np.prod([channels, *size], dtype=np.int64)


def _int_list(x) -> Optional[List[int]]:
    if not isinstance(x, (list, tuple)) or not all(isinstance(i, (int, np.integer)) for i in x):
        return None
    return [int(i) for i in x]


def unet_feature_map_size(arch_class_name: str, arch_kwargs: dict, patch_size: Sequence[int],
                          num_classes: int) -> Optional[np.int64]:
    """``network.compute_conv_feature_map_size(patch_size)`` of the described U-Net, or None if not covered."""
    counts_key = COUNTS_KEY.get(arch_class_name)
    if counts_key is None or set(arch_kwargs) - _NEUTRAL - {counts_key} or not _library_version_supported():
        return None
    n = arch_kwargs.get('n_stages')
    features = _int_list(arch_kwargs.get('features_per_stage'))
    counts = _int_list(arch_kwargs.get(counts_key))
    decoder_counts = _int_list(arch_kwargs.get('n_conv_per_stage_decoder'))
    strides_in = arch_kwargs.get('strides')
    size = _int_list(patch_size)
    if (not isinstance(n, (int, np.integer)) or n < 2 or features is None or counts is None or size is None
            or decoder_counts is None or not isinstance(strides_in, (list, tuple))):
        return None
    strides = [_int_list(s) for s in strides_in]
    if (len(features) != n or len(counts) != n or len(decoder_counts) != n - 1 or len(strides) != n
            or any(s is None or len(s) != len(size) for s in strides) or min(counts) < 1 or min(decoder_counts) < 1):
        return None

    total = np.int64(0)
    stage_sizes = []  # spatial size after each encoder stage
    if arch_class_name == RESIDUAL_ENCODER_UNET:
        total += _prod(features[0], size)  # the stem: one conv, stride 1, features[0] channels
        in_channels = features[0]
    for s in range(n):
        after = [i // j for i, j in zip(size, strides[s])]
        if arch_class_name == PLAIN_CONV_UNET:
            total += counts[s] * _prod(features[s], after)
        else:
            # first residual block: two convs, plus a 1x1 projection on the skip path when the channels or the
            # spatial size change; the remaining blocks: two convs each
            block = 2 * _prod(features[s], after)
            if in_channels != features[s] or any(i != j for i, j in zip(size, after)):
                block += _prod(features[s], after)
            total += block + (counts[s] - 1) * 2 * _prod(features[s], after)
            in_channels = features[s]
        stage_sizes.append(after)
        size = after
    # decoder, from the lowest resolution up: transposed conv output + its conv stack at each skip's size; the
    # segmentation head only at the last stage (no deep supervision)
    for s in range(n - 1):
        skip = stage_sizes[n - 2 - s]
        channels = features[n - 2 - s]
        total += decoder_counts[s] * _prod(channels, skip)
        total += _prod(channels, skip)
        if s == n - 2:
            total += _prod(num_classes, skip)
    return total
