"""Planners that write the torch resampling function into the plans.

Same planning as their bases; only the resampling entries change, and their data is not shared with the default
planner's (own data identifiers ``<plans>_<configuration>``).
"""
from __future__ import annotations

from typing import List, Tuple, Union

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import \
    nnUNetPlannerResEncL


def _torch_resampling(separate_z: bool):
    from nnunetv2.preprocessing.resampling.resample_torch import resample_torch_fornnunet
    if separate_z:
        extra = {"force_separate_z": None, "memefficient_seg_resampling": False,
                 "separate_z_anisotropy_threshold": 3}
    else:
        extra = {"force_separate_z": False, "memefficient_seg_resampling": False}
    return resample_torch_fornnunet, {"is_seg": False, **extra}, resample_torch_fornnunet, {"is_seg": True, **extra}


class _TorchResamplingMixin:
    _separate_z = False

    def generate_data_identifier(self, configuration_name: str) -> str:
        return self.plans_identifier + '_' + configuration_name

    def determine_resampling(self, *args, **kwargs):
        return _torch_resampling(self._separate_z)

    def determine_segmentation_softmax_export_fn(self, *args, **kwargs):
        fn, kwargs_data, _, _ = _torch_resampling(self._separate_z)
        return fn, kwargs_data


class nnUNetPlannerResEncL_torchres(_TorchResamplingMixin, nnUNetPlannerResEncL):
    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 24,
                 preprocessor_name: str = 'DefaultPreprocessor',
                 plans_name: str = 'nnUNetResEncUNetLPlans_torchres',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)


class nnUNetPlannerResEncL_torchres_sepz(_TorchResamplingMixin, nnUNetPlannerResEncL):
    _separate_z = True

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 24,
                 preprocessor_name: str = 'DefaultPreprocessor',
                 plans_name: str = 'nnUNetResEncUNetLPlans_torchres_sepz',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)


class nnUNetPlanner_torchres(_TorchResamplingMixin, ExperimentPlanner):
    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = 'DefaultPreprocessor', plans_name: str = 'nnUNetPlans_torchres',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
