"""PlansManager / ConfigurationManager / get_network_from_plans (spec 02 §5)."""
from __future__ import annotations

import json
import textwrap
import warnings
from copy import deepcopy

import pytest
import torch

from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

ARCH_3D = {
    'network_class_name': 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
    'arch_kwargs': {'n_stages': 3, 'features_per_stage': [8, 16, 32], 'conv_op': 'torch.nn.modules.conv.Conv3d',
                    'kernel_sizes': [[1, 3, 3], [3, 3, 3], [3, 3, 3]], 'strides': [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                    'n_conv_per_stage': [2, 2, 2], 'n_conv_per_stage_decoder': [2, 2], 'conv_bias': True,
                    'norm_op': 'torch.nn.modules.instancenorm.InstanceNorm3d',
                    'norm_op_kwargs': {'eps': 1e-05, 'affine': True}, 'dropout_op': None, 'dropout_op_kwargs': None,
                    'nonlin': 'torch.nn.LeakyReLU', 'nonlin_kwargs': {'inplace': True}},
    '_kw_requires_import': ['conv_op', 'norm_op', 'dropout_op', 'nonlin'],
}
RESAMPLING = {
    'resampling_fn_data': 'resample_data_or_seg_to_shape', 'resampling_fn_seg': 'resample_data_or_seg_to_shape',
    'resampling_fn_data_kwargs': {'is_seg': False, 'order': 3, 'order_z': 0, 'force_separate_z': None},
    'resampling_fn_seg_kwargs': {'is_seg': True, 'order': 1, 'order_z': 0, 'force_separate_z': None},
    'resampling_fn_probabilities': 'resample_data_or_seg_to_shape',
    'resampling_fn_probabilities_kwargs': {'is_seg': False, 'order': 1, 'order_z': 0, 'force_separate_z': None},
}


def make_plans():
    fullres = {'data_identifier': 'nnUNetPlans_3d_fullres', 'preprocessor_name': 'DefaultPreprocessor',
               'batch_size': 2, 'patch_size': [16, 32, 32], 'median_image_size_in_voxels': [20.0, 40.0, 40.0],
               'spacing': [3.0, 0.8, 0.8], 'normalization_schemes': ['CTNormalization'], 'use_mask_for_norm': [False],
               **deepcopy(RESAMPLING), 'architecture': deepcopy(ARCH_3D), 'batch_dice': False}
    return {'dataset_name': 'Dataset001_X', 'plans_name': 'nnUNetPlans',
            'original_median_spacing_after_transp': [3.0, 0.8, 0.8],
            'original_median_shape_after_transp': [20, 40, 40], 'image_reader_writer': 'SimpleITKIO',
            'transpose_forward': [0, 1, 2], 'transpose_backward': [0, 1, 2],
            'configurations': {'3d_fullres': fullres,
                               '3d_cascade_fullres': {'inherits_from': '3d_fullres', 'previous_stage': '3d_lowres'},
                               '3d_fullres_bs4': {'inherits_from': '3d_fullres', 'batch_size': 4},
                               '3d_fullres_bs4_p': {'inherits_from': '3d_fullres_bs4', 'patch_size': [8, 16, 16]}},
            'experiment_planner_used': 'ExperimentPlanner', 'label_manager': 'LabelManager',
            'foreground_intensity_properties_per_channel': {'0': {'mean': 1.0}}}


def test_plans_manager_properties(tmp_path):
    f = tmp_path / 'plans.json'
    f.write_text(json.dumps(make_plans()))
    pm = PlansManager(str(f))
    assert pm.dataset_name == 'Dataset001_X' and pm.plans_name == 'nnUNetPlans'
    assert pm.available_configurations == ['3d_fullres', '3d_cascade_fullres', '3d_fullres_bs4', '3d_fullres_bs4_p']
    assert pm.transpose_forward == [0, 1, 2] and pm.original_median_shape_after_transp == [20, 40, 40]
    assert pm.image_reader_writer_class.__name__ == 'SimpleITKIO'
    assert pm.experiment_planner_name == 'ExperimentPlanner'
    assert pm.foreground_intensity_properties_per_channel == {'0': {'mean': 1.0}}
    assert repr(pm) == repr(pm.plans)
    lm = pm.get_label_manager({'labels': {'background': 0, 'a': 1, 'b': 2}})
    assert type(lm).__name__ == 'LabelManager' and lm.num_segmentation_heads == 3
    legacy = make_plans()
    legacy['foreground_intensity_properties_by_modality'] = legacy.pop('foreground_intensity_properties_per_channel')
    assert PlansManager(legacy).foreground_intensity_properties_per_channel == {'0': {'mean': 1.0}}


def test_configuration_inheritance_and_identity():
    pm = PlansManager(make_plans())
    cm = pm.get_configuration('3d_fullres_bs4_p')
    assert cm is pm.get_configuration('3d_fullres_bs4_p')
    assert cm.batch_size == 4 and cm.patch_size == [8, 16, 16] and cm.data_identifier == 'nnUNetPlans_3d_fullres'
    assert cm.configuration['inherits_from'] == '3d_fullres_bs4'
    casc = pm.get_configuration('3d_cascade_fullres')
    assert casc.previous_stage_name == '3d_lowres' and casc.next_stage_names is None
    assert pm.get_configuration('3d_fullres').previous_stage_name is None
    assert pm.plans['configurations']['3d_fullres_bs4'] == {'inherits_from': '3d_fullres', 'batch_size': 4}
    with pytest.raises(RuntimeError, match='nope'):
        pm.get_configuration('nope')
    cyc = make_plans()
    cyc['configurations']['a'] = {'inherits_from': 'b'}
    cyc['configurations']['b'] = {'inherits_from': 'a'}
    with pytest.raises(RuntimeError, match='ircular'):
        PlansManager(cyc).get_configuration('a')
    assert ConfigurationManager({'next_stage': 'x'}).next_stage_names == ['x']


@pytest.mark.parametrize('edit, expected', [
    ({'c': {'inherits_from': '3d_typo'}}, "configuration 'c' inherits from '3d_typo', which does not exist"),
    ({'c': {'inherits_from': 'd'}, 'd': {'inherits_from': 'c'}}, 'Circular dependency'),
])
def test_broken_inherits_from_is_a_user_error(edit, expected):
    """A hand-edited plans file whose inherits_from names a missing configuration or loops is the user's mistake:
    one line at the CLI (nnUNetv2_train/preprocess/predict), still the reference's ValueError / RuntimeError."""
    from nnunetv2.errors import UserError
    plans = make_plans()
    plans['configurations'].update(edit)
    with pytest.raises(UserError) as e:
        PlansManager(plans).get_configuration('c')
    assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)
    assert expected in e.value.one_line() and "Dataset001_X" in e.value.one_line()


