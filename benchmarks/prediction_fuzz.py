"""Differential trial, not a speed benchmark: does a whole prediction from a trained model folder (reading the raw
images, preprocessing, sliding window with the network, export) give the reference's (2.8.1) files on random
models and images?

    python benchmarks/prediction_fuzz.py [--cases 30] [--seed 0] [--cascade 0.25] [--resume 0.2] [--arrays 0.3]
                                         [--tolerance 1e-6] [--reference-python PATH] [--keep]

Every case is one fabricated model folder and one input folder, written once by this process and predicted by both
sides into their own output folders. Drawn per case, from its own seeded generator:

* the model: a ``2d`` or ``3d_fullres`` configuration, PlainConvUNet or ResidualEncoderUNet of 2-4 stages with 2-16
  features, anisotropic kernels and strides, a patch smaller or larger than the images, 1-3 input channels each with
  CT, z-score (with or without the nonzero mask), no or 0-1 rescaling normalization, plain labels (1-3, or 300 for a
  uint16 segmentation), regions (``regions_class_order``) or an ignore label, a random axis order
  (``transpose_forward``), a target spacing away from the images' (so resampling up, down and, anisotropic, along z
  separately), scipy- or torch-based resampling, one or two folds (or fold ``all``) of seeded random weights, and the
  mirroring axes stored in the checkpoint;
* the images: 1-2 per case, 3-D NIfTI (2-D models predict them slice by slice; read with SimpleITK, nibabel or
  nibabel with reorientation) with random spacings, origins and directions (axis permutations with flips, or
  oblique), sometimes a single slice, or 2-D images as NIfTI or PNG (grey or one RGB file); float32/64, int16,
  uint8/16 voxels, zero borders for cropping, sometimes a constant channel;
* the prediction: ``predict_from_files`` (one preprocessing and one export process) on the folder or on lists of files
  and output names, ``predict_from_files_sequential`` or the ``nnUNetv2_predict_from_modelfolder`` command;
  mirroring on/off, tile step 0.5/0.75/1, Gaussian weighting on/off, ``perform_everything_on_device`` (ignored on
  CPU), probabilities saved or not, and on our side sometimes ``nnUNet_cpu_concurrent_passes=1`` (one pass at a
  time) instead of the default automatic choice (concurrent only where checked bit-identical; a forced ``=2``
  skips that check and is documented to differ in the last bits on some CPUs, so it is not drawn).

A share of the cases (``--cascade``, drawn apart from the case's own stream, so that ``--cascade 0 --resume 0``
gives the plain cases the trial had before) is a cascade instead: a ``3d_lowres`` model folder (its plans naming
``next_stage``) and a ``3d_cascade_fullres`` one (``previous_stage`` 3d_lowres, inheriting ``3d_fullres`` and
sometimes with resampling and normalization of its own; its network takes the image channels plus one one-hot
channel per foreground label), labels, regions or an ignore label, 3-D NIfTI images. Each side predicts the way users
do: the low-resolution stage into a folder, then the second stage with ``folder_with_segs_from_prev_stage`` (or
``-prev_stage_predictions`` of the command) on that folder; the low-resolution spacing is coarser, so its
segmentation is resampled back to the image and then to the full-resolution spacing. Sometimes the previous stage's
files are rewritten with another spacing in their headers (same voxels: the image's geometry counts, on both sides) or
one slice short (both refuse). Both stages' outputs are compared.

Another share (``--resume``) of the cases not predicted with the command use ``predict_from_files`` twice: first one
part of a ``num_parts``/``part_id`` split, then (sometimes after deleting one written file, a segmentation or a
``.npz``) the whole folder with ``overwrite=False``. Also compared: which files the part wrote, and which files the
second call wrote anew (the cases it skipped must stay as they were).

Another share (``--arrays``, of the plain cases not resumed; its own stream, so ``--arrays 0`` gives the cases as
before) goes through the in-memory entry points that other tools call: the images are read with the plans' reader
(sometimes cast to float64, float16 or int16, as a caller's loader might give them), their properties reduced to
``{'spacing': ...}`` when nothing is written, and handed to ``predict_single_npy_array`` (returned, or written with
``output_file_truncated``; probabilities returned or saved), ``predict_from_list_of_npy_arrays`` (returned or
written), ``predict_from_data_iterator`` over ``preprocessing_iterator_fromnpy``, ``predict_logits_from_preprocessed_data``
on the preprocessor's ``run_case_npy`` output (both compared) or ``predict_sliding_window_return_logits`` on a seeded
random tensor with the first fold's weights. Sometimes the predictor is set up with ``manual_initialization`` (the
network built here from plans.json, the checkpoints' weights handed over) instead of
``initialize_from_trained_model_folder``. What is returned (its kind: tuple, list, tensor with its dtype, array,
None; segmentations exactly, probabilities and logits within the tolerance) and what is written are compared.

Compared: the names of the written files, every segmentation (values, dtype and geometry) exactly, the properties
pickle and the copied dataset.json/plans.json exactly, and the probabilities within ``--tolerance``: both sides run
the same torch on the same weights in the same order, so they should be bit-identical; the tolerance only leaves room
for kernels that round a value differently on a differently laid-out array (seen at 3e-8 by inference_fuzz.py). The
largest |difference| seen is printed either way. Exit status 1 if anything differs.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import (compare_outcomes, drive_cases, print_summary, run_both, trial_arguments,  # noqa: E402
                           work_folder)

_NETWORKS = "dynamic_network_architectures.architectures.unet."
# how a case is predicted: predict_from_files on a folder or on lists of files, predict_from_files_sequential, the
# command. Those starting processes less often: a start takes several seconds (the reference's command ~20 s), the
# prediction of a tiny case well under one
ENTRIES = ["files", "lists", "sequential", "sequential", "sequential", "sequential", "sequential", "sequential",
           "command"]


def _draw_prediction_settings(rng) -> dict:
    """How a case is predicted (entry point, TTA, step, Gaussian, device, probabilities, concurrent passes), drawn in
    this order for single models and cascades alike."""
    return {"entry": str(rng.choice(ENTRIES)),
            "use_mirroring": bool(rng.random() < 0.6), "tile_step_size": float(rng.choice([0.5, 0.75, 1.0])),
            "use_gaussian": bool(rng.random() < 0.7), "on_device": bool(rng.random() < 0.5),
            "save_probabilities": bool(rng.random() < 0.6),
            "concurrent_passes": None if rng.random() < 0.7 else "1"}


def _settings_text(options: dict) -> str:
    return (f"{options['entry']}, tta {options['use_mirroring']}, step {options['tile_step_size']}, gaussian "
            f"{options['use_gaussian']}, probabilities {options['save_probabilities']}, concurrent passes "
            f"{options['concurrent_passes'] or 'default'}")


def _write_case_json(case_folder: str, options: dict) -> None:
    with open(os.path.join(case_folder, "case.json"), "w") as f:
        json.dump(options, f, indent=1)


# ----- fabrication (this process, once per case) --------------------------------------------------------------------
def _architecture(rng, dims: int, anisotropic_axis, n_channels: int):
    """(architecture dict of plans.json, the per-axis product of the strides): a tiny U-Net whose first stages keep
    ``anisotropic_axis`` (if any) at full resolution with kernel 1 there, as the planner does for thick slices."""
    n_stages = int(rng.integers(2, 5))
    base = int(rng.choice([2, 4]))
    features = [min(16, base * 2 ** i) for i in range(n_stages)]
    flat_stages = int(rng.integers(1, n_stages)) if anisotropic_axis is not None else 0
    kernels, strides = [], []
    for s in range(n_stages):
        kernel, stride = [3] * dims, [1 if s == 0 else 2] * dims
        if anisotropic_axis is not None and s < flat_stages:
            kernel[anisotropic_axis] = 1
            stride[anisotropic_axis] = 1
        kernels.append(kernel)
        strides.append(stride)
    conv = "Conv3d" if dims == 3 else "Conv2d"
    kwargs = {"n_stages": n_stages, "features_per_stage": features, "conv_op": f"torch.nn.modules.conv.{conv}",
              "kernel_sizes": kernels, "strides": strides, "conv_bias": True,
              "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
              "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
              "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
              "n_conv_per_stage_decoder": [int(rng.integers(1, 3))] * (n_stages - 1)}
    if rng.random() < 0.5:
        name, kwargs["n_blocks_per_stage"] = "ResidualEncoderUNet", [1] + [int(rng.integers(1, 3))] * (n_stages - 1)
    else:
        name, kwargs["n_conv_per_stage"] = "PlainConvUNet", [int(rng.integers(1, 3))] * n_stages
    import numpy as np
    total_stride = [int(v) for v in np.prod(np.array(strides), axis=0)]
    return ({"network_class_name": _NETWORKS + name, "arch_kwargs": kwargs,
             "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}, total_stride)


def _network(architecture: dict, n_channels: int, n_outputs: int, seed: int):
    """The architecture with seeded random weights (built here with dynamic_network_architectures directly, so the
    checkpoint does not depend on either side's builder); the heads' biases spread so that several labels win."""
    import pydoc
    import torch
    kwargs = dict(architecture["arch_kwargs"])
    for key in architecture["_kw_requires_import"]:
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    torch.manual_seed(seed)
    network = pydoc.locate(architecture["network_class_name"])(input_channels=n_channels, num_classes=n_outputs,
                                                               deep_supervision=True, **kwargs)
    with torch.no_grad():
        for head in network.decoder.seg_layers:
            head.bias.copy_(torch.randn(n_outputs) * 0.5)
    return network


def _labels(rng):
    """(dataset.json labels, regions_class_order or None, number of network outputs)."""
    n = int(rng.integers(1, 4)) if rng.random() < 0.95 else 300  # more than 255 labels: a uint16 segmentation
    kind = rng.choice(["labels", "labels", "regions", "ignore"])
    if kind == "regions" and n >= 2:
        regions = {"background": 0, "whole": list(range(1, n + 1)), "inner": list(range(2, n + 1)), "top": n}
        return regions, [1, 2, n], 3
    labels = {"background": 0, **{f"l{i}": i for i in range(1, n + 1)}}
    if kind == "ignore":
        labels["ignore"] = n + 1
    return labels, None, n + 1


def _direction(rng, dims: int):
    import numpy as np
    kind = rng.choice(["identity", "permuted", "oblique"])
    if kind == "identity":
        return np.eye(dims)
    if kind == "permuted":
        m = np.eye(dims)[rng.permutation(dims)]
        return m * rng.choice([-1, 1], dims)[:, None]
    a = rng.uniform(-0.6, 0.6)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    if dims == 2:
        return rot
    m = np.eye(3)
    axes = [int(v) for v in rng.choice(3, 2, replace=False)]
    m[np.ix_(axes, axes)] = rot
    return m


def _image(rng, shape, n_channels: int, png: bool):
    """Channels of one image (numpy order) of a random dtype, some constant, with zero borders on some so that
    cropping removes them."""
    import numpy as np
    channels = []
    for c in range(n_channels):
        if png:
            x = rng.integers(0, 256, shape).astype(np.uint8)
        else:
            dtype = rng.choice([np.float32, np.float32, np.int16, np.float64, np.uint8, np.uint16])
            x = rng.normal(rng.uniform(-100, 300), rng.uniform(1, 200), shape)
            if np.dtype(dtype).kind == "u":
                x = np.clip(x, 0, np.iinfo(dtype).max)
            x = x.astype(dtype)
            if rng.random() < 0.1:
                x[...] = x.flat[0]
        channels.append(x)
    if rng.random() < 0.5:
        border = tuple(slice(int(rng.integers(0, max(1, s // 4))), s - int(rng.integers(0, max(1, s // 4))))
                       for s in shape)
        mask = np.zeros(shape, bool)
        mask[border] = True
        channels = [np.where(mask, x, 0).astype(x.dtype) for x in channels]
    return channels


def _intensity_properties(rng) -> dict:
    mean = float(rng.uniform(-50, 200))
    std = float(rng.uniform(5, 150))
    lo, hi = mean - float(rng.uniform(0.5, 3)) * std, mean + float(rng.uniform(0.5, 3)) * std
    return {"max": hi + 10, "mean": mean, "median": mean + float(rng.uniform(-5, 5)), "min": lo - 10,
            "percentile_00_5": lo, "percentile_99_5": hi, "std": std}


def fabricate(seed: int, folder: str) -> dict:
    """Write case ``seed``'s model folder (``model``) and input folder (``input``) under ``folder``; returns the
    prediction options (also written as ``case.json``)."""
    import numpy as np
    import SimpleITK as sitk
    import torch
    rng = np.random.default_rng(seed)
    image_kind = rng.choice(["3d", "3d", "3d", "2d_nifti", "2d_png"])
    configuration = "3d_fullres" if image_kind == "3d" and rng.random() < 0.7 else "2d"
    png = image_kind == "2d_png"
    rgb = png and rng.random() < 0.4  # one file holding three channels
    n_channels = 3 if rgb else 1 if png else int(rng.integers(1, 4))
    reader = "SimpleITKIO"
    if png:
        reader = "NaturalImage2DIO"
    elif image_kind == "3d" and rng.random() < 0.4:
        reader = str(rng.choice(["NibabelIO", "NibabelIOWithReorient"]))
    dims = 3 if configuration == "3d_fullres" else 2

    # spacings in numpy axis order; a thick-slice axis sometimes
    if image_kind == "3d":
        spacing = [float(v) for v in rng.uniform(0.5, 2, 3)]
        if rng.random() < 0.4:
            spacing[int(rng.integers(0, 3))] *= float(rng.uniform(3, 6))
        transpose = [int(v) for v in rng.permutation(3)] if rng.random() < 0.4 else [0, 1, 2]
        spacing_t = [spacing[i] for i in transpose]
    else:
        spacing = [float(v) for v in rng.uniform(0.5, 2, 2)]
        transpose = [0, 1, 2]
        spacing_t = [999.0, *spacing]
    # the configuration's target spacing (after transposition), up or down from the images'
    target = [float(s * f) for s, f in zip(spacing_t, rng.uniform(0.6, 1.6, 3))]
    if rng.random() < 0.25:
        target = list(spacing_t)
    if dims == 3 and rng.random() < 0.3:
        target[int(rng.integers(0, 3))] *= float(rng.uniform(3, 5))  # anisotropic target: z separately
    config_spacing = target if dims == 3 else target[1:]
    anisotropic_axis = None
    if max(config_spacing) > 2.5 * min(config_spacing):
        anisotropic_axis = int(np.argmax(config_spacing))
    architecture, total_stride = _architecture(rng, dims, anisotropic_axis, n_channels)
    # at least 4 voxels per axis, and more than one at the bottleneck, whose instance norm refuses a single voxel
    multiples = [max(int(rng.integers(1, 4)), -(-4 // st)) for st in total_stride]
    if max(multiples) == 1:
        multiples[int(rng.integers(0, dims))] = 2
    patch = [st * m for st, m in zip(total_stride, multiples)]

    labels, regions_class_order, n_outputs = _labels(rng)
    schemes = [str(rng.choice(["CTNormalization", "ZScoreNormalization", "NoNormalization",
                               "RescaleTo01Normalization"])) for _ in range(n_channels)]
    if png and rng.random() < 0.5:
        schemes = ["RGBTo01Normalization"] * n_channels
    use_mask = [bool(s == "ZScoreNormalization" and rng.random() < 0.5) for s in schemes]
    resampling = "resample_torch_fornnunet" if rng.random() < 0.3 else "resample_data_or_seg_to_shape"

    def resampling_kwargs(is_seg: bool, order: int) -> dict:
        if resampling == "resample_torch_fornnunet":
            return {"is_seg": is_seg, "force_separate_z": None, "memefficient_seg_resampling": False}
        return {"is_seg": is_seg, "order": order, "order_z": 0, "force_separate_z": None}

    file_ending = ".png" if png else ".nii.gz"
    dataset_json = {"channel_names": {str(c): f"ch{c}" for c in range(n_channels)}, "labels": labels,
                    "numTraining": 10, "file_ending": file_ending}
    if regions_class_order:
        dataset_json["regions_class_order"] = regions_class_order
    median_shape = [int(v) for v in rng.integers(6, 24, 3)]
    plans = {
        "dataset_name": "Dataset997_PredictionFuzz", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing_t, "original_median_shape_after_transp": median_shape,
        "image_reader_writer": reader, "transpose_forward": transpose,
        "transpose_backward": [int(i) for i in np.argsort(transpose)],
        "configurations": {configuration: {
            "data_identifier": f"nnUNetPlans_{configuration}", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": patch, "median_image_size_in_voxels": median_shape[-dims:],
            "spacing": config_spacing, "normalization_schemes": schemes, "use_mask_for_norm": use_mask,
            "resampling_fn_data": resampling, "resampling_fn_data_kwargs": resampling_kwargs(False, 3),
            "resampling_fn_seg": resampling, "resampling_fn_seg_kwargs": resampling_kwargs(True, 1),
            "resampling_fn_probabilities": resampling,
            "resampling_fn_probabilities_kwargs": resampling_kwargs(False, 1),
            "architecture": architecture, "batch_dice": bool(rng.random() < 0.5)}},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): _intensity_properties(rng)
                                                        for c in range(n_channels)}}
    model = os.path.join(folder, "model")
    os.makedirs(model)
    with open(os.path.join(model, "dataset.json"), "w") as f:
        json.dump(dataset_json, f, indent=1)
    with open(os.path.join(model, "plans.json"), "w") as f:
        json.dump(plans, f, indent=1)
    folds = [[0], [0], [0, 1], ["all"]][int(rng.integers(4))]
    mirroring = [None, tuple(range(dims)), tuple(int(a) for a in sorted(rng.choice(dims, 1)))][int(rng.integers(3))]
    for index, fold in enumerate(folds):
        network = _network(architecture, n_channels, n_outputs, seed * 10 + index)
        os.makedirs(os.path.join(model, f"fold_{fold}"))
        torch.save({"network_weights": network.state_dict(),
                    "init_args": {"plans": plans, "configuration": configuration, "fold": fold,
                                  "dataset_json": dataset_json, "device": "cpu"},
                    "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": mirroring,
                    "current_epoch": 1000}, os.path.join(model, f"fold_{fold}", "checkpoint_final.pth"))

    inputs = os.path.join(folder, "input")
    os.makedirs(inputs)
    for k in range(int(rng.integers(1, 3))):
        # image shape (numpy order) around the patch (resampled to the target) so that tiles overlap or pad
        if image_kind == "3d":
            patch_t = patch if dims == 3 else [int(rng.integers(2, 9)), *patch]
            in_target_order = [max(2, int(round(p * f))) for p, f in zip(patch_t, rng.uniform(0.5, 2.2, 3))]
            shape_t = [max(2, int(round(n * t / s))) for n, t, s in zip(in_target_order, target, spacing_t)]
            if rng.random() < 0.1:
                shape_t[int(rng.integers(0, 3))] = 1  # a single slice
            shape = [0, 0, 0]
            for axis_t, axis in enumerate(transpose):
                shape[axis] = min(40, shape_t[axis_t])
        else:
            shape = [min(48, max(3, int(round(p * f * t / s))))
                     for p, f, t, s in zip(patch, rng.uniform(0.5, 2.2, 2), target[1:], spacing_t[1:])]
        channels = _image(rng, shape, n_channels, png)
        if rgb:
            channels = [np.stack(channels, -1)]
        spacing_k = [s * float(rng.uniform(0.9, 1.1)) if rng.random() < 0.3 else s for s in spacing]
        direction = _direction(rng, len(shape))
        origin = [float(v) for v in rng.uniform(-100, 100, len(shape))]
        for c, x in enumerate(channels):
            path = os.path.join(inputs, f"case{k}_{c:04d}{file_ending}")
            if png:
                from PIL import Image
                Image.fromarray(x).save(path)
                continue
            img = sitk.GetImageFromArray(x)
            img.SetSpacing(spacing_k[::-1])  # SimpleITK lists axes in reverse numpy order
            img.SetOrigin(origin)
            img.SetDirection([float(v) for v in direction.flatten()])
            sitk.WriteImage(img, path)

    network_name = architecture["network_class_name"][len(_NETWORKS):]
    n_stages = architecture["arch_kwargs"]["n_stages"]
    options = {"configuration": configuration, "folds": folds, **_draw_prediction_settings(rng)}
    options["description"] = (
        f"{image_kind} images, {configuration}, {network_name} {n_stages} stages, patch {patch}, {n_channels} ch "
        f"{schemes}, {'regions' if regions_class_order else 'labels'}, {resampling}, {reader}{' RGB' if rgb else ''}, "
        f"folds {folds}, mirroring {mirroring}; {_settings_text(options)}")
    _write_case_json(folder, options)
    return options


# ----- the cascade: a 3d_lowres model and the 3d_cascade_fullres model that reads its predictions -------------------
def _configuration(rng, spacing: list, patch: list, architecture: dict, n_channels: int, identifier: str) -> dict:
    """One configuration of plans.json (numpy axis order after the transposition) with its own normalization and
    resampling draws."""
    schemes = [str(rng.choice(["CTNormalization", "ZScoreNormalization", "NoNormalization",
                               "RescaleTo01Normalization"])) for _ in range(n_channels)]
    resampling = "resample_torch_fornnunet" if rng.random() < 0.3 else "resample_data_or_seg_to_shape"

    def resampling_kwargs(is_seg: bool, order: int) -> dict:
        if resampling == "resample_torch_fornnunet":
            return {"is_seg": is_seg, "force_separate_z": None, "memefficient_seg_resampling": False}
        return {"is_seg": is_seg, "order": order, "order_z": 0, "force_separate_z": None}

    return {"data_identifier": identifier, "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": patch, "median_image_size_in_voxels": [16, 16, 16], "spacing": spacing,
            "normalization_schemes": schemes,
            "use_mask_for_norm": [bool(s == "ZScoreNormalization" and rng.random() < 0.5) for s in schemes],
            "resampling_fn_data": resampling, "resampling_fn_data_kwargs": resampling_kwargs(False, 3),
            "resampling_fn_seg": resampling, "resampling_fn_seg_kwargs": resampling_kwargs(True, 1),
            "resampling_fn_probabilities": resampling,
            "resampling_fn_probabilities_kwargs": resampling_kwargs(False, 1),
            "architecture": architecture, "batch_dice": bool(rng.random() < 0.5)}


def _small_patch(rng, total_stride: list) -> list:
    multiples = [max(int(rng.integers(1, 3)), -(-4 // st)) for st in total_stride]
    if max(multiples) == 1:
        multiples[int(rng.integers(0, 3))] = 2
    return [st * m for st, m in zip(total_stride, multiples)]


def _save_folds(model: str, folds: list, architecture: dict, n_inputs: int, n_outputs: int, seed: int,
                plans: dict, configuration: str, dataset_json: dict, mirroring) -> None:
    import torch
    os.makedirs(model)
    with open(os.path.join(model, "dataset.json"), "w") as f:
        json.dump(dataset_json, f, indent=1)
    with open(os.path.join(model, "plans.json"), "w") as f:
        json.dump(plans, f, indent=1)
    for index, fold in enumerate(folds):
        network = _network(architecture, n_inputs, n_outputs, seed + index)
        os.makedirs(os.path.join(model, f"fold_{fold}"))
        torch.save({"network_weights": network.state_dict(),
                    "init_args": {"plans": plans, "configuration": configuration, "fold": fold,
                                  "dataset_json": dataset_json, "device": "cpu"},
                    "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": mirroring,
                    "current_epoch": 1000}, os.path.join(model, f"fold_{fold}", "checkpoint_final.pth"))


def fabricate_cascade(seed: int, folder: str) -> dict:
    """Write case ``seed`` as a cascade under ``folder``: ``model_lowres`` (configuration ``3d_lowres``, whose plans
    name ``next_stage``), ``model`` (``3d_cascade_fullres``: ``previous_stage`` 3d_lowres, inheriting 3d_fullres; its
    network takes the image channels plus one channel per foreground label) and ``input`` (3-D NIfTI only: the
    cascade exists for 3-D configurations). Both model folders hold the same plans, as the trainer writes them.
    Returns the prediction options (also written as ``case.json``); ``prev`` says how the predicted low-resolution
    segmentations reach the second stage: as written, with another spacing in their header (same voxels: the
    image's geometry is used), or one slice short (both sides refuse a shape unlike the image's)."""
    import numpy as np
    import SimpleITK as sitk
    rng = np.random.default_rng([seed, 1])  # not the plain cases' stream: those stay what they were for a seed
    n_channels = int(rng.integers(1, 3))
    reader = "SimpleITKIO" if rng.random() < 0.6 else str(rng.choice(["NibabelIO", "NibabelIOWithReorient"]))
    spacing = [float(v) for v in rng.uniform(0.6, 1.6, 3)]
    if rng.random() < 0.3:
        spacing[int(rng.integers(0, 3))] *= float(rng.uniform(3, 5))
    transpose = [int(v) for v in rng.permutation(3)] if rng.random() < 0.4 else [0, 1, 2]
    spacing_t = [spacing[i] for i in transpose]
    full = [float(s * f) for s, f in zip(spacing_t, rng.uniform(0.7, 1.3, 3))]
    # the low-resolution stage is coarser, so its prediction is resampled back to the image and then again to the
    # full-resolution spacing by the second stage's preprocessing
    low = [float(s * f) for s, f in zip(full, rng.uniform(1.4, 2.5, 3))]

    n = int(rng.integers(1, 4))
    kind = str(rng.choice(["labels", "labels", "regions", "ignore"]))
    if kind == "regions" and n >= 2:
        labels, regions_class_order, n_outputs = ({"background": 0, "whole": list(range(1, n + 1)),
                                                   "inner": list(range(2, n + 1)), "top": n}, [1, 2, n], 3)
    else:
        labels, regions_class_order, n_outputs = {"background": 0, **{f"l{i}": i for i in range(1, n + 1)}}, None, \
            n + 1
        if kind == "ignore":
            labels["ignore"] = n + 1
    n_foreground = n  # labels 1..n: the ignore label and the background get no channel

    def anisotropic(sp):
        return int(np.argmax(sp)) if max(sp) > 2.5 * min(sp) else None

    arch_full, stride_full = _architecture(rng, 3, anisotropic(full), n_channels)
    arch_low, stride_low = _architecture(rng, 3, anisotropic(low), n_channels)
    patch_full, patch_low = _small_patch(rng, stride_full), _small_patch(rng, stride_low)
    dataset_json = {"channel_names": {str(c): f"ch{c}" for c in range(n_channels)}, "labels": labels,
                    "numTraining": 10, "file_ending": ".nii.gz"}
    if regions_class_order:
        dataset_json["regions_class_order"] = regions_class_order
    fullres = _configuration(rng, full, patch_full, arch_full, n_channels, "nnUNetPlans_3d_fullres")
    lowres = _configuration(rng, low, patch_low, arch_low, n_channels, "nnUNetPlans_3d_lowres")
    lowres_only = {k: v for k, v in lowres.items() if v != fullres.get(k)}
    cascade = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    if rng.random() < 0.5:  # the second stage with resampling or normalization of its own
        own = _configuration(rng, full, patch_full, arch_full, n_channels, "nnUNetPlans_3d_fullres")
        for key in ("resampling_fn_seg", "resampling_fn_seg_kwargs", "normalization_schemes", "use_mask_for_norm"):
            cascade[key] = own[key]
    plans = {
        "dataset_name": "Dataset996_CascadeFuzz", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing_t, "original_median_shape_after_transp": [16, 16, 16],
        "image_reader_writer": reader, "transpose_forward": transpose,
        "transpose_backward": [int(i) for i in np.argsort(transpose)],
        "configurations": {"3d_fullres": fullres,
                           "3d_lowres": {"inherits_from": "3d_fullres", **lowres_only,
                                         "next_stage": "3d_cascade_fullres"},
                           "3d_cascade_fullres": cascade},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): _intensity_properties(rng)
                                                        for c in range(n_channels)}}
    folds = [[[0], [0], [0, 1], ["all"]][int(rng.integers(4))] for _ in range(2)]
    mirroring = [None, (0, 1, 2), (int(rng.integers(3)),)][int(rng.integers(3))]
    # laid out as in nnUNet_results, so that nnUNetv2_predict finds them by dataset id and configuration
    results = os.path.join(folder, "results", plans["dataset_name"])
    _save_folds(os.path.join(results, "nnUNetTrainer__nnUNetPlans__3d_lowres"), folds[0], arch_low, n_channels,
                n_outputs, seed * 10 + 5, plans, "3d_lowres", dataset_json, mirroring)
    _save_folds(os.path.join(results, "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres"), folds[1], arch_full,
                n_channels + n_foreground, n_outputs, seed * 10 + 7, plans, "3d_cascade_fullres", dataset_json,
                mirroring)

    inputs = os.path.join(folder, "input")
    os.makedirs(inputs)
    for k in range(int(rng.integers(1, 3))):
        in_full = [max(3, int(round(p * f))) for p, f in zip(patch_full, rng.uniform(0.6, 1.8, 3))]
        shape_t = [max(3, min(28, int(round(m * t / s)))) for m, t, s in zip(in_full, full, spacing_t)]
        shape = [0, 0, 0]
        for axis_t, axis in enumerate(transpose):
            shape[axis] = shape_t[axis_t]
        channels = _image(rng, shape, n_channels, False)
        direction = _direction(rng, 3)
        origin = [float(v) for v in rng.uniform(-100, 100, 3)]
        for c, x in enumerate(channels):
            img = sitk.GetImageFromArray(x)
            img.SetSpacing(spacing[::-1])
            img.SetOrigin(origin)
            img.SetDirection([float(v) for v in direction.flatten()])
            sitk.WriteImage(img, os.path.join(inputs, f"case{k}_{c:04d}.nii.gz"))

    options = {"cascade": True, "folds": folds[1], "folds_lowres": folds[0], **_draw_prediction_settings(rng),
               "prev": str(rng.choice(["as_written"] * 8 + ["respaced"] * 2 + ["one_slice_short"])),
               "command": str(rng.choice(["nnUNetv2_predict", "nnUNetv2_predict_from_modelfolder"]))}
    options["description"] = (
        f"CASCADE 3d_lowres {low_str(low)} patch {patch_low} -> 3d_cascade_fullres {low_str(full)} patch "
        f"{patch_full}, {n_channels} ch + {n_foreground} one-hot, {kind if not regions_class_order else 'regions'}, "
        f"{reader}, transpose {transpose}, folds {folds}, mirroring {mirroring}, own second-stage settings "
        f"{len(cascade) > 2}; {_settings_text(options)}, previous stage {options['prev']}"
        f"{', ' + options['command'] if options['entry'] == 'command' else ''}")
    _write_case_json(folder, options)
    return options


def low_str(spacing: list) -> str:
    return "[" + ", ".join(f"{s:.2f}" for s in spacing) + "]"


# ----- prediction (one driver process per side) ---------------------------------------------------------------------
def _command(options: dict, model: str, inputs: str, output: str, env: dict, folds=None, prev=None) -> None:
    """The installed nnUNetv2_predict_from_modelfolder of this interpreter's nnunetv2, found through its entry point
    (the console script may not sit next to the interpreter)."""
    launcher = ("import sys\nfrom importlib.metadata import entry_points\n"
                "ep = [e for e in entry_points(group='console_scripts') if e.name == sys.argv[1]][0]\n"
                "sys.argv = sys.argv[1:]\nsys.exit(ep.load()())")
    if options.get("command") == "nnUNetv2_predict":
        # the model by dataset id and configuration, from the nnUNet_results its folder sits in
        results, trainer_folder = os.path.split(model)
        env = dict(env, nnUNet_results=os.path.dirname(results))
        which = ["nnUNetv2_predict", "-d", os.path.basename(results)[len("Dataset"):len("Dataset") + 3],
                 "-c", trainer_folder.split("__")[-1]]
    else:
        which = ["nnUNetv2_predict_from_modelfolder", "-m", model]
    cmd = [sys.executable, "-c", launcher, *which, "-i", inputs, "-o", output,
           "-f", *[str(f) for f in folds or options["folds"]], "-step_size", str(options["tile_step_size"]),
           "-npp", "1", "-nps", "1", "-device", "cpu", "--disable_progress_bar"]
    if not options["use_mirroring"]:
        cmd.append("--disable_tta")
    if options["save_probabilities"]:
        cmd.append("--save_probabilities")
    if prev:
        cmd += ["-prev_stage_predictions", prev]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = proc.stdout.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"command failed ({proc.returncode}): {tail[0][:250]}")


def _read_outputs(output: str) -> dict:
    """Everything the prediction wrote: file names, segmentations (with geometry), probabilities, properties."""
    import numpy as np
    import SimpleITK as sitk
    out = {"files": sorted(os.listdir(output))}
    for name in out["files"]:
        path = os.path.join(output, name)
        if name.endswith(".nii.gz"):
            img = sitk.ReadImage(path)
            out[name] = {"array": sitk.GetArrayFromImage(img), "spacing": img.GetSpacing(),
                         "origin": img.GetOrigin(), "direction": img.GetDirection(),
                         "pixel": img.GetPixelIDTypeAsString()}
        elif name.endswith(".png"):
            from PIL import Image
            with Image.open(path) as im:
                out[name] = {"array": np.asarray(im), "mode": im.mode}
        elif name.endswith(".npz"):
            with np.load(path) as z:
                out[name] = {k: z[k] for k in z.files}
        elif name.endswith(".pkl"):
            with open(path, "rb") as f:
                out[name] = pickle.load(f)
        elif name in ("dataset.json", "plans.json"):
            with open(path) as f:
                out[name] = json.load(f)
    return out


def _predict(case_folder: str, side: str) -> dict:
    with open(os.path.join(case_folder, "case.json")) as f:
        options = json.load(f)
    inputs = os.path.join(case_folder, "input")
    output = os.path.join(case_folder, f"output_{side}")
    # read when the predictor is made; the reference has no such setting and ignores it
    if options["concurrent_passes"]:
        os.environ["nnUNet_cpu_concurrent_passes"] = options["concurrent_passes"]
    else:
        os.environ.pop("nnUNet_cpu_concurrent_passes", None)
    if options.get("arrays"):
        return _predict_arrays(options, case_folder, side)
    if not options.get("cascade"):
        resumed = _predict_stage(options, os.path.join(case_folder, "model"), inputs, output, options["folds"], None)
        return {**_read_outputs(output), **(resumed or {})}
    # as users run a cascade: the low-resolution stage into a folder of its own, then the second stage reading it
    low = os.path.join(case_folder, f"output_{side}_lowres")
    models = os.path.join(case_folder, "results", "Dataset996_CascadeFuzz", "nnUNetTrainer__nnUNetPlans__")
    resumed = _predict_stage(options, models + "3d_lowres", inputs, low, options["folds_lowres"], None)
    outcome = {f"lowres/{k}": v for k, v in {**_read_outputs(low), **(resumed or {})}.items()}
    prev = low if options["prev"] == "as_written" else _altered_previous_stage(low, options["prev"],
                                                                               f"{low}_{options['prev']}")
    resumed = _predict_stage(options, models + "3d_cascade_fullres", inputs, output, options["folds"], prev)
    outcome.update({**_read_outputs(output), **(resumed or {})})
    return outcome


# ----- the in-memory entry points (what TotalSegmentator, MONAI and challenge containers call) ----------------------
ARRAY_ENTRIES = ["single", "single_files", "list", "list_files", "iterator", "iterator_files", "logits", "sliding"]


def _manual_initialization(predictor, model: str, folds: list) -> None:
    """What a caller holding a network does instead of initialize_from_trained_model_folder: builds the architecture
    of plans.json itself (without deep supervision: same parameters), loads the first fold and hands over all
    folds' weights."""
    import pydoc
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    with open(os.path.join(model, "plans.json")) as f:
        plans = json.load(f)
    with open(os.path.join(model, "dataset.json")) as f:
        dataset_json = json.load(f)
    plans_manager = PlansManager(plans)
    configuration = next(iter(plans["configurations"]))
    configuration_manager = plans_manager.get_configuration(configuration)
    parameters, mirroring = [], None
    for fold in folds:
        checkpoint = torch.load(os.path.join(model, f"fold_{fold}", "checkpoint_final.pth"), map_location="cpu",
                                weights_only=False)
        parameters.append(checkpoint["network_weights"])
        mirroring = checkpoint["inference_allowed_mirroring_axes"]
    architecture = plans["configurations"][configuration]["architecture"]
    kwargs = dict(architecture["arch_kwargs"])
    for key in architecture["_kw_requires_import"]:
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    n_outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    network = pydoc.locate(architecture["network_class_name"])(
        input_channels=len(dataset_json["channel_names"]), num_classes=n_outputs, deep_supervision=False, **kwargs)
    network.load_state_dict(parameters[0])
    network.eval()
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    "nnUNetTrainer", mirroring)


