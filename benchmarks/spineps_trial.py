"""Client trial: the real SPINEPS (spine MRI segmentation; its nnU-Net models run through TPTBox's copy of
nnU-Net's predictor, which imports nnunetv2's plans, label, resampling, normalization and network helpers) from
PyPI on our nnunetv2, side by side with the reference (2.8.1).

    python spineps_trial.py [--work DIR] [--repo CHECKOUT] [--version 2.1.3] [--ours-venv PATH] [--ref-venv PATH]
                            [--ours-pythonpath DIR] [--cases ...] [--keep]

Not a test (CI has no SPINEPS and no network): a maintainer's check that SPINEPS still runs unchanged on our package.
SPINEPS's weights come from GitHub releases, which are unreachable: ``_spineps_fixture.py`` fabricates them under
``$SPINEPS_SEGMENTOR_MODELS`` (two semantic nnU-Net models, new and pre-2.3 plans formats, and an instance PLNet)
and a BIDS dataset of two synthetic sagittal T2w scans.

* ours: a venv made with ``--system-site-packages`` from this interpreter, SPINEPS ``--no-deps`` plus its missing
  requirements (TPTBox, antspyx, monai, lightning, ...), never nnunetv2.
* reference: a venv without system packages, ``pip install nnunetv2==2.8.1 spineps==VERSION``.

Every case copies the dataset into its folder and runs SPINEPS's CLI (``spineps sample`` / ``spineps dataset``, on
CPU, flags below) or its Python API there on both sides, alternating which side goes first, and prints per case:
exit status, wall seconds, whether every file left in the case folder is identical (NIfTI: voxels, dtype, affine,
header; JSON content; npz arrays; else bytes), whether the console result (stdout without timings) is the same, and
stderr lines with "warn", "error" or "traceback" that only our side printed. The random instance model finds no
vertebra on these scans, so a run ends after the semantic phase with SPINEPS's "instance phase produced no vertebra
predictions" (exit status 1 on both sides); that is compared like any other result.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _client_trial import (compare_outputs, end_trial, exit_problems, install_client, nnunetv2_location,  # noqa: E402
                           ours_venv, output_files, parse_trial_args, print_case, print_header, printed_only_by_ours,
                           reference_venv, run, run_sides, run_step, trial_parser)

FIXTURE = os.path.join(HERE, "_spineps_fixture.py")
S1 = "rawdata/sub-001/sub-001_acq-sag_T2w.nii.gz"
S2 = "rawdata/sub-002/sub-002_acq-sag_T2w.nii.gz"
BASE = ["-mi", "instance_fab", "-ml", "none", "--cpu"]

API_SCAN = (
    "import numpy as np\n"
    "from TPTBox import to_nii\n"
    "from spineps.get_models import get_actual_model\n"
    "from spineps.seg_enums import OutputType\n"
    "m = get_actual_model(MODELS + '/t2w_fab', use_cpu=True).load()\n"
    "m.set_test_time_augmentation(False)\n"
    "for i, img in enumerate([S1, S2]):\n"
    "    r = m.segment_scan(to_nii(img), pad_size=2, step_size=0.6, resample_to_recommended=True,\n"
    "                       resample_output_to_input_space=True)\n"
    "    seg = r[OutputType.seg]\n"
    "    print('seg', i, seg.shape, seg.orientation, sorted(int(v) for v in seg.unique()))\n"
    "    seg.save(f'api_seg_{i}.nii.gz', verbose=False)\n"
    "leg = get_actual_model(MODELS + '/t2w_legacy', use_cpu=True)\n"
    "leg.load(folds=['all'])\n"
    "r = leg.segment_scan(to_nii(S2), resample_output_to_input_space=False)\n"
    "r[OutputType.seg].save('api_legacy_modelres.nii.gz', verbose=False)\n"
    "print('legacy', r[OutputType.seg].shape, r[OutputType.seg].zoom)\n")
API_SEGMENT = (
    "import spineps\n"
    "from TPTBox import to_nii\n"
    "from spineps import SemanticConfig, SpinepsPipeline\n"
    "res = spineps.segment(S1, model_semantic=MODELS + '/t2w_fab', model_instance='instance_fab',\n"
    "                      model_labeling=None, use_cpu=True, semantic=SemanticConfig(n4_bias_correction=False,\n"
    "                      step_size=0.75))\n"
    "print('segment', res.errcode if hasattr(res, 'errcode') else res)\n"
    "p = SpinepsPipeline('t2w_legacy', 'instance_fab', None, use_cpu=True)\n"
    "res = p.segment(to_nii(S2), output_in_memory=True, semantic=SemanticConfig(crop_input=False))\n"
    "print('pipeline', getattr(res, 'errcode', None), res.semantic is None)\n"
    "if res.semantic is not None: res.semantic.save('pipeline_semantic.nii.gz', verbose=False)\n")

# name -> steps; a step is ("cli", [args]) run in the case folder or ("api", code) with S1, S2, MODELS defined
CASES: Dict[str, List[tuple]] = {
    "sample_name_notta": [("cli", ["sample", "-i", S1, "-ms", "t2w_fab", *BASE, "--no-tta"])],
    "sample_path_tta": [("cli", ["sample", "-i", S2, "-ms", "{MODELS}/t2w_fab", "-mi", "{MODELS}/instance_fab",
                                 "-ml", "none", "--cpu"])],
    "sample_legacy_nocrop_non4_debug": [("cli", ["sample", "-i", S2, "-ms", "t2w_legacy", *BASE, "--no-crop",
                                                 "--no-n4", "-sd", "-ssl", "-smrm", "--step-size", "0.7", "-v"])],
    "sample_rerun_override": [("cli", ["sample", "-i", S1, "-ms", "t2w_fab", *BASE, "--no-tta", "-dn", "der"]),
                              ("cli", ["sample", "-i", S1, "-ms", "t2w_legacy", *BASE, "-dn", "der", "-os", "-oi"])],
    "dataset_notta": [("cli", ["dataset", "-d", ".", "-ms", "t2w_fab", *BASE, "--no-tta", "--no-n4"])],
    "api_segment_scan": [("api", API_SCAN)],
    "api_segment": [("api", API_SEGMENT)],
}


def make_ours(path: str, repo: str, version: str, work: str) -> str:
    python = ours_venv(path, repo, work)
    install_client(python, "spineps", version, work, ())
    return python


def run_case(python: str, name: str, out: str, dataset: str, env: Dict[str, str]) -> Tuple[int, float, str]:
    shutil.copytree(dataset, out)
    subs = {"MODELS": env["SPINEPS_SEGMENTOR_MODELS"]}
    total, rc, err = 0.0, 0, ""
    for kind, what in CASES[name]:
        if kind == "cli":
            cmd = [os.path.join(os.path.dirname(python), "spineps"), *[a.format(**subs) for a in what]]
        else:
            cmd = [python, "-c", f"S1, S2, MODELS = {S1!r}, {S2!r}, {subs['MODELS']!r}\n" + what]
        rc, seconds, step_err, _ = run_step(cmd, env, out)
        total += seconds
        err += step_err
    return rc, total, err


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TIMING = re.compile(r"(took|seconds|\bsec\b|it/s|s/it|\d{2}:\d{2}:\d{2})", re.I)


def console(path: str) -> List[str]:
    """stdout without colours, timings, progress bars and the absolute paths of the case folder."""
    with open(path, errors="replace") as f:
        text = _ANSI.sub("", f.read())
    side_root = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    return [line.replace(os.path.dirname(path), "<CASE>").replace(side_root, "<WORK>").rstrip()
            for line in text.splitlines() if line.strip() and not _TIMING.search(line)]


def _ctd_without_timestamp(path: str):
    with open(path) as f:
        content = json.load(f)
    if isinstance(content, list) and content and isinstance(content[0], dict):
        content[0].pop("timestamp", None)  # when the run wrote it
    return content


def compare(ours: str, ref: str) -> List[str]:
    ctds = [n for n in output_files(ours) if n.endswith("_ctd.json")]
    problems = compare_outputs(ours, ref, ignore=("stdout.txt", "stderr.txt", *{os.path.basename(n) for n in ctds}))
    for name in ctds:
        other = os.path.join(ref, name)
        if not os.path.isfile(other):
            problems.append(f"only ours wrote {name}")
        elif _ctd_without_timestamp(os.path.join(ours, name)) != _ctd_without_timestamp(other):
            problems.append(f"{name}: centroid JSON differs")
    a, b = console(os.path.join(ours, "stdout.txt")), console(os.path.join(ref, "stdout.txt"))
    if a != b:
        diff = [f"ours: {x!r} / ref: {y!r}" for x, y in zip(a, b) if x != y][:3]
        problems.append(f"console output differs ({len(a)} vs {len(b)} lines): {diff}")
    return problems


def last_line(stderr: str) -> str:
    """The last line of stderr that is not a progress bar."""
    lines = [x for x in stderr.replace("\r", "\n").splitlines() if x.strip() and not _TIMING.search(x)]
    return lines[-1].strip() if lines else ""


def main() -> int:
    parser = trial_parser(__doc__.split("\n\n")[0], "spineps", "spineps", "2.1.3", CASES)
    parser.add_argument("--ours-pythonpath", default=None, help="prepend to our side's PYTHONPATH (patched copy)")
    args, work, repo = parse_trial_args(parser)

    ref_venv = os.path.abspath(args.ref_venv or os.path.join(work, "ref_venv"))
    sides = {"ours": make_ours(os.path.abspath(args.ours_venv or os.path.join(work, "ours_venv")), repo,
                               args.version, work),
             "reference": reference_venv(ref_venv, work, "spineps", args.version)}
    base_env = dict(os.environ)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "PYTHONPATH"):
        base_env.pop(k, None)
    models, dataset = os.path.join(work, "models"), os.path.join(work, "dataset")
    base_env["SPINEPS_SEGMENTOR_MODELS"] = models
    base_env.setdefault("OMP_NUM_THREADS", "2")
    envs = {side: dict(base_env) for side in sides}
    if args.ours_pythonpath:
        envs["ours"]["PYTHONPATH"] = os.path.abspath(args.ours_pythonpath)
        print(f"our side imports nnunetv2 from {nnunetv2_location(sides['ours'], work, envs['ours'])}")
    if not os.path.isfile(os.path.join(models, "instance_fab", "inference_config.json")):
        run([sides["ours"], FIXTURE, models, dataset], cwd=work, env=envs["ours"])

    failed = False
    width = print_header(args.cases)
    for i, name in enumerate(args.cases):
        results = run_sides(sides, i, work, name, lambda side, out: run_case(sides[side], name, out, dataset,
                                                                              envs[side]))
        rc, wall, err, out = results["ours"]
        rrc, rwall, rerr, rout = results["reference"]
        # the same non-zero exit with the same last line on both sides is the client's behaviour, not ours
        same_failure = rc == rrc and rc != 0 and last_line(err) == last_line(rerr)
        problems = [] if same_failure else exit_problems(rc, err, rrc, rerr)
        if rc == rrc:
            problems += compare(out, rout)
        problems += printed_only_by_ours(err, rerr)
        failed |= bool(problems)
        # SPINEPS says why on stdout (compared with the outputs); stderr's last line, where there is one
        reason = f": {last_line(err)[:90]}" if last_line(err) else ""
        verdict = "FAIL" if problems else (f"identical (both exit {rc}{reason})" if same_failure else "identical")
        print_case(name, width, wall, rwall, verdict, problems)
    return end_trial(work, args.keep, failed)


if __name__ == "__main__":
    sys.exit(main())
