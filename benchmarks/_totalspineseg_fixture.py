"""The weights TotalSpineSeg would download, fabricated, and a small synthetic spine MRI: for totalspineseg_trial.py.

    python _totalspineseg_fixture.py DATA INPUT_FOLDER

TotalSpineSeg (totalspineseg.inference) looks in ``$TOTALSPINESEG_DATA/nnUNet/results/<dataset>`` for
Dataset101_TotalSpineSeg_step1 and Dataset102_TotalSpineSeg_step2 (else in the release subfolder r20260730, else it
downloads), takes ``<trainer>__<plans>__<configuration>`` from the first ``*/fold_*`` folder, uses fold 0 and
``checkpoint_best.pth`` if present else ``checkpoint_final.pth``. Written under DATA:

* step 1: trainer ``nnUNetTrainerDAExt`` (auglab's trainer that TotalSpineSeg copies into nnunetv2's trainer folder
  before predicting), plans ``nnUNetPlans_small``, 1 channel, labels 0..9 (discs 1-5, sacrum 6, C1 7, canal 8,
  cord 9), checkpoint_final.pth;
* step 2: trainer ``nnUNetTrainer_DASegOrd0_NoMirroring``, 2 channels (image + step-1 IVD labels, the second
  normalised with NoNormalization), labels 0..11, checkpoint_best.pth and checkpoint_final.pth (best is used);
* weights: seeded initialisation of a small PlainConvUNet; the head's biases are calibrated on the synthetic image so
  that every class occupies part of the image.

INPUT_FOLDER gets ``sub-01_T2w.nii.gz``: 48 x 40 x 96 voxels of 0.8 x 0.9 x 1.2 mm, RAS-like with a small rotation,
int16: a column of bright "discs" and darker "vertebrae" with a canal/cord tube behind, plus seeded noise.
"""
from __future__ import annotations

import json
import os
import sys

import nibabel as nib
import numpy as np
import torch

from _fabricated_models import intensities, single_configuration_plans, small_unet

STEP1 = ("Dataset101_TotalSpineSeg_step1", "nnUNetTrainerDAExt", 1, 10)
STEP2 = ("Dataset102_TotalSpineSeg_step2", "nnUNetTrainer_DASegOrd0_NoMirroring", 2, 12)
PLANS = "nnUNetPlans_small"


def _plans(dataset: str, n_channels: int) -> dict:
    # the first channel is the image; step 2's second channel is step 1's output, not normalised
    channel = intensities(0.0, 1000.0, 400.0, 380.0, 200.0, 5.0, 900.0)
    return single_configuration_plans(
        dataset, small_unet("plain", stages=3), [32, 32, 48], [1.0, 1.0, 1.0],
        ["ZScoreNormalization"] + ["NoNormalization"] * (n_channels - 1), [channel] * n_channels,
        original_median_spacing=[1.0, 1.0, 1.0], original_median_shape=[64, 64, 64],
        median_image_size=[64, 64, 64], plans_name=PLANS, data_identifier=f"{PLANS}_3d_fullres",
        reader_writer="NibabelIOWithReorient")


def _spine(shape, rng) -> np.ndarray:
    x, y, z = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    cx, cy = shape[0] / 2, shape[1] * 0.4
    img = np.full(shape, 60.0)
    body = ((x - cx) / (shape[0] * 0.3)) ** 2 + ((y - cy) / (shape[1] * 0.2)) ** 2 < 1
    period = 12
    disc = (z % period) < 3
    img[body & ~disc] = 350.0
    img[body & disc] = 800.0
    canal = ((x - cx) / 5) ** 2 + ((y - shape[1] * 0.75) / 4) ** 2 < 1
    cord = ((x - cx) / 2.5) ** 2 + ((y - shape[1] * 0.75) / 2) ** 2 < 1
    img[canal] = 900.0
    img[cord] = 450.0
    img += rng.normal(0, 30, shape)
    return np.clip(img, 0, None)


def write_images(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    a = _spine((48, 40, 96), rng)
    c, s = np.cos(0.08), np.sin(0.08)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.8, 0.9, 1.2])
    affine[:3, 3] = [-20.0, -18.0, -60.0]
    img = nib.Nifti1Image(np.round(a).astype(np.int16), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, 1)
    img.header.set_sform(affine, 1)
    path = os.path.join(folder, "sub-01_T2w.nii.gz")
    nib.save(img, path)
    return path


def _write_step(results: str, step, seed: int, calib: np.ndarray, checkpoints) -> None:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset, trainer, n_ch, n_cls = step
    folder = os.path.join(results, dataset, f"{trainer}__{PLANS}__3d_fullres")
    os.makedirs(os.path.join(folder, "fold_0"), exist_ok=True)
    plans = _plans(dataset, n_ch)
    names = ["background"] + [f"label_{i}" for i in range(1, n_cls)]
    channels = {"0": "MRI"} if n_ch == 1 else {"0": "MRI", "1": "odd_IVDs"}
    dataset_json = {"channel_names": channels, "labels": {n: i for i, n in enumerate(names)}, "numTraining": 100,
                    "file_ending": ".nii.gz", "name": dataset}
    for name, content in (("plans.json", plans), ("dataset.json", dataset_json)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f, indent=4)
    cm = PlansManager(plans).get_configuration("3d_fullres")
    torch.manual_seed(seed)
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                      cm.network_arch_init_kwargs_req_import, n_ch, n_cls, allow_init=True,
                                      deep_supervision=True)
    # calibrate the head so that every class wins somewhere: equalise the per-class median logits
    data = (calib - calib.mean()) / max(calib.std(), 1e-8)
    patch = np.ascontiguousarray(data[8:40, 4:36, 24:72], dtype=np.float32)[None]
    if n_ch == 2:
        patch = np.concatenate([patch, (patch > 1.0).astype(np.float32)], 0)
    network.eval()
    with torch.no_grad():
        out = network(torch.from_numpy(patch)[None])
        out = out[0] if isinstance(out, (list, tuple)) else out
        med = out[0].flatten(1).median(1).values
        head = network.decoder.seg_layers[-1]
        head.bias -= med
        head.bias[0] += 0.3  # background a bit more likely
    for i, ck in enumerate(checkpoints):
        if i:  # a different "best" network
            with torch.no_grad():
                network.decoder.seg_layers[-1].bias[1:] += 0.05
        torch.save({"network_weights": network.state_dict(),
                    "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0,
                                  "dataset_json": dataset_json, "device": "cpu"},
                    "trainer_name": trainer, "inference_allowed_mirroring_axes": None, "current_epoch": 1000},
                   os.path.join(folder, "fold_0", ck))


def main(data: str, input_folder: str) -> None:
    path = write_images(input_folder)
    calib = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    results = os.path.join(data, "nnUNet", "results")
    _write_step(results, STEP1, 3, calib, ["checkpoint_final.pth"])
    _write_step(results, STEP2, 4, calib, ["checkpoint_final.pth", "checkpoint_best.pth"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
