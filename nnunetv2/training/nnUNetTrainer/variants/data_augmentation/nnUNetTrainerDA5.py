"""nnUNetTrainer with the heavier DA5 augmentation."""
from typing import List, Tuple, Union

import numpy as np
import torch
from batchgeneratorsv2.helpers.scalar_type import RandomScalar
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from nnunetv2.configuration import ANISO_THRESHOLD
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation._da5_pipeline import DA5_SCALING, \
    _gradient_strength, _local_gamma, _local_scale, build_da5_training_transforms

# Third-party trainers that build their own DA5-like pipelines import these three random-parameter callables from
# this module under the names they have in the reference, e.g.
#   from ...nnUNetTrainerDA5 import _brightnessadditive_localgamma_transform_scale, _local_gamma_gamma
_brightnessadditive_localgamma_transform_scale = _local_scale  # (image_shape, axis) -> blob width
_brightness_gradient_additive_max_strength = _gradient_strength  # (image_shape, axis) -> signed strength
_local_gamma_gamma = _local_gamma  # () -> gamma


class nnUNetTrainerDA5(nnUNetTrainer):
    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        patch_size = self.configuration_manager.patch_size
        rotation_for_DA, do_dummy_2d_data_aug, mirror_axes = _setup.rotation_dummy2d_mirroring(patch_size,
                                                                                                ANISO_THRESHOLD)
        # the enlarged crop accounts for DA5's wider scaling range
        initial_patch_size = get_patch_size(patch_size, *([rotation_for_DA] * 3), DA5_SCALING)
        if do_dummy_2d_data_aug:
            initial_patch_size[0] = patch_size[0]
        self.print_to_log_file(f'do_dummy_2d_data_aug: {do_dummy_2d_data_aug}')
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes

    @staticmethod
    def get_training_transforms(
            patch_size: Union[np.ndarray, Tuple[int]],
            rotation_for_DA: RandomScalar,
            deep_supervision_scales: Union[List, Tuple, None],
            mirror_axes: Tuple[int, ...],
            do_dummy_2d_data_aug: bool,
            use_mask_for_norm: List[bool] = None,
            is_cascaded: bool = False,
            foreground_labels: Union[Tuple[int, ...], List[int]] = None,
            regions: List[Union[List[int], Tuple[int, ...], int]] = None,
            ignore_label: int = None,
    ) -> BasicTransform:
        return build_da5_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                             do_dummy_2d_data_aug, use_mask_for_norm, is_cascaded,
                                             foreground_labels, regions, ignore_label)


class nnUNetTrainerDA5ord0(nnUNetTrainerDA5):
    @staticmethod
    def get_training_transforms(
            patch_size: Union[np.ndarray, Tuple[int]],
            rotation_for_DA: RandomScalar,
            deep_supervision_scales: Union[List, Tuple, None],
            mirror_axes: Tuple[int, ...],
            do_dummy_2d_data_aug: bool,
            use_mask_for_norm: List[bool] = None,
            is_cascaded: bool = False,
            foreground_labels: Union[Tuple[int, ...], List[int]] = None,
            regions: List[Union[List[int], Tuple[int, ...], int]] = None,
            ignore_label: int = None,
    ) -> BasicTransform:
        return build_da5_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                             do_dummy_2d_data_aug, use_mask_for_norm, is_cascaded,
                                             foreground_labels, regions, ignore_label, mode_image='nearest',
                                             mode_seg='nearest')


class nnUNetTrainerDA5Segord0(nnUNetTrainerDA5):
    @staticmethod
    def get_training_transforms(
            patch_size: Union[np.ndarray, Tuple[int]],
            rotation_for_DA: RandomScalar,
            deep_supervision_scales: Union[List, Tuple, None],
            mirror_axes: Tuple[int, ...],
            do_dummy_2d_data_aug: bool,
            use_mask_for_norm: List[bool] = None,
            is_cascaded: bool = False,
            foreground_labels: Union[Tuple[int, ...], List[int]] = None,
            regions: List[Union[List[int], Tuple[int, ...], int]] = None,
            ignore_label: int = None,
    ) -> BasicTransform:
        return build_da5_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                             do_dummy_2d_data_aug, use_mask_for_norm, is_cascaded,
                                             foreground_labels, regions, ignore_label, mode_seg='nearest')


class nnUNetTrainerDA5_10epochs(nnUNetTrainerDA5):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.num_epochs = 10
