"""Small one-channel plans with a 3d_fullres configuration (patch 8x16x16): enough for the preprocessor, no
network. Shared by the tests of the preprocessor and of prediction's preprocessing workers."""
from __future__ import annotations

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
