"""Custom planners, user errors and file handling of the experiment planners."""
from __future__ import annotations

import json
import os
import sys
import warnings

import pytest

from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
    ResEncUNetPlanner, nnUNetPlannerResEncM, nnUNetPlannerResEncXL)

sys.path.insert(0, os.path.dirname(__file__))
from test_planners_worked_examples import SPACING_A, make_planning_dataset  # noqa: E402


@pytest.fixture
def dataset_a(nnunet_dirs):
    return make_planning_dataset(nnunet_dirs, 21, [SPACING_A] * 4, [(40, 100, 100)] * 4)


class MyPlanner(ExperimentPlanner):
    """A user planner written against the reference's constructor."""

    def __init__(self, dataset_name_or_id, gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = 'DefaultPreprocessor', plans_name: str = 'myPlans',
                 overwrite_target_spacing=None, suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        self.UNet_base_num_features = 16

    def determine_fullres_target_spacing(self):
        import numpy as np
        return np.array([3.0, 1.6, 1.6])

    def generate_data_identifier(self, configuration_name: str) -> str:
        return 'custom_' + configuration_name


def test_subclass_hooks_are_used(dataset_a, nnunet_dirs):
    plans = MyPlanner(dataset_a).plan_experiment()
    f3 = plans['configurations']['3d_fullres']
    assert f3['spacing'] == [3.0, 1.6, 1.6]
    assert f3['median_image_size_in_voxels'] == [40.0, 50.0, 50.0]  # resampled to the custom spacing
    assert f3['data_identifier'] == 'custom_3d_fullres' and plans['configurations']['2d']['data_identifier'] == 'custom_2d'
    assert f3['architecture']['arch_kwargs']['features_per_stage'][0] == 16
    assert plans['experiment_planner_used'] == 'MyPlanner' and plans['plans_name'] == 'myPlans'
    assert (nnunet_dirs['nnUNet_preprocessed'] / dataset_a / 'myPlans.json').is_file()


def test_missing_fingerprint_is_a_user_error(nnunet_dirs):
    name = make_planning_dataset(nnunet_dirs, 22, [SPACING_A] * 2, [(40, 100, 100)] * 2)
    os.remove(nnunet_dirs['nnUNet_preprocessed'] / name / 'dataset_fingerprint.json')
    with pytest.raises(UserError, match='nnUNetv2_extract_fingerprint -d 22'):
        ExperimentPlanner(22)


@pytest.mark.parametrize('bad', [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0], ['a', 'b', 'c'], [1.0, 0.0, 1.0]])
def test_bad_overwrite_target_spacing(dataset_a, bad):
    with pytest.raises(UserError, match='overwrite_target_spacing'):
        ExperimentPlanner(dataset_a, overwrite_target_spacing=bad)


def test_overwrite_target_spacing_drives_transpose_and_2d(dataset_a):
    plans = ExperimentPlanner(dataset_a, overwrite_target_spacing=[0.8, 3.0, 0.8]).plan_experiment()
    assert plans['transpose_forward'] == [1, 0, 2] and plans['transpose_backward'] == [1, 0, 2]
    assert plans['configurations']['3d_fullres']['spacing'] == [3.0, 0.8, 0.8]
    assert plans['configurations']['2d']['spacing'] == [0.8, 0.8]


def test_replanning_keeps_user_configurations(dataset_a, nnunet_dirs):
    plans_file = nnunet_dirs['nnUNet_preprocessed'] / dataset_a / 'nnUNetPlans.json'
    ExperimentPlanner(dataset_a).plan_experiment()
    plans = json.loads(plans_file.read_text())
    plans['configurations']['3d_fullres_bs4'] = {'inherits_from': '3d_fullres', 'batch_size': 4}
    plans['configurations']['2d']['batch_size'] = 99
    plans_file.write_text(json.dumps(plans))
    ExperimentPlanner(dataset_a).plan_experiment()
    replanned = json.loads(plans_file.read_text())
    assert list(replanned['configurations']) == ['2d', '3d_fullres', '3d_fullres_bs4']
    assert replanned['configurations']['2d']['batch_size'] == 6  # planned ones are replaced
    assert not [f for f in os.listdir(plans_file.parent) if f.startswith('.nnunet_tmp')]