def _record(prefix: str, value, out: dict) -> None:
    """A returned value into the outcome: its kind (tuple, list, tensor, array, None) and for arrays their values;
    floating arrays under ``<prefix>.npz`` so that they are compared within the tolerance, like the files'
    probabilities."""
    import numpy as np
    import torch
    out[f"{prefix}/kind"] = type(value).__name__
    if isinstance(value, (tuple, list)):
        out[f"{prefix}/len"] = len(value)
        for i, v in enumerate(value):
            _record(f"{prefix}[{i}]", v, out)
        return
    if isinstance(value, torch.Tensor):
        out[f"{prefix}/torch_dtype"] = str(value.dtype)
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            out[f"{prefix}.npz"] = {"probabilities": value}
        else:
            out[prefix] = value
    elif value is not None:
        out[f"{prefix}/value"] = repr(value)


def _predict_arrays(options: dict, case_folder: str, side: str) -> dict:
    """The case's images read with the plans' reader and handed to one of the predictor's in-memory entry points;
    what it returns and what it wrote."""
    import numpy as np
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    arrays = options["arrays"]
    model = os.path.join(case_folder, "model")
    predictor = nnUNetPredictor(tile_step_size=options["tile_step_size"], use_gaussian=options["use_gaussian"],
                                use_mirroring=options["use_mirroring"],
                                perform_everything_on_device=options["on_device"], device=torch.device("cpu"),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    if arrays["manual"]:
        _manual_initialization(predictor, model, options["folds"])
    else:
        predictor.initialize_from_trained_model_folder(model, tuple(options["folds"]), "checkpoint_final.pth")
    inputs = os.path.join(case_folder, "input")
    ending = predictor.dataset_json["file_ending"]
    names = sorted(os.listdir(inputs))
    cases = sorted({n[:-len("_0000") - len(ending)] for n in names})
    reader = predictor.plans_manager.image_reader_writer_class()
    images, properties = [], []
    for case in cases:
        image, props = reader.read_images([os.path.join(inputs, n) for n in names if n.startswith(case + "_")])
        images.append(image.astype(arrays["cast"]) if arrays.get("cast") else image)
        # writing files needs the reader's geometry; returned arrays only the spacing (as documented)
        properties.append({"spacing": props["spacing"]} if arrays["spacing_only"] else props)
    output = os.path.join(case_folder, f"output_{side}")
    os.makedirs(output)
    entry, probabilities = arrays["entry"], arrays["probabilities"]
    files = entry.endswith("_files")
    truncated = [os.path.join(output, c) for c in cases] if files else None
    out = {}
    if entry in ("single", "single_files"):
        for i, (image, props) in enumerate(zip(images, properties)):
            _record(f"returned{i}", predictor.predict_single_npy_array(
                image, props, None, truncated[i] if files else None, probabilities), out)
    elif entry in ("list", "list_files"):
        _record("returned", predictor.predict_from_list_of_npy_arrays(
            images, None, properties, truncated, num_processes=1, save_probabilities=probabilities,
            num_processes_segmentation_export=1), out)
    elif entry in ("iterator", "iterator_files"):
        from nnunetv2.inference.data_iterators import preprocessing_iterator_fromnpy
        iterator = preprocessing_iterator_fromnpy(images, None, properties, truncated, predictor.plans_manager,
                                                  predictor.dataset_json, predictor.configuration_manager, 1)
        _record("returned", predictor.predict_from_data_iterator(iterator, probabilities, 1), out)
    elif entry == "logits":
        preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
        for i, (image, props) in enumerate(zip(images, properties)):
            data, _, _ = preprocessor.run_case_npy(image, None, props, predictor.plans_manager,
                                                   predictor.configuration_manager, predictor.dataset_json)
            _record(f"preprocessed{i}", data, out)
            _record(f"logits{i}", predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)), out)
    else:  # the sliding window alone, with the first fold's weights, on a random tensor of the image's shape
        generator = torch.Generator().manual_seed(arrays["tensor_seed"])
        x = torch.randn(images[0].shape, generator=generator, dtype=torch.float32)
        predictor.network.load_state_dict(predictor.list_of_parameters[0])
        predictor.network.eval()
        _record("logits", predictor.predict_sliding_window_return_logits(x), out)
    return {**out, **_read_outputs(output)}


