"""Datasets, project trainers and fabricated models for segforge_trial.py.

    python _segforge_fixture.py WORK

Run with an interpreter that has an nnunetv2 (either implementation: the checkpoint format is the same). Written
under WORK:

* ``raw/Dataset811_SegfBin``: 5 training cases (one CT-like channel, a sphere of label 1 in noise, a zero border
  for crop-to-nonzero) and ``imagesTs`` with two test images: ``testA`` like the training cases, ``testB`` with
  another spacing, an origin and a rotated direction;
* ``raw/Dataset812_SegfReg``: the same images, labels a float32 distance map in [0, 1] (segforge's regression
  stack stores its continuous targets as label files);
* ``proj/tiny_trainers.py``: project trainers the way segforge's README recommends (a folder of one's own appended to
  ``nnUNet_extTrainer``): its ``FixedHyperMixin`` with one epoch of two iterations over its ``nnUNetTrainer_DiceFocal``
  (loss mixin) and ``nnUNetDistanceTrainer`` (regression);
* ``results``: an nnUNet_results folder with two fabricated models (plans, dataset.json, seeded random weights of a
  4-stage PlainConvUNet, patch 16x32x32 at 2x1x1 mm): ``nnUNetTrainer_DiceFocal__nnUNetPlans__3d_fullres`` of
  Dataset811 (folds 0 and 1, two outputs) and ``nnUNetDistanceTrainer__nnUNetPlans_reg__3d_fullres`` of Dataset812
  (fold 0, one output; plans as segforge's RegressionExperimentPlanner writes them: ``RegressionLabelManager``,
  ``RegressionPreprocessor``, linear non-label resampling of the targets, ``segforge_task: regression``).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _fabricated_models import (intensities, seeded_network, single_configuration_plans, small_unet,  # noqa: E402
                                write_checkpoint)

SPACING = (2.0, 1.0, 1.0)
PATCH = [16, 32, 32]
DATASETS = {811: ("Dataset811_SegfBin", "seg", "lesion"), 812: ("Dataset812_SegfReg", "reg", "neuron")}

TINY_TRAINERS = '''"""Project trainers (segforge_trial.py): segforge's trainers, one tiny epoch."""
from segforge.training.bases.mixins.optim import FixedHyperMixin
from segforge.training.nnUNetTrainer.nnUNetLossTrainer import nnUNetTrainer_DiceFocal
from segforge.training.nnUNetTrainer.nnUNetDistanceTrainer import nnUNetDistanceTrainer


class _Tiny(FixedHyperMixin):
    fixed_num_epochs = 1
    fixed_num_iterations_per_epoch = 2
    fixed_num_val_iterations_per_epoch = 1


class Tiny_DiceFocal(_Tiny, nnUNetTrainer_DiceFocal):
    pass


class Tiny_Distance(_Tiny, nnUNetDistanceTrainer):
    pass
