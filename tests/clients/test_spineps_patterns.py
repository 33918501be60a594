"""SPINEPS's way of using nnU-Net (spineps 2.1.3 with TPTBox 1.1.0, read from their public wheels; no client code here).

SPINEPS runs its nnU-Net models through TPTBox's own copy of the predictor (TPTBox.segmentation.nnUnet_utils), which
imports only helpers from nnunetv2 and calls them in its own way:

* normalization classes looked up by name with ``recursive_find_python_class(join(nnunetv2.__path__[0],
  'preprocessing', 'normalization'), scheme, 'nnunetv2.preprocessing.normalization')``, built with keyword arguments
  ``use_mask_for_norm=``/``intensityproperties=`` and run as ``normalizer.run(data[c], seg[0])`` where ``seg`` is
  TPTBox's nonzero mask (-1 outside, 0 inside);
* the preprocessor and planner classes looked up the same way under ``preprocessing`` / ``experiment_planning``;
* resampling functions by name (``recursive_find_resampling_fn_by_name``), bound with ``functools.partial`` to the
  plans' kwargs and called ``fn(data, new_shape, old_spacing, new_spacing)``;
* ``get_labelmanager_class_from_plans(plans)(label_dict=..., regions_class_order=...)``;
* ``determine_num_input_channels(plans_manager, configuration_manager, dataset_json)`` with TPTBox's own plans and
  configuration managers (duck typing: ``get_label_manager``, ``previous_stage_name``);
* plans with an ``architecture``: ``get_network_from_plans(class_name, kwargs, req_import, in_channels, out_channels,
  deep_supervision=False)`` (allow_init left at its default); pre-2.3 plans: TPTBox builds the network itself and
  applies ``InitWeights_He(1e-2)``; the checkpoint's ``network_weights`` are then loaded into it.
"""
from __future__ import annotations

from functools import partial
from os.path import join

import numpy as np
import pytest
import torch

import nnunetv2
from nnunetv2.preprocessing.resampling.utils import recursive_find_resampling_fn_by_name
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import (determine_num_input_channels,
                                                              get_labelmanager_class_from_plans)
from nnunetv2.utilities.network_initialization import InitWeights_He

PROPS = {'mean': 400.0, 'std': 100.0, 'percentile_00_5': 20.0, 'percentile_99_5': 900.0, 'median': 390.0,
         'min': 0.0, 'max': 1000.0}


def _normalizer(scheme):
    return recursive_find_python_class(join(nnunetv2.__path__[0], 'preprocessing', 'normalization'), scheme,
                                       'nnunetv2.preprocessing.normalization')


def _tptbox_mask(shape):
    mask = np.zeros(shape, dtype=np.int8)
    mask[:2] = -1  # outside the nonzero region
    return mask


@pytest.mark.parametrize('scheme', ['ZScoreNormalization', 'CTNormalization', 'NoNormalization',
                                    'RescaleTo01Normalization', 'RGBTo01Normalization'])
def test_normalization_found_by_name_and_run_on_tptbox_mask(scheme):
    cls = _normalizer(scheme)
    assert cls is not None and cls.__name__ == scheme
    data = np.random.default_rng(0).uniform(0, 255, (6, 7, 8)).astype(np.float32)
    out = cls(use_mask_for_norm=False, intensityproperties=PROPS).run(data.copy(), _tptbox_mask(data.shape))
    assert out.shape == data.shape and out.dtype == np.float32
    if scheme == 'ZScoreNormalization':
        assert abs(float(out.mean())) < 1e-4 and abs(float(out.std()) - 1) < 1e-3
    elif scheme == 'CTNormalization':
        expected = (np.clip(data, 20.0, 900.0) - 400.0) / 100.0
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    elif scheme == 'NoNormalization':
        np.testing.assert_array_equal(out, data)
    elif scheme == 'RescaleTo01Normalization':
        assert float(out.min()) == 0.0 and abs(float(out.max()) - 1.0) < 1e-6
    else:
        np.testing.assert_allclose(out, data / 255.0, rtol=1e-6)


def test_zscore_with_mask_uses_only_the_inside():
    data = np.random.default_rng(1).uniform(0, 255, (6, 7, 8)).astype(np.float32)
    mask = _tptbox_mask(data.shape)
    out = _normalizer('ZScoreNormalization')(use_mask_for_norm=True, intensityproperties=PROPS).run(data.copy(), mask)
    inside = mask >= 0
    assert abs(float(out[inside].mean())) < 1e-4 and abs(float(out[inside].std()) - 1) < 1e-3
    np.testing.assert_array_equal(out[~inside], data[~inside])  # the outside is left as it was


@pytest.mark.parametrize('folder,name,module', [
    ('preprocessing', 'DefaultPreprocessor', 'nnunetv2.preprocessing'),
    ('experiment_planning', 'ExperimentPlanner', 'nnunetv2.experiment_planning'),
    ('experiment_planning', 'nnUNetPlannerResEncM', 'nnunetv2.experiment_planning'),
])
def test_classes_found_by_name(folder, name, module):
    cls = recursive_find_python_class(join(nnunetv2.__path__[0], folder), name, current_module=module)
    assert cls is not None and cls.__name__ == name


