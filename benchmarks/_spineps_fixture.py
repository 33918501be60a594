"""The models SPINEPS would download, fabricated, and small synthetic sagittal T2w spine MRIs: for spineps_trial.py.

    python _spineps_fixture.py MODELS_DIR DATASET_DIR

Run with an interpreter that has an nnunetv2 (either implementation: the checkpoint format is the same), SPINEPS and
TPTBox. SPINEPS finds its models under ``$SPINEPS_SEGMENTOR_MODELS`` (spineps.utils.filepaths) by searching
``**/inference_config.json``; a folder whose config names ``modeltype: nnunet`` is loaded by TPTBox's own
nnUNetPredictor copy (TPTBox.segmentation.nnUnet_utils) from ``plans.json``, ``dataset.json`` and
``fold_X/checkpoint_final.pth`` beside it; ``modeltype: unet`` is SPINEPS's instance model (a PyTorch-Lightning
``PLNet`` checkpoint ``*weights*.ckpt``). Written under MODELS_DIR:

* ``t2w_fab``: semantic model, nnU-Net plans with an ``architecture`` entry (nnU-Net >= 2.3 format), one fold
  (``fold_0``), PlainConvUNet 4 stages 8..64 features, patch 16x64x64 at 3 x 1.2 x 1.2 mm (R, I, P after
  TPTBox's axis reversal), ZScoreNormalization, six outputs mapped to SPINEPS subregions (corpus border, canal,
  disc, arcus, spinosus); the head's biases are calibrated on the first image so that each label covers part of it;
* ``t2w_legacy``: the same weights with pre-2.3 plans (``UNet_class_name``, ``conv_kernel_sizes``, ... and no
  ``architecture``), ``fold_all`` (TPTBox builds the network itself with nnunetv2's InitWeights_He);
* ``instance_fab``: the instance model, PLNet with seeded random weights, cutout 48 x 64 x 16 at 1.5 x 1.5 x 3 mm.

DATASET_DIR gets a BIDS dataset: ``rawdata/sub-001/sub-001_acq-sag_T2w.nii.gz`` (RAS, 16 x 96 x 128 voxels of
3.5 x 1.1 x 1.0 mm, uint16) and ``rawdata/sub-002/sub-002_acq-sag_T2w.nii.gz`` (stored PIR-like with a small
rotation, 88 x 112 x 14 voxels of 1.2 x 1.0 x 3.3 mm, float32): a body, a column of vertebral bodies with discs
between them, a bright spinal canal behind, spinous processes, seeded noise.
"""
from __future__ import annotations

import copy
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _fabricated_models import intensities, seeded_network, single_configuration_plans, write_checkpoint  # noqa: E402

SEMANTIC_LABELS = {"1": "Vertebra_Corpus_border", "2": "Spinal_Canal", "3": "Vertebra_Disc", "4": "Arcus_Vertebrae",
                   "5": "Spinosus_Process"}
PATCH = [16, 64, 64]
SPACING = [3.0, 1.2, 1.2]


