"""Client trial: the real TotalSpineSeg (spine segmentation in two nnU-Net v2 steps) from PyPI on our nnunetv2, side
by side with the reference (2.8.1).

    python benchmarks/totalspineseg_trial.py [--work DIR] [--version 20260807] [--ours-venv DIR] [--ref-venv DIR]
                                             [--cases ...] [--keep]

Not a test (CI has no TotalSpineSeg and no network). Its weights are fabricated (``_totalspineseg_fixture.py``: the
step-1 and step-2 models under TOTALSPINESEG_DATA, small networks with seeded random weights; step 2 has two input
channels) with one synthetic spine MRI.

* TotalSpineSeg copies its augmentation library's trainer file into the nnunetv2 it imports: our side therefore runs
  a fresh copy of this checkout's nnunetv2 (``WORK/ours_pkg``, first on PYTHONPATH), never the checkout itself.
* Both venvs pin ``kornia==0.8.1``: auglab imports ``kornia.core.Tensor``, which kornia 0.9 removed (the reference
  then stops at loading the model; ours warns and predicts with the plans' network).
* Every case passes ``--no-stalling``: without it both sides hang on the CPU in the step-1 preview (a process pool
  forked after torch started its OpenMP threads; TotalSpineSeg's own issue).

Every case runs the ``totalspineseg`` CLI on both sides, one after the other, alternating which goes first, and prints
exit status, wall seconds, every output file that differs (NIfTI voxels/affine/header, bytes for the preview JPEGs),
console lines that differ (progress bars and paths removed) and warnings only ours printed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Tuple

from _client_trial import (compare_outputs, install_client, ours_venv, parse_trial_args, pip, reference_venv, run,
                           run_trial, trial_parser)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "_totalspineseg_fixture.py")
PINS = ["kornia==0.8.1"]
SKIPPED_REQUIREMENTS = {"kornia"}
BASE = ["--device", "cpu", "-w", "1", "--max-workers-nnunet", "1", "--no-stalling"]
CASES: Dict[str, List[str]] = {
    "step1": ["{IN}", "out", "--step1", *BASE],
    "step1_iso": ["{IN}", "out", "--step1", "--iso", *BASE],
    "full": ["{IN}", "out", *BASE],
    "full_iso_folder_keep": ["{INDIR}", "out", "--iso", "-k", "step1_output", "step2_output", "step1_levels", *BASE],
}


def console_lines(case_dir: str) -> List[str]:
    """stdout without progress bars and without the line saying whether the trainer file was copied (the reference
    venv keeps it from earlier runs, our side's package copy is fresh), the case folder made neutral."""
    with open(os.path.join(case_dir, "stdout.txt")) as f:
        text = f.read().replace("\r", "\n").replace(case_dir, "CASE")
    return [line.strip() for line in text.splitlines()
            if line.strip() and "it/s]" not in line and "s/it]" not in line
            and not (line.startswith("Trainer ") and (" was added to " in line or " already exists at " in line))]


def compare_case(ours: str, ref: str) -> List[str]:
    problems = compare_outputs(os.path.join(ours, "out"), os.path.join(ref, "out"))
    ours_lines, ref_lines = console_lines(ours), console_lines(ref)
    if ours_lines != ref_lines:
        problems.append(f"stdout differs: ours {sorted(set(ours_lines) - set(ref_lines))[:3]}, "
                        f"reference {sorted(set(ref_lines) - set(ours_lines))[:3]}")
    return problems


def run_case(python: str, args: List[str], case_dir: str, env: Dict[str, str]) -> Tuple[int, float, str]:
    os.makedirs(case_dir)
    cmd = [os.path.join(os.path.dirname(python), "totalspineseg"), *args]
    with open(os.path.join(case_dir, "stdout.txt"), "w") as out, open(os.path.join(case_dir, "stderr.txt"), "w") as err:
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=case_dir, env=env, stdout=out, stderr=err, timeout=1800).returncode
        wall = time.perf_counter() - start
    with open(os.path.join(case_dir, "stderr.txt")) as f:
        return rc, wall, f.read()


def main() -> int:
    args, work, repo = parse_trial_args(trial_parser(__doc__.split("\n\n")[0], "totalspineseg", "totalspineseg",
                                                     "20260807", CASES))

    ours = ours_venv(os.path.abspath(args.ours_venv or os.path.join(work, "ours_venv")), repo, work)
    install_client(ours, "totalspineseg", args.version, work, SKIPPED_REQUIREMENTS)
    reference = reference_venv(os.path.abspath(args.ref_venv or os.path.join(work, "ref_venv")), work,
                               "totalspineseg", args.version)
    for python in (ours, reference):
        pip(python, *PINS)
    sides = {"ours": ours, "reference": reference}

    package_copy = os.path.join(work, "ours_pkg")
    shutil.rmtree(package_copy, ignore_errors=True)
    shutil.copytree(os.path.join(repo, "nnunetv2"), os.path.join(package_copy, "nnunetv2"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "PYTHONPATH")}
    data, inputs = os.path.join(work, "data"), os.path.join(work, "inputs")
    env["TOTALSPINESEG_DATA"] = data
    envs = {"ours": dict(env, PYTHONPATH=package_copy), "reference": env}
    if not os.path.isfile(os.path.join(inputs, "sub-01_T2w.nii.gz")):
        run([ours, FIXTURE, data, inputs], env=envs["ours"], cwd=work)
    values = {"IN": os.path.join(inputs, "sub-01_T2w.nii.gz"), "INDIR": inputs}

    return run_trial(args.cases, sides, work, args.keep,
                     lambda name, side, out: run_case(sides[side], [a.format(**values) for a in CASES[name]], out,
                                                      envs[side]),
                     compare_case)


if __name__ == "__main__":
    sys.exit(main())