def _altered_previous_stage(folder: str, how: str, into: str) -> str:
    """A copy of the low-resolution stage's segmentations, with another spacing in their headers (``respaced``) or
    without their last slice (``one_slice_short``), written the same way by both sides' drivers."""
    import SimpleITK as sitk
    os.makedirs(into)
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".nii.gz"):
            continue
        img = sitk.ReadImage(os.path.join(folder, name))
        if how == "respaced":
            img.SetSpacing([s * 1.7 for s in img.GetSpacing()])
        else:
            a = sitk.GetArrayFromImage(img)[:-1]
            new = sitk.GetImageFromArray(a)
            new.CopyInformation(img[:, :, :-1])
            img = new
        sitk.WriteImage(img, os.path.join(into, name))
    return into


def _predict_stage(options: dict, model: str, inputs: str, output: str, folds: list, prev) -> None:
    if options["entry"] == "command":
        _command(options, model, inputs, output, dict(os.environ), folds, prev)
        return
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    predictor = nnUNetPredictor(tile_step_size=options["tile_step_size"], use_gaussian=options["use_gaussian"],
                                use_mirroring=options["use_mirroring"],
                                perform_everything_on_device=options["on_device"], device=torch.device("cpu"),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model, tuple(folds), "checkpoint_final.pth")
    if options["entry"] in ("lists", "files"):
        source, destination = inputs, output
        if options["entry"] == "lists":
            names = sorted(os.listdir(inputs))
            cases = sorted({n[:-len("_0000") - len(predictor.dataset_json["file_ending"])] for n in names})
            source = [[os.path.join(inputs, n) for n in names if n.startswith(case + "_")] for case in cases]
            destination = [os.path.join(output, case) for case in cases]

        def predict(**kwargs):
            predictor.predict_from_files(source, destination, save_probabilities=options["save_probabilities"],
                                         num_processes_preprocessing=1, num_processes_segmentation_export=1,
                                         folder_with_segs_from_prev_stage=prev, **kwargs)
        if not options.get("resume"):
            predict(overwrite=True)
            return None
        return _resume(options["resume"], output, predict)
    else:
        os.makedirs(output, exist_ok=True)
        predictor.predict_from_files_sequential(inputs, output, save_probabilities=options["save_probabilities"],
                                                overwrite=True, folder_with_segs_from_prev_stage=prev)


