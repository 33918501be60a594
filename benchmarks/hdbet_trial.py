"""Client trial: the real HD-BET 2 (brain extraction, on nnU-Net v2's nnUNetPredictor) from PyPI on our nnunetv2,
side by side with the reference (2.8.1).

    python hdbet_trial.py [--work DIR] [--repo CHECKOUT] [--version 2.0.1] [--ours-venv PATH] [--ref-venv PATH]
                          [--ours-pythonpath DIR] [--cases ...] [--keep]

Not a test (CI has no HD-BET and no network): a maintainer's check that HD-BET still runs unchanged on our package.
HD-BET's weights come from Zenodo, which is unreachable: ``_hdbet_fixture.py`` fabricates them (plans.json,
dataset.json and fold_all/checkpoint_final.pth of a small network with seeded random weights, in
``$HOME/hd-bet_params/release_2.0.0``, the only place HD-BET looks) and two synthetic T1-like heads.

* ours: a venv made with ``--system-site-packages`` from this interpreter, HD-BET ``--no-deps``. If it does not
  import ``REPO/nnunetv2`` (an editable install pointing elsewhere) a ``.pth`` file naming REPO is added to the venv.
  ``--ours-pythonpath DIR``: put DIR first on our side's PYTHONPATH (a patched copy of nnunetv2, to try fixes).
* reference: a venv without system packages, ``pip install nnunetv2==2.8.1 hd-bet==VERSION``.

Every case runs HD-BET's CLI (``hd-bet -i ... -o ... -device cpu`` and flags) or its Python API
(``get_hdbet_predictor`` + ``hdbet_predict``) on both sides with HOME set to the fixture's home, alternating which
side goes first, and prints per case: exit status, wall seconds, whether every file left in the case's folder is
identical (NIfTI: voxels, dtype, affine, header; else bytes), and stderr lines with "warn", "error" or "traceback"
that only our side printed. Exit status 1 if any case fails on our side or differs from the reference.
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Dict, Tuple

from _client_trial import (compare_outputs, installed_version, nnunetv2_location, ours_venv, parse_trial_args, pip,
                           reference_venv, run, run_step, run_trial, trial_parser)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "_hdbet_fixture.py")

# name -> (home: plain|resenc, steps); a step is ("cli", [args]) run in the case folder (INPUTS, A, B, OUT
# substituted), ("api", code) with INPUTS, A, B, OUT defined, or ("copy", {name: input}) copying inputs into the case
# folder. The steps run one after the other in the same folder.
API_PRELUDE = ("import torch\n"
               "from HD_BET.checkpoint_download import maybe_download_parameters\n"
               "from HD_BET.hd_bet_prediction import get_hdbet_predictor, hdbet_predict\n"
               "maybe_download_parameters()\n")
CASES: Dict[str, Tuple[str, list]] = {
    "file_tta": ("plain", [("cli", ["-i", "{A}", "-o", "brain.nii.gz", "-device", "cpu"])]),
    "file_notta_mask": ("plain", [("cli", ["-i", "{A}", "-o", "brain.nii.gz", "-device", "cpu", "--disable_tta",
                                           "--save_bet_mask"])]),
    "file_mask_only": ("plain", [("cli", ["-i", "{B}", "-o", "brain.nii.gz", "-device", "cpu", "--disable_tta",
                                          "--save_bet_mask", "--no_bet_image"])]),
    "file_verbose": ("plain", [("cli", ["-i", "{B}", "-o", "brain.nii.gz", "-device", "cpu", "--disable_tta",
                                        "--verbose"])]),
    "file_abs_output_subdir": ("plain", [("cli", ["-i", "{A}", "-o", "{OUT}/sub/brain.nii.gz", "-device", "cpu",
                                                  "--disable_tta", "--save_bet_mask"])]),
    "folder_notta_mask": ("plain", [("cli", ["-i", "{INPUTS}", "-o", "out", "-device", "cpu", "--disable_tta",
                                             "--save_bet_mask"])]),
    "folder_tta": ("plain", [("cli", ["-i", "{INPUTS}", "-o", "out", "-device", "cpu"])]),
    # a user's usual call: in the folder of the image, output beside it (the folder holds other files)
    "beside_input": ("plain", [("copy", {"t1_a.nii.gz": "t1_a.nii.gz", "t1_b.nii.gz": "t1_b.nii.gz"}),
                               ("cli", ["-i", "t1_a.nii.gz", "-o", "t1_a_brain.nii.gz", "-device", "cpu",
                                        "--disable_tta", "--save_bet_mask"])]),
    # a folder of single-channel scans whose names end in _NNNN (not nnU-Net channel numbers here)
    "folder_numbered_names": ("plain", [("copy", {"in/scan_0001.nii.gz": "t1_a.nii.gz",
                                                  "in/scan_0002.nii.gz": "t1_b.nii.gz"}),
                                        ("cli", ["-i", "in", "-o", "out", "-device", "cpu", "--disable_tta",
                                                 "--save_bet_mask"])]),
    # the same call twice: HD-BET deletes predict_from_raw_data_args.json after each run, the mask stays
    "rerun_same_output": ("plain", [("cli", ["-i", "{A}", "-o", "brain.nii.gz", "-device", "cpu", "--disable_tta",
                                             "--save_bet_mask"])] * 2),
    "folder_rerun": ("plain", [("cli", ["-i", "{INPUTS}", "-o", "out", "-device", "cpu", "--disable_tta",
                                        "--save_bet_mask"])] * 2),
    "resenc_file_tta_mask": ("resenc", [("cli", ["-i", "{B}", "-o", "brain.nii.gz", "-device", "cpu",
                                                 "--save_bet_mask"])]),
    "api_file_and_folder": ("plain", [("api", API_PRELUDE + (
        "p = get_hdbet_predictor(use_tta=False, device=torch.device('cpu'), verbose=False)\n"
        "hdbet_predict(A, OUT + '/a_brain.nii.gz', p, keep_brain_mask=True)\n"
        "hdbet_predict(INPUTS, OUT + '/folder', p, keep_brain_mask=False)\n"
        "hdbet_predict(B, OUT + '/b_brain.nii.gz', p, keep_brain_mask=True, compute_brain_extracted_image=False)\n"
    ))]),
    "api_tta_defaults": ("plain", [("api", API_PRELUDE + (
        "p = get_hdbet_predictor(use_tta=True, device=torch.device('cpu'))\n"
        "hdbet_predict(B, OUT + '/b_brain.nii.gz', p)\n"))]),
}


def make_ours(path: str, repo: str, version: str, work: str) -> str:
    python = ours_venv(path, repo, work)
    if installed_version(python, "hd-bet", work) != version:
        pip(python, "--no-deps", f"hd-bet=={version}")
    return python


def run_case(python: str, name: str, out: str, inputs: str, env: Dict[str, str]) -> Tuple[int, float, str]:
    os.makedirs(out)
    subs = {"INPUTS": inputs, "A": os.path.join(inputs, "t1_a.nii.gz"), "B": os.path.join(inputs, "t1_b.nii.gz"),
            "OUT": out}
    total, rc, err = 0.0, 0, ""
    for kind, what in CASES[name][1]:
        if kind == "copy":  # {name in the case folder: input file}
            for target, source in what.items():
                os.makedirs(os.path.dirname(os.path.join(out, target)), exist_ok=True)
                shutil.copy(os.path.join(inputs, source), os.path.join(out, target))
            continue
        if kind == "cli":
            cmd = [os.path.join(os.path.dirname(python), "hd-bet"), *[a.format(**subs) for a in what]]
        else:
            cmd = [python, "-c", "".join(f"{k} = {v!r}\n" for k, v in subs.items()) + what]
        rc, seconds, step_err, _ = run_step(cmd, env, out)
        total += seconds
        err += step_err
        if rc != 0:
            break
    return rc, total, err


def main() -> int:
    parser = trial_parser(__doc__.split("\n\n")[0], "hdbet", "hd-bet", "2.0.1", CASES)
    parser.add_argument("--ours-pythonpath", default=None, help="prepend to our side's PYTHONPATH (patched copy)")
    args, work, repo = parse_trial_args(parser)

    ref_venv = os.path.abspath(args.ref_venv or os.path.join(work, "ref_venv"))
    sides = {"ours": make_ours(os.path.abspath(args.ours_venv or os.path.join(work, "ours_venv")), repo, args.version,
                               work),
             "reference": reference_venv(ref_venv, work, "hd-bet", args.version)}
    base_env = dict(os.environ)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "PYTHONPATH"):
        base_env.pop(k, None)
    envs = {side: dict(base_env) for side in sides}
    if args.ours_pythonpath:
        envs["ours"]["PYTHONPATH"] = os.path.abspath(args.ours_pythonpath)
        print(f"our side imports nnunetv2 from {nnunetv2_location(sides['ours'], work, envs['ours'])}")

    inputs = os.path.join(work, "inputs")
    homes = {kind: os.path.join(work, f"home_{kind}") for kind in ("plain", "resenc")}
    for kind, home in homes.items():
        if not os.path.isfile(os.path.join(home, "hd-bet_params", "release_2.0.0", "fold_all",
                                           "checkpoint_final.pth")):
            run([sides["ours"], FIXTURE, home, inputs, "--arch", kind], cwd=work, env=envs["ours"])

    return run_trial(args.cases, sides, work, args.keep,
                     lambda name, side, out: run_case(sides[side], name, out, inputs,
                                                      dict(envs[side], HOME=homes[CASES[name][0]])),
                     lambda ours, ref: compare_outputs(ours, ref, ignore=("stdout.txt", "stderr.txt")))


if __name__ == "__main__":
    sys.exit(main())
