"""A realistic nnU-Net model folder for the inference benchmark: the default 3d_fullres network of a CT-like dataset.

The golden tiny models are so small that start-up dominates their prediction time. Here the network is the one the
reference's planner gives for the golden CT dataset (Dataset901_SynthCT3D, nnUNetPlans 3d_fullres: PlainConvUNet,
5 stages, 32..320 features, patch 32x112x112), with random weights drawn by our trainer's initialisation
(``get_network_from_plans(..., allow_init=True)``, He-normal convolutions) from a fixed seed. The checkpoint holds the
keys both predictors read, so the reference loads the same file. Test volumes: the dataset's imagesTs (3 cases).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Tuple

DATASET = "Dataset901_SynthCT3D"
TRAINER, PLANS, CONFIGURATION = "nnUNetTrainer", "nnUNetPlans", "3d_fullres"
MODEL_FOLDER = f"{TRAINER}__{PLANS}__{CONFIGURATION}"


def generate_raw(shared: str, raw: str) -> str:
    """Raw Dataset901 (training and test cases) under ``raw``; returns its folder."""
    subprocess.run(["bash", "generate.sh"], cwd=os.path.join(shared, "reference", DATASET),
                   env=dict(os.environ, nnUNet_raw=raw), check=True, stdout=subprocess.DEVNULL)
    return os.path.join(raw, DATASET)


def build_model_folder(shared: str, raw_dataset: str, results: str, seed: int = 12345) -> str:
    """``results/Dataset901_SynthCT3D/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0/checkpoint_final.pth`` with the
    golden plans, the raw dataset.json and seeded random weights; returns the model folder."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    with open(os.path.join(shared, "reference", DATASET, f"{PLANS}.json")) as f:
        plans = json.load(f)
    with open(os.path.join(raw_dataset, "dataset.json")) as f:
        dataset_json = json.load(f)
    model_dir = os.path.join(results, DATASET, MODEL_FOLDER)
    os.makedirs(os.path.join(model_dir, "fold_0"), exist_ok=True)
    with open(os.path.join(model_dir, "plans.json"), "w") as f:
        json.dump(plans, f, indent=4)
    shutil.copy(os.path.join(raw_dataset, "dataset.json"), os.path.join(model_dir, "dataset.json"))

    cm = PlansManager(plans).get_configuration(CONFIGURATION)
    n_out = len(dataset_json["labels"])
    torch.manual_seed(seed)
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, len(dataset_json["channel_names"]),
                                     n_out, allow_init=True, deep_supervision=True)
    checkpoint = {
        "network_weights": network.state_dict(),
        "init_args": {"plans": plans, "configuration": CONFIGURATION, "fold": 0, "dataset_json": dataset_json,
                      "device": "cpu"},
        "trainer_name": TRAINER,
        "inference_allowed_mirroring_axes": (0, 1, 2),
        "current_epoch": 1000,
    }
    torch.save(checkpoint, os.path.join(model_dir, "fold_0", "checkpoint_final.pth"))
    return model_dir


def install_copy(model_dir: str, results: str) -> None:
    """The same model folder (same checkpoint bytes) under another nnUNet_results."""
    shutil.copytree(model_dir, os.path.join(results, DATASET, MODEL_FOLDER), dirs_exist_ok=True)


def predict_args() -> Tuple[str, ...]:
    """nnUNetv2_predict arguments naming the model (besides -i/-o)."""
    return ("-d", DATASET, "-c", CONFIGURATION, "-f", "0", "-tr", TRAINER, "-p", PLANS)