def test_configuration_properties():
    cm = PlansManager(make_plans()).get_configuration('3d_fullres')
    assert cm.spacing == [3.0, 0.8, 0.8] and cm.normalization_schemes == ['CTNormalization']
    assert cm.use_mask_for_norm == [False] and cm.batch_dice is False
    assert cm.median_image_size_in_voxels == [20.0, 40.0, 40.0] and cm.preprocessor_name == 'DefaultPreprocessor'
    assert cm.network_arch_class_name.endswith('PlainConvUNet')
    assert cm.network_arch_init_kwargs['n_stages'] == 3
    assert cm.network_arch_init_kwargs_req_import == ['conv_op', 'norm_op', 'dropout_op', 'nonlin']
    assert cm.pool_op_kernel_sizes == [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    # pre-2.3 names still read by third-party trainers
    assert cm.conv_kernel_sizes == [[1, 3, 3], [3, 3, 3], [3, 3, 3]] and cm.n_conv_per_stage_encoder == [2, 2, 2]
    assert cm.n_conv_per_stage_decoder == [2, 2] and cm.UNet_base_num_features == 8
    assert cm.unet_max_num_features == 32 and cm.UNet_class_name == 'PlainConvUNet'


def test_resampling_functions_bound_with_kwargs():
    pytest.importorskip('nnunetv2.preprocessing.resampling.utils')
    import numpy as np
    cm = PlansManager(make_plans()).get_configuration('3d_fullres')
    fn = cm.resampling_fn_seg
    assert fn is cm.resampling_fn_seg and fn.keywords == RESAMPLING['resampling_fn_seg_kwargs']
    seg = np.zeros((1, 4, 4, 4), np.float32)
    seg[0, 1:3, 1:3, 1:3] = 1
    out = fn(seg, (4, 8, 8), [1, 1, 1], [1, 0.5, 0.5])
    assert out.shape == (1, 4, 8, 8) and set(np.unique(out)) == {0, 1}
    assert cm.resampling_fn_data.func.__name__ == 'resample_data_or_seg_to_shape'


def test_preprocessor_class_by_name():
    pytest.importorskip('nnunetv2.preprocessing.preprocessors.default_preprocessor')
    cm = PlansManager(make_plans()).get_configuration('3d_fullres')
    assert cm.preprocessor_class.__name__ == 'DefaultPreprocessor'
    bad = make_plans()
    bad['configurations']['3d_fullres']['preprocessor_name'] = 'NoSuchPreprocessor'
    with pytest.raises(RuntimeError, match='NoSuchPreprocessor'):
        PlansManager(bad).get_configuration('3d_fullres').preprocessor_class


def _build(cm, in_ch=1, out_ch=3, **kw):
    return get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                  cm.network_arch_init_kwargs_req_import, in_ch, out_ch, **kw)


