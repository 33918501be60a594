"""nnUNetv2_extract_fingerprint --verify_dataset_integrity, nnUNetv2_plan_experiment and nnUNetv2_preprocess at their
default worker counts (-np 8, and 8/4/8 per configuration), as they built the shared workspace. (plan_and_preprocess
runs on a converted MSD task in test_sharing_and_conversion_commands.py.)"""
from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from _commands_helpers import DATASET, N_TRAIN


def test_fingerprint_plans_and_preprocessed_data(workspace):
    pre = workspace.preprocessed
    fingerprint = json.loads((pre / "dataset_fingerprint.json").read_text())
    assert len(fingerprint["spacings"]) == N_TRAIN and len(fingerprint["shapes_after_crop"]) == N_TRAIN
    raw_spacings = [sitk.ReadImage(str(workspace.raw / "labelsTr" / f"case_{i:03d}.nii.gz")).GetSpacing()[::-1]
                    for i in range(N_TRAIN)]  # (z, y, x), in case order like the fingerprint
    np.testing.assert_allclose(fingerprint["spacings"], raw_spacings, rtol=1e-6)
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    assert plans["dataset_name"] == DATASET and {"2d", "3d_fullres"} <= set(plans["configurations"])
    for config in ("2d", "3d_fullres"):
        names = sorted(p.name for p in (pre / f"nnUNetPlans_{config}").iterdir())
        assert names == sorted(f"case_{i:03d}{s}" for i in range(N_TRAIN) for s in (".b2nd", "_seg.b2nd", ".pkl"))
    assert len(list((pre / "gt_segmentations").iterdir())) == N_TRAIN
