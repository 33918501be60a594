"""Rebuild the ``architecture`` block of configurations written by nnU-Net < 2.3 (flat UNet_* keys).

Old plans named the network through ``UNet_class_name`` and a handful of flat keys. Newer code reads only
``architecture``; this converts in place (the old keys are removed, ``architecture`` is appended last), so old
trained models keep loading.
"""
from __future__ import annotations

from nnunetv2.errors import UserError

_OLD_KEYS = ('UNet_class_name', 'UNet_base_num_features', 'n_conv_per_stage_encoder', 'n_conv_per_stage_decoder',
             'num_pool_per_axis', 'pool_op_kernel_sizes', 'conv_kernel_sizes', 'unet_max_num_features')

# The module paths old plans get. ResidualEncoderUNet's path does not exist in dynamic_network_architectures 0.4.4;
# get_network_from_plans finds the class through its name-search fallback (kept for identical plans content).
_CLASS_PATHS = {
    'PlainConvUNet': 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
    'ResidualEncoderUNet': 'dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet',
}


def is_legacy_configuration(configuration: dict) -> bool:
    return 'architecture' not in configuration and 'UNet_class_name' in configuration


def convert_legacy_configuration(configuration: dict) -> dict:
    """Replace the flat UNet_* keys of ``configuration`` by an ``architecture`` block (in place; also returned)."""
    unet_class_name = configuration['UNet_class_name']
    if unet_class_name not in _CLASS_PATHS:
        raise UserError(f"Old-format plans name the unknown architecture '{unet_class_name}'; only PlainConvUNet "
                        f"and ResidualEncoderUNet can be converted.",
                        hint="Rerun nnUNetv2_plan_experiment for this dataset.")
    dim = len(configuration['patch_size'])
    encoder_counts = configuration['n_conv_per_stage_encoder']
    n_stages = len(encoder_counts)
    base = configuration['UNet_base_num_features']
    max_features = configuration['unet_max_num_features']
    counts_key = 'n_conv_per_stage' if unet_class_name == 'PlainConvUNet' else 'n_blocks_per_stage'
    arch_kwargs = {
        'n_stages': n_stages,
        'features_per_stage': [min(base * 2 ** i, max_features) for i in range(n_stages)],
        'conv_op': f'torch.nn.modules.conv.Conv{dim}d',
        'kernel_sizes': configuration['conv_kernel_sizes'],
        'strides': configuration['pool_op_kernel_sizes'],
        counts_key: encoder_counts,
        'n_conv_per_stage_decoder': configuration['n_conv_per_stage_decoder'],
        'conv_bias': True,
        'norm_op': f'torch.nn.modules.instancenorm.InstanceNorm{dim}d',
        'norm_op_kwargs': {'eps': 1e-05, 'affine': True},
        'dropout_op': None,
        'dropout_op_kwargs': None,
        'nonlin': 'torch.nn.LeakyReLU',
        'nonlin_kwargs': {'inplace': True},
    }
    for k in _OLD_KEYS:
        configuration.pop(k, None)
    configuration['architecture'] = {
        'network_class_name': _CLASS_PATHS[unet_class_name],
        'arch_kwargs': arch_kwargs,
        '_kw_requires_import': ['conv_op', 'norm_op', 'dropout_op', 'nonlin'],
    }
    return configuration