def _architecture() -> dict:
    kernels = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    kwargs = {"n_stages": 4, "features_per_stage": [8, 16, 32, 64], "conv_op": "torch.nn.modules.conv.Conv3d",
              "kernel_sizes": kernels, "strides": strides, "n_conv_per_stage": [2, 2, 2, 2],
              "n_conv_per_stage_decoder": [2, 2, 2], "conv_bias": True,
              "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
              "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
              "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    return {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": kwargs, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def _plans() -> dict:
    return single_configuration_plans(
        "Dataset101_SpinepsTrial", _architecture(), PATCH, SPACING, "ZScoreNormalization",
        intensities(0.0, 1.0, 0.45, 0.42, 0.2, 0.01, 0.98), original_median_spacing=[3.3, 0.6, 0.6],
        original_median_shape=[16, 400, 400], median_image_size=[18, 200, 200])


def _legacy_plans(plans: dict) -> dict:
    """The same configuration in nnU-Net 2.0-2.2's plans format (no ``architecture``)."""
    legacy = copy.deepcopy(plans)
    conf = legacy["configurations"]["3d_fullres"]
    arch = conf.pop("architecture")["arch_kwargs"]
    conf.update({"UNet_class_name": "PlainConvUNet", "UNet_base_num_features": 8,
                 "n_conv_per_stage_encoder": arch["n_conv_per_stage"],
                 "n_conv_per_stage_decoder": arch["n_conv_per_stage_decoder"], "num_pool_per_axis": [2, 3, 3],
                 "pool_op_kernel_sizes": arch["strides"], "conv_kernel_sizes": arch["kernel_sizes"],
                 "unet_max_num_features": 64})
    return legacy


def _spine(shape_pir, zoom_pir, rng) -> np.ndarray:
    """A sagittal spine in P, I, R voxel order (intensities ~0..1000)."""
    P, I, R = (np.arange(s) * z for s, z in zip(shape_pir, zoom_pir))
    p, i, r = np.meshgrid(P - P.mean(), I - I.mean(), R - R.mean(), indexing="ij")
    img = np.zeros(shape_pir)
    img[(p / (0.45 * np.ptp(P))) ** 2 + (r / (0.6 * np.ptp(R) + 1)) ** 2 < 1] = 250.0  # body / muscle
    img[p > 0.42 * np.ptp(P)] = 0.0  # air behind
    for k, ci in enumerate(np.arange(-0.38, 0.40, 0.155) * np.ptp(I)):  # vertebral bodies and discs
        body = (np.abs(p + 8) < 13) & (np.abs(i - ci) < 9) & (np.abs(r) < 18)
        img[body] = 550.0 + 25 * k
        disc = (np.abs(p + 8) < 12) & (np.abs(i - ci - 11.5) < 2.5) & (np.abs(r) < 16)
        img[disc] = 800.0
        spin = (np.abs(p - 22) < 6) & (np.abs(i - ci + 2) < 5) & (np.abs(r) < 4)
        img[spin] = 450.0
    canal = (np.abs(p - 9) < 3.5) & (np.abs(r) < 6)
    img[canal] = 1000.0
    img += rng.normal(0, 20, shape_pir)
    return np.clip(img, 0, None)


def write_images(dataset: str) -> list:
    import nibabel as nib
    rng = np.random.default_rng(7)
    paths = []
    # sub-001: RAS (x: R, y: A, z: S), uint16; PIR voxel order needs the axes flipped / permuted
    zoom = (3.5, 1.1, 1.0)
    pir = _spine((96, 128, 16), (zoom[1], zoom[2], zoom[0]), rng)  # P, I, R
    ras = np.transpose(pir[::-1, ::-1, :], (2, 0, 1))  # -> R, A, S
    affine = np.diag([*zoom, 1.0])
    affine[:3, 3] = [-28.0, -52.0, -64.0]
    img = nib.Nifti1Image(np.round(ras).astype(np.uint16), affine)
    img.header.set_xyzt_units("mm", "sec")
    paths.append(_save(img, dataset, "sub-001"))
    # sub-002: PIR with a small rotation, float32
    zoom = (1.2, 1.0, 3.3)
    pir = _spine((88, 112, 14), zoom, rng)
    c, s = np.cos(0.08), np.sin(0.08)
    rot = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)  # columns: P, I, R in RAS world
    tilt = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    affine = np.eye(4)
    affine[:3, :3] = tilt @ rot @ np.diag(zoom)
    affine[:3, 3] = [-22.0, 50.0, 56.0]
    img = nib.Nifti1Image(pir.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, 1)
    img.header.set_sform(affine, 1)
    paths.append(_save(img, dataset, "sub-002"))
    return paths


def _save(img, dataset: str, subject: str) -> str:
    import nibabel as nib
    folder = os.path.join(dataset, "rawdata", subject)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{subject}_acq-sag_T2w.nii.gz")
    nib.save(img, path)
    return path


def _inference_config(name: str, **over) -> dict:
    conf = {"log_name": name, "modality": "T2w", "acquisition": "sag", "modeltype": "nnunet",
            "model_expected_orientation": ["P", "I", "R"], "available_folds": 1, "inference_augmentation": True,
            "resolution_range": [1.2, 1.2, 3.0], "default_step_size": 0.5, "labels": SEMANTIC_LABELS}
    conf.update(over)
    return conf


