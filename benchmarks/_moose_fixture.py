"""The weights MOOSE (moosez) would download, fabricated, and small synthetic CTs: for moose_trial.py.

    python _moose_fixture.py MODELS_DIR DATA_DIR

Run with an interpreter that has moosez and an nnunetv2 (either implementation: the checkpoint format is the same).
MOOSE keeps its models in ``site-packages/moosez/models/nnunet_trained_models`` (moosez.system.MODELS_DIRECTORY_PATH,
no environment variable); a model ``<name>`` lives in ``MODEL_METADATA[name]['folder_name']`` there, holding
``model_version.json`` ({"url": MODEL_METADATA[name]['url']}; another url makes MOOSE delete the folder and
download) and exactly one ``TRAINER__PLANS__CONFIG`` folder with ``dataset.json``, ``plans.json`` and one
``fold_X/checkpoint_final.pth`` per fold (MOOSE passes every sub-folder name minus ``fold_`` as use_folds, strings).
MODELS_DIR gets the three model folders below; the trial copies them into each venv.

* clin_ct_organs (Dataset123_Organs): 3d_fullres at 3 x 2 x 2 mm, patch 32x48x48, two folds, mirroring (1, 2);
* clin_ct_body (Dataset001_body): 3d_fullres at 4 mm, patch 32^3, one fold, no mirroring, transpose_forward [0, 2, 1];
  label 3 ("head") is what the clin_ct_face workflow crops with;
* clin_ct_face (Dataset006_face_ear_v2): 3d_fullres at 2.5 mm, patch 32^3, fold 0, mirroring (0, 1, 2).

Networks: small PlainConvUNets with the trainer's seeded initialisation; the segmentation head's bias is shifted so
that the classes share the calibration image (else one class wins everywhere and nothing is compared).

DATA_DIR gets subject folders (MOOSE's layout: ``DATA_DIR/<subject>/CT_<anything>.nii.gz``):
* ``s01/CT_s01.nii.gz``: 80 x 72 x 40 voxels of 2.2 x 2.2 x 4 mm, LPS affine (negative x/y), int16 HU;
* ``s02/CT_scan.nii``: 64 x 64 x 48 voxels of 2.6 x 2.6 x 3.2 mm, RAS with a small rotation, float32;
``long/l01/CT_long.nii.gz`` (a subject for the chunked-inference case): 32 x 30 x 366 voxels of
4 mm (more than 350 slices at the model's 4 mm: MOOSE cuts the array into overlapping chunks).
"""
from __future__ import annotations

import json
import os
import sys

import nibabel as nib
import numpy as np
import torch

# name -> dict(folder, trainer, spacing (plans order), patch, strides, folds, mirror, transpose, labels, seed)
MODELS = {
    "clin_ct_organs": dict(folder="Dataset123_Organs", trainer="nnUNetTrainer", spacing=[3.0, 2.0, 2.0],
                           patch=[32, 48, 48], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
                           folds=["0", "1"], mirror=(1, 2), transpose=[0, 1, 2],
                           labels=["liver", "spleen", "kidney_right", "kidney_left", "lung_right", "lung_left"],
                           seed=123),
    "clin_ct_body": dict(folder="Dataset001_body", trainer="nnUNetTrainer", spacing=[4.0, 4.0, 4.0],
                         patch=[32, 32, 32], strides=[[1, 1, 1]] + [[2, 2, 2]] * 3, folds=["0"], mirror=None,
                         transpose=[0, 2, 1], labels=["legs", "body", "head", "arms"], seed=1),
    "clin_ct_face": dict(folder="Dataset006_face_ear_v2", trainer="nnUNetTrainer", spacing=[2.5, 2.5, 2.5],
                         patch=[32, 32, 32], strides=[[1, 1, 1]] + [[2, 2, 2]] * 3, folds=["0"], mirror=(0, 1, 2),
                         transpose=[0, 1, 2], labels=["eye_left", "eye_right", "nose", "ear_left"], seed=6),
}


