"""Client trial: the real MOOSE (moosez, multi-organ CT/PET segmentation on nnU-Net v2's nnUNetPredictor) from PyPI on
our nnunetv2, side by side with the reference (2.8.1).

    python moose_trial.py [--work DIR] [--repo CHECKOUT] [--version 3.2.2] [--ours-venv PATH] [--ref-venv PATH]
                          [--cases ...] [--keep]

Not a test (CI has no MOOSE and no network): a maintainer's check that MOOSE still runs unchanged on our package.
MOOSE downloads its models from GitHub releases (unreachable): ``_moose_fixture.py`` fabricates three of them
(clin_ct_organs with two folds, clin_ct_body with a transposed plan, clin_ct_face) and synthetic CT subjects, and this
script copies the models into ``site-packages/moosez/models/nnunet_trained_models`` of each venv (the only place MOOSE
looks; a ``model_version.json`` holding the registry's url stops it from downloading).

How MOOSE uses nnU-Net: it resamples the image itself (SimpleITK), cuts it into chunks (more than 350 voxels along an
axis), runs ``preprocessor.run_case_npy`` per chunk in dask threads with properties ``{'spacing': ...}`` only, then
``nnUNetPredictor(allow_tqdm=False, device=...).initialize_from_trained_model_folder(dir, use_folds=('0', ...))`` and
``predict_from_data_iterator(list_of_dicts)`` (ofile None, an extra ``location`` key), all inside
``redirect_stdout/redirect_stderr`` to a log file.  Its start also copies a custom trainer file into
``site.getsitepackages()[0]/nnunetv2/training/nnUNetTrainer/variants`` (shutil.copy: the folder must exist).

* ours: a venv made with ``--system-site-packages``; MOOSE and its missing dependencies (not nnunetv2). Our nnunetv2 is
  an editable install, so ``site-packages/nnunetv2`` of the venv does not exist and MOOSE's trainer copy would fail
  with FileNotFoundError (an artefact of the editable install, not of our package): the script makes that folder and
  adds a ``.pth`` naming REPO so that the regular package REPO/nnunetv2 still wins over that namespace folder.
* reference: a venv without system packages, ``pip install nnunetv2==2.8.1 moosez==VERSION``.

Every case runs MOOSE's CLI (``moosez -d DIR -m MODELS`` with flags) or its Python API (``moose(...)``) on both sides,
alternating which goes first, and prints per case: exit status, wall seconds, and whether every output file is
identical (NIfTI: voxels, dtype, affine, header; csv/json: content, with timestamps and venv paths normalised; the
nnU-Net console log MOOSE captures: lines; plots and benchmark csv: presence). Exit 1 on any difference.
"""
from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from _client_trial import (end_trial, exit_problems, installed_version, nnunetv2_location, ours_venv, parse_trial_args,
                           pip, print_case, print_header, printed_only_by_ours, reference_venv, run, run_sides,
                           run_step, same_output, site_packages, trial_parser)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "_moose_fixture.py")
MISSING_DEPS = ["halo", "pydicom", "pyfiglet", "natsort", "dask>=2026.1.0", "dicom2nifti", "dcm2niix", "emoji",
                "psutil"]

# name -> (subjects copied into the case folder: "s01", "s02", "l01"; steps) a step is ("cli", [args]) run with
# -d CASE or ("api", code) with DATA (the case folder) and OUT defined.
API_PRELUDE = "import numpy as np, SimpleITK as sitk\nfrom moosez import moose\n"
CASES: Dict[str, Tuple[List[str], list]] = {
    "cli_organs_two_subjects": (["s01", "s02"], [("cli", ["-m", "clin_ct_organs"])]),
    "cli_two_models_single_labels": (["s01"], [("cli", ["-m", "clin_ct_organs", "clin_ct_body", "-sl"])]),
    "cli_face_workflow_crop": (["s01"], [("cli", ["-m", "clin_ct_face"])]),
    "cli_long_chunked": (["l01"], [("cli", ["-m", "clin_ct_body"])]),
    "cli_herd_processes": (["s01", "s02"], [("cli", ["-m", "clin_ct_body", "-herd", "2"])]),
    "cli_quiet_nolog_benchmark": (["s02"], [("cli", ["-m", "clin_ct_body", "-v-off", "-log-off", "-b"])]),
    "api_file_two_models": (["s01"], [("api", API_PRELUDE + (
        "import os\n"
        "paths, models = moose(os.path.join(DATA, 's01', 'CT_s01.nii.gz'), ['clin_ct_organs', 'clin_ct_body'], OUT,"
        " 'cpu')\n"
        "print([os.path.basename(p) for p in paths], [str(m) for m in models])\n"))]),
    "api_sitk_and_array": (["s02"], [("api", API_PRELUDE + (
        "import os\n"
        "img = sitk.ReadImage(os.path.join(DATA, 's02', 'CT_scan.nii'))\n"
        "segs, _ = moose(img, 'clin_ct_body', accelerator='cpu')\n"
        "sitk.WriteImage(segs[0], os.path.join(OUT, 'sitk_body.nii.gz'))\n"
        "arr = sitk.GetArrayFromImage(img)\n"
        "segs, _ = moose((arr, (2.6, 2.6, 3.2)), 'clin_ct_organs', accelerator='cpu')\n"
        "np.save(os.path.join(OUT, 'array_organs.npy'), segs[0])\n"))]),
}


