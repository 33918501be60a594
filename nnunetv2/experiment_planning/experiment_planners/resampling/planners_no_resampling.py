"""A planner whose plans keep every image at its cropped size (no resampling at all)."""
from __future__ import annotations

from typing import List, Tuple, Union

from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import \
    nnUNetPlannerResEncL


class nnUNetPlannerResEncL_noResampling(nnUNetPlannerResEncL):
    """The plans still record the computed target spacing; preprocessing and export just skip resampling."""

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 24,
                 preprocessor_name: str = 'DefaultPreprocessor',
                 plans_name: str = 'nnUNetResEncUNetLPlans_noResampling',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)

    def generate_data_identifier(self, configuration_name: str) -> str:
        return self.plans_identifier + '_' + configuration_name

    def determine_resampling(self, *args, **kwargs):
        from nnunetv2.preprocessing.resampling.no_resampling import no_resampling_hack
        return no_resampling_hack, {}, no_resampling_hack, {}

    def determine_segmentation_softmax_export_fn(self, *args, **kwargs):
        from nnunetv2.preprocessing.resampling.no_resampling import no_resampling_hack
        return no_resampling_hack, {}