def _resume(resume: dict, output: str, predict) -> dict:
    """One part of a num_parts split, then (after removing one written file when ``resume['drop']``) the whole
    folder again with overwrite=False: which files the part wrote, and which the second call (re)wrote (a new file,
    or another inode, modification time or size: the two sides replace files differently, but both must leave
    a finished case alone)."""
    predict(overwrite=True, num_parts=resume["num_parts"], part_id=resume["part_id"])
    first = sorted(os.listdir(output)) if os.path.isdir(output) else []
    if resume["drop"]:
        written = [n for n in first if n.endswith(".npz")] or [n for n in first if n.endswith(".nii.gz") or
                                                                 n.endswith(".png")]
        if written:
            os.remove(os.path.join(output, written[0]))

    def stamps() -> dict:
        return {n: (s.st_ino, s.st_mtime_ns, s.st_size) for n in os.listdir(output)
                for s in [os.stat(os.path.join(output, n))]} if os.path.isdir(output) else {}
    before = stamps()
    predict(overwrite=False)
    after = stamps()
    return {"resume/part_files": first,
            "resume/rewritten": sorted(n for n in after if before.get(n) != after[n]
                                       and n != "predict_from_raw_data_args.json")}


def _predict_keeping_threads(case_folder: str, side: str) -> dict:
    """_predict, with torch's thread count put back afterwards: the reference's torch resampling sets it to 4 and
    does not restore it when the resampling raises (an image resampled to no slices), so that every later case of
    its driver would compute its convolutions with 4 threads, whose sums may round differently from 2 threads'."""
    import torch
    threads = torch.get_num_threads()
    try:
        return _predict(case_folder, side)
    finally:
        torch.set_num_threads(threads)


