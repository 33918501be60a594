"""The quick-start demo: generate a small dataset and run the pipeline on it with the real console commands.

Everything goes under one output folder (default ./demo_output); the three nnU-Net folders are set for the child
processes only. Each step prints the command it runs, so the demo doubles as a worked example.
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

    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
    folder = make_synthetic_dataset(env["nnUNet_raw"], DATASET_ID, "Demo", num_train=8, num_test=2)
    print(f"Generated {folder}")

    d = str(DATASET_ID)
    _run(["nnUNetv2_plan_and_preprocess", "-d", d, "--verify_dataset_integrity", "-npfp", "2", "-np", "2",
          "-c", "3d_fullres"], env)
    print(f"\nDemo finished; everything is in {base}")


if __name__ == "__main__":
    main()