def has_moose(python: str, version: str, work: str) -> bool:
    return installed_version(python, "moosez", work) == version and subprocess.run(
        [python, "-c", "import moosez"], capture_output=True, cwd=work).returncode == 0


def make_ours(path: str, repo: str, version: str, work: str) -> str:
    python = ours_venv(path, repo, work)
    # MOOSE copies its trainer file into <site-packages>/nnunetv2/training/nnUNetTrainer/variants, where an
    # editable install has no such folder. Made here, that folder would hide an editable install's finder, so the
    # checkout goes on the path as a regular package in any case.
    sp = site_packages(python)
    with open(os.path.join(sp, "zz_nnunetv2_checkout.pth"), "w") as f:
        f.write(repo + "\n")
    os.makedirs(os.path.join(sp, "nnunetv2", "training", "nnUNetTrainer", "variants"), exist_ok=True)
    if nnunetv2_location(python, work) != os.path.join(repo, "nnunetv2"):
        sys.exit(f"{python} does not import {repo}/nnunetv2")
    if not has_moose(python, version, work):
        pip(python, "--no-deps", f"moosez=={version}")
        pip(python, *MISSING_DEPS)
    return python


# --- comparison -----------------------------------------------------------------------------------------------------
_TS = [(re.compile(r"moosez-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d"), "moosez-TS"),
       (re.compile(r"_\d\d-\d\d-\d\d-\d\d-\d{4}\.log"), "_TS.log"),
       (re.compile(r"_\d\d-\d\d-\d\d-\d\d-\d{4}"), "_TS")]


def _norm_name(rel: str) -> str:
    for rx, repl in _TS:
        rel = rx.sub(repl, rel)
    return rel


def _files(root: str) -> Dict[str, str]:
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f in ("stdout.txt", "stderr.txt"):
                continue
            rel = os.path.relpath(os.path.join(d, f), root)
            out[_norm_name(rel)] = os.path.join(d, f)
    return out


def _norm_text(text: str, roots: List[str]) -> str:
    for r in roots:
        text = text.replace(r, "<ROOT>")
    for rx, repl in _TS:
        text = rx.sub(repl, text)
    text = re.sub(r"\d\d\.\d\d\.\d{4} \d\d:\d\d", "<DATE>", text)
    text = re.sub(r"0x[0-9a-f]+", "0x..", text)
    return text


def _same_file(a: str, b: str, roots_a: List[str], roots_b: List[str]) -> Optional[str]:
    if a.endswith((".nii", ".nii.gz", ".npy")):
        return same_output(a, b)
    base = os.path.basename(a)
    if base.endswith(".png") or "peak_performance" in base or base.endswith("_performance.csv"):
        return None  # timings: presence only
    if base.endswith(".log"):
        if "_nnUNet_" not in base:
            return None  # MOOSE's own log: timings on every line; not compared
        la = _norm_text(open(a).read(), roots_a).splitlines()
        lb = _norm_text(open(b).read(), roots_b).splitlines()
        if la != lb:
            only_a = [l for l in la if l not in lb][:4]
            only_b = [l for l in lb if l not in la][:4]
            return f"nnU-Net console lines differ: only ours {only_a}, only reference {only_b}"
        return None
    if base.endswith((".csv", ".json")):
        ta, tb = _norm_text(open(a).read(), roots_a), _norm_text(open(b).read(), roots_b)
        if base.endswith(".json"):
            ja, jb = json.loads(ta), json.loads(tb)
            for j in (ja, jb):
                for k in ("timestamp_start", "timestamp_stop"):
                    j.pop(k, None)
            return None if ja == jb else f"json differs: {ta[:300]!r} vs {tb[:300]!r}"
        return None if ta == tb else "csv differs:\n" + "\n".join(
            f"    ours {x!r}\n    ref  {y!r}" for x, y in zip(ta.splitlines(), tb.splitlines()) if x != y)
    return None if filecmp.cmp(a, b, shallow=False) else "bytes differ"


