"""The small models the client trials fabricate (their real weights are downloads this machine cannot reach):
plans with one 3-D configuration and a four-stage U-Net of 8..64 features, in the layout a trained model folder's
plans.json has, and seeded random weights saved as a checkpoint. Shared by _totalsegmentator_fixture.py,
_hdbet_fixture.py, _mrsegmentator_fixture.py, _nninteractive_fixture.py, _segforge_fixture.py and others."""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence, Union

_NETWORKS = "dynamic_network_architectures.architectures.unet."


def small_unet(kind: str = "plain", conv_per_decoder_stage: int = 2, stages: int = 4) -> dict:
    """A PlainConvUNet (``plain``; two convolutions per encoder stage) or ResidualEncoderUNet (``resenc``; 1, 2, 2, 2
    blocks) of ``stages`` stages of 8, 16, 32, 64 features, 3x3x3 kernels, instance norm, leaky ReLU."""
    kwargs = {"n_stages": stages, "features_per_stage": [8, 16, 32, 64][:stages],
              "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * stages,
              "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1), "conv_bias": True,
              "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
              "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
              "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
              "n_conv_per_stage_decoder": [conv_per_decoder_stage] * (stages - 1)}
    if kind == "resenc":
        name, kwargs["n_blocks_per_stage"] = "ResidualEncoderUNet", [1, 2, 2, 2][:stages]
    else:
        name, kwargs["n_conv_per_stage"] = "PlainConvUNet", [2] * stages
    return {"network_class_name": _NETWORKS + name, "arch_kwargs": kwargs,
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def _interpolation(is_seg: bool, order: int) -> dict:
    return {"is_seg": is_seg, "order": order, "order_z": 0, "force_separate_z": None}


def single_configuration_plans(dataset_name: str, architecture: dict, patch_size: Sequence[int],
                               spacing: Sequence[float], normalization: Union[str, Sequence[str]],
                               intensities: Union[dict, Sequence[dict]],
                               original_median_spacing: Sequence[float], original_median_shape: Sequence[int],
                               median_image_size: Sequence[int], configuration: str = "3d_fullres",
                               plans_name: str = "nnUNetPlans", planner: str = "ExperimentPlanner",
                               reader_writer: str = "SimpleITKIO", transpose_forward: Sequence[int] = (0, 1, 2),
                               transpose_backward: Optional[Sequence[int]] = None,
                               batch_dice: bool = False, data_identifier: str = "nnUNetPlans_3d_fullres") -> dict:
    """plans.json of a model with the one configuration ``configuration`` (default preprocessor and resampling:
    cubic data, linear segmentations and probabilities). One channel, or one per entry of ``normalization`` and
    ``intensities`` where they are lists."""
    schemes = [normalization] if isinstance(normalization, str) else list(normalization)
    per_channel = [intensities] if isinstance(intensities, dict) else list(intensities)
    if transpose_backward is None:
        transpose_backward = [list(transpose_forward).index(i) for i in range(len(transpose_forward))]
    return {
        "dataset_name": dataset_name, "plans_name": plans_name,
        "original_median_spacing_after_transp": list(original_median_spacing),
        "original_median_shape_after_transp": list(original_median_shape),
        "image_reader_writer": reader_writer, "transpose_forward": list(transpose_forward),
        "transpose_backward": list(transpose_backward),
        "configurations": {configuration: {
            "data_identifier": data_identifier, "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": list(patch_size), "median_image_size_in_voxels": list(median_image_size),
            "spacing": list(spacing), "normalization_schemes": schemes, "use_mask_for_norm": [False] * len(schemes),
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": _interpolation(False, 3), "resampling_fn_seg_kwargs": _interpolation(True, 1),
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": _interpolation(False, 1),
            "architecture": architecture, "batch_dice": batch_dice}},
        "experiment_planner_used": planner, "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): dict(p) for c, p in enumerate(per_channel)},
    }


def intensities(min_: float, max_: float, mean: float, median: float, std: float, p00_5: float,
                p99_5: float) -> dict:
    """A channel's foreground intensity statistics as plans.json stores them."""
    return {"max": max_, "mean": mean, "median": median, "min": min_, "percentile_00_5": p00_5,
            "percentile_99_5": p99_5, "std": std}


def seeded_network(plans: dict, num_outputs: int, seed: int, winning_labels: Optional[Iterable[int]] = None):
    """The plans' 3d_fullres network (one input channel, deep supervision on, as trained) with the trainer's
    initialisation from ``seed``. ``winning_labels``: every other label's head bias is set to -20, so that a random
    network predicts only these labels (a segmentation with a handful of labels, not noise over all of them)."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    cm = PlansManager(plans).get_configuration("3d_fullres")
    torch.manual_seed(seed)
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, num_outputs, allow_init=True,
                                     deep_supervision=True)
    if winning_labels is not None:
        with torch.no_grad():
            head = network.decoder.seg_layers[-1]
            head.bias.fill_(-20.0)
            head.bias[list(winning_labels)] = 0.0
    return network


def write_checkpoint(path: str, network, plans: dict, dataset_json: dict, fold, trainer: str,
                     mirroring_axes: Optional[Sequence[int]], epoch: int) -> None:
    """checkpoint_final.pth as a trained model folder holds it (network weights, init args, trainer name,
    mirroring axes, epoch)."""
    import torch
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"network_weights": network.state_dict(),
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": fold,
                              "dataset_json": dataset_json, "device": "cpu"},
                "trainer_name": trainer, "inference_allowed_mirroring_axes": mirroring_axes, "current_epoch": epoch},
               path)
