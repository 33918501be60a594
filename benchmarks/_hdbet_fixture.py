"""The weights HD-BET 2 would download, fabricated, and small synthetic T1-like MRIs: for hdbet_trial.py.

    python _hdbet_fixture.py HOME INPUT_FOLDER [--arch plain|resenc]

Run with an interpreter that has an nnunetv2 (either implementation: the checkpoint format is the same). HD-BET
looks for ``~/hd-bet_params/release_2.0.0/fold_all/checkpoint_final.pth`` (HD_BET.paths, evaluated at import from
``os.path.expanduser('~')``) and only downloads when that file is missing; its predictor loads the folder itself
(``initialize_from_trained_model_folder(folder, 'all')``), so the folder holds ``dataset.json``, ``plans.json`` and
``fold_all/checkpoint_final.pth`` directly. Written under HOME (used as $HOME for the client):

* plans: one ``3d_fullres`` configuration at 2 mm, patch 48^3, ZScoreNormalization (HD-BET takes any MR sequence),
  a small PlainConvUNet (4 stages, 8..64 features) or ResidualEncoderUNet (``--arch resenc``), trainer
  ``nnUNetTrainer``, labels background/brain;
* weights: the trainer's initialisation with a fixed seed; the head's bias is calibrated on the first synthetic image
  so that about a third of the head is "brain" (else a random net says all or nothing and nothing is compared).

INPUT_FOLDER gets ``t1_a.nii.gz`` (96 x 88 x 80 voxels of 1.5 mm, an LPS-like affine with a small rotation, int16) and
``t1_b.nii.gz`` (72 x 80 x 64 voxels of 1.8 x 1.8 x 2.2 mm, float32, RAS), a head: skull ring, CSF, grey/white
matter ellipsoids and ventricles with seeded noise.
"""
from __future__ import annotations

import json
import os
import sys

import nibabel as nib
import numpy as np
import torch

from _fabricated_models import intensities, single_configuration_plans, small_unet

TRAINER = "nnUNetTrainer"


def _plans(kind: str) -> dict:
    return single_configuration_plans(
        "Dataset001_HDBETtrial", small_unet(kind, conv_per_decoder_stage=1 if kind == "resenc" else 2), [48, 48, 48],
        [2.0, 2.0, 2.0], "ZScoreNormalization", intensities(0.0, 4000.0, 600.0, 580.0, 300.0, 5.0, 1500.0),
        original_median_spacing=[1.0, 1.0, 1.0], original_median_shape=[170, 200, 170],
        median_image_size=[85, 100, 85])


def _head(shape, rng) -> np.ndarray:
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = (x / 0.85) ** 2 + (y / 0.9) ** 2 + (z / 0.8) ** 2
    img = np.zeros(shape)
    img[r < 1.0] = 900.0      # scalp / skull (bright fat)
    img[r < 0.85] = 150.0     # skull (dark)
    img[r < 0.75] = 300.0     # CSF
    img[r < 0.68] = 650.0     # grey matter
    img[r < 0.45] = 850.0     # white matter
    for cx in (-0.15, 0.15):  # ventricles
        img[((x - cx) / 0.08) ** 2 + (y / 0.25) ** 2 + ((z - 0.05) / 0.12) ** 2 < 1] = 250.0
    img += rng.normal(0, 25, shape)
    return np.clip(img, 0, None)


def write_images(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    # a: LPS-like with a small rotation about z, int16
    a = _head((96, 88, 80), rng)
    c, s = np.cos(0.1), np.sin(0.1)
    rot = np.array([[-c, s, 0], [-s, -c, 0], [0, 0, 1]]) * 1.5
    affine = np.eye(4)
    affine[:3, :3] = rot
    affine[:3, 3] = [70.0, 65.0, -60.0]
    img = nib.Nifti1Image(np.round(a).astype(np.int16), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, 1)
    img.header.set_sform(affine, 1)
    nib.save(img, os.path.join(folder, "t1_a.nii.gz"))
    # b: RAS, anisotropic, float32
    b = _head((72, 80, 64), rng)
    affine = np.diag([1.8, 1.8, 2.2, 1.0])
    affine[:3, 3] = [-64.0, -72.0, -70.0]
    img = nib.Nifti1Image(b.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, os.path.join(folder, "t1_b.nii.gz"))


def write_model(home: str, kind: str, calibration_image: str) -> str:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = os.path.join(home, "hd-bet_params", "release_2.0.0")
    os.makedirs(os.path.join(folder, "fold_all"), exist_ok=True)
    plans = _plans(kind)
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "brain": 1}, "numTraining": 1500,
                    "file_ending": ".nii.gz", "name": "Dataset001_HDBETtrial"}
    for name, content in (("plans.json", plans), ("dataset.json", dataset_json)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f, indent=4)
    cm = PlansManager(plans).get_configuration("3d_fullres")
    torch.manual_seed(2)
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                      cm.network_arch_init_kwargs_req_import, 1, 2, allow_init=True,
                                      deep_supervision=True)
    # calibrate: a 48^3 crop of the z-scored image (every 4/3rd voxel ~ 2 mm); "brain" for its top third of
    # (logit1 - logit0), so that the mask has a boundary where small numeric differences would show
    data = np.asarray(nib.load(calibration_image).dataobj, dtype=np.float32)
    data = (data - data.mean()) / max(data.std(), 1e-8)
    idx = [np.linspace(0, s - 1, 64).round().astype(int)[8:56] for s in data.shape]
    patch = torch.from_numpy(np.ascontiguousarray(data[np.ix_(*idx)]))[None, None]
    network.eval()
    with torch.no_grad():
        out = network(patch)
        out = out[0] if isinstance(out, (list, tuple)) else out
        diff = (out[0, 1] - out[0, 0]).flatten()
        shift = float(torch.quantile(diff, 2 / 3))
        head = network.decoder.seg_layers[-1]
        head.bias[1] -= shift / 2
        head.bias[0] += shift / 2
    torch.save({"network_weights": network.state_dict(),
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": "all",
                              "dataset_json": dataset_json, "device": "cpu"},
                "trainer_name": TRAINER, "inference_allowed_mirroring_axes": (0, 1, 2), "current_epoch": 1000},
               os.path.join(folder, "fold_all", "checkpoint_final.pth"))
    return folder


def main(home: str, input_folder: str, kind: str = "plain") -> None:
    write_images(input_folder)
    write_model(home, kind, os.path.join(input_folder, "t1_a.nii.gz"))


if __name__ == "__main__":
    kind = "plain"
    args = sys.argv[1:]
    if "--arch" in args:
        i = args.index("--arch")
        kind = args[i + 1]
        del args[i:i + 2]
    main(args[0], args[1], kind)