def test_raw_splits_file_is_copied_and_checked(dataset_a, nnunet_dirs):
    raw_splits = nnunet_dirs['nnUNet_raw'] / dataset_a / 'splits_final.json'
    splits = [{'train': ['case000', 'case001'], 'val': ['case002', 'case003']}]
    raw_splits.write_text(json.dumps(splits))
    ExperimentPlanner(dataset_a)
    pp_splits = nnunet_dirs['nnUNet_preprocessed'] / dataset_a / 'splits_final.json'
    assert json.loads(pp_splits.read_text()) == splits
    pp_splits.write_text(json.dumps([{'train': ['case000'], 'val': ['case001']}]))
    with pytest.raises(UserError, match='fold 0'):
        ExperimentPlanner(dataset_a)


def test_resenc_presets_constants_and_warning(dataset_a):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        m = nnUNetPlannerResEncM(dataset_a)
    assert (m.plans_identifier, m.UNet_vram_target_GB, m.max_dataset_covered) == ('nnUNetResEncUNetMPlans', 8, 1)
    assert m.generate_data_identifier('3d_lowres') == 'nnUNetResEncUNetMPlans_3d_lowres'
    assert m.generate_data_identifier('3d_fullres') == 'nnUNetPlans_3d_fullres'
    with pytest.warns(UserWarning):
        xl = nnUNetPlannerResEncXL(dataset_a, gpu_memory_target_in_gb=20)
    assert xl.UNet_vram_target_GB == 20 and xl.UNet_reference_val_corresp_GB == 40
    assert xl.UNet_reference_val_3d == 3600000000 and xl.plans_identifier == 'nnUNetResEncUNetXLPlans'
    base = ResEncUNetPlanner(dataset_a)
    assert base.max_dataset_covered == 0.05 and base.plans_identifier == 'nnUNetResEncUNetPlans'


def test_planner_found_by_name():
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    for name in ('ExperimentPlanner', 'nnUNetPlannerResEncL', 'ResEncUNetPlanner'):
        cls = PlansManager({'experiment_planner_used': name}).experiment_planner_class
        assert cls.__name__ == name and issubclass(cls, ExperimentPlanner)


def test_torch_and_no_resampling_planners(dataset_a):
    pytest.importorskip('nnunetv2.preprocessing.resampling.resample_torch')
    pytest.importorskip('nnunetv2.preprocessing.resampling.no_resampling')
    from nnunetv2.experiment_planning.experiment_planners.resampling.planners_no_resampling import (
        nnUNetPlannerResEncL_noResampling)
    from nnunetv2.experiment_planning.experiment_planners.resampling.resample_with_torch import (
        nnUNetPlanner_torchres, nnUNetPlannerResEncL_torchres_sepz)
    c = nnUNetPlanner_torchres(dataset_a).plan_experiment()['configurations']['3d_fullres']
    assert c['data_identifier'] == 'nnUNetPlans_torchres_3d_fullres'
    assert c['resampling_fn_data'] == 'resample_torch_fornnunet'
    assert c['resampling_fn_seg_kwargs'] == {'is_seg': True, 'force_separate_z': False,
                                             'memefficient_seg_resampling': False}
    c = nnUNetPlannerResEncL_torchres_sepz(dataset_a).plan_experiment()['configurations']['2d']
    assert c['resampling_fn_probabilities_kwargs']['separate_z_anisotropy_threshold'] == 3
    assert c['data_identifier'] == 'nnUNetResEncUNetLPlans_torchres_sepz_2d'
    c = nnUNetPlannerResEncL_noResampling(dataset_a).plan_experiment()['configurations']['2d']
    assert c['resampling_fn_data'] == c['resampling_fn_probabilities'] == 'no_resampling_hack'
    assert c['resampling_fn_data_kwargs'] == {}


def _network_subclass_taking_kwargs():
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

    class KwargsResEncUNet(ResidualEncoderUNet):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
    return KwargsResEncUNet


KwargsResEncUNet = _network_subclass_taking_kwargs()


def test_resenc_planner_with_a_kwargs_network_subclass_writes_n_blocks_per_stage(dataset_a):
    """A ResEnc planner writes n_blocks_per_stage for a network class whose signature is (*args, **kwargs), as the
    reference does (it used to pick n_conv_per_stage from the signature and then fail to build the network)."""

    class Planner(ResEncUNetPlanner):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.UNet_class = KwargsResEncUNet

    plans = Planner(dataset_a, plans_name='kwargsNet').plan_experiment()
    ak = plans['configurations']['3d_fullres']['architecture']['arch_kwargs']
    assert 'n_blocks_per_stage' in ak and 'n_conv_per_stage' not in ak
    assert plans['configurations']['3d_fullres']['architecture']['network_class_name'].endswith('.KwargsResEncUNet')
