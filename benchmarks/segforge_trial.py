"""Client trial: segforge (an extension framework for nnU-Net v2: trainers, losses and a regression stack) and
nnunetv2-cam (Grad-CAM on nnU-Net models) from PyPI on our nnunetv2, side by side with the reference (2.8.1).

    python segforge_trial.py [--work DIR] [--repo CHECKOUT] [--version 0.1.0a2] [--cam-version 0.1.6.1]
                             [--reference-python PATH] [--ours-venv PATH] [--ref-venv PATH] [--cases ...] [--keep]

Not a test (CI has neither client and no network): a maintainer's check that both still run unchanged on our package.
segforge uses nnU-Net's internals more deeply than any other client seen: trainers found through
``nnUNet_extTrainer``, built from mixins over ``nnUNetTrainer``; its own ``ExperimentPlanner``,
``DefaultPreprocessor`` (own ``run_case_npy`` keeping continuous labels as float32) and ``LabelManager`` subclasses
named in the plans; ``recursive_find_python_class`` patched at its import sites; ``nnUNetPredictor`` and
``export_prediction_from_logits`` replaced in nnunetv2's modules before ``predict_entry_point()`` runs, the latter
in the export workers too. nnunetv2-cam works on the predictor's internals (``initialize_from_trained_model_folder``
with string folds, ``network``, ``list_of_parameters``, the configuration's ``resampling_fn_probabilities``,
``preprocessing_iterator_fromfiles``, the label manager). ``_segforge_fixture.py`` writes the datasets (binary
labels, and continuous distance maps as labels), project trainers (segforge's, one tiny epoch) and two fabricated
models.

* ours: a venv made with ``--system-site-packages`` from this interpreter (a .pth file naming REPO where it imports
  another nnunetv2).
* reference: ``--reference-python PATH`` (default ``$NNUNET_REFERENCE_PYTHON``, else /opt/nnunet_ref/bin/python, if
  it exists; the same Python version as this one): a venv without system packages that sees that interpreter's
  packages through a .pth file. Without one: a venv with ``pip install nnunetv2==2.8.1``.
* Both get segforge and nnunetv2-cam ``--no-deps``, plus monai 1.6.1 and grad-cam 1.5.7 (with its requirements) and
  whatever other requirement is missing.

Every case runs on both sides, alternating which side goes first, each with its own ``nnUNet_preprocessed`` (and
``nnUNet_results`` for training) in the case folder, ``nnUNet_extTrainer`` = segforge's trainer folder + the project
trainers, and prints exit status, wall seconds and whether the outputs are identical: NIfTI voxels, dtype, affine and
header; npz arrays; json content (the run's own folder written as <OUT>); pkl properties and b2nd arrays by content;
PNG bytes. Training is random on both sides (augmentation, sampling), so training cases compare structure only:
the same files (log names' timestamps dropped), the same json keys, the same checkpoint keys and weight shapes, the
same NIfTI shape, dtype and affine. Predictions use the same fabricated model on both sides and compare values.
Exit status 1 if any case fails on our side or differs from the reference.

Known client bugs, identical on both sides and therefore not run: ``segforge_predict_regression`` as documented
fails in nnU-Net's (spawned) preprocessing workers, which never register segforge's ``RegressionLabelManager``
(the regression cases add a sitecustomize.py calling segforge's ``ensure_registered()``, a user's workaround);
nnunetv2-cam's ``--save-numpy`` exits 1 after writing the CAMs; segforge's MONAI ``UNetTrainer`` needs a patch size
divisible by 16.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _client_trial import (CONSOLE_SCRIPT, compare_outputs, install_client, installed_version,  # noqa: E402
                           nnunetv2_location, ours_venv, output_files, parse_trial_args, pip, reference_venv, run,
                           run_step, run_trial, site_packages, trial_parser)
from _harness import default_reference_python  # noqa: E402

FIXTURE = os.path.join(HERE, "_segforge_fixture.py")
# ours warns (once per label folder) where a fingerprint meets continuous labels; the reference is silent
MEANT_WARNINGS = ("holds label values that are not whole numbers",)
PINNED = ["monai==1.6.1", "grad-cam==1.5.7"]
BIN_MODEL = "Dataset811_SegfBin/nnUNetTrainer_DiceFocal__nnUNetPlans__3d_fullres"
# a user's workaround for segforge's regression prediction: register its classes in every process
SITECUSTOMIZE = ("import os\n"
                 "if os.environ.get('SEGFORGE_REGISTER_EVERYWHERE'):\n"
                 "    from segforge.regression.register import ensure_registered\n"
                 "    ensure_registered()\n")
PREDICT = ["-c", "3d_fullres", "-f", "0", "-o", "{OUT}/pred", "-device", "cpu", "-npp", "1", "-nps", "1"]
CAM = ["-i", "{TS811}", "-o", "{OUT}/cam", "-m", "{RESULTS}/" + BIN_MODEL, "-f", "0", "-device", "cpu"]
CAM_API = (
    "import os, pickle, numpy as np, torch\n"
    "from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor\n"
    "from nnunetv2_cam.api import run_cam_for_prediction, _preprocess_file\n"
    "torch.manual_seed(0)\n"
    "p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, device=torch.device('cpu'),\n"
    "                    verbose=False, allow_tqdm=False)\n"
    "p.initialize_from_trained_model_folder(RESULTS + '/' + BIN_MODEL, use_folds=(0, '1'),\n"
    "                                       checkpoint_name='checkpoint_final.pth')\n"
    "info = {'n_params': len(p.list_of_parameters), 'mirror': p.allowed_mirroring_axes,\n"
    "        'patch': list(p.configuration_manager.patch_size), 'tb': p.plans_manager.transpose_backward,\n"
    "        'spacing': list(p.configuration_manager.spacing), 'layers': [n for n, _ in p.network.named_modules()],\n"
    "        'label_manager': type(p.label_manager).__name__, 'tile': p.tile_step_size, 'tta': p.use_mirroring}\n"
    "for f in ('testA', 'testB'):\n"
    "    data, seg, props, ofile = _preprocess_file(p, os.path.join(TS811, f + '_0000.nii.gz'), OUT + '/x')\n"
    "    np.save(f'{OUT}/pre_{f}.npy', np.asarray(data))\n"
    "    info['props_' + f] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in props.items()\n"
    "                          if k != 'sitk_stuff'}\n"
    "for name, kw in (('gradcam3d', dict(method='gradcam', cam_type='3d', target_layer='encoder.stages.2')),\n"
    "                 ('eigencam2d', dict(method='eigencam', cam_type='2d', target_layer=['decoder.stages.1'])),\n"
    "                 ('segxres', dict(method='segxrescam', cam_type='3d', target_layer='encoder.stages.1',\n"
    "                                  pool_size=2, pool_mode='mean'))):\n"
    "    heatmaps = run_cam_for_prediction(p, TS811, f'{OUT}/{name}', device=torch.device('cpu'),\n"
    "                                      save_slices=name == 'segxres', verbose=False, **kw)\n"
    "    for i, h in enumerate(heatmaps):\n"
    "        np.save(f'{OUT}/{name}_{i}.npy', h)\n"
    "with open(OUT + '/info.pkl', 'wb') as fh:\n"
    "    pickle.dump(info, fh)\n")

# name -> steps; a step is ("nnunet", console script name, args) for nnunetv2's own commands, ("script", name, args)
# for a console script of the clients (in the venv's bin) or ("api", code) with OUT, RESULTS, TS811, BIN_MODEL
# defined. Arguments: {OUT} (the case folder), {RESULTS} (the fabricated models), {TS811}/{TS812} (test images).
# Cases starting with "train" train into the case folder (structure compared); "_registered" cases have the
# sitecustomize workaround on PYTHONPATH.
PLAN_BIN = ("nnunet", "nnUNetv2_plan_and_preprocess", ["-d", "811", "-c", "3d_fullres", "-np", "1", "-npfp", "1"])
PLAN_REG = ("script", "segforge_plan_and_preprocess_regression", ["-d", "812", "-c", "3d_fullres", "-np", "1",
                                                                  "-npfp", "1"])
CASES: Dict[str, List[tuple]] = {
    "plan_binary": [PLAN_BIN],
    "plan_regression": [PLAN_REG],
    "train_dicefocal": [PLAN_BIN, ("nnunet", "nnUNetv2_train", ["811", "3d_fullres", "0", "-tr", "Tiny_DiceFocal",
                                                                "-device", "cpu"])],
    "train_distance": [PLAN_REG, ("nnunet", "nnUNetv2_train", ["812", "3d_fullres", "0", "-p", "nnUNetPlans_reg",
                                                               "-tr", "Tiny_Distance", "-device", "cpu"])],
    "pred_binary255": [("script", "segforge_predict_binary255", ["-d", "811", "-i", "{TS811}", *PREDICT, "-tr",
                                                                 "nnUNetTrainer_DiceFocal", "--save_probabilities"])],
    "pred_regression_registered": [("script", "segforge_predict_regression", [
        "-d", "812", "-i", "{TS812}", *PREDICT, "-p", "nnUNetPlans_reg", "-tr", "nnUNetDistanceTrainer",
        "--save_probabilities"])],
    "pred_regression_threshold_registered": [("script", "segforge_predict_regression", [
        "-d", "812", "-i", "{TS812}", *PREDICT, "-p", "nnUNetPlans_reg", "-tr", "nnUNetDistanceTrainer",
        "--threshold", "0.3", "--binary-value", "1", "--disable_tta"])],
    "cam_gradcam_3d": [("script", "nnunetv2_cam", [*CAM, "--target-layer", "encoder.stages.2", "--method",
                                                   "gradcam", "--cam-type", "3d"])],
    "cam_gradcampp_2d_notta": [("script", "nnunetv2_cam", [*CAM, "--target-layer", "decoder.stages.0",
                                                           "encoder.stages.1", "--method", "gradcam++", "--cam-type",
                                                           "2d", "--disable-tta"])],
    "cam_api": [("api", CAM_API)],
}


def install_clients(python: str, work: str, version: str, cam_version: str) -> None:
    """segforge and nnunetv2-cam --no-deps, the pinned monai and grad-cam, then any other missing requirement
    (nnunetv2-cam's opencv-python is left out: grad-cam brings opencv-python-headless)."""
    missing = [p for p in PINNED if installed_version(python, p.split("==")[0], work) != p.split("==")[1]]
    if missing:
        pip(python, *missing)
    install_client(python, "segforge", version, work, ())
    install_client(python, "nnunetv2-cam", cam_version, work, ("opencv-python",))


def run_case(python: str, name: str, out: str, work: str, env: Dict[str, str]) -> Tuple[int, float, str]:
    os.makedirs(out)
    subs = {"OUT": out, "RESULTS": os.path.join(work, "results"),
            "TS811": os.path.join(work, "raw", "Dataset811_SegfBin", "imagesTs"),
            "TS812": os.path.join(work, "raw", "Dataset812_SegfReg", "imagesTs")}
    env = dict(env, nnUNet_preprocessed=os.path.join(out, "preprocessed"),
               nnUNet_results=os.path.join(out, "results") if name.startswith("train") else subs["RESULTS"])
    if name.endswith("_registered"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.join(work, "sitecustomize"), env.get("PYTHONPATH"))
                                            if p)
        env["SEGFORGE_REGISTER_EVERYWHERE"] = "1"
    total, rc, err = 0.0, 0, ""
    for step in CASES[name]:
        step_env = env
        if step[0] == "nnunet":
            cmd = [python, "-c", CONSOLE_SCRIPT.format(name=step[1]), *[a.format(**subs) for a in step[2]]]
            # training: augmentation in the trainer's process (planning keeps the default: the reference's
            # planner fails on nnUNet_n_proc_DA=0)
            if step[1] == "nnUNetv2_train":
                step_env = dict(env, nnUNet_n_proc_DA="0")
        elif step[0] == "script":
            cmd = [os.path.join(os.path.dirname(python), step[1]), *[a.format(**subs) for a in step[2]]]
        else:
            cmd = [python, "-c", "".join(f"{k} = {v!r}\n" for k, v in
                                         (("OUT", out), ("RESULTS", subs["RESULTS"]), ("TS811", subs["TS811"]),
                                          ("BIN_MODEL", BIN_MODEL))) + step[1]]
        rc, seconds, step_err, _ = run_step(cmd, step_env, out)
        total += seconds
        err += step_err
        if rc != 0:
            break
    return rc, total, err