'''


def _case(shape, spacing, seed):
    """An image with a bright sphere, its binary label and a continuous distance map."""
    r = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s) * sp for s, sp in zip(shape, spacing)], indexing="ij")
    c = [s * sp / 2 + r.uniform(-3, 3) for s, sp in zip(shape, spacing)]
    d = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
    rad = r.uniform(8, 12)
    img = 100 + 400 * (d < rad) + 150 * (d < rad * 1.6) + r.normal(0, 30, shape)
    img[:, :2] = 0  # a zero border: crop to nonzero has something to do
    seg = (d < rad).astype(np.uint8)
    dist = np.clip(1 - d / (rad * 1.3), 0, 1).astype(np.float32)
    dist[:, :2] = 0
    seg[:, :2] = 0
    return img.astype(np.float32), seg, dist


def _write(arr, spacing, path, origin=(0.0, 0.0, 0.0), direction=None):
    import SimpleITK as sitk
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    im.SetOrigin(origin)
    if direction is not None:
        im.SetDirection(direction)
    sitk.WriteImage(im, path, True)


def write_raw(raw: str) -> None:
    for name, kind, label in DATASETS.values():
        ds = os.path.join(raw, name)
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            os.makedirs(os.path.join(ds, sub), exist_ok=True)
        for i in range(5):
            img, seg, dist = _case((24 + 2 * i, 40, 44 - 2 * i), SPACING, 100 + i)
            _write(img, SPACING, os.path.join(ds, "imagesTr", f"case{i:02d}_0000.nii.gz"))
            _write(seg if kind == "seg" else dist, SPACING, os.path.join(ds, "labelsTr", f"case{i:02d}.nii.gz"))
        img, _, _ = _case((26, 42, 40), SPACING, 900)
        _write(img, SPACING, os.path.join(ds, "imagesTs", "testA_0000.nii.gz"))
        img, _, _ = _case((20, 50, 36), (2.5, 0.8, 1.2), 901)
        c, s = np.cos(0.2), np.sin(0.2)
        _write(img, (2.5, 0.8, 1.2), os.path.join(ds, "imagesTs", "testB_0000.nii.gz"), origin=(5.0, -3.0, 12.0),
               direction=(c, -s, 0, s, c, 0, 0, 0, 1))
        with open(os.path.join(ds, "dataset.json"), "w") as f:
            json.dump(_dataset_json(label), f, indent=2)


def _dataset_json(label: str) -> dict:
    return {"channel_names": {"0": "CT"}, "labels": {"background": 0, label: 1}, "numTraining": 5,
            "file_ending": ".nii.gz"}


def _plans(dataset: int) -> dict:
    name, kind, _ = DATASETS[dataset]
    plans_name = "nnUNetPlans" if kind == "seg" else "nnUNetPlans_reg"
    plans = single_configuration_plans(
        name, small_unet(), PATCH, SPACING, "CTNormalization",
        intensities(120.0, 760.0, 430.0, 290.0, 200.0, 180.0, 720.0), original_median_spacing=list(SPACING),
        original_median_shape=[28, 40, 40], median_image_size=[28, 38, 40], plans_name=plans_name,
        data_identifier=f"{plans_name}_3d_fullres")
    if kind == "reg":  # as segforge's RegressionExperimentPlanner writes them
        conf = plans["configurations"]["3d_fullres"]
        conf["preprocessor_name"] = "RegressionPreprocessor"
        conf["resampling_fn_seg_kwargs"]["is_seg"] = False
        plans.update(experiment_planner_used="RegressionExperimentPlanner", label_manager="RegressionLabelManager",
                     segforge_task="regression")
    return plans


def write_models(results: str) -> None:
    for dataset, trainer, folds, outputs in ((811, "nnUNetTrainer_DiceFocal", (0, 1), 2),
                                              (812, "nnUNetDistanceTrainer", (0,), 1)):
        name, _, label = DATASETS[dataset]
        plans = _plans(dataset)
        folder = os.path.join(results, name, f"{trainer}__{plans['plans_name']}__3d_fullres")
        os.makedirs(folder, exist_ok=True)
        for fname, content in (("plans.json", plans), ("dataset.json", _dataset_json(label))):
            with open(os.path.join(folder, fname), "w") as f:
                json.dump(content, f, indent=4)
        for fold in folds:
            network = seeded_network(plans, outputs, seed=dataset + fold)
            write_checkpoint(os.path.join(folder, f"fold_{fold}", "checkpoint_final.pth"), network, plans,
                             _dataset_json(label), fold, trainer, (0, 1, 2), 1)


def main(work: str) -> None:
    write_raw(os.path.join(work, "raw"))
    os.makedirs(os.path.join(work, "proj"), exist_ok=True)
    with open(os.path.join(work, "proj", "tiny_trainers.py"), "w") as f:
        f.write(TINY_TRAINERS)
    write_models(os.path.join(work, "results"))


if __name__ == "__main__":
    main(sys.argv[1])
