"""The quick-start demo: generate a small dataset and run the whole pipeline on it with the real console commands.

plan and preprocess → train briefly → predict the test images → evaluate against their labels, on the CPU.

Everything goes under one output folder (default ./demo_output); the three nnU-Net folders are set for the child
processes only. Each step prints the command it runs, so the demo doubles as a worked example. The commands run
with their default worker counts, as a user's would. Two everyday customisations keep it short: the plans are
edited to a small network (a new plans file, as users do), and a custom trainer with few iterations is picked up
from a folder named by nnUNet_extTrainer. The demo ends with a table (test-set Dice per label, time per step) and
the pictures to open: the test predictions next to their ground truth, and the training curves.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from nnunetv2.errors import exit_on_user_error

DATASET_ID = 999
DATASET_NAME = f"Dataset{DATASET_ID:03d}_Demo"
DEMO_PLANS = "nnUNetPlansDemo"
DEMO_TRAINER = "nnUNetTrainerDemo"
CONFIGURATION = "3d_fullres"

# The generated dataset: one object per image, large enough (in voxels, also along the thick-slice axis) that the
# core (label 2) is a solid structure rather than a slice or two, and with a clear intensity step between
# background, object and core so that a short CPU training learns both labels.
DATASET_KWARGS = dict(num_train=10, num_test=4, shape=(16, 32, 32), max_objects=1, radius=(0.26, 0.34), core=0.3,
                      intensities=(0.0, 100.0, 200.0), noise=20.0)
EPOCHS = 8
ITERATIONS = 40
SEED = 12345
# Written into the output folder: a later run deletes only a folder that holds it, an empty one, or one laid out
# like the output of the demo before it wrote this marker.
MARKER = ".nnunet_demo_output"
_OUTPUT_ENTRIES = {"nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "custom_trainers", "predictions",
                   "pictures", MARKER}

_TRAINER_SOURCE = '''import random

import numpy as np
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {name}(nnUNetTrainer):
    """{epochs} short epochs: enough to learn the demo's objects and their cores on a CPU."""

    def __init__(self, plans, configuration, fold, dataset_json, device=None, **kwargs):
        # Seeded so that the network starts from the same weights every run (the data-augmentation workers draw
        # their own random numbers, as in any nnU-Net training).
        random.seed({seed})
        np.random.seed({seed})
        torch.manual_seed({seed})
        super().__init__(plans, configuration, fold, dataset_json, device=device, **kwargs)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