def _normalise_json(root: str) -> None:
    """The case folder's own path in the json files it wrote (predict_from_raw_data_args.json) becomes <OUT>."""
    for name in output_files(root):
        path = os.path.join(root, name)
        if name.endswith(".json"):
            with open(path) as f:
                text = f.read()
            if root in text:
                with open(path, "w") as f:
                    f.write(text.replace(root, "<OUT>"))


def _training_name(name: str) -> str:
    base = os.path.basename(name)
    return os.path.join(os.path.dirname(name), "training_log_*.txt") if base.startswith("training_log_") else name


def _structure(path: str) -> Optional[object]:
    """What a trained model's file must share with the other side's: json keys, checkpoint keys and weight shapes,
    NIfTI shape, dtype and affine; None for files compared by presence."""
    if path.endswith(".json"):
        import json
        with open(path) as f:
            content = json.load(f)
        return sorted(content) if isinstance(content, dict) else type(content).__name__
    if path.endswith(".pth"):
        import torch
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        return sorted(ckpt), {k: tuple(v.shape) for k, v in ckpt["network_weights"].items()}
    if path.endswith(".nii.gz"):
        import nibabel as nib
        import numpy as np
        img = nib.load(path)
        return img.shape, str(img.get_data_dtype()), np.round(img.affine, 5).tolist()
    return None