def compare(ours: str, ref: str, roots_o: List[str], roots_r: List[str]) -> List[str]:
    problems = []
    fo, fr = _files(ours), _files(ref)
    if set(fo) != set(fr):
        problems.append(f"files differ: only ours {sorted(set(fo) - set(fr))[:5]}, "
                        f"only reference {sorted(set(fr) - set(fo))[:5]}")
    for name in sorted(set(fo) & set(fr)):
        problem = _same_file(fo[name], fr[name], roots_o, roots_r)
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


SUBJECT_SOURCES = {"s01": "s01", "s02": "s02", "l01": "long/l01"}


def run_case(python: str, name: str, case_dir: str, fixture_root: str) -> Tuple[int, float, str, str]:
    data = os.path.join(case_dir, "data")
    out = os.path.join(case_dir, "out")
    os.makedirs(out)
    for s in CASES[name][0]:
        shutil.copytree(os.path.join(fixture_root, SUBJECT_SOURCES[s]), os.path.join(data, s))
    total, rc, err, so_all = 0.0, 0, "", ""
    env = dict(os.environ)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "PYTHONPATH"):
        env.pop(k, None)
    for kind, what in CASES[name][1]:
        if kind == "cli":
            cmd = [os.path.join(os.path.dirname(python), "moosez"), "-d", data, *what]
        else:
            cmd = [python, "-c", f"DATA = {data!r}\nOUT = {out!r}\n" + what]
        rc, seconds, step_err, step_out = run_step(cmd, env, case_dir)
        total += seconds
        err += step_err
        so_all += step_out
        if rc != 0:
            break
    return rc, total, err, so_all


def main() -> int:
    args, work, repo = parse_trial_args(trial_parser(__doc__.split("\n\n")[0], "moose", "moosez", "3.2.2", CASES))
    ours_dir = os.path.abspath(args.ours_venv or os.path.join(work, "ours_venv"))
    ref_venv = os.path.abspath(args.ref_venv or os.path.join(work, "ref_venv"))
    sides = {"ours": make_ours(ours_dir, repo, args.version, work),
             "reference": reference_venv(ref_venv, work, "moosez", args.version)}
    roots = {"ours": [ours_dir], "reference": [ref_venv]}

    fixture_root = os.path.join(work, "fixture")
    if not os.path.isfile(os.path.join(fixture_root, "models", "Dataset001_body", "model_version.json")):
        run([sides["reference"], FIXTURE, os.path.join(fixture_root, "models"), fixture_root], cwd=work)
    for side, python in sides.items():
        target = os.path.join(site_packages(python), "moosez", "models", "nnunet_trained_models")
        os.makedirs(target, exist_ok=True)
        for folder in os.listdir(os.path.join(fixture_root, "models")):
            shutil.rmtree(os.path.join(target, folder), ignore_errors=True)
            shutil.copytree(os.path.join(fixture_root, "models", folder), os.path.join(target, folder))

    failed = False
    width = print_header(args.cases)
    for i, name in enumerate(args.cases):
        def run_one(side, case_dir):
            os.makedirs(case_dir)
            return run_case(sides[side], name, case_dir, fixture_root)
        results = run_sides(sides, i, work, name, run_one)
        rc, wall, err, so, out = results["ours"]
        rrc, rwall, rerr, rso, rout = results["reference"]
        problems = exit_problems(rc, err, rrc, rerr)
        if rc == 0 and rrc == 0:
            problems += compare(out, rout, roots["ours"] + [out], roots["reference"] + [rout])
            if name.startswith("api") and _norm_text(so, [out]) != _norm_text(rso, [rout]):
                problems.append(f"stdout differs: {so[-300:]!r} vs {rso[-300:]!r}")
        problems += printed_only_by_ours(err, rerr, ignore=("Warning: Subjects without",))
        failed |= bool(problems)
        print_case(name, width, wall, rwall, "FAIL" if problems else "identical", problems)
    return end_trial(work, args.keep, failed)


if __name__ == "__main__":
    sys.exit(main())
