"""The quick-start demo: generate a small dataset and run the whole pipeline on it with the real console commands.

plan and preprocess → train briefly → predict the test images → evaluate against their labels, on the CPU.

Everything goes under one output folder (default ./demo_output); the three nnU-Net folders are set for the child
processes only. Each step prints the command it runs, so the demo doubles as a worked example. Two everyday
customisations keep it short: the plans are edited to a small network (a new plans file, as users do), and a custom
trainer with few iterations is picked up from a folder named by nnUNet_extTrainer.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import List

DATASET_ID = 999
DEMO_PLANS = "nnUNetPlansDemo"
DEMO_TRAINER = "nnUNetTrainerDemo"

_TRAINER_SOURCE = '''from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerDemo(nnUNetTrainer):
    """A few short epochs: enough to learn the demo's bright ellipsoids on a CPU."""

    def __init__(self, plans, configuration, fold, dataset_json, device=None, **kwargs):
        super().__init__(plans, configuration, fold, dataset_json, device=device, **kwargs)
        self.num_epochs = 10
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5
'''


def _write_demo_plans(preprocessed: str) -> None:
    """Copy nnUNetPlans to a small network (fewer stages and features) under a new plans name."""
    from nnunetv2.file_io import load_json, save_json
    folder = os.path.join(preprocessed, f"Dataset{DATASET_ID:03d}_Demo")
    plans = load_json(os.path.join(folder, "nnUNetPlans.json"))
    plans["plans_name"] = DEMO_PLANS
    config = plans["configurations"]["3d_fullres"]
    config["data_identifier"] = f"{DEMO_PLANS}_3d_fullres"
    kw = config["architecture"]["arch_kwargs"]
    n = 3
    kw["n_stages"] = n
    kw["features_per_stage"] = [8, 16, 32]
    for key in ("kernel_sizes", "strides"):
        kw[key] = kw[key][:n]
    kw["n_conv_per_stage"] = [1] * n
    kw["n_conv_per_stage_decoder"] = [1] * (n - 1)
    plans["configurations"] = {"3d_fullres": config}
    save_json(plans, os.path.join(folder, f"{DEMO_PLANS}.json"), sort_keys=False)


def _run(cmd: List[str], env: dict) -> None:
    print(f"\n$ {' '.join(cmd)}", flush=True)
    t = time.time()
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        sys.exit(f"demo step failed (exit code {result.returncode}): {' '.join(cmd)}")
    print(f"  ({time.time() - t:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="demo_output", help="Folder for all demo data (deleted first).")
    args = parser.parse_args()

    base = os.path.abspath(args.output)
    shutil.rmtree(base, ignore_errors=True)
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = os.path.join(base, name)
        os.makedirs(env[name])
    env.setdefault("nnUNet_def_n_proc", "2")
    env.setdefault("nnUNet_n_proc_DA", "2")
    env.setdefault("nnUNet_compile", "false")
    trainers = os.path.join(base, "custom_trainers")
    os.makedirs(trainers)
    with open(os.path.join(trainers, "nnunet_trainer_demo.py"), "w") as f:
        f.write(_TRAINER_SOURCE)
    env["nnUNet_extTrainer"] = trainers

    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
    folder = make_synthetic_dataset(env["nnUNet_raw"], DATASET_ID, "Demo", num_train=8, num_test=2,
                                    shape=(12, 24, 24))
    print(f"Generated {folder}")

    d = str(DATASET_ID)
    _run(["nnUNetv2_plan_and_preprocess", "-d", d, "--verify_dataset_integrity", "-npfp", "2", "--no_pp"], env)
    _write_demo_plans(env["nnUNet_preprocessed"])
    print(f"\nWrote {DEMO_PLANS}.json: the 3d_fullres plans with a smaller network")
    _run(["nnUNetv2_preprocess", "-d", d, "-plans_name", DEMO_PLANS, "-c", "3d_fullres", "-np", "2"], env)
    _run(["nnUNetv2_train", d, "3d_fullres", "0", "-p", DEMO_PLANS, "-tr", DEMO_TRAINER, "-device", "cpu"], env)
    predictions = os.path.join(base, "predictions")
    _run(["nnUNetv2_predict", "-i", os.path.join(folder, "imagesTs"), "-o", predictions, "-d", d, "-c", "3d_fullres",
          "-p", DEMO_PLANS, "-tr", DEMO_TRAINER, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    _run(["nnUNetv2_evaluate_folder", os.path.join(folder, "labelsTs"), predictions, "-djfile",
          os.path.join(predictions, "dataset.json"), "-pfile", os.path.join(predictions, "plans.json"), "-np", "1"],
         env)
    from nnunetv2.file_io import load_json
    summary = load_json(os.path.join(predictions, "summary.json"))
    print(f"\nTest-set Dice per label: "
          f"{ {k: round(v['Dice'], 3) for k, v in summary['mean'].items()} }, "
          f"mean foreground Dice {summary['foreground_mean']['Dice']:.3f} (after a very short training: label 2, the "
          f"small core, often needs more epochs)")
    print(f"\nDemo finished; everything is in {base}")


if __name__ == "__main__":
    main()
