"""Fabricated nnInteractive model folders (seeded random weights) for nninteractive_trial.py.

    python _nninteractive_fixture.py OUT_DIR

Run with an interpreter that has an nnunetv2 (either implementation: the checkpoint format is the same). Writes two
model training output folders under OUT_DIR, each holding plans.json, dataset.json, fold_0/checkpoint_final.pth and
the capability metadata nnInteractiveInferenceSession requires:

* ``modern``: ``inference_info.json`` (capability metadata, 3-D boxes enabled), trainer name
  ``nnInteractiveTrainerV2_trial`` which exists nowhere, so the session searches nnInteractive.trainer, then
  nnunetv2/training/nnUNetTrainer (importing every trainer module there), and falls back to its
  ``nnInteractiveTrainer_stub`` -> ``nnUNetTrainer.build_network_architecture``. PlainConvUNet.
* ``legacy``: ``inference_session_class.json`` (legacy metadata, the default 6-channel mapping), trainer name
  ``nnUNetTrainer`` which the fallback search finds in nnunetv2. ResidualEncoderUNet.

Both networks: 1 image channel + 7 interaction channels in, 2 outputs, patch 64^3, 4 stages. The bias of the
foreground logit is set so that roughly a third of a sample patch is foreground (a patterned, prompt-dependent
segmentation rather than all or nothing).
"""
from __future__ import annotations

import json
import os
import sys

import torch

from _fabricated_models import intensities, single_configuration_plans, small_unet

PATCH = [64, 64, 64]  # must exceed 2 x the refinement margin (24) of nnInteractive's bbox planner
N_INTERACTION = 7  # 6 interaction channels + prev_seg


def _plans(kind: str, configuration: str) -> dict:
    return single_configuration_plans(
        "Dataset987_nnInteractiveTrial", small_unet(kind, conv_per_decoder_stage=1), PATCH, [1.0, 1.0, 1.0],
        "ZScoreNormalization", intensities(-1.0, 1.0, 0.0, 0.0, 1.0, -1.0, 1.0), original_median_spacing=[1.0] * 3,
        original_median_shape=[64, 64, 64], median_image_size=[64, 64, 64], configuration=configuration,
        plans_name="nnUNetResEncUNetLPlans", planner="nnUNetPlannerResEncL", reader_writer="NibabelIOWithReorient",
        batch_dice=True)


MODELS = {  # folder -> (architecture, trainer name, configuration, seed, metadata file, metadata)
    "modern": ("plain", "nnInteractiveTrainerV2_trial", "3d_fullres_ps32_bs2", 11, "inference_info.json", {
        "inference_class": "nnInteractiveInferenceSession", "inference_class_min_version": "2.0.0",
        "interaction_channels": 6, "point_radius": 3, "preferred_scribble_thickness": [2, 2, 2],
        "interaction_decay": 0.9, "pad_mode_image": "constant",
        "supported_interactions": {"scribble": True, "lasso": True, "points": True, "bbox2d": True, "bbox3d": True},
        "supports_initial_label": True, "supports_zero_shot_label_refinement": True,
        "channel_mapping": {"prev_seg": 0, "bbox2d": [1, 2], "bbox3d": [1, 2], "lasso": [1, 2], "points": [3, 4],
                            "scribble": [5, 6]}}),
    "legacy": ("resenc", "nnUNetTrainer", "3d_fullres", 12, "inference_session_class.json", {
        "point_radius": 4, "preferred_scribble_thickness": 2, "interaction_decay": 0.95}),
}


def write_model(out: str, name: str) -> str:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    kind, trainer, configuration, seed, meta_file, meta = MODELS[name]
    folder = os.path.join(out, name)
    os.makedirs(os.path.join(folder, "fold_0"), exist_ok=True)
    plans = _plans(kind, configuration)
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "target": 1}, "numTraining": 10,
                    "file_ending": ".nii.gz", "name": "Dataset987_nnInteractiveTrial"}
    for fname, content in (("plans.json", plans), ("dataset.json", dataset_json), (meta_file, meta)):
        with open(os.path.join(folder, fname), "w") as f:
            json.dump(content, f, indent=4)
    with open(os.path.join(folder, "LICENSE"), "w") as f:
        f.write("CC0 trial weights\nfabricated, seeded random values\n")
    pm = PlansManager(plans)
    torch.manual_seed(seed)
    network = nnUNetTrainer.build_network_architecture(pm, pm.get_configuration(configuration), 1 + N_INTERACTION, 2,
                                                       enable_deep_supervision=False)
    network.eval()
    # calibrate the foreground bias on a seeded sample input (image noise + one point blob)
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros((1, 1 + N_INTERACTION, *PATCH))
    x[0, 0] = torch.randn(PATCH, generator=g)
    x[0, 4, 24:40, 24:40, 24:40] = 1.0
    with torch.no_grad():
        logits = network(x)[0]
        diff = (logits[1] - logits[0]).flatten()
        head = network.decoder.seg_layers[-1]
        head.bias[1] -= torch.quantile(diff, 0.67)
    torch.save({"network_weights": network.state_dict(),
                "init_args": {"plans": plans, "configuration": configuration, "fold": 0,
                              "dataset_json": dataset_json, "device": "cpu"},
                "trainer_name": trainer, "inference_allowed_mirroring_axes": None, "current_epoch": 1000},
               os.path.join(folder, "fold_0", "checkpoint_final.pth"))
    return folder


if __name__ == "__main__":
    for n in MODELS:
        print(write_model(sys.argv[1], n))
