"""The arithmetic feature-map count must equal dynamic_network_architectures' own count on the built network."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from nnunetv2.experiment_planning.experiment_planners.feature_map_size import (_library_version_supported,
                                                                                unet_feature_map_size)
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

PLAIN = 'dynamic_network_architectures.architectures.unet.PlainConvUNet'
RESENC = 'dynamic_network_architectures.architectures.unet.ResidualEncoderUNet'
REQ = ('conv_op', 'norm_op', 'dropout_op', 'nonlin')
# the arithmetic count is switched on for one dynamic_network_architectures release only (else: built networks count)
needs_counted_release = pytest.mark.skipif(not _library_version_supported(),
                                           reason="arithmetic count off for this dynamic_network_architectures")


def _kwargs(cls_name, strides, kernels, base=32, max_feat=320, enc=None, dec=None):
    n = len(strides)
    dim = len(strides[0])
    counts_key = 'n_conv_per_stage' if cls_name == PLAIN else 'n_blocks_per_stage'
    return {
        'n_stages': n,
        'features_per_stage': tuple(min(max_feat, base * 2 ** i) for i in range(n)),
        'conv_op': f'torch.nn.modules.conv.Conv{dim}d',
        'kernel_sizes': kernels,
        'strides': strides,
        counts_key: tuple(enc or (2,) * n)[:n],
        'n_conv_per_stage_decoder': tuple(dec or (2,) * (n - 1))[:n - 1],
        'conv_bias': True,
        'norm_op': f'torch.nn.modules.instancenorm.InstanceNorm{dim}d',
        'norm_op_kwargs': {'eps': 1e-5, 'affine': True},
        'dropout_op': None, 'dropout_op_kwargs': None,
        'nonlin': 'torch.nn.LeakyReLU', 'nonlin_kwargs': {'inplace': True},
    }


def _built(cls_name, kwargs, patch, in_ch, n_cls):
    with torch.device('meta'):
        net = get_network_from_plans(cls_name, kwargs, REQ, in_ch, n_cls, allow_init=False)
        return net.compute_conv_feature_map_size(patch)


def _cases():
    rs = np.random.RandomState(0)
    cases = []
    for k in range(40):
        dim = 2 if k % 3 == 0 else 3
        spacing = rs.uniform(0.5, 5, dim)
        patch = rs.randint(5, 300 if dim == 2 else 160, dim)
        _, strides, kernels, padded, _ = get_pool_and_conv_props(spacing, patch, 4, 999999)
        if len(strides) < 2:
            continue
        # also non-divisible sizes: the count floors at every stride, like the network
        size = tuple(int(i) for i in (padded if k % 2 else patch))
        cls_name = PLAIN if k % 4 < 2 else RESENC
        enc = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6) if cls_name == RESENC else None
        dec = (1,) * 12 if cls_name == RESENC else None
        cases.append((cls_name, _kwargs(cls_name, strides, kernels, 32, 512 if dim == 2 else 320, enc, dec),
                      size, int(rs.randint(1, 5)), int(rs.randint(2, 6))))
    return cases


@needs_counted_release
@pytest.mark.parametrize('case', range(len(_cases())))
def test_arithmetic_count_equals_built_network(case):
    cls_name, kwargs, patch, in_ch, n_cls = _cases()[case]
    got = unet_feature_map_size(cls_name, kwargs, patch, n_cls)
    expected = _built(cls_name, kwargs, patch, in_ch, n_cls)
    assert got is not None and got == expected and type(got) is type(expected)


@needs_counted_release
def test_resenc_first_block_without_projection():
    # 2d, first stage keeps channels and size: the first residual block has no skip projection
    kwargs = _kwargs(RESENC, ((1, 1), (2, 2), (2, 2)), ((3, 3),) * 3, enc=(2, 1, 1), dec=(1, 1))
    assert unet_feature_map_size(RESENC, kwargs, (64, 48), 3) == _built(RESENC, kwargs, (64, 48), 2, 3)


def test_unknown_networks_and_arguments_are_left_to_the_caller():
    kwargs = _kwargs(PLAIN, ((1, 1), (2, 2)), ((3, 3),) * 2)
    assert unet_feature_map_size('my.module.MyUNet', kwargs, (32, 32), 2) is None
    assert unet_feature_map_size(PLAIN, dict(kwargs, deep_supervision=True), (32, 32), 2) is None
    assert unet_feature_map_size(PLAIN, dict(kwargs, n_conv_per_stage=2), (32, 32), 2) is None


@needs_counted_release
def test_planning_the_default_unets_does_not_import_torch(tmp_path):
    code = ("import sys\n"
            "from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner\n"
            "from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners "
            "import nnUNetPlannerResEncM\n"
            "p = ExperimentPlanner.static_estimate_VRAM_usage((64, 64, 64), 1, 3, %r, %r, %r)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "print(p)\n" % (PLAIN, _kwargs(PLAIN, ((1, 1, 1), (2, 2, 2), (2, 2, 2)), ((3, 3, 3),) * 3), REQ))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kwargs = _kwargs(PLAIN, ((1, 1, 1), (2, 2, 2), (2, 2, 2)), ((3, 3, 3),) * 3)
    assert int(out.stdout) == _built(PLAIN, kwargs, (64, 64, 64), 1, 3)