def drive(base: str, n_cases: int, result_file: str) -> None:
    side = os.environ["PREDICTION_FUZZ_SIDE"]
    drive_cases(list(range(n_cases)), lambda i: _predict_keeping_threads(os.path.join(base, f"case{i}"), side),
                result_file, time_limit_s=300)


# ----- comparison ---------------------------------------------------------------------------------------------------
def _split_probabilities(outcome: dict):
    """(the outcome without the probability arrays, {file name: probabilities})."""
    rest, probabilities = {}, {}
    for key, value in outcome.items():
        if key.endswith(".npz") and isinstance(value, dict) and "probabilities" in value:
            probabilities[key] = value["probabilities"]
            value = {k: v for k, v in value.items() if k != "probabilities"}
        rest[key] = value
    return rest, probabilities


def compare(ref: dict, ours: dict, keys, describe, tolerance: float):
    """compare_outcomes on everything but the probabilities, which may differ by ``tolerance``; returns (differing,
    refused by both, largest |difference| of the probabilities, number of probability files compared)."""
    import numpy as np
    stripped = {side: dict(result, outcomes={}) for side, result in (("ref", ref), ("ours", ours))}
    probs = {"ref": {}, "ours": {}}
    for side, result in (("ref", ref), ("ours", ours)):
        for key in keys:
            stripped[side]["outcomes"][key], probs[side][key] = _split_probabilities(result["outcomes"][key])
    differing = refused_both = n_files = 0
    worst = 0.0
    for key in keys:
        exact_differs, refused = compare_outcomes(stripped["ref"], stripped["ours"], [key], describe)
        refused_both += refused
        if refused:  # agreement, but a refusal the trial did not intend would hide cases: say which
            print(f"refused by both {describe(key)}:\n  reference {ref['outcomes'][key]['error'][:160]}\n"
                  f"  ours {ours['outcomes'][key]['error'][:160]}")
        if ref["outcomes"][key]["error"] or ours["outcomes"][key]["error"]:
            differing += exact_differs
            continue
        case_differs = bool(exact_differs)
        for name, a in probs["ref"][key].items():
            b = probs["ours"][key].get(name)
            if b is None:
                continue  # already reported: the list of files or of the npz's keys differs
            if a.shape != b.shape or a.dtype != b.dtype:
                case_differs = True
                print(f"DIFFERENT {describe(key)}: /{name}/probabilities {a.shape} {a.dtype} (reference) vs "
                      f"{b.shape} {b.dtype} (ours)")
                continue
            n_files += 1
            delta = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
            worst = max(worst, delta)
            if delta > tolerance:
                case_differs = True
                print(f"DIFFERENT {describe(key)}: /{name}/probabilities max |d| {delta:.3g} > {tolerance:g}")
            elif delta:
                print(f"within tolerance {describe(key)}: /{name}/probabilities max |d| {delta:.3g}")
        if case_differs:
            differing += 1
    return differing, refused_both, worst, n_files


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=30)
    p.add_argument("--tolerance", type=float, default=1e-6,
                   help="largest |difference| of a probability still counted as agreement")
    p.add_argument("--cascade", type=float, default=0.25,
                   help="share of the cases that are a 3d_lowres + 3d_cascade_fullres pair")
    p.add_argument("--resume", type=float, default=0.2,
                   help="share of the cases not predicted by the command that are predicted with predict_from_files "
                        "as one part of a num_parts split first, then finished with overwrite=False")
    p.add_argument("--arrays", type=float, default=0.3,
                   help="share of the plain cases (not cascades, not resumed) predicted through an in-memory entry "
                        "point (numpy arrays, a data iterator, preprocessed tensors, the sliding window) instead")
    args = p.parse_args()
    if args.driver:
        drive(args.driver[0], int(args.driver[1]), args.driver[2])
        return 0

    import numpy as np
    with work_folder("nnunet_prediction_fuzz_", args.keep) as base:
        descriptions, arrays = {}, {}
        for i in range(args.cases):
            # whether a case is a cascade is drawn apart from the case's own stream (so --cascade 0 gives the cases
            # of the trial before the cascade was added)
            make = fabricate_cascade if np.random.default_rng([args.seed + i, 2]).random() < args.cascade \
                else fabricate
            options = make(args.seed + i, os.path.join(base, f"case{i}"))
            draw = np.random.default_rng([args.seed + i, 3])
            if options["entry"] != "command" and draw.random() < args.resume:
                # predicted part by part into a half-filled folder, then finished with overwrite=False (both are
                # predict_from_files' arguments)
                if options["entry"] not in ("files", "lists"):
                    options["entry"] = str(draw.choice(["files", "lists"]))
                    options["description"] = options["description"].replace("; sequential,", f"; {options['entry']},")
                n_parts = int(draw.integers(2, 4))
                options["resume"] = {"num_parts": n_parts, "part_id": int(draw.integers(0, n_parts)),
                                     "drop": bool(draw.random() < 0.5)}
                options["description"] += f"; resumed {options['resume']}"
                _write_case_json(os.path.join(base, f"case{i}"), options)
            draw = np.random.default_rng([args.seed + i, 4])  # its own stream: --arrays 0 leaves the cases as before
            if not options.get("cascade") and not options.get("resume") and draw.random() < args.arrays:
                entry = str(draw.choice(ARRAY_ENTRIES))
                options["arrays"] = {"entry": entry, "manual": bool(draw.random() < 0.35),
                                     "spacing_only": bool(not entry.endswith("_files") and draw.random() < 0.6),
                                     "probabilities": bool(draw.random() < 0.5),
                                     "tensor_seed": int(draw.integers(0, 2 ** 31)),
                                     # callers hand over arrays of whatever dtype their loader gave
                                     "cast": [None, None, None, "float64", "float16", "int16"][int(draw.integers(6))]}
                options["description"] = options["description"].split("; ")[0] + (
                    f"; ARRAYS {options['arrays']}, tta {options['use_mirroring']}, step {options['tile_step_size']}, "
                    f"gaussian {options['use_gaussian']}, concurrent passes {options['concurrent_passes'] or 'default'}")
                _write_case_json(os.path.join(base, f"case{i}"), options)
                how = entry + (" (manual_initialization)" if options["arrays"]["manual"] else "")
                arrays[how] = arrays.get(how, 0) + 1
            descriptions[i] = options["description"]
        # each side writes into output folders of its own name
        ref, ours = run_both(args, __file__, [base, str(args.cases)], base,
                             lambda side: {"PREDICTION_FUZZ_SIDE": side})
        keys = list(range(args.cases))
        differing, refused_both, worst, n_files = compare(
            ref, ours, keys, lambda i: f"case seed {args.seed + i} ({descriptions[i]})", args.tolerance)
        print_summary("cases", args.cases, differing, refused_both, ref, ours)
        print(f"probabilities: {n_files} files compared, max |d| {worst:.3g} (tolerance {args.tolerance:g})")
        if arrays:
            print("in-memory entry points: " + ", ".join(f"{e} {n}" for e, n in sorted(arrays.items())))
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