def _plans(dataset: str, m: dict) -> dict:
    def interpolation(is_seg: bool, order: int) -> dict:
        return {"is_seg": is_seg, "order": order, "order_z": 0, "force_separate_z": None}

    architecture = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": 4, "features_per_stage": [8, 16, 32, 64],
                        "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * 4,
                        "strides": m["strides"], "n_conv_per_stage": [2, 2, 2, 2],
                        "n_conv_per_stage_decoder": [2, 2, 2], "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                        "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    backward = [int(i) for i in np.argsort(m["transpose"])]
    return {
        "dataset_name": dataset, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": m["spacing"], "original_median_shape_after_transp": [300, 256, 256],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": m["transpose"], "transpose_backward": backward,
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": m["patch"], "median_image_size_in_voxels": [200, 200, 200], "spacing": m["spacing"],
            "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": interpolation(False, 3), "resampling_fn_seg_kwargs": interpolation(True, 1),
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": interpolation(False, 1),
            "architecture": architecture, "batch_dice": False}},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 3000.0, "mean": 60.0, "median": 45.0, "min": -1024.0, "percentile_00_5": -900.0,
            "percentile_99_5": 1200.0, "std": 220.0}},
    }


def _body(shape, rng, spacing) -> np.ndarray:
    """HU volume (x, y, z voxel order): air, body ellipse of fat/soft tissue, two lungs, liver, spine, noise."""
    ext = [s * sp for s, sp in zip(shape, spacing)]
    x, y, z = np.meshgrid(*[np.linspace(-e / 2, e / 2, s) for e, s in zip(ext, shape)], indexing="ij")
    ax, ay = 0.45 * ext[0], 0.4 * ext[1]
    img = np.full(shape, -1000.0)
    body = (x / ax) ** 2 + (y / ay) ** 2 < 1
    img[body] = -90.0
    img[(x / (0.85 * ax)) ** 2 + (y / (0.85 * ay)) ** 2 < 1] = 40.0
    zz = z / (ext[2] / 2)
    for cx in (-0.45, 0.45):
        lung = ((x - cx * ax) / (0.3 * ax)) ** 2 + (y / (0.55 * ay)) ** 2 + ((zz - 0.4) / 0.5) ** 2 < 1
        img[lung] = -820.0
    liver = ((x + 0.3 * ax) / (0.35 * ax)) ** 2 + ((y + 0.1 * ay) / (0.4 * ay)) ** 2 + ((zz + 0.2) / 0.3) ** 2 < 1
    img[liver] = 65.0
    img[((x) / (0.08 * ax)) ** 2 + ((y - 0.6 * ay) / (0.1 * ay)) ** 2 < 1] = 750.0
    img += rng.normal(0, 15, shape)
    return img


def write_images(folder: str) -> None:
    rng = np.random.default_rng(7)
    os.makedirs(os.path.join(folder, "s01"), exist_ok=True)
    sp = (2.2, 2.2, 4.0)
    a = _body((80, 72, 40), rng, sp)
    affine = np.diag([-sp[0], -sp[1], sp[2], 1.0])
    affine[:3, 3] = [88.0, 79.0, -80.0]
    img = nib.Nifti1Image(np.round(a).astype(np.int16), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, 1)
    img.header.set_sform(affine, 1)
    nib.save(img, os.path.join(folder, "s01", "CT_s01.nii.gz"))

    os.makedirs(os.path.join(folder, "s02"), exist_ok=True)
    sp = (2.6, 2.6, 3.2)
    b = _body((64, 64, 48), rng, sp)
    c, s = np.cos(0.08), np.sin(0.08)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(sp)
    affine[:3, 3] = [-80.0, -85.0, -75.0]
    img = nib.Nifti1Image(b.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, os.path.join(folder, "s02", "CT_scan.nii"))

    os.makedirs(os.path.join(folder, "long", "l01"), exist_ok=True)
    sp = (4.0, 4.0, 4.0)
    c = _body((32, 30, 366), rng, sp)
    affine = np.diag([sp[0], sp[1], sp[2], 1.0])
    affine[:3, 3] = [-64.0, -60.0, -700.0]
    img = nib.Nifti1Image(np.round(c).astype(np.int16), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, os.path.join(folder, "long", "l01", "CT_long.nii.gz"))


