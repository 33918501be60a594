"""A tiny two-stage (3d_lowres -> 3d_cascade_fullres) model folder for the cascade tests, built without planning or
training: hand-written plans and untrained (seeded) networks saved as checkpoints. The predictor only needs
plans.json, dataset.json and fold_X/checkpoint_final.pth.

Geometry is chosen so that the full-resolution preprocessing is the identity up to a transpose: the test images
have exactly the 3d_fullres spacing (after transpose_forward) and positive intensities everywhere (no nonzero crop).
So the previous-stage one-hot channels the network sees must equal the previous-stage file, transposed.

Also usable as a script (``python _cascade_model.py ROOT``) to build the same folders for a manual comparison with
the reference implementation.
"""
from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Dict

import numpy as np

DATASET_ID = 323
DATASET_NAME = "Dataset323_TinyCascade"
TRAINER = "nnUNetTrainer"
LABELS = {"background": 0, "object": 1, "core": 2}
SHAPE_ZYX = (8, 20, 24)                 # array shape of the test images (SimpleITK order)
SPACING_ZYX = (3.0, 0.8, 0.7)
TRANSPOSE_FORWARD = [0, 2, 1]           # not the identity, so that transposes are exercised
ORIGIN_XYZ = (-3.5, 7.25, 12.0)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
CASES = ("tc_000", "tc_001")


def _arch() -> dict:
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[1, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [1, 2, 2]],
            "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def _configuration(identifier: str, spacing, median_shape) -> dict:
    return {
        "data_identifier": identifier, "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [8, 16, 16], "median_image_size_in_voxels": list(median_shape), "spacing": list(spacing),
        "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": _arch(), "batch_dice": False,
    }


def tiny_cascade_plans() -> dict:
    sp = [SPACING_ZYX[i] for i in TRANSPOSE_FORWARD]
    shape = [SHAPE_ZYX[i] for i in TRANSPOSE_FORWARD]
    low_sp = [sp[0], sp[1] * 2, sp[2] * 2]
    low_shape = [shape[0], shape[1] // 2, shape[2] // 2]
    lowres = _configuration("nnUNetPlans_3d_lowres", low_sp, low_shape)
    lowres["next_stage"] = "3d_cascade_fullres"
    return {
        "dataset_name": DATASET_NAME, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": sp, "original_median_shape_after_transp": shape,
        "image_reader_writer": "SimpleITKIO", "transpose_forward": TRANSPOSE_FORWARD,
        "transpose_backward": [int(i) for i in np.argsort(TRANSPOSE_FORWARD)],
        "configurations": {
            "3d_lowres": lowres,
            "3d_fullres": _configuration("nnUNetPlans_3d_fullres", sp, shape),
            "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
        },
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 180.0, "mean": 120.0, "median": 118.0, "min": 40.0, "percentile_00_5": 45.0,
            "percentile_99_5": 175.0, "std": 30.0}},
    }


def dataset_json() -> dict:
    return {"channel_names": {"0": "CT"}, "labels": dict(LABELS), "numTraining": 2, "file_ending": ".nii.gz",
            "name": "TinyCascade"}


def _write_nifti(array_zyx: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(tuple(float(s) for s in SPACING_ZYX[::-1]))
    img.SetOrigin(ORIGIN_XYZ)
    img.SetDirection(DIRECTION)
    sitk.WriteImage(img, str(path), True)


def label_map(seed: int) -> np.ndarray:
    """A (z, y, x) uint8 map with an 'object' box holding a 'core' box; position depends on the seed."""
    rng = np.random.RandomState(seed)
    seg = np.zeros(SHAPE_ZYX, dtype=np.uint8)
    z0, y0, x0 = rng.randint(0, 3), rng.randint(1, 8), rng.randint(1, 10)
    seg[z0:z0 + 5, y0:y0 + 10, x0:x0 + 12] = 1
    seg[z0 + 1:z0 + 4, y0 + 3:y0 + 7, x0 + 3:x0 + 8] = 2
    return seg


def write_images(folder: Path) -> None:
    """CASE_0000.nii.gz for every case: positive intensities everywhere (no nonzero crop)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(CASES):
        seg = label_map(100 + i)
        rng = np.random.RandomState(i)
        img = np.array([80.0, 150.0, 120.0], dtype=np.float32)[seg] + rng.uniform(-10, 10, SHAPE_ZYX)
        _write_nifti(img.astype(np.float32), folder / f"{case}_0000.nii.gz")


def write_segmentation(seg_zyx: np.ndarray, path: Path) -> None:
    _write_nifti(seg_zyx.astype(np.uint8), path)


def _save_checkpoint(model_dir: Path, plans: dict, configuration: str, num_input_channels: int, seed: int) -> None:
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    arch = _arch()
    torch.manual_seed(seed)
    net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                 num_input_channels, len(LABELS), allow_init=True, deep_supervision=True)
    # untrained networks are nearly constant; give the output layer some spread so predictions vary per voxel
    with torch.no_grad():
        for p in net.decoder.seg_layers.parameters():
            p.normal_(0, 1)
    fold = model_dir / "fold_0"
    fold.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": net.state_dict(), "trainer_name": TRAINER, "current_epoch": 1,
                "init_args": {"plans": plans, "configuration": configuration, "fold": 0,
                              "dataset_json": dataset_json(), "device": "cpu"},
                "inference_allowed_mirroring_axes": (0, 1, 2), "optimizer_state": {}, "grad_scaler_state": None,
                "logging": {}, "_best_ema": None}, str(fold / "checkpoint_final.pth"))


def model_environment(root: Path, monkeypatch) -> Dict[str, Path]:
    """Fresh nnUNet_raw/_preprocessed/_results under ``root`` (set with ``monkeypatch``, no torch.compile or batched
    TTA from the caller's environment), the model folders built in it and the test images in ``root/imagesTs``."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir()
        monkeypatch.setenv(name, str(root / name))
    for name in ("nnUNet_compile", "nnUNet_tta_batch"):
        monkeypatch.delenv(name, raising=False)
    models = build_model_folders(root / "nnUNet_results")
    write_images(root / "imagesTs")
    return models


def build_model_folders(results: Path) -> Dict[str, Path]:
    """``<results>/Dataset323_TinyCascade/nnUNetTrainer__nnUNetPlans__{3d_lowres,3d_cascade_fullres}``."""
    plans = tiny_cascade_plans()
    out = {}
    for configuration, n_in, seed in (("3d_lowres", 1, 1), ("3d_cascade_fullres", 1 + len(LABELS) - 1, 2)):
        d = results / DATASET_NAME / f"{TRAINER}__nnUNetPlans__{configuration}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "plans.json").write_text(json.dumps(copy.deepcopy(plans), indent=4))
        (d / "dataset.json").write_text(json.dumps(dataset_json(), indent=4))
        _save_checkpoint(d, plans, configuration, n_in, seed)
        out[configuration] = d
    return out


if __name__ == "__main__":  # pragma: no cover - manual comparison with the reference
    root = Path(sys.argv[1])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    build_model_folders(root / "nnUNet_results")
    write_images(root / "imagesTs")
    prev = root / "handmade_prev"
    prev.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(CASES):
        write_segmentation(label_map(200 + i), prev / f"{case}.nii.gz")
    print(f"built {root}")
