"""Constants and helpers of the console-command tests (a module of its own: test files cannot import a conftest)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import List

DATASET_ID = 931
DATASET = "Dataset931_Commands"
TRAINER = "nnUNetTrainerCommandsTiny"
N_TRAIN, N_TEST = 15, 3
FOLDS = ["0", "1", "2", "3", "4"]

# One very short epoch, and no mirroring at test time (one network pass per tile instead of 8 in 3D): the tests
# are about the commands and their worker processes, not about what the network learns.
TRAINER_SOURCE = '''import torch
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import \\
    nnUNetTrainerNoMirroring


class nnUNetTrainerCommandsTiny(nnUNetTrainerNoMirroring):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1
'''


def run_command(args: List[str], env: dict, cwd: Path = None) -> subprocess.CompletedProcess:
    """Run an installed console script; fail with its output when it does not exit 0."""
    assert shutil.which(args[0]), f"console script {args[0]} is not installed (pip install -e .)"
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (f"{' '.join(args)} exited {result.returncode}\n--- stdout (tail)\n"
                                    f"{result.stdout[-3000:]}\n--- stderr (tail)\n{result.stderr[-5000:]}")
    return result


def user_environment(base: Path) -> dict:
    """The environment of a user who set only the three folders (and a folder of custom trainers): every other
    nnU-Net variable (worker counts, data augmentation processes, compile, ...) is removed, so the defaults apply."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_") and k != "RESULTS_FOLDER"}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(base / name)
    env["nnUNet_extTrainer"] = str(base / "custom_trainers")
    return env


def shrink_network(plans_file: Path) -> None:
    """Edit the plans to a tiny network (as the demo and the docs' 'custom networks through the plans' do)."""
    plans = json.loads(plans_file.read_text())
    for config in plans["configurations"].values():
        kw = config.get("architecture", {}).get("arch_kwargs")
        if not kw:
            continue  # a configuration that only inherits
        n = kw["n_stages"]
        kw["features_per_stage"] = [min(8 * 2 ** i, 32) for i in range(n)]
        kw["n_conv_per_stage"] = [1] * n
        kw["n_conv_per_stage_decoder"] = [1] * (n - 1)
    plans_file.write_text(json.dumps(plans, indent=4))


def model_folder(ws, configuration: str) -> Path:
    return ws.results / f"{TRAINER}__nnUNetPlans__{configuration}"


def case_ids(folder: Path, ending: str = ".nii.gz") -> List[str]:
    return sorted(p.name[:-len(ending)] for p in folder.iterdir() if p.name.endswith(ending))


def read_seg(path: Path):
    """The voxel array of a segmentation file (z, y, x)."""
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