def _calibrate(network, image_path: str) -> None:
    """Shift the head's biases so that each foreground label wins on a part of the first image."""
    import nibabel as nib
    import torch
    from TPTBox import to_nii
    nii = to_nii(image_path).reorient_(("P", "I", "R")).rescale_((1.2, 1.2, 3.0))
    data = nii.get_array().astype(np.float32).transpose(2, 1, 0)  # R, I, P as TPTBox hands it to nnU-Net
    data = (data - data.mean()) / max(data.std(), 1e-8)
    idx = [np.linspace(0, s - 1, t).round().astype(int) for s, t in zip(data.shape, PATCH)]
    patch = torch.from_numpy(np.ascontiguousarray(data[np.ix_(*idx)]))[None, None]
    network.eval()
    with torch.no_grad():
        out = network(patch)
        out = out[0] if isinstance(out, (list, tuple)) else out
        logits = out[0].flatten(1)
        head = network.decoder.seg_layers[-1]
        n = logits.shape[0]
        share = {1: 0.35, 2: 0.06, 3: 0.04, 4: 0.06, 5: 0.04}  # corpus border on a third (the instance phase needs it)
        for c in range(1, n):  # label c beats background on its top share[c] of the voxels
            diff = logits[c] - logits[0]
            head.bias[c] -= float(torch.quantile(diff, 1 - share.get(c, 0.05)))
    del nib


def write_models(models: str, calibration_image: str) -> None:
    import torch
    plans = _plans()
    dataset_json = {"channel_names": {"0": "T2w"}, "labels": {"background": 0, **{f"l{k}": int(k) for k in
                                                                                    SEMANTIC_LABELS}},
                    "numTraining": 100, "file_ending": ".nii.gz", "name": "Dataset101_SpinepsTrial"}
    network = seeded_network(plans, len(dataset_json["labels"]), seed=5)
    _calibrate(network, calibration_image)
    for name, p, fold, conf in (("t2w_fab", plans, 0, _inference_config("t2w_fab")),
                                ("t2w_legacy", _legacy_plans(plans), "all",
                                 _inference_config("t2w_legacy", available_folds="all",
                                                   inference_augmentation=False))):
        folder = os.path.join(models, name)
        os.makedirs(folder, exist_ok=True)
        for fname, content in (("plans.json", p), ("dataset.json", dataset_json), ("inference_config.json", conf)):
            with open(os.path.join(folder, fname), "w") as f:
                json.dump(content, f, indent=4)
        write_checkpoint(os.path.join(folder, f"fold_{fold}", "checkpoint_final.pth"), network, p, dataset_json,
                         fold, "nnUNetTrainer", (0, 1, 2), 1000)

    # the instance model: spineps' PLNet (Unet3D, 10 one-hot channels in, 4 classes out)
    import pytorch_lightning as pl
    from spineps.architectures.pl_unet import PLNet
    torch.manual_seed(11)
    net = PLNet()
    with torch.no_grad():  # favour class 2 (the middle vertebra of a 3-vertebra cutout) where the corpus is
        net.network.final_conv.bias.copy_(torch.tensor([0.0, -0.5, 0.3, -0.5]))
    folder = os.path.join(models, "instance_fab")
    os.makedirs(folder, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "hyper_parameters": dict(net.hparams),
                "pytorch-lightning_version": pl.__version__, "epoch": 1, "global_step": 1},
               os.path.join(folder, "instance_fab_weights.ckpt"))
    conf = {"log_name": "instance_fab", "modality": "SEG", "acquisition": "sag", "modeltype": "unet",
            "model_expected_orientation": ["P", "I", "R"], "available_folds": 1, "inference_augmentation": False,
            "resolution_range": [1.5, 1.5, 3.0], "default_step_size": 0.5,
            "labels": {"0": "0", "1": "1", "2": "2", "3": "3"}, "cutout_size": [48, 64, 16]}
    with open(os.path.join(folder, "inference_config.json"), "w") as f:
        json.dump(conf, f, indent=4)


def main(models: str, dataset: str) -> None:
    images = write_images(dataset)
    write_models(models, images[0])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
