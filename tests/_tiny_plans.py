"""Small one-channel plans with a 3d_fullres configuration (patch 8x16x16): enough for the preprocessor, no
network. Shared by the tests of the preprocessor and of prediction's preprocessing workers; ``tiny_unet_plans``
adds a real tiny network for the tests of clients' usage patterns; ``tiff_label_plans_and_dataset`` is what
the TIFF segmentation writers of ensembling and postprocessing read."""
from __future__ import annotations

import copy
from typing import Optional, Sequence

_UNIT_INTENSITIES = {'max': 1., 'mean': .5, 'median': .5, 'min': 0., 'percentile_00_5': 0., 'percentile_99_5': 1.,
                     'std': .3}


def tiny_plans(dataset_name: str = 'Dataset986_Lifetime', spacing: Sequence[float] = (3.0, 0.8, 0.8),
               normalization: str = 'ZScoreNormalization', intensities: Optional[dict] = None) -> dict:
    resampling = {'resampling_fn_data': 'resample_data_or_seg_to_shape',
                  'resampling_fn_data_kwargs': {'is_seg': False, 'order': 3, 'order_z': 0, 'force_separate_z': None},
                  'resampling_fn_seg': 'resample_data_or_seg_to_shape',
                  'resampling_fn_seg_kwargs': {'is_seg': True, 'order': 1, 'order_z': 0, 'force_separate_z': None},
                  'resampling_fn_probabilities': 'resample_data_or_seg_to_shape',
                  'resampling_fn_probabilities_kwargs': {'is_seg': False, 'order': 1, 'order_z': 0,
                                                         'force_separate_z': None}}
    config = {'data_identifier': 'nnUNetPlans_3d_fullres', 'preprocessor_name': 'DefaultPreprocessor',
              'batch_size': 2, 'patch_size': [8, 16, 16], 'median_image_size_in_voxels': [8, 16, 16],
              'spacing': list(spacing), 'normalization_schemes': [normalization], 'use_mask_for_norm': [False],
              'batch_dice': True,
              'architecture': {'network_class_name': 'x', 'arch_kwargs': {}, '_kw_requires_import': []},
              **resampling}
    return {'dataset_name': dataset_name, 'plans_name': 'nnUNetPlans',
            'original_median_spacing_after_transp': [3, .8, .8], 'original_median_shape_after_transp': [8, 16, 16],
            'image_reader_writer': 'SimpleITKIO', 'transpose_forward': [0, 1, 2], 'transpose_backward': [0, 1, 2],
            'configurations': {'3d_fullres': config}, 'experiment_planner_used': 'ExperimentPlanner',
            'label_manager': 'LabelManager',
            'foreground_intensity_properties_per_channel': {'0': dict(intensities or _UNIT_INTENSITIES)}}


# a three-stage PlainConvUNet of 4..16 features: a real network that predicts a 16^3 patch in milliseconds
TINY_PLAIN_UNET = {
    'network_class_name': 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
    'arch_kwargs': {'n_stages': 3, 'features_per_stage': [4, 8, 16], 'conv_op': 'torch.nn.modules.conv.Conv3d',
                    'kernel_sizes': [[3, 3, 3]] * 3, 'strides': [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                    'n_conv_per_stage': [1, 1, 1], 'n_conv_per_stage_decoder': [1, 1], 'conv_bias': True,
                    'norm_op': 'torch.nn.modules.instancenorm.InstanceNorm3d',
                    'norm_op_kwargs': {'eps': 1e-05, 'affine': True}, 'dropout_op': None, 'dropout_op_kwargs': None,
                    'nonlin': 'torch.nn.LeakyReLU', 'nonlin_kwargs': {'inplace': True}},
    '_kw_requires_import': ['conv_op', 'norm_op', 'dropout_op', 'nonlin']}


def tiny_unet_plans(dataset_name: str, spacing: Sequence[float] = (2.0, 2.0, 2.0),
                    normalization: str = 'ZScoreNormalization', intensities: Optional[dict] = None) -> dict:
    """``tiny_plans`` with TINY_PLAIN_UNET as its network and a 16^3 patch: a model folder that clients' usage
    patterns can be run against."""
    plans = tiny_plans(dataset_name, spacing, normalization, intensities)
    plans['original_median_spacing_after_transp'] = list(spacing)
    plans['original_median_shape_after_transp'] = [24, 24, 24]
    plans['configurations']['3d_fullres'].update(
        patch_size=[16, 16, 16], median_image_size_in_voxels=[24, 24, 24], batch_dice=False,
        architecture=copy.deepcopy(TINY_PLAIN_UNET))
    return plans


def write_tiny_model(folder, dataset_name: str, labels: dict, seed: int, fold='0') -> None:
    """A trained-model folder (plans.json, dataset.json, fold_<fold>/checkpoint_final.pth) of ``tiny_unet_plans``
    with one input channel and seeded random weights, as nnUNetv2_train would leave it."""
    import json
    from pathlib import Path

    import torch

    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    folder = Path(folder)
    (folder / f'fold_{fold}').mkdir(parents=True)
    plans = tiny_unet_plans(dataset_name)
    dataset_json = {'channel_names': {'0': 'MRI'}, 'labels': labels, 'numTraining': 4, 'file_ending': '.nii.gz'}
    (folder / 'plans.json').write_text(json.dumps(plans))
    (folder / 'dataset.json').write_text(json.dumps(dataset_json))
    cm = PlansManager(plans).get_configuration('3d_fullres')
    torch.manual_seed(seed)
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, len(labels), allow_init=True,
                                 deep_supervision=True)
    torch.save({'network_weights': net.state_dict(), 'trainer_name': 'nnUNetTrainer',
                'init_args': {'plans': plans, 'configuration': '3d_fullres', 'fold': fold if fold == 'all' else
                              int(fold), 'dataset_json': dataset_json, 'device': 'cpu'},
                'inference_allowed_mirroring_axes': (0, 1, 2), 'current_epoch': 1000},
               folder / f'fold_{fold}' / 'checkpoint_final.pth')


def tiff_label_plans_and_dataset() -> tuple:
    """Plans without configurations and a one-label dataset.json for .tif files: all that writing segmentations
    (ensembling, postprocessing) reads. Fresh dicts on every call."""
    plans = {"dataset_name": "Dataset999_T", "plans_name": "nnUNetPlans", "image_reader_writer": "Tiff3DIO",
             "label_manager": "LabelManager", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "configurations": {}}
    dataset = {"channel_names": {"0": "x"}, "labels": {"background": 0, "a": 1}, "numTraining": 1,
               "file_ending": ".tif"}
    return plans, dataset
