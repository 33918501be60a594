"""Client trial: the real TotalSegmentator from PyPI on our nnunetv2, side by side with the reference (2.8.1).

    python benchmarks/totalsegmentator_trial.py [--work DIR] [--version 2.18.0] [--reference-python PATH]
                                                [--no-reference] [--cases fast_ml roi_subset ...] [--keep]

Not a test (CI has no TotalSegmentator and no network): a maintainer's check that the biggest client still runs
unchanged on our package. It needs PyPI (pip) but not GitHub: TotalSegmentator's weights are fabricated
(``_totalsegmentator_fixture.py``: its ``--fast``/``--fastest`` models 297/298 with the ``total`` class map, a small
network with seeded random weights) in a TOTALSEG_HOME_DIR under the work folder, with usage statistics off.

* ours: a venv ``DIR/ours_venv`` made with ``--system-site-packages`` from this interpreter, which must have our
  package installed (``pip install -e .``; checked), plus TotalSegmentator ``--no-deps`` and those of its
  dependencies that are missing (not nnunetv2; not dipy/fury, which only ``--preview`` needs).
* reference: ``--reference-python PATH`` (an environment whose nnunetv2 is the reference, e.g.
  /opt/nnunet_ref/bin/python; TotalSegmentator is installed into it the same way if it lacks it), else a venv ``DIR/ref_venv`` with
  ``pip install nnunetv2==2.8.1``. Both sides load the same fabricated weights and read the same CT.

Every case runs TotalSegmentator's CLI (``TotalSegmentator -i ct.nii.gz -o ... -d cpu`` and flags) or its Python API
on both sides, alternating which side goes first, and prints per case: exit status, wall seconds, whether every
output file is identical (NIfTI: voxels, affine, header and extensions; JSON: equal content; npz: equal arrays;
else bytes), and stderr lines with "warn", "error" or "traceback" that only our side printed. Exit status 1 if any
case fails on our side or differs from the reference. All work goes into ``DIR`` (default ``$TMPDIR/ts_trial``),
which is deleted at the end unless ``--keep``; never inside the repository.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

from _client_trial import (CONSOLE_SCRIPT, compare_outputs, install_client, make_venv, notable_lines,
                           nnunetv2_location, pip, print_case, print_header, printed_only_by_ours, run, run_sides)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_totalsegmentator_fixture.py")
REFERENCE_VERSION = "2.8.1"
SKIPPED_REQUIREMENTS = {"dipy", "fury"}  # --preview only

# name -> CLI flags after "-i CT -o OUT -d cpu" (OUT: "seg.nii.gz" with --ml, else the folder "seg"), or an API call
CLI_CASES: Dict[str, List[str]] = {
    "fast_ml": ["--fast", "--ml"],
    "fast_files_statistics_ns1": ["--fast", "--statistics", "-ns", "1"],
    "fast_files_ns2": ["--fast", "-ns", "2"],
    "roi_subset": ["--fast", "--roi_subset", "liver", "spleen", "kidney_left"],
    "roi_subset_ml_statistics": ["--fast", "--ml", "--statistics", "--roi_subset", "liver", "spleen"],
    "fastest_ml": ["--fastest", "--ml"],
    "force_split_ml": ["--fast", "--ml", "--force_split"],
    "higher_order_resampling_ml": ["--fast", "--ml", "--higher_order_resampling"],
    "save_probabilities_ml": ["--fast", "--ml", "--save_probabilities", "{out}/probabilities.npz"],
    "save_lowres_ml": ["--fast", "--ml", "--save_lowres"],
    "quiet_ml": ["--fast", "--ml", "--quiet"],
}
API_CASES: Dict[str, str] = {
    "api_nifti_in_out": (
        "import nibabel as nib\n"
        "from totalsegmentator.python_api import totalsegmentator\n"
        "img = totalsegmentator(nib.load(CT), None, fast=True, ml=True, device='cpu', quiet=True)\n"
        "nib.save(img, OUT + '/seg.nii.gz')\n"),
    "api_files_statistics": (
        "from totalsegmentator.python_api import totalsegmentator\n"
        "totalsegmentator(CT, OUT + '/seg', fast=True, statistics=True, nr_thr_saving=1, device='cpu',\n"
        "                 roi_subset=['liver', 'spleen'])\n"),
}
# TotalSegmentator's own trainers (totalsegmentator.custom_trainers; importing totalsegmentator.nnunet applies its
# runtime patches first), one epoch of 3 iterations on a small synthetic CT dataset that each side planned and
# preprocessed itself, network shrunk to 8..64 features. Outputs are random: only success and time are compared.
TRAINERS = ("nnUNetTrainerSkeletonRecall", "nnUNetTrainerDiceTopK10Loss_2000epochs",
            "nnUNetTrainer_MOSAIC_1k_QuarterLR_NoMirroring")
TRAIN_SNIPPET = (
    "import json, os, torch\n"
    "import totalsegmentator.nnunet\n"
    "from totalsegmentator import custom_trainers\n"
    "pre = os.path.join(os.environ['nnUNet_preprocessed'], 'Dataset777_TSTrial')\n"
    "plans = json.load(open(os.path.join(pre, 'nnUNetPlans.json')))\n"
    "arch = plans['configurations']['3d_fullres']['architecture']['arch_kwargs']\n"
    "arch['features_per_stage'] = [min(8 * 2 ** i, 64) for i in range(arch['n_stages'])]\n"
    "dataset_json = json.load(open(os.path.join(pre, 'dataset.json')))\n"
    "torch.manual_seed(0)\n"
    "t = getattr(custom_trainers, TRAINER)(plans, '3d_fullres', 0, dataset_json, True, torch.device('cpu'))\n"
    "t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch = 1, 3, 2\n"
    "t.run_training()\n")
TRAIN_CASES = {f"train_{t}": t for t in TRAINERS}


def make_training_data(ours: str, sides: Dict[str, str], work: str, env: Dict[str, str]) -> Dict[str, dict]:
    """A raw dataset of 6 synthetic CT cases with two labels (written by the fixture), planned and preprocessed by
    each side's own nnUNetv2_plan_and_preprocess; returns each side's nnUNet_* variables."""
    raw = os.path.join(work, "train", "raw")
    shutil.rmtree(os.path.join(work, "train"), ignore_errors=True)
    run([ours, FIXTURE, "--training-dataset", raw], cwd=work)
    envs = {}
    for side, python in sides.items():
        base = os.path.join(work, "train", side)
        side_env = dict(env, nnUNet_raw=raw, nnUNet_preprocessed=os.path.join(base, "preprocessed"),
                        nnUNet_results=os.path.join(base, "results"), nnUNet_n_proc_DA="2")
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, "plan_and_preprocess.log"), "w") as log:  # read it if this step fails
            run([python, "-c", CONSOLE_SCRIPT.format(name="nnUNetv2_plan_and_preprocess"), "-d", "777", "-c",
                 "3d_fullres", "-np", "2", "-npfp", "2"], env=side_env, cwd=work, stdout=log, stderr=log)
        envs[side] = side_env
    return envs


def run_case(python: str, name: str, out: str, ct: str, env: Dict[str, str], cwd: str) -> Tuple[int, float, str]:
    os.makedirs(out)
    if name in TRAIN_CASES:
        cmd = [python, "-c", f"TRAINER = {TRAIN_CASES[name]!r}\n" + TRAIN_SNIPPET]
    elif name in API_CASES:
        cmd = [python, "-c", f"CT, OUT = {ct!r}, {out!r}\n" + API_CASES[name]]
    else:
        flags = [f.format(out=out) for f in CLI_CASES[name]]
        target = os.path.join(out, "seg.nii.gz" if "--ml" in flags else "seg")
        cmd = [os.path.join(os.path.dirname(python), "TotalSegmentator"), "-i", ct, "-o", target, "-d", "cpu", *flags]
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return p.returncode, time.perf_counter() - start, p.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "ts_trial"))
    parser.add_argument("--version", default="2.18.0", help="TotalSegmentator version from PyPI")
    parser.add_argument("--reference-python", default=None)
    parser.add_argument("--no-reference", action="store_true", help="run our side only")
    parser.add_argument("--cases", nargs="+", default=[*CLI_CASES, *API_CASES, *TRAIN_CASES],
                        choices=[*CLI_CASES, *API_CASES, *TRAIN_CASES])
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    if os.path.commonpath([work, REPO]) == REPO:
        parser.error("--work must be outside the repository")
    created = not os.path.exists(work)  # a folder the user gave us is emptied of our paths only, never removed
    os.makedirs(work, exist_ok=True)

    sides = {"ours": make_venv(os.path.join(work, "ours_venv"))}
    if nnunetv2_location(sides["ours"], work) != os.path.join(REPO, "nnunetv2"):
        sys.exit(f"nnunetv2 in {sys.executable}'s environment is not this checkout: run `pip install -e {REPO}`")
    if not args.no_reference:
        sides["reference"] = args.reference_python or make_venv(os.path.join(work, "ref_venv"))
        if not args.reference_python:
            pip(sides["reference"], f"nnunetv2=={REFERENCE_VERSION}")
        if nnunetv2_location(sides["reference"], work).startswith(REPO):
            sys.exit("the reference interpreter imports our nnunetv2")
    for python in sides.values():
        install_client(python, "TotalSegmentator", args.version, work, SKIPPED_REQUIREMENTS)

    home, ct = os.path.join(work, "home"), os.path.join(work, "ct.nii.gz")
    run([sides["ours"], FIXTURE, home, ct], cwd=work)
    env = dict(os.environ, TOTALSEG_HOME_DIR=home)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "TOTALSEG_WEIGHTS_PATH"):
        env.pop(k, None)

    train_envs = make_training_data(sides["ours"], sides, work, env) if set(args.cases) & set(TRAIN_CASES) else {}
    failed = False
    width = print_header(args.cases)
    for i, name in enumerate(args.cases):
        results = run_sides(sides, i, work, name, lambda side, out: run_case(
            sides[side], name, out, ct, train_envs.get(side, env), work))
        rc, wall, err, out = results["ours"]
        problems, remarks = [], []
        if rc != 0:
            problems.append(f"ours exit {rc}: {err.strip().splitlines()[-1:]}")
        rwall = None
        if "reference" in results:
            rrc, rwall, rerr, rout = results["reference"]
            if rrc != 0 and name in TRAIN_CASES and "positional arguments" in rerr:
                # these trainers still pass unpack_dataset, which the reference's constructor refuses since 2.6
                rwall = None
                remarks.append("the reference cannot construct this trainer (pre-2.6 constructor)")
            elif rrc != 0:
                problems.append(f"reference exit {rrc}: {rerr.strip().splitlines()[-1:]}")
            elif rc == 0 and name not in TRAIN_CASES:
                problems += compare_outputs(out, rout)
            problems += printed_only_by_ours(err, rerr)
        else:
            problems += [f"printed: {l}" for l in notable_lines(err)][:3]
        failed |= bool(problems)
        verdict = "FAIL" if problems else "ok" if rwall is None or name in TRAIN_CASES else "identical"
        print_case(name, width, wall, rwall, verdict, problems + remarks)
    if not args.keep:
        for path in [work] if created else [os.path.join(work, p) for p in
                                            ("ours_venv", "ref_venv", "home", "runs", "train", "ct.nii.gz")]:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else \
                os.path.exists(path) and os.remove(path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