def test_network_from_plans_runs():
    cm = PlansManager(make_plans()).get_configuration('3d_fullres')
    net = _build(cm, 2, 3, deep_supervision=False)
    assert type(net).__name__ == 'PlainConvUNet' and net.decoder.deep_supervision is False
    with torch.no_grad():
        out = net(torch.zeros((1, 2, *cm.patch_size)))
    assert out.shape == (1, 3, 16, 32, 32)
    assert _build(cm, deep_supervision=True).decoder.deep_supervision is True


def test_user_edited_plans_custom_network_and_patch(tmp_path, monkeypatch):
    (tmp_path / 'my_custom_nets.py').write_text(textwrap.dedent('''
        import torch.nn as nn
        class TinyNet(nn.Module):
            def __init__(self, input_channels, num_classes, width, conv_op, deep_supervision=False):
                super().__init__()
                self.conv = conv_op(input_channels, num_classes, 1)
                self.width = width
                self.deep_supervision = deep_supervision
            def forward(self, x):
                return self.conv(x)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    plans = make_plans()
    cfg = plans['configurations']['3d_fullres']
    cfg['patch_size'] = [24, 48, 48]
    cfg['architecture'] = {'network_class_name': 'my_custom_nets.TinyNet',
                           'arch_kwargs': {'width': 7, 'conv_op': 'torch.nn.Conv3d'},
                           '_kw_requires_import': ['conv_op']}
    f = tmp_path / 'plans.json'
    f.write_text(json.dumps(plans))
    pm = PlansManager(str(f))
    cm = pm.get_configuration('3d_fullres_bs4')  # inherits the edited architecture
    assert cm.patch_size == [24, 48, 48] and cm.batch_size == 4
    net = _build(cm, 2, 5, deep_supervision=True)
    assert type(net).__name__ == 'TinyNet' and net.width == 7 and net.deep_supervision is True
    assert isinstance(net.conv, torch.nn.Conv3d) and net.conv.in_channels == 2 and net.conv.out_channels == 5


def test_network_class_fallback_search_and_errors(monkeypatch):
    cm = PlansManager(make_plans()).get_configuration('3d_fullres')
    with pytest.warns(UserWarning):
        net = get_network_from_plans('dynamic_network_architectures.architectures.gone.PlainConvUNet',
                                     cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import, 1, 2)
    assert type(net).__name__ == 'PlainConvUNet'
    # the full package walk (imports timm) is the reference's; stub it to keep the test fast
    import nnunetv2.utilities.find_class_by_name as finder
    monkeypatch.setattr(finder, 'recursive_find_python_class', lambda *a, **k: None)
    with pytest.raises(ImportError, match='NoSuchNet'), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        get_network_from_plans('nowhere.NoSuchNet', {}, [], 1, 2)


def test_legacy_plans_are_converted():
    old = {'data_identifier': 'x', 'patch_size': [40, 112, 112], 'UNet_class_name': 'ResidualEncoderUNet',
           'n_conv_per_stage_encoder': [1, 3, 4], 'n_conv_per_stage_decoder': [1, 1], 'UNet_base_num_features': 32,
           'unet_max_num_features': 64, 'conv_kernel_sizes': [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
           'pool_op_kernel_sizes': [[1, 1, 1], [1, 2, 2], [2, 2, 2]], 'num_pool_per_axis': [1, 2, 2], 'batch_size': 2}
    with pytest.warns(UserWarning, match='old nnU-Net plans'):
        cm = ConfigurationManager(deepcopy(old))
    assert list(cm.configuration) == ['data_identifier', 'patch_size', 'batch_size', 'architecture']
    ak = cm.network_arch_init_kwargs
    assert ak['features_per_stage'] == [32, 64, 64] and ak['n_blocks_per_stage'] == [1, 3, 4]
    assert ak['conv_op'] == 'torch.nn.modules.conv.Conv3d' and ak['strides'][2] == [2, 2, 2]
    # the old class path does not exist any more; the fallback search finds the class
    with pytest.warns(UserWarning):
        net = _build(cm, 1, 2, allow_init=False)
    assert type(net).__name__ == 'ResidualEncoderUNet'
    with pytest.raises(RuntimeError, match='Foo'), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ConfigurationManager(dict(old, UNet_class_name='Foo'))
