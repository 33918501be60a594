"""``ExperimentPlanner.plan_experiment`` step by step: which configurations to plan
and how they are put together. Each step calls the planner's overridable hooks."""
from __future__ import annotations

from copy import deepcopy

import numpy as np

from nnunetv2.experiment_planning.experiment_planners import planning_rules as rules

LOWRES_SPACING_INCREASE = 1.03


def _plan_3d(planner, fullres_spacing_T: np.ndarray, new_median_T: np.ndarray, n_vox: float, cache: dict):
    """3d_fullres plus, when the images are much larger than the fullres patch, a coarser 3d_lowres."""
    plan_fullres = planner.get_plans_for_configuration(fullres_spacing_T, new_median_T,
                                                       planner.generate_data_identifier('3d_fullres'), n_vox, cache)
    median_num_voxels = np.prod(new_median_T, dtype=np.float64)
    median_num_voxels_full = median_num_voxels
    num_voxels_in_patch = np.prod(plan_fullres['patch_size'], dtype=np.int64)
    lowres_spacing = deepcopy(plan_fullres['spacing'])
    lowres_spacing = np.array(lowres_spacing, dtype=np.float64)
    plan_lowres = None

    while num_voxels_in_patch / median_num_voxels < planner.lowres_creation_threshold:
        lowres_spacing = rules.next_lowres_spacing(lowres_spacing, LOWRES_SPACING_INCREASE)
        lowres_median = plan_fullres['spacing'] / lowres_spacing * new_median_T
        median_num_voxels = np.prod(lowres_median, dtype=np.float64)
        plan_lowres = planner.get_plans_for_configuration(
            lowres_spacing, tuple([round(i) for i in lowres_median]), planner.generate_data_identifier('3d_lowres'),
            float(np.prod(median_num_voxels) * planner.dataset_json['numTraining']), cache)
        num_voxels_in_patch = np.prod(plan_lowres['patch_size'], dtype=np.int64)
        print(f'Attempting to find 3d_lowres config. \nCurrent spacing: {lowres_spacing}. \n'
              f'Current patch size: {plan_lowres["patch_size"]}. \nCurrent median shape: {lowres_median}')

    if median_num_voxels_full / median_num_voxels < 2:
        # the lowres images would not be much smaller than the fullres ones: a cascade would not help
        print(f'Dropping 3d_lowres config because the image size difference to 3d_fullres is too small. '
              f'3d_fullres: {new_median_T}, '
              f'3d_lowres: {[round(i) for i in plan_fullres["spacing"] / lowres_spacing * new_median_T]}')
        plan_lowres = None
    if plan_lowres is not None:
        plan_lowres['batch_dice'] = False
        plan_fullres['batch_dice'] = True
    else:
        plan_fullres['batch_dice'] = False
    return plan_fullres, plan_lowres


def plan_experiment_with(planner) -> dict:
    fingerprint = planner.dataset_fingerprint
    transpose_forward, transpose_backward = planner.determine_transpose()

    fullres_spacing = planner.determine_fullres_target_spacing()
    fullres_spacing_T = fullres_spacing[transpose_forward]

    new_shapes = [rules.compute_new_shape(shape, spacing, fullres_spacing)
                  for spacing, shape in zip(fingerprint['spacings'], fingerprint['shapes_after_crop'])]
    new_median_T = np.median(new_shapes, 0)[transpose_forward]
    n_vox = float(np.prod(new_median_T, dtype=np.float64) * planner.dataset_json['numTraining'])

    cache = {}  # VRAM estimates shared by all configurations of this run
    plan_fullres = plan_lowres = None
    if new_median_T[0] != 1:  # a 2D dataset has a single slice: no 3D configuration
        plan_fullres, plan_lowres = _plan_3d(planner, fullres_spacing_T, new_median_T, n_vox, cache)

    plan_2d = planner.get_plans_for_configuration(fullres_spacing_T[1:], new_median_T[1:],
                                                  planner.generate_data_identifier('2d'), n_vox, cache)
    plan_2d['batch_dice'] = True
    print('2D U-Net configuration:')
    print(plan_2d)
    print()

    median_spacing = np.median(fingerprint['spacings'], 0)[transpose_forward]
    median_shape = np.median(fingerprint['shapes_after_crop'], 0)[transpose_forward]

    planner._copy_dataset_json()

    plans = {
        'dataset_name': planner.dataset_name,
        'plans_name': planner.plans_identifier,
        'original_median_spacing_after_transp': [float(i) for i in median_spacing],
        'original_median_shape_after_transp': [int(round(i)) for i in median_shape],
        'image_reader_writer': planner.determine_reader_writer().__name__,
        'transpose_forward': [int(i) for i in transpose_forward],
        'transpose_backward': [int(i) for i in transpose_backward],
        'configurations': {'2d': plan_2d},
        'experiment_planner_used': planner.__class__.__name__,
        'label_manager': 'LabelManager',
        'foreground_intensity_properties_per_channel': fingerprint['foreground_intensity_properties_per_channel'],
    }
    if plan_lowres is not None:
        plans['configurations']['3d_lowres'] = plan_lowres
        plans['configurations']['3d_lowres']['next_stage'] = '3d_cascade_fullres'
        print('3D lowres U-Net configuration:')
        print(plan_lowres)
        print()
    if plan_fullres is not None:
        plans['configurations']['3d_fullres'] = plan_fullres
        print('3D fullres U-Net configuration:')
        print(plan_fullres)
        print()
        if plan_lowres is not None:
            plans['configurations']['3d_cascade_fullres'] = {
                'inherits_from': '3d_fullres',
                'previous_stage': '3d_lowres',
            }

    planner.plans = plans
    planner.save_plans(plans)
    return plans