'''


def write_demo_trainer(folder: str, epochs: int, iterations: int) -> str:
    """Write the demo trainer into ``folder`` (a folder for nnUNet_extTrainer) and return the file."""
    from nnunetv2.file_io import atomic_path
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "nnunet_trainer_demo.py")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(_TRAINER_SOURCE.format(name=DEMO_TRAINER, epochs=epochs, iterations=iterations,
                                       val_iterations=max(1, iterations // 5), seed=SEED))
    return path


def write_demo_plans(preprocessed: str) -> str:
    """Copy nnUNetPlans to a small network (fewer stages and features) under a new plans name; return the file."""
    from nnunetv2.file_io import load_json, save_json
    folder = os.path.join(preprocessed, DATASET_NAME)
    plans = load_json(os.path.join(folder, "nnUNetPlans.json"))
    plans["plans_name"] = DEMO_PLANS
    config = plans["configurations"][CONFIGURATION]
    config["data_identifier"] = f"{DEMO_PLANS}_{CONFIGURATION}"
    kw = config["architecture"]["arch_kwargs"]
    n = 3
    kw["n_stages"] = n
    kw["features_per_stage"] = [8, 16, 32]
    for key in ("kernel_sizes", "strides"):
        kw[key] = kw[key][:n]
    kw["n_conv_per_stage"] = [1] * n
    kw["n_conv_per_stage_decoder"] = [1] * (n - 1)
    plans["configurations"] = {CONFIGURATION: config}
    path = os.path.join(folder, f"{DEMO_PLANS}.json")
    save_json(plans, path, sort_keys=False)
    return path


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished child processes so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Steps:
    """Runs the demo's steps and remembers how long each took (wall clock, and CPU time of all its processes)."""

    def __init__(self, env: dict):
        self.env = env
        self.times: List[Tuple[str, float]] = []
        self.cpu: List[Tuple[str, float]] = []
        self._start = (time.time(), _cpu_seconds())

    def command(self, name: str, cmd: List[str]) -> None:
        print(f"\n$ {' '.join(cmd)}", flush=True)
        result = subprocess.run(cmd, env=self.env)
        if result.returncode != 0:
            sys.exit(f"demo step failed (exit code {result.returncode}): {' '.join(cmd)}")
        self.done(name)

    def done(self, name: str) -> None:
        """The step ``name`` ended now (it began when the previous one ended)."""
        now = (time.time(), _cpu_seconds())
        self.times.append((name, now[0] - self._start[0]))
        self.cpu.append((name, now[1] - self._start[1]))
        self._start = now
        print(f"  ({self.times[-1][1]:.1f} s)", flush=True)


def summary_table(dice: Dict[str, float], label_names: Dict[str, str], times: List[Tuple[str, float]],
                  num_test: int, cpu: Optional[List[Tuple[str, float]]] = None) -> str:
    """The demo's closing table: test-set Dice per label, then time per step and in total (with the CPU time of
    each step's processes when ``cpu`` is given: on a busy machine the wall clock says little)."""
    lines = [f"Test-set Dice ({num_test} images never seen in training):"]
    for label, value in dice.items():
        lines.append(f"  label {label} {label_names.get(label, ''):<10} {value:6.3f}")
    cpu_seconds = dict(cpu or [])
    lines.append("Time per step:" + (f"{'':<18}wall      CPU" if cpu else ""))
    for name, seconds in times + [("total", sum(s for _, s in times))]:
        line = f"  {name:<28} {seconds:6.1f} s"
        if cpu:
            total_cpu = sum(cpu_seconds.values())
            line += f"  {cpu_seconds.get(name, total_cpu if name == 'total' else 0.0):6.1f} s"
        lines.append(line)
    return "\n".join(lines)


def _user_environment(base: str) -> dict:
    """The calling environment with the three nnU-Net folders under ``base`` and the demo trainer's folder."""
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = os.path.join(base, name)
        os.makedirs(env[name])
    env["nnUNet_extTrainer"] = os.path.join(base, "custom_trainers")
    return env


def _fresh_output_folder(base: str) -> None:
    """Empty ``base`` for a new run; refuse a folder that holds anything but an earlier demo's output."""
    from nnunetv2.errors import UserError
    if os.path.exists(base):
        if not os.path.isdir(base):
            raise UserError(f"--output {base} is a file.", "Choose a new folder for the demo.")
        entries = set(os.listdir(base))
        earlier_demo = MARKER in entries or (entries <= _OUTPUT_ENTRIES and
                                             os.path.isdir(os.path.join(base, "nnUNet_raw", DATASET_NAME)))
        if entries and not earlier_demo:
            raise UserError(f"--output {base} exists and is not the output of an earlier demo run; the demo "
                            f"replaces its output folder and will not delete other files.",
                            "Choose a new (or empty) folder.")
        shutil.rmtree(base)
    os.makedirs(base)
    open(os.path.join(base, MARKER), "w").close()


def run_demo(base: str, epochs: int = EPOCHS, iterations: int = ITERATIONS, num_train: Optional[int] = None,
             num_test: Optional[int] = None) -> dict:
    """Run the demo into ``base`` (replacing an earlier demo's output there). Returns the Dice per label, the time
    and CPU time per step, and the paths of the pictures."""
    from nnunetv2.demo.pictures import write_prediction_pictures
    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
    from nnunetv2.file_io import load_json

    base = os.path.abspath(base)
    _fresh_output_folder(base)
    env = _user_environment(base)
    steps = _Steps(env)
    write_demo_trainer(env["nnUNet_extTrainer"], epochs, iterations)
    dataset_kwargs = dict(DATASET_KWARGS)
    if num_train is not None:
        dataset_kwargs["num_train"] = num_train
    if num_test is not None:
        dataset_kwargs["num_test"] = num_test
    folder = make_synthetic_dataset(env["nnUNet_raw"], DATASET_ID, "Demo", **dataset_kwargs)
    print(f"Generated {folder} ({dataset_kwargs['num_train']} training and {dataset_kwargs['num_test']} test images)")
    steps.done("generate dataset")

    d = str(DATASET_ID)
    steps.command("plan (fingerprint, plans)", ["nnUNetv2_plan_and_preprocess", "-d", d,
                                                "--verify_dataset_integrity", "--no_pp"])
    plans_file = write_demo_plans(env["nnUNet_preprocessed"])
    print(f"\nWrote {plans_file}: the {CONFIGURATION} plans with a smaller network")
    steps.command("preprocess", ["nnUNetv2_preprocess", "-d", d, "-plans_name", DEMO_PLANS, "-c", CONFIGURATION])
    steps.command("train", ["nnUNetv2_train", d, CONFIGURATION, "0", "-p", DEMO_PLANS, "-tr", DEMO_TRAINER,
                            "-device", "cpu"])
    predictions = os.path.join(base, "predictions")
    steps.command("predict", ["nnUNetv2_predict", "-i", os.path.join(folder, "imagesTs"), "-o", predictions,
                              "-d", d, "-c", CONFIGURATION, "-p", DEMO_PLANS, "-tr", DEMO_TRAINER, "-f", "0",
                              "-device", "cpu"])
    steps.command("evaluate", ["nnUNetv2_evaluate_folder", os.path.join(folder, "labelsTs"), predictions,
                               "-djfile", os.path.join(predictions, "dataset.json"),
                               "-pfile", os.path.join(predictions, "plans.json")])
    print(f"Wrote {os.path.join(predictions, 'summary.json')} (Dice and IoU per test image and label)", flush=True)

    print("\nDrawing each test image with its ground truth and the prediction...", flush=True)
    pictures = write_prediction_pictures(folder, predictions, os.path.join(base, "pictures"))
    steps.done("pictures")

    summary = load_json(os.path.join(predictions, "summary.json"))
    dice = {k: float(v["Dice"]) for k, v in summary["mean"].items()}
    labels = load_json(os.path.join(folder, "dataset.json"))["labels"]
    label_names = {str(v): k for k, v in labels.items()}
    progress = os.path.join(env["nnUNet_results"], DATASET_NAME, f"{DEMO_TRAINER}__{DEMO_PLANS}__{CONFIGURATION}",
                            "fold_0", "progress.png")
    print("\n" + summary_table(dice, label_names, steps.times, dataset_kwargs["num_test"], steps.cpu))
    print("\nPictures to open:")
    print(f"  {progress}  (training curves)")
    for p in pictures:
        print(f"  {p}")
    print(f"\nDemo finished; everything is in {base}")
    return {"dice": dice, "times": steps.times, "cpu": steps.cpu, "pictures": pictures, "progress": progress}


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo_output",
                        help="Folder for all demo data: a new or empty folder, or the output of an earlier run "
                             "(replaced). Default: demo_output")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"Training epochs. Default: {EPOCHS}")
    parser.add_argument("--iterations", type=int, default=ITERATIONS,
                        help=f"Training iterations per epoch. Default: {ITERATIONS}")
    parser.add_argument("--num_train", type=int, default=DATASET_KWARGS["num_train"],
                        help=f"Generated training images. Default: {DATASET_KWARGS['num_train']}")
    parser.add_argument("--num_test", type=int, default=DATASET_KWARGS["num_test"],
                        help=f"Generated test images. Default: {DATASET_KWARGS['num_test']}")
    args = parser.parse_args()
    run_demo(args.output, args.epochs, args.iterations, args.num_train, args.num_test)


if __name__ == "__main__":
    main()
