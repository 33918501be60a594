"""Worked examples A and B of spec 02 §3.17/§3.18: planning driven only by a hand-written fingerprint."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.experiment_planning.experiment_planners import planning_rules as rules
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
    nnUNetPlannerResEncM)


def make_planning_dataset(dirs, dataset_id, spacings, shapes, channel_names=('CT',), num_training=None,
                          labels=None, median_rel_size=1.0):
    """Raw dataset with tiny images (only the reader choice reads one) and a fingerprint with the given geometry."""
    name = f'Dataset{dataset_id:03d}_Plan'
    raw = dirs['nnUNet_raw'] / name
    (raw / 'imagesTr').mkdir(parents=True)
    (raw / 'labelsTr').mkdir()
    for i in range(len(shapes)):
        for c in range(len(channel_names)):
            sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32)),
                            str(raw / 'imagesTr' / f'case{i:03d}_{c:04d}.nii.gz'))
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8)), str(raw / 'labelsTr' / f'case{i:03d}.nii.gz'))
    dataset_json = {'channel_names': {str(i): n for i, n in enumerate(channel_names)},
                    'labels': labels or {'background': 0, 'a': 1, 'b': 2},
                    'numTraining': num_training or len(shapes), 'file_ending': '.nii.gz'}
    (raw / 'dataset.json').write_text(json.dumps(dataset_json))
    pp = dirs['nnUNet_preprocessed'] / name
    pp.mkdir()
    fp = {'foreground_intensity_properties_per_channel': {str(i): {'max': 1.0, 'mean': 0.5, 'median': 0.5, 'min': 0.0,
                                                                   'percentile_00_5': 0.0, 'percentile_99_5': 1.0,
                                                                   'std': 0.1} for i in range(len(channel_names))},
          'median_relative_size_after_cropping': median_rel_size,
          'shapes_after_crop': [list(s) for s in shapes], 'spacings': [list(s) for s in spacings]}
    (pp / 'dataset_fingerprint.json').write_text(json.dumps(fp))
    return name


def _estimate(cfg, num_classes=3):
    a = cfg['architecture']
    return ExperimentPlanner.static_estimate_VRAM_usage(tuple(cfg['patch_size']), 1, num_classes,
                                                        a['network_class_name'], a['arch_kwargs'],
                                                        a['_kw_requires_import'])


SPACING_A = (3.0, 0.800000011920929, 0.800000011920929)


def test_worked_example_a_default(nnunet_dirs):
    name = make_planning_dataset(nnunet_dirs, 11, [SPACING_A] * 4, [(40, 100, 100)] * 4)
    plans = ExperimentPlanner(name).plan_experiment()
    assert list(plans['configurations']) == ['2d', '3d_fullres']
    assert plans['transpose_forward'] == [0, 1, 2] and plans['transpose_backward'] == [0, 1, 2]
    assert plans['original_median_shape_after_transp'] == [40, 100, 100]
    f3 = plans['configurations']['3d_fullres']
    assert f3['patch_size'] == [40, 112, 112] and f3['batch_size'] == 2 and f3['batch_dice'] is False
    ak = f3['architecture']['arch_kwargs']
    assert ak['strides'] == [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert ak['kernel_sizes'] == [[1, 3, 3]] + [[3, 3, 3]] * 4
    assert ak['features_per_stage'] == [32, 64, 128, 256, 320]
    assert ak['n_conv_per_stage'] == [2] * 5 and ak['n_conv_per_stage_decoder'] == [2] * 4
    assert _estimate(f3) == 134628480
    f2 = plans['configurations']['2d']
    assert f2['patch_size'] == [112, 112] and f2['batch_size'] == 6 and f2['batch_dice'] is True
    assert f2['architecture']['arch_kwargs']['features_per_stage'] == [32, 64, 128, 256, 512]
    assert _estimate(f2) == 3851008
    assert f2['normalization_schemes'] == ['CTNormalization'] and f2['use_mask_for_norm'] == [False]
    assert f2['data_identifier'] == 'nnUNetPlans_2d' and f3['data_identifier'] == 'nnUNetPlans_3d_fullres'
    on_disk = json.loads((nnunet_dirs['nnUNet_preprocessed'] / name / 'nnUNetPlans.json').read_text())
    assert on_disk == plans
    assert (nnunet_dirs['nnUNet_preprocessed'] / name / 'dataset.json').is_file()


def test_worked_example_a_resenc_m(nnunet_dirs):
    name = make_planning_dataset(nnunet_dirs, 12, [SPACING_A] * 4, [(40, 100, 100)] * 4)
    plans = nnUNetPlannerResEncM(name).plan_experiment()
    f3, f2 = plans['configurations']['3d_fullres'], plans['configurations']['2d']
    assert _estimate(f3) == 184663360 and f3['batch_size'] == 3 and f3['patch_size'] == [40, 112, 112]
    assert _estimate(f2) == 6033664 and f2['batch_size'] == 128
    ak = f3['architecture']['arch_kwargs']
    assert ak['n_blocks_per_stage'] == [1, 3, 4, 6, 6] and ak['n_conv_per_stage_decoder'] == [1, 1, 1, 1]
    assert f3['architecture']['network_class_name'].endswith('unet.ResidualEncoderUNet')
    assert (f2['data_identifier'], f3['data_identifier']) == ('nnUNetPlans_2d', 'nnUNetPlans_3d_fullres')
    assert (nnunet_dirs['nnUNet_preprocessed'] / name / 'nnUNetResEncUNetMPlans.json').is_file()


def test_worked_example_a_anisotropic_mr_target_spacing():
    # second run of example A: z spacings 5, 4, 6, 3.5, 5 with few slices -> 10th percentile of z
    spacings = [(z, 0.72, 0.72) for z in (5, 4, 6, 3.5, 5)]
    shapes = [(30, 400, 400)] * 5
    target = rules.fullres_target_spacing(spacings, shapes, 3)
    assert target[0] == pytest.approx(3.7) and target[1] == pytest.approx(0.72)
    # not enough voxel anisotropy (40*3 >= 100): the median stays
    assert rules.fullres_target_spacing([SPACING_A] * 4, [(40, 100, 100)] * 4)[0] == 3.0
    # the percentile never goes below the in-plane spacing
    t = rules.fullres_target_spacing([(5, 1, 1)] * 6 + [(0.5, 1, 1)] * 4, [(10, 300, 300)] * 10)
    assert t[0] == pytest.approx(1 + 1e-5)


def test_worked_example_b_lowres_and_cascade(nnunet_dirs):
    s = (1.5, 0.7467, 0.7467)
    shapes = [(240, 447 + (i % 2), 441 + (i % 2)) for i in range(30)]
    name = make_planning_dataset(nnunet_dirs, 13, [s] * 30, shapes)
    plans = ExperimentPlanner(name).plan_experiment()
    assert list(plans['configurations']) == ['2d', '3d_lowres', '3d_fullres', '3d_cascade_fullres']
    full, low = plans['configurations']['3d_fullres'], plans['configurations']['3d_lowres']
    assert full['patch_size'] == [80, 160, 160] and full['batch_size'] == 2 and full['batch_dice'] is True
    assert full['architecture']['arch_kwargs']['strides'] == [[1, 1, 1], [1, 2, 2]] + [[2, 2, 2]] * 4
    assert _estimate(full) == 550544000
    assert low['spacing'] == pytest.approx([2.55365, 1.30934, 1.30934], rel=1e-5)
    assert low['median_image_size_in_voxels'] == [141, 255, 252]
    assert low['patch_size'] == [96, 160, 160] and low['batch_size'] == 2 and low['batch_dice'] is False
    assert low['architecture']['arch_kwargs']['strides'] == [[1, 1, 1]] + [[2, 2, 2]] * 4 + [[1, 2, 2]]
    assert low['next_stage'] == '3d_cascade_fullres'
    assert plans['configurations']['3d_cascade_fullres'] == {'inherits_from': '3d_fullres',
                                                             'previous_stage': '3d_lowres'}
    two = plans['configurations']['2d']
    assert two['patch_size'] == [448, 448] and two['batch_size'] == 16
    assert two['architecture']['arch_kwargs']['n_stages'] == 7 and _estimate(two) == 63372288


def test_2d_only_dataset(nnunet_dirs):
    # natural images: spacing (999, 1, 1), one slice -> only '2d' (spec 02 §3.4)
    shapes = [(1, 64, 80), (1, 68, 80), (1, 72, 80)]
    name = make_planning_dataset(nnunet_dirs, 14, [(999, 1, 1)] * 3, shapes, channel_names=('R', 'G', 'B'))
    plans = ExperimentPlanner(name).plan_experiment()
    assert list(plans['configurations']) == ['2d']
    c = plans['configurations']['2d']
    assert c['patch_size'] == [80, 80] and c['batch_size'] == 2 and c['spacing'] == [1.0, 1.0]
    assert c['architecture']['arch_kwargs']['n_stages'] == 5
    assert c['normalization_schemes'] == ['ZScoreNormalization'] * 3