def write_model(models_dir: str, name: str, m: dict, calibration: np.ndarray, url: str) -> None:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    root = os.path.join(models_dir, m["folder"])
    config_dir = os.path.join(root, f"{m['trainer']}__nnUNetPlans__3d_fullres")
    os.makedirs(config_dir, exist_ok=True)
    with open(os.path.join(root, "model_version.json"), "w") as f:
        json.dump({"url": url}, f)
    plans = _plans(m["folder"], m)
    labels = {"background": 0, **{n: i + 1 for i, n in enumerate(m["labels"])}}
    dataset_json = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 321, "file_ending": ".nii.gz",
                    "name": m["folder"]}
    for fname, content in (("plans.json", plans), ("dataset.json", dataset_json)):
        with open(os.path.join(config_dir, fname), "w") as f:
            json.dump(content, f, indent=4)
    cm = PlansManager(plans).get_configuration("3d_fullres")
    n_classes = len(labels)
    # calibration patch: CT-normalised crop of the synthetic image, patch size, in plans axis order (z, y, x -> transp)
    props = plans["foreground_intensity_properties_per_channel"]["0"]
    data = np.clip(calibration, props["percentile_00_5"], props["percentile_99_5"])
    data = (data - props["mean"]) / props["std"]
    data = np.transpose(data, m["transpose"])
    idx = [np.linspace(0, s - 1, p).round().astype(int) for s, p in zip(data.shape, m["patch"])]
    patch = torch.from_numpy(np.ascontiguousarray(data[np.ix_(*idx)]).astype(np.float32))[None, None]
    for k, fold in enumerate(m["folds"]):
        torch.manual_seed(m["seed"] + k)
        network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                          cm.network_arch_init_kwargs_req_import, 1, n_classes, allow_init=True,
                                          deep_supervision=True)
        network.eval()
        head = network.decoder.seg_layers[-1]
        with torch.no_grad():
            for _ in range(30):  # balance: shift each class's bias by how far it is from a fair share
                out = network(patch)
                out = out[0] if isinstance(out, (list, tuple)) else out
                logits = out[0].reshape(n_classes, -1)
                share = torch.bincount(logits.argmax(0), minlength=n_classes).float() / logits.shape[1]
                head.bias -= 0.5 * torch.log((share + 0.02) / (1.0 / n_classes))
        os.makedirs(os.path.join(config_dir, f"fold_{fold}"), exist_ok=True)
        torch.save({"network_weights": network.state_dict(),
                    "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": int(fold),
                                  "dataset_json": dataset_json, "device": "cpu"},
                    "trainer_name": m["trainer"], "inference_allowed_mirroring_axes": m["mirror"],
                    "current_epoch": 1000},
                   os.path.join(config_dir, f"fold_{fold}", "checkpoint_final.pth"))
        print(name, fold, "class shares", [round(float(v), 3) for v in share])


def main(models_dir: str, data_dir: str) -> None:
    from moosez.models import MODEL_METADATA
    write_images(data_dir)
    ct = np.asarray(nib.load(os.path.join(data_dir, "s01", "CT_s01.nii.gz")).dataobj, dtype=np.float32)
    calibration = np.transpose(ct, (2, 1, 0))  # SimpleITK/numpy order z, y, x
    for name, m in MODELS.items():
        write_model(models_dir, name, m, calibration, MODEL_METADATA[name]["url"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
