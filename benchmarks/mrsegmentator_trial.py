"""Client trial: the real MRSegmentator from PyPI on our nnunetv2, side by side with the reference (2.8.1).

    python mrsegmentator_trial.py [--work DIR] [--version 2.0.0] [--reference-python PATH] [--no-reference]
                                  [--cases ...] [--keep]

MRSegmentator 2.0.0 pins ``nnunetv2<=2.8.0``, so it is installed ``--no-deps`` on both sides (the reference venv gets
``nnunetv2==2.8.1`` first); then whichever of its dependencies are missing (pydicom and highdicom among them).
Its weights are fabricated (``_mrsegmentator_fixture.py``: models ``base`` and ``body_comp``, five folds each, small
networks with seeded random weights) under a folder that MRSEG_WEIGHTS_PATH points at, with version.json files so
that it does not try to download.

Every case runs the ``mrsegmentator`` CLI (``--input X --outdir OUT --cpu_only`` and flags) or its Python API
(``mrsegmentator.inference.infer``) on both sides, alternating which side goes first, and prints per case the exit
status, wall seconds, whether every output file is identical (NIfTI: voxels, affine, header, extensions; DICOM SEG:
pixel data and segment labels), and stderr/stdout lines with "warn", "error" or "traceback" that only our side
printed. Exit status 1 if any case fails on our side or differs from the reference.
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

from _client_trial import (compare_outputs, end_trial, exit_problems, install_client, nnunetv2_location,
                           notable_lines, pip, print_case, print_header, printed_only_by_ours, run, run_sides)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "_mrsegmentator_fixture.py")
REFERENCE_VERSION = "2.8.1"
COMPARE_PYTHON = sys.executable  # an interpreter with pydicom, for DICOM SEG outputs
SKIPPED_REQUIREMENTS = {"nnunetv2", "torch", "numpy"}

SMALL = ["--nproc", "1", "--nproc_export", "1"]
# name -> (input relative to the images folder, flags after "--input IN --outdir OUT --cpu_only", env overrides)
CLI_CASES: Dict[str, Tuple[str, List[str], Dict[str, str]]] = {
    "fast": ("mri_a.nii.gz", ["--fast", *SMALL], {}),
    "fold2_mirroring": ("mri_a.nii.gz", ["--fold", "2", *SMALL], {}),
    "ensemble_5folds": ("mri_b.nii.gz", [*SMALL], {}),
    "split_level1_fold0": ("mri_b.nii.gz", ["--split_level", "1", "--fold", "0", "--fast", *SMALL], {}),
    "split_level2_margin2": ("mri_a.nii.gz", ["--split_level", "2", "--split_margin", "2", "--fold", "1"], {}),
    "folder_batch2_postfix": ("folder", ["--fold", "0", "--fast", "--batchsize", "2", "--postfix", "mask", *SMALL], {}),
    "folder_default_procs": ("folder", ["--fast"], {}),
    "folder_nproc2_export2": ("folder", ["--fast", "--nproc", "2", "--nproc_export", "2", "--batchsize", "3"], {}),
    "body_comp_fast": ("mri_b.nii.gz", ["--body_comp", "--fast", *SMALL], {}),
    "body_comp_split1": ("folder/mri_c.nii.gz", ["--body_comp", "--fold", "4", "--split_level", "1", *SMALL], {}),
    "debug_no_tqdm": ("mri_a.nii.gz", ["--fast", "--log_level", "DEBUG", "--no_tqdm", *SMALL], {}),
    "legacy_weights_dir": ("mri_c_only", ["--fold", "3", "--fast", *SMALL], {"MRSEG_WEIGHTS_PATH": "{weights}/base"}),
    "aniso_fold0_mirroring": ("mri_aniso.nii.gz", ["--fold", "0", *SMALL], {}),
    "aniso_body_comp_split1": ("mri_aniso.nii.gz", ["--body_comp", "--fast", "--split_level", "1", *SMALL], {}),
    "tiny_fast": ("mri_tiny.nii.gz", ["--fast", *SMALL], {}),
    "dicom_input": ("dicom_series", ["--fast", *SMALL], {}),
}
API_CASES: Dict[str, str] = {
    "api_infer_list": (
        "from mrsegmentator.inference import infer\n"
        "infer([IMG + '/mri_a.nii.gz', IMG + '/mri_b.nii.gz'], OUT, folds=(0, 1), cpu_only=True, batchsize=1,\n"
        "      nproc=1, nproc_export=1, allow_tqdm=False)\n"),
    "api_infer_split_bodycomp": (
        "from mrsegmentator.inference import infer\n"
        "infer([IMG + '/folder/mri_c.nii.gz'], OUT, folds=[2], postfix='bc', split_level=1, split_margin=4,\n"
        "      cpu_only=True, fast=True, model_name='body_comp')\n"),
    "api_infer_twice_state": (
        # a notebook's pattern: infer() twice in one process; the process state it leaves behind is recorded
        "import json, logging, multiprocessing, os, sys, torch\n"
        "from mrsegmentator.inference import infer\n"
        "def state():\n"
        "    return {'threads': torch.get_num_threads(), 'interop': torch.get_num_interop_threads(),\n"
        "            'grad': torch.is_grad_enabled(), 'start_method': multiprocessing.get_start_method(True),\n"
        "            'env': {k: v for k, v in os.environ.items() if k.startswith(('nnUNet', 'OMP', 'MKL'))},\n"
        "            'root_level': logging.getLogger().level, 'children': len(multiprocessing.active_children()),\n"
        "            'default_dtype': str(torch.get_default_dtype())}\n"
        "before = state()\n"
        "infer([IMG + '/mri_tiny.nii.gz'], OUT + '/one', folds=(0,), cpu_only=True, fast=True, nproc=2, nproc_export=2)\n"
        "middle = state()\n"
        "infer([IMG + '/mri_tiny.nii.gz', IMG + '/mri_aniso.nii.gz'], OUT + '/two', folds=(1,), cpu_only=True,\n"
        "      fast=True, nproc=1, nproc_export=1, model_name='body_comp')\n"
        "after = state()\n"
        "json.dump({'before': before, 'middle': middle, 'after': after}, open(OUT + '/state.json', 'w'), indent=1)\n"),
    "api_setup_and_predictor": (
        # what infer() does, driven directly: setup_mrseg + nnUNetPredictor on the pathlib.Path it returns
        "import torch, SimpleITK as sitk\n"
        "from mrsegmentator import config\n"
        "from mrsegmentator.simpleitk_reader_writer import SimpleITKIO\n"
        "from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor\n"
        "d = config.setup_mrseg('base')\n"
        "p = nnUNetPredictor(tile_step_size=0.8, use_mirroring=False, device=torch.device('cpu'), allow_tqdm=False)\n"
        "p.initialize_from_trained_model_folder(d, use_folds=(0,), checkpoint_name='checkpoint_final.pth')\n"
        "img, props = SimpleITKIO().read_image(IMG + '/mri_b.nii.gz')\n"
        "seg, prob = p.predict_single_npy_array(img, props, None, None, True)\n"
        "import numpy as np\n"
        "np.savez_compressed(OUT + '/single.npz', seg=seg, prob=prob)\n"
        "segs = p.predict_from_list_of_npy_arrays([img], None, [props], None, num_processes=1,\n"
        "                                         save_probabilities=True, num_processes_segmentation_export=1)\n"
        "np.savez_compressed(OUT + '/list.npz', seg=segs[0][0], prob=segs[0][1])\n"),
}


def run_case(python: str, name: str, out: str, images: str, weights: str, env: Dict[str, str],
             cwd: str) -> Tuple[int, float, str]:
    os.makedirs(out)
    env = dict(env)
    if name in API_CASES:
        cmd = [python, "-c", f"IMG, OUT = {images!r}, {out!r}\n" + API_CASES[name]]
    else:
        source, flags, extra = CLI_CASES[name]
        env.update({k: v.format(weights=weights) for k, v in extra.items()})
        if source == "mri_c_only":
            source = os.path.join(out, "in")
            os.makedirs(source)
            shutil.copy(os.path.join(images, "folder", "mri_c.nii.gz"), source)
        elif source == "dicom_series":  # the client writes the converted NIfTI next to its output
            shutil.copytree(os.path.join(images, source), os.path.join(out, "dicom_series"))
            source = os.path.join(out, "dicom_series")
        else:
            source = os.path.join(images, source)
        cmd = [os.path.join(os.path.dirname(python), "mrsegmentator"), "--input", source,
               "--outdir", os.path.join(out, "seg"), "--cpu_only", *flags]
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    with open(os.path.join(os.path.dirname(out), name + ".log"), "w") as f:
        f.write(p.stdout)
    if name in CLI_CASES and CLI_CASES[name][0] in ("mri_c_only", "dicom_series"):
        shutil.rmtree(os.path.join(out, "in" if CLI_CASES[name][0] == "mri_c_only" else "dicom_series"),
                      ignore_errors=True)
    return p.returncode, wall, p.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "mrseg_trial"))
    parser.add_argument("--version", default="2.0.0", help="MRSegmentator version from PyPI")
    parser.add_argument("--ours-python", default=None, help="an interpreter whose nnunetv2 is ours "
                        "(default: a venv WORK/ours_venv with --system-site-packages from this interpreter)")
    parser.add_argument("--reference-python", default=None)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--cases", nargs="+", default=[*CLI_CASES, *API_CASES], choices=[*CLI_CASES, *API_CASES])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)

    sides = {}
    if args.ours_python:
        sides["ours"] = os.path.abspath(args.ours_python)
    else:
        sides["ours"] = os.path.join(work, "ours_venv", "bin", "python")
        if not os.path.isfile(sides["ours"]):
            run([sys.executable, "-m", "venv", "--system-site-packages", os.path.join(work, "ours_venv")])
    if not args.no_reference:
        if args.reference_python:
            sides["reference"] = os.path.abspath(args.reference_python)
        else:
            sides["reference"] = os.path.join(work, "ref_venv", "bin", "python")
            if not os.path.isfile(sides["reference"]):
                run(["/usr/bin/env", "python3", "-m", "venv", os.path.join(work, "ref_venv")])
                pip(sides["reference"], f"nnunetv2=={REFERENCE_VERSION}")
        if "site-packages" not in nnunetv2_location(sides["reference"], work):
            sys.exit("the reference interpreter does not import an installed nnunetv2")
    global COMPARE_PYTHON
    COMPARE_PYTHON = sides["ours"]
    for python in sides.values():
        install_client(python, "mrsegmentator", args.version, work, SKIPPED_REQUIREMENTS)
    print({side: nnunetv2_location(python, work) for side, python in sides.items()})

    weights, images = os.path.join(work, "weights"), os.path.join(work, "images")
    if not os.path.isdir(weights):
        run([sides["ours"], FIXTURE, weights, images], cwd=work)
    env = dict(os.environ, MRSEG_WEIGHTS_PATH=weights, OMP_NUM_THREADS="2")
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env.pop(k, None)

    failed = False
    width = print_header(args.cases)
    for i, name in enumerate(args.cases):
        results = run_sides(sides, i, work, name,
                            lambda side, out: run_case(sides[side], name, out, images, weights, env, work))
        rc, wall, log, out = results["ours"]
        rrc, rwall, rlog, rout = results.get("reference", (None, None, "", None))
        problems = exit_problems(rc, log, rrc, rlog)
        if rrc is not None:
            if rc == 0 and rrc == 0:
                problems += compare_outputs(out, rout, dicom_python=COMPARE_PYTHON)
            problems += printed_only_by_ours(log, rlog)
            problems += [f"only reference printed: {line}" for line in notable_lines(rlog)
                         if line not in set(notable_lines(log))][:3]
        failed |= bool(problems)
        print_case(name, width, wall, rwall, "FAIL" if problems else "ok" if rwall is None else "identical", problems)
    return end_trial(work, args.keep, failed)


if __name__ == "__main__":
    sys.exit(main())
