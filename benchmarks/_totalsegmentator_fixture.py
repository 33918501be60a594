"""The weights TotalSegmentator would download, fabricated, and a small synthetic CT: for totalsegmentator_trial.py.

    python _totalsegmentator_fixture.py HOME CT_FILE
    python _totalsegmentator_fixture.py --training-dataset RAW

Run with an interpreter that has TotalSegmentator and an nnunetv2 (either implementation: the checkpoint format is
the same). Writes under HOME (used as TOTALSEG_HOME_DIR):

* ``config.json`` with usage statistics off (TotalSegmentator would otherwise post every run to its server);
* ``nnunet/results/Dataset297_TotalSegmentator_total_3mm_1559subj`` (``--fast``) and
  ``Dataset298_TotalSegmentator_total_6mm_1559subj`` (``--fastest``, and the rough segmentation ``--roi_subset``
  crops with), each with ``nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres/{dataset.json, plans.json,
  fold_0/checkpoint_final.pth}``. Their presence is all TotalSegmentator checks before it would download.

The labels are TotalSegmentator's class map of task ``total`` (117 classes). The network is a small PlainConvUNet
(4 stages, 8..64 features; patch 48^3 at 3 mm, 32^3 at 6 mm) so that a run takes seconds on a CPU, with random
weights from the trainer's initialisation and a fixed seed. The bias of the segmentation head lets only nine classes
win, so the output holds a few large regions (the organs ``--roi_subset`` asks for among them) instead of 118
classes of speckle.

``--training-dataset``: a small raw dataset (Dataset777_TSTrial) under RAW to train TotalSegmentator's trainers on.

CT_FILE: 90 x 90 x 120 voxels of 1.5 mm (int16, an LPS-like affine, so TotalSegmentator reorients and resamples it),
a body ellipse with lungs, organs and a bone of CT-like intensities plus seeded noise.
"""
from __future__ import annotations

import json
import os
import sys

import nibabel as nib
import numpy as np

from _fabricated_models import (intensities, seeded_network, single_configuration_plans, small_unet,
                               write_checkpoint)

TRAINER = "nnUNetTrainer_4000epochs_NoMirroring"
MODELS = {  # dataset folder -> (spacing in mm, patch size, seed)
    "Dataset297_TotalSegmentator_total_3mm_1559subj": (3.0, [48, 48, 48], 297),
    "Dataset298_TotalSegmentator_total_6mm_1559subj": (6.0, [32, 32, 32], 298),
}
WINNING_LABELS = (0, 1, 2, 3, 5, 6, 10, 26, 51)  # background, spleen, kidneys, liver, stomach, a lung lobe, ...


def _plans(dataset: str, spacing: float, patch) -> dict:
    return single_configuration_plans(
        dataset, small_unet("plain"), patch, [spacing] * 3, "CTNormalization",
        intensities(-1024.0, 3071.0, 80.0, 60.0, 250.0, -950.0, 1200.0), original_median_spacing=[1.5, 1.5, 1.5],
        original_median_shape=[300, 256, 256], median_image_size=[150, 128, 128])


def write_model(results: str, dataset: str, spacing: float, patch, seed: int, labels: dict) -> None:
    folder = os.path.join(results, dataset, f"{TRAINER}__nnUNetPlans__3d_fullres")
    os.makedirs(os.path.join(folder, "fold_0"), exist_ok=True)
    plans = _plans(dataset, spacing, patch)
    dataset_json = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1559, "file_ending": ".nii.gz",
                    "name": dataset}
    for name, content in (("plans.json", plans), ("dataset.json", dataset_json)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f, indent=4)
    network = seeded_network(plans, len(labels), seed, WINNING_LABELS)
    write_checkpoint(os.path.join(folder, "fold_0", "checkpoint_final.pth"), network, plans, dataset_json, 0,
                     TRAINER, None, 4000)


def write_ct(path: str) -> None:
    rng = np.random.default_rng(0)
    shape = (90, 90, 120)  # 60 slices at 3 mm: enough for --force_split's three overlapping parts
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    ct = np.full(shape, -1000.0)
    ct[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = 30.0
    for cx, cy, cz, r, hu in [(-0.4, 0.0, 0.1, 0.3, -820), (0.4, 0.0, 0.1, 0.3, -820), (0.3, -0.2, -0.5, 0.25, 60),
                              (-0.3, -0.1, -0.5, 0.15, 45), (0.0, 0.45, 0.0, 0.12, 700), (-0.1, -0.3, -0.2, 0.1, 150)]:
        ct[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < r ** 2] = hu
    ct += rng.normal(0, 15, shape)
    affine = np.diag([-1.5, -1.5, 1.5, 1.0])
    affine[:3, 3] = [75.0, 60.0, -300.0]
    image = nib.Nifti1Image(np.round(ct).astype(np.int16), affine)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, path)


def write_training_dataset(raw: str) -> None:
    """Dataset777_TSTrial: 6 CT-like cases of 40 x 48 x 48 voxels (1.5 mm) with a vessel (a tube, what skeleton
    recall is for) and an organ (a blob); for training TotalSegmentator's own trainers."""
    folder = os.path.join(raw, "Dataset777_TSTrial")
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    rng = np.random.default_rng(777)
    shape = (48, 48, 40)
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    for i in range(6):
        cx, cy = rng.integers(14, 34, 2)
        label = np.zeros(shape, np.uint8)
        label[(x - cx) ** 2 + (y - cy) ** 2 < 6] = 1
        ox, oy, oz = rng.integers(10, 30, 3)
        label[(x - ox) ** 2 + (y - oy) ** 2 + (z - oz) ** 2 < rng.integers(30, 60)] = 2
        ct = np.where(label == 1, 250.0, np.where(label == 2, 60.0, 0.0)) + rng.normal(0, 20, shape)
        affine = np.diag([1.5, 1.5, 1.5, 1.0])
        nib.save(nib.Nifti1Image(np.round(ct).astype(np.int16), affine),
                 os.path.join(folder, "imagesTr", f"case_{i:03d}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), os.path.join(folder, "labelsTr", f"case_{i:03d}.nii.gz"))
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "vessel": 1, "organ": 2},
                   "numTraining": 6, "file_ending": ".nii.gz"}, f, indent=4)


def main(home: str, ct_file: str) -> None:
    from totalsegmentator.map_to_binary import class_map

    labels = {"background": 0, **{name: label for label, name in sorted(class_map["total"].items())}}
    for dataset, (spacing, patch, seed) in MODELS.items():
        write_model(os.path.join(home, "nnunet", "results"), dataset, spacing, patch, seed, labels)
    with open(os.path.join(home, "config.json"), "w") as f:
        json.dump({"totalseg_id": "totalseg_TRIAL000", "send_usage_stats": False, "prediction_counter": 0}, f)
    write_ct(ct_file)


if __name__ == "__main__":
    if sys.argv[1] == "--training-dataset":
        write_training_dataset(sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2])