def test_resampling_bound_with_partial_like_tptbox():
    data = np.random.default_rng(2).random((1, 10, 20, 20)).astype(np.float32)
    fn = partial(recursive_find_resampling_fn_by_name('resample_data_or_seg_to_shape'),
                 **{'is_seg': False, 'order': 3, 'order_z': 0, 'force_separate_z': None})
    out = fn(data, np.array([12, 17, 23]), [3.0, 1.0, 1.0], [2.5, 1.2, 0.9])
    assert out.shape == (1, 12, 17, 23) and out.dtype == np.float32
    assert abs(float(out.mean()) - float(data.mean())) < 0.02
    seg = (data > 0.5).astype(np.int8)
    fn_seg = partial(recursive_find_resampling_fn_by_name('resample_data_or_seg_to_shape'),
                     **{'is_seg': True, 'order': 1, 'order_z': 0, 'force_separate_z': None})
    out = fn_seg(seg, [12, 17, 23], [3.0, 1.0, 1.0], [2.5, 1.2, 0.9])
    assert out.shape == (1, 12, 17, 23) and set(np.unique(out)) <= {0, 1}
    probs = torch.from_numpy(np.random.default_rng(3).random((3, 10, 20, 20)).astype(np.float32))
    out = fn(probs, (12, 17, 23), [3.0, 1.0, 1.0], [2.5, 1.2, 0.9])  # TPTBox hands the logits over as a tensor
    assert tuple(out.shape) == (3, 12, 17, 23)


class _ConfigurationManager:  # TPTBox's own, reduced to what nnunetv2 reads
    previous_stage_name = None


class _CascadeConfigurationManager:
    previous_stage_name = '3d_lowres'


class _PlansManager:
    def __init__(self, plans):
        self.plans = plans

    def get_label_manager(self, dataset_json, **kwargs):
        return get_labelmanager_class_from_plans(self.plans)(
            label_dict=dataset_json['labels'], regions_class_order=dataset_json.get('regions_class_order'), **kwargs)


DATASET_JSON = {'channel_names': {'0': 'T2w'}, 'labels': {'background': 0, 'corpus': 1, 'canal': 2, 'disc': 3}}


def test_label_manager_and_input_channels_with_tptbox_managers():
    pm = _PlansManager({'configurations': {}})  # SPINEPS's plans name no label_manager
    lm = pm.get_label_manager(DATASET_JSON)
    assert lm.num_segmentation_heads == 4 and not lm.has_regions and not lm.has_ignore_label
    assert [int(x) for x in lm.foreground_labels] == [1, 2, 3]
    logits = torch.randn(4, 3, 4, 5)
    probs = lm.apply_inference_nonlin(logits)
    torch.testing.assert_close(probs.sum(0), torch.ones(3, 4, 5))
    assert determine_num_input_channels(pm, _ConfigurationManager(), DATASET_JSON) == 1
    assert determine_num_input_channels(pm, _CascadeConfigurationManager(), DATASET_JSON) == 4


def _arch():
    kwargs = {'n_stages': 3, 'features_per_stage': [4, 8, 16], 'conv_op': 'torch.nn.modules.conv.Conv3d',
              'kernel_sizes': [[1, 3, 3], [3, 3, 3], [3, 3, 3]], 'strides': [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
              'n_conv_per_stage': [2, 2, 2], 'n_conv_per_stage_decoder': [2, 2], 'conv_bias': True,
              'norm_op': 'torch.nn.modules.instancenorm.InstanceNorm3d',
              'norm_op_kwargs': {'eps': 1e-05, 'affine': True}, 'dropout_op': None, 'dropout_op_kwargs': None,
              'nonlin': 'torch.nn.LeakyReLU', 'nonlin_kwargs': {'inplace': True}}
    return ('dynamic_network_architectures.architectures.unet.PlainConvUNet', kwargs,
            ['conv_op', 'norm_op', 'dropout_op', 'nonlin'])


def test_network_from_plans_positional_and_checkpoint_roundtrip():
    name, kwargs, req = _arch()
    torch.manual_seed(0)
    trained = get_network_from_plans(name, kwargs, req, 1, 4, allow_init=True, deep_supervision=True)
    net = get_network_from_plans(name, kwargs, req, 1, 4, deep_supervision=False)  # TPTBox's call
    net.load_state_dict(trained.state_dict())
    net.eval()
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 4, 8, 16, 16)


def test_legacy_plans_network_initialised_with_he():
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    torch.manual_seed(0)
    net = PlainConvUNet(1, 3, [4, 8, 16], torch.nn.Conv3d, [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                        [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [2, 2, 2], 4, [2, 2], conv_bias=True,
                        norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={'eps': 1e-5, 'affine': True},
                        nonlin=torch.nn.LeakyReLU, nonlin_kwargs={'inplace': True}, deep_supervision=False)
    net.apply(InitWeights_He(1e-2))
    conv = net.encoder.stages[0][0].convs[0].conv
    assert torch.all(conv.bias == 0)
    fan_in = conv.weight[0].numel()
    expected_std = (2.0 / ((1 + 1e-4) * fan_in)) ** 0.5
    assert abs(float(conv.weight.detach().std()) - expected_std) < 0.35 * expected_std
