"""Residual-encoder U-Net planners: ResEncUNetPlanner and the M / L / XL presets.

They differ from the default planner in the network (ResidualEncoderUNet with 1,3,4,6,6,... blocks per stage and
one conv per decoder stage), the reference VRAM values, the shrink test (the estimate is compared directly with the
reference) and, for the presets, a batch-size cap of the whole dataset instead of 5 %. They share the default
planner's 2d / 3d_fullres preprocessed data (same spacing and resampling), hence the hard-wired data identifiers.
"""
from __future__ import annotations

import warnings
from typing import List, Tuple, Union

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.feature_map_size import RESIDUAL_ENCODER_UNET


class ResEncUNetPlanner(ExperimentPlanner):
    _unet_counts_key = 'n_blocks_per_stage'

    def __init__(self, dataset_name_or_id: Union[str, int],
                 gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = 'DefaultPreprocessor', plans_name: str = 'nnUNetResEncUNetPlans',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        self.UNet_class = RESIDUAL_ENCODER_UNET  # imported only if read
        self.UNet_reference_val_3d = 680000000
        self.UNet_reference_val_2d = 135000000
        self.UNet_blocks_per_stage_encoder = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
        self.UNet_blocks_per_stage_decoder = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)

    def generate_data_identifier(self, configuration_name: str) -> str:
        # same spacing and resampling as the default planner for these two: reuse its preprocessed data
        if configuration_name == '2d' or configuration_name == '3d_fullres':
            return 'nnUNetPlans_' + configuration_name
        return self.plans_identifier + '_' + configuration_name

    def _shrink_needed(self, estimate: float, ref_bs: int, reference: float) -> bool:
        return estimate > reference


class _ResEncPreset(ResEncUNetPlanner):
    """Common body of the M/L/XL presets: fixed reference values for a given GPU size, whole-dataset batch cap."""
    _preset_gb = 8
    _preset_ref_3d = 680000000
    _preset_ref_2d = 135000000

    def _apply_preset(self, gpu_memory_target_in_gb: float):
        if gpu_memory_target_in_gb != self._preset_gb:
            warnings.warn(f"WARNING: You are running {self.__class__.__name__} with a non-standard "
                          f"gpu_memory_target_in_gb ({gpu_memory_target_in_gb} instead of {self._preset_gb}). "
                          f"Expected {self._preset_gb} GB. The plans will differ from the preset's; use a custom "
                          f"-overwrite_plans_name to avoid overwriting the preset's plans.")
        self.UNet_vram_target_GB = gpu_memory_target_in_gb
        self.UNet_reference_val_corresp_GB = self._preset_gb
        self.UNet_reference_val_3d = self._preset_ref_3d
        self.UNet_reference_val_2d = self._preset_ref_2d
        self.max_dataset_covered = 1


class nnUNetPlannerResEncM(_ResEncPreset):
    """Target: 9-11 GB VRAM."""

    def __init__(self, dataset_name_or_id: Union[str, int],
                 gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = 'DefaultPreprocessor', plans_name: str = 'nnUNetResEncUNetMPlans',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        self._apply_preset(gpu_memory_target_in_gb)


class nnUNetPlannerResEncL(_ResEncPreset):
    """Target: 24 GB VRAM."""
    _preset_gb = 24
    _preset_ref_3d = 2100000000
    _preset_ref_2d = 380000000

    def __init__(self, dataset_name_or_id: Union[str, int],
                 gpu_memory_target_in_gb: float = 24,
                 preprocessor_name: str = 'DefaultPreprocessor', plans_name: str = 'nnUNetResEncUNetLPlans',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        self._apply_preset(gpu_memory_target_in_gb)


class nnUNetPlannerResEncXL(_ResEncPreset):
    """Target: 40 GB VRAM."""
    _preset_gb = 40
    _preset_ref_3d = 3600000000
    _preset_ref_2d = 560000000

    def __init__(self, dataset_name_or_id: Union[str, int],
                 gpu_memory_target_in_gb: float = 40,
                 preprocessor_name: str = 'DefaultPreprocessor', plans_name: str = 'nnUNetResEncUNetXLPlans',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        self._apply_preset(gpu_memory_target_in_gb)
