"""The weights MRSegmentator 2.0.0 would download, fabricated, and small synthetic MRI volumes: for
mrsegmentator_trial.py.

    python _mrsegmentator_fixture.py WEIGHTS IMAGES

Run with an interpreter that has an nnunetv2 (either implementation: the checkpoint format is the same).

WEIGHTS is what MRSEG_WEIGHTS_PATH points at (mrsegmentator.config: a folder without plans.json at its root holds one
subfolder per model of its MODEL_REGISTRY, each with a version.json whose ``weights_version`` must not be lower than
the registry's, else it downloads):

* ``base/`` (version 1.2): MRSegmentator's 40 classes + background, trainer ``nnUNetTrainerNoMirroring`` checkpoints
  ``fold_0..fold_4/checkpoint_final.pth`` with mirroring axes (0, 1, 2) (the client mirrors unless ``--fast``),
  ZScoreNormalization, 2 mm isotropic spacing, patch 32 x 48 x 48, identity transpose;
* ``body_comp/`` (version 1.0): 10 classes + background, only fold_0..fold_4 as well, transpose [2, 0, 1] (to cover
  the predictor's transposition), spacing 3 x 2 x 2.5 mm.

Each network is a small PlainConvUNet (4 stages, 8..64 features) with seeded random weights per fold; the
segmentation head's bias lets only a few classes win so the output holds large regions.

IMAGES gets ``mri_a.nii.gz`` (64 x 64 x 48, 2.5 x 2.5 x 3 mm, RAS affine: SimpleITK reorients it to LPS on read and
back on write), ``mri_b.nii.gz`` (56 x 60 x 40, 2 x 2.2 x 2.8 mm, oblique-ish LPS affine, float32), and
``folder/`` with copies of both plus a third image ``mri_c.nii.gz``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import nibabel as nib
import numpy as np

from _fabricated_models import (intensities, seeded_network, single_configuration_plans, small_unet,
                               write_checkpoint)

TRAINER = "nnUNetTrainerNoMirroring"
BASE_LABELS = ["spleen", "right_kidney", "left_kidney", "gallbladder", "liver", "stomach", "pancreas",
               "right_adrenal_gland", "left_adrenal_gland", "left_lung", "right_lung", "heart", "aorta",
               "inferior_vena_cava", "portal_vein_and_splenic_vein", "left_iliac_artery", "right_iliac_artery",
               "left_iliac_vena", "right_iliac_vena", "esophagus", "small_bowel", "duodenum", "colon",
               "urinary_bladder", "spine", "sacrum", "left_hip", "right_hip", "left_femur", "right_femur",
               "left_autochthonous_muscle", "right_autochthonous_muscle", "left_iliopsoas_muscle",
               "right_iliopsoas_muscle", "left_gluteus_maximus", "right_gluteus_maximus", "left_gluteus_medius",
               "right_gluteus_medius", "left_gluteus_minimus", "right_gluteus_minimus"]
BODY_LABELS = ["subcutaneous_fat", "visceral_fat", "muscle", "bone", "bone_marrow", "intermuscular_fat",
               "epicardial_fat", "paracardial_fat", "organs", "other"]
MODELS = {  # folder -> (labels, version, spacing, patch, transpose_forward, winning labels, seed)
    "base": (BASE_LABELS, 1.2, [2.0, 2.0, 2.0], [32, 48, 48], [0, 1, 2], (0, 3, 5, 6, 12, 25, 33), 100),
    "body_comp": (BODY_LABELS, 1.0, [3.0, 2.0, 2.5], [32, 32, 48], [2, 0, 1], (0, 1, 3, 9), 200),
}


def _plans(spacing, patch, transpose) -> dict:
    return single_configuration_plans(
        "Dataset200_MRSegmentator", small_unet("plain"), patch, spacing, "ZScoreNormalization",
        intensities(0.0, 3000.0, 300.0, 250.0, 200.0, 5.0, 1500.0), original_median_spacing=spacing,
        original_median_shape=[120, 256, 256], median_image_size=[80, 128, 128], transpose_forward=transpose)


def write_model(folder: str, names, version, spacing, patch, transpose, winning, seed) -> None:

    labels = {"background": 0, **{n: i + 1 for i, n in enumerate(names)}}
    plans = _plans(spacing, patch, transpose)
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": 1200, "file_ending": ".nii.gz",
                    "name": "Dataset200_MRSegmentator"}
    os.makedirs(folder, exist_ok=True)
    for name, content in (("plans.json", plans), ("dataset.json", dataset_json),
                          ("version.json", {"weights_version": version})):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f, indent=4)
    for fold in range(5):
        network = seeded_network(plans, len(labels), seed + fold, winning)
        write_checkpoint(os.path.join(folder, f"fold_{fold}", "checkpoint_final.pth"), network, plans, dataset_json,
                         fold, TRAINER, (0, 1, 2), 1000)


def _mri(shape, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    img = np.zeros(shape)
    img[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = 300.0
    for cx, cy, cz, r, v in [(-0.4, 0.0, 0.1, 0.3, 80), (0.4, 0.0, 0.1, 0.3, 90), (0.3, -0.2, -0.5, 0.25, 700),
                             (-0.3, -0.1, -0.5, 0.15, 1100), (0.0, 0.45, 0.0, 0.12, 1500), (-0.1, -0.3, -0.2, 0.1, 450)]:
        img[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < r ** 2] = v
    return np.clip(img + rng.normal(0, 30, shape), 0, None)


def write_images(folder: str) -> None:
    os.makedirs(os.path.join(folder, "folder"), exist_ok=True)
    affine = np.array([[2.5, 0, 0, -80.0], [0, 2.5, 0, -70.0], [0, 0, 3.0, -60.0], [0, 0, 0, 1]])
    a = nib.Nifti1Image(np.round(_mri((64, 64, 48), 1)).astype(np.int16), affine)
    a.header.set_xyzt_units("mm", "sec")
    nib.save(a, os.path.join(folder, "mri_a.nii.gz"))
    t = np.deg2rad(8.0)  # rotated 8 degrees about z, LPS-like (x and y flipped)
    rotation = np.array([[-np.cos(t), np.sin(t), 0], [-np.sin(t), -np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * [2.0, 2.2, 2.8]
    affine[:3, 3] = [60.0, 70.0, -50.0]
    b = nib.Nifti1Image(_mri((56, 60, 40), 2).astype(np.float32), affine)
    b.header.set_xyzt_units("mm", "sec")
    nib.save(b, os.path.join(folder, "mri_b.nii.gz"))
    # a third one: LAS with axes permuted (SimpleITK's DICOMOrient has work to do), uint16
    affine = np.array([[0, 0, -2.4, 50.0], [2.0, 0, 0, -40.0], [0, 2.6, 0, -30.0], [0, 0, 0, 1]])
    c = nib.Nifti1Image(np.round(_mri((40, 52, 44), 3)).astype(np.uint16), affine)
    nib.save(c, os.path.join(folder, "folder", "mri_c.nii.gz"))
    # thick slices (1.2 x 1.2 x 6 mm: spacing ratio 5, resampled with separate z) and one smaller than a patch
    d = nib.Nifti1Image(_mri((90, 80, 14), 4).astype(np.float32), np.diag([1.2, 1.2, 6.0, 1.0]))
    nib.save(d, os.path.join(folder, "mri_aniso.nii.gz"))
    e = nib.Nifti1Image(np.round(_mri((18, 20, 9), 5)).astype(np.uint8), np.diag([-2.0, 1.8, 2.5, 1.0]))
    nib.save(e, os.path.join(folder, "mri_tiny.nii.gz"))
    for n in ("mri_a.nii.gz", "mri_b.nii.gz"):
        shutil.copy(os.path.join(folder, n), os.path.join(folder, "folder", n))


def write_dicom(nifti: str, folder: str) -> None:
    """A DICOM MR series of the image (one file per slice, fixed UIDs) for the client's DICOM input path."""
    import SimpleITK as sitk
    os.makedirs(folder, exist_ok=True)
    image = sitk.Cast(sitk.ReadImage(nifti), sitk.sitkInt16)
    direction = image.GetDirection()
    orientation = "\\".join(str(v) for v in (direction[0], direction[3], direction[6],
                                               direction[1], direction[4], direction[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    study, series = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    for i in range(image.GetDepth()):
        s = image[:, :, i]
        for tag, value in (("0008|0060", "MR"), ("0020|000d", study), ("0020|000e", series),
                           ("0008|0018", f"1.2.826.0.1.3680043.8.498.3.{i + 1}"), ("0010|0010", "Trial^Patient"),
                           ("0010|0020", "TRIAL1"), ("0008|0020", "20240101"), ("0008|0030", "120000"),
                           ("0008|0016", "1.2.840.10008.5.1.4.1.1.4"), ("0020|0011", "1"), ("0020|0010", "1"),
                           ("0008|0050", "1"), ("0008|103e", "trial series"),
                           ("0020|0013", str(i + 1)), ("0020|0037", orientation), ("0020|0052", "1.2.826.0.1.3680043.8.498.4"),
                           ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, i))))),
                           ("0018|0050", str(image.GetSpacing()[2]))):
            s.SetMetaData(tag, value)
        writer.SetFileName(os.path.join(folder, f"slice_{i:03d}.dcm"))
        writer.Execute(s)


def main(weights: str, images: str) -> None:
    for name, (labels, version, spacing, patch, transpose, winning, seed) in MODELS.items():
        write_model(os.path.join(weights, name), labels, version, spacing, patch, transpose, winning, seed)
    write_images(images)
    write_dicom(os.path.join(images, "mri_a.nii.gz"), os.path.join(images, "dicom_series"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