def compare_training(ours: str, ref: str) -> List[str]:
    problems = compare_outputs(os.path.join(ours, "preprocessed"), os.path.join(ref, "preprocessed"))
    names = {side: {_training_name(n): n for n in output_files(os.path.join(root, "results"))}
             for side, root in (("ours", ours), ("reference", ref))}
    if set(names["ours"]) != set(names["reference"]):
        problems.append(f"trained files differ: only ours {sorted(set(names['ours']) - set(names['reference']))[:5]}, "
                        f"only reference {sorted(set(names['reference']) - set(names['ours']))[:5]}")
    for key in sorted(set(names["ours"]) & set(names["reference"])):
        a = _structure(os.path.join(ours, "results", names["ours"][key]))
        b = _structure(os.path.join(ref, "results", names["reference"][key]))
        if a != b:
            problems.append(f"{key}: structure differs: {str(a)[:200]} vs {str(b)[:200]}")
    return problems


def compare(name: str, ours: str, ref: str) -> List[str]:
    if name.startswith("train"):
        return compare_training(ours, ref)
    for root in (ours, ref):
        _normalise_json(root)
    return compare_outputs(ours, ref, ignore=("stdout.txt", "stderr.txt"))


def main() -> int:
    parser = trial_parser(__doc__.split("\n\n")[0], "segforge", "segforge", "0.1.0a2", CASES)
    parser.add_argument("--cam-version", default="0.1.6.1", help="nnunetv2-cam version from PyPI")
    parser.add_argument("--reference-python", default=None,
                        help="an installed reference's python (default: $NNUNET_REFERENCE_PYTHON, /opt/nnunet_ref)")
    args, work, repo = parse_trial_args(parser)

    ours = ours_venv(os.path.abspath(args.ours_venv or os.path.join(work, "ours_venv")), repo, work)
    install_clients(ours, work, args.version, args.cam_version)
    base = args.reference_python or default_reference_python()
    reference = reference_venv(os.path.abspath(args.ref_venv or os.path.join(work, "ref_venv")), work, "segforge",
                               args.version, base=base)
    install_clients(reference, work, args.version, args.cam_version)
    sides = {"ours": ours, "reference": reference}
    for side, python in sides.items():
        print(f"{side}: nnunetv2 from {nnunetv2_location(python, work)}", flush=True)

    if not os.path.isfile(os.path.join(work, "results", BIN_MODEL, "fold_1", "checkpoint_final.pth")):
        run([ours, FIXTURE, work], cwd=work)
    os.makedirs(os.path.join(work, "sitecustomize"), exist_ok=True)
    with open(os.path.join(work, "sitecustomize", "sitecustomize.py"), "w") as f:
        f.write(SITECUSTOMIZE)
    env = dict(os.environ)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "PYTHONPATH",
              "nnUNet_def_n_proc", "nnUNet_n_proc_DA"):
        env.pop(k, None)
    env.update(nnUNet_raw=os.path.join(work, "raw"), nnUNet_compile="f", PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    envs = {side: dict(env, nnUNet_extTrainer=os.pathsep.join(
        [os.path.join(site_packages(python), "segforge", "training", "nnUNetTrainer"), os.path.join(work, "proj")]))
        for side, python in sides.items()}
    return run_trial(args.cases, sides, work, args.keep,
                     lambda name, side, out: run_case(sides[side], name, out, work, envs[side]),
                     lambda ours_out, ref_out: compare(os.path.basename(ours_out), ours_out, ref_out),
                     ignore=MEANT_WARNINGS)


if __name__ == "__main__":
    sys.exit(main())
