"""The heavier "DA5" augmentation pipeline, built from batchgeneratorsv2 transforms."""
from collections import Counter
from typing import List, Tuple, Union

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.intensity.brightness import BrightnessAdditiveTransform
from batchgeneratorsv2.transforms.intensity.contrast import BGContrast, ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.local.brightness_gradient import BrightnessGradientAdditiveTransform
from batchgeneratorsv2.transforms.local.local_gamma import LocalGammaTransform
from batchgeneratorsv2.transforms.noise.blank_rectangle import BlankRectangleTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.noise.median_filter import MedianFilterTransform
from batchgeneratorsv2.transforms.noise.sharpen import SharpeningTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.rot90 import Rot90Transform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.spatial.transpose import TransposeAxesTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.nnunet_masking import MaskImageTransform
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
from batchgeneratorsv2.transforms.utils.random import OneOfTransform, RandomTransform

from nnunetv2.training.data_augmentation.pipelines import _label_transforms

DA5_SCALING = (0.7, 1.43)


def _local_scale(image_shape, dim):
    """Width of a local intensity blob along axis ``dim``: log-uniform between n//6 and n voxels."""
    n = image_shape[dim]
    return np.exp(np.random.uniform(np.log(max(1, n // 6)), np.log(n)))


def _gradient_strength(*args):
    return np.random.uniform(-5, -1) if np.random.uniform() < 0.5 else np.random.uniform(1, 5)


def _local_gamma(*args):
    return np.random.uniform(0.01, 0.8) if np.random.uniform() < 0.5 else np.random.uniform(1.5, 4)


def _equal_length_axes(patch_size) -> List[int]:
    """Axes whose length occurs most often, if more than one axis has it (these can be rotated/transposed)."""
    counts = Counter(patch_size)
    length, count = counts.most_common(1)[0]
    return [i for i, p in enumerate(patch_size) if p == length] if count > 1 else []


def build_da5_training_transforms(
        patch_size: Union[np.ndarray, Tuple[int]], rotation_for_DA, deep_supervision_scales, mirror_axes,
        do_dummy_2d_data_aug: bool, use_mask_for_norm=None, is_cascaded: bool = False, foreground_labels=None,
        regions=None, ignore_label=None, mode_image: str = 'bilinear', mode_seg: str = 'bilinear'
) -> BasicTransform:
    transforms: List[BasicTransform] = []
    patch_size = tuple(int(i) for i in patch_size)
    if do_dummy_2d_data_aug:
        ignore_axes = (0,)
        transforms.append(Convert3DTo2DTransform())
        spatial_patch = patch_size[1:]
    else:
        ignore_axes = None
        spatial_patch = patch_size
    transforms.append(SpatialTransform(
        spatial_patch, patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=0, p_rotation=0.4,
        rotation=rotation_for_DA, p_rot_per_axis=0.5, p_scaling=0.2, scaling=DA5_SCALING,
        p_synchronize_scaling_across_axes=0, bg_style_seg_sampling=False, border_mode_seg='constant',
        padding_value_seg=-1, mode_image=mode_image, mode_seg=mode_seg))
    if do_dummy_2d_data_aug:
        transforms.append(Convert2DTo3DTransform())

    valid_axes = _equal_length_axes(patch_size)
    if valid_axes:
        transforms.append(RandomTransform(Rot90Transform(
            num_axis_combinations=1, num_rot_per_combination=(0, 1, 2, 3), allowed_axes=set(valid_axes)),
            apply_probability=0.5))
        transforms.append(RandomTransform(TransposeAxesTransform(allowed_axes=set(valid_axes)),
                                          apply_probability=0.5))

    transforms.append(OneOfTransform([
        RandomTransform(MedianFilterTransform((2, 8), p_same_for_each_channel=0, p_per_channel=0.5),
                        apply_probability=0.2),
        RandomTransform(GaussianBlurTransform(blur_sigma=(0.3, 1.5), synchronize_channels=False,
                                              synchronize_axes=True, p_per_channel=0.5, benchmark=True),
                        apply_probability=0.2)]))
    transforms.append(RandomTransform(GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_channel=1,
                                                             synchronize_channels=True), apply_probability=0.1))
    transforms.append(RandomTransform(BrightnessAdditiveTransform(mu=0, sigma=0.5, synchronize_channels=False,
                                                                  p_per_channel=0.5), apply_probability=0.1))
    transforms.append(OneOfTransform([
        RandomTransform(ContrastTransform(contrast_range=BGContrast((0.5, 2)), preserve_range=True,
                                          synchronize_channels=False, p_per_channel=0.5), apply_probability=0.2),
        RandomTransform(ContrastTransform(contrast_range=BGContrast((0.5, 2)), preserve_range=False,
                                          synchronize_channels=False, p_per_channel=0.5), apply_probability=0.2)]))
    transforms.append(RandomTransform(SimulateLowResolutionTransform(
        scale=(0.25, 1), synchronize_channels=False, synchronize_axes=True, ignore_axes=ignore_axes,
        allowed_channels=None, p_per_channel=0.5), apply_probability=0.15))
    for _ in range(2):  # both invert the image (as in the reference)
        transforms.append(RandomTransform(GammaTransform(
            gamma=BGContrast((0.7, 1.5)), p_invert_image=1, synchronize_channels=False, p_per_channel=1,
            p_retain_stats=1), apply_probability=0.1))
    if mirror_axes is not None and len(mirror_axes) > 0:
        transforms.append(MirrorTransform(allowed_axes=mirror_axes))

    transforms.append(RandomTransform(BlankRectangleTransform(
        [[max(1, p // 10), p // 3] for p in patch_size], rectangle_value=torch.mean, num_rectangles=(1, 5),
        force_square=False, p_per_channel=0.5), apply_probability=0.4))
    transforms.append(RandomTransform(BrightnessGradientAdditiveTransform(
        _local_scale, (-0.5, 1.5), max_strength=_gradient_strength, same_for_all_channels=False,
        mean_centered=False, clip_intensities=False, p_per_channel=0.5), apply_probability=0.3))
    transforms.append(RandomTransform(LocalGammaTransform(
        _local_scale, (-0.5, 1.5), _local_gamma, same_for_all_channels=False, p_per_channel=0.5),
        apply_probability=0.3))
    transforms.append(RandomTransform(SharpeningTransform(strength=(0.1, 1), p_same_for_each_channel=0,
                                                          p_per_channel=0.5), apply_probability=0.2))

    if use_mask_for_norm is not None and any(use_mask_for_norm):
        transforms.append(MaskImageTransform(
            apply_to_channels=[i for i in range(len(use_mask_for_norm)) if use_mask_for_norm[i]],
            channel_idx_in_seg=0, set_outside_to=0))
    tail = ComposeTransforms(_label_transforms(deep_supervision_scales, is_cascaded, foreground_labels, regions,
                                               ignore_label, perturb_cascade=True))
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation._pipeline_edits import set_cascade_p_per_label
    set_cascade_p_per_label(tail, 1)
    transforms += tail.transforms
    return ComposeTransforms(transforms)
