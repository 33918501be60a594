"""Client trial: MONAI's nnUNetV2Runner (monai from PyPI) driving our nnunetv2, side by side with the reference.

    python benchmarks/monai_runner_trial.py [--work DIR] [--monai-version 1.6.1] [--reference-python PATH]
                                            [--no-reference] [--skip-2d] [--keep]

Not a test (CI has no MONAI and no network): a maintainer's check that MONAI's runner still runs unchanged on our
package. Needs PyPI (pip) for monai, installed ``--no-deps`` (torch, nibabel, numpy are already there).

* ours: a venv ``DIR/ours_venv`` made with ``--system-site-packages`` from this interpreter (which must import our
  package; checked), plus monai. Our console scripts (the runner calls ``nnUNetv2_train`` through PATH) are taken
  from this interpreter's scripts folder.
* reference: ``--reference-python PATH`` (an environment whose nnunetv2 is the reference, e.g.
  /opt/nnunet_ref/bin/python; monai is installed into it if it lacks it), its console scripts from its own folder.

Each side re-runs this file with ``--drive DIR/<side>``: a tiny MSD-style dataset (8 spheres of 40^3, a MONAI
datalist JSON, modality CT), then the runner's steps one by one with its own defaults wherever the CPU allows:
convert_dataset, convert_msd_dataset, plan_and_process(verify_dataset_integrity=True), train_single_model
(3d_fullres fold 0), train (3d_fullres, 5 folds, one device), train_parallel_cmd + train on devices (0, 1) (2d, 5
folds), validate_single_model, find_best_configuration (runner defaults: all four configurations, ensembling),
predict_ensemble_postprocessing, and predict (fold 0, no mirroring, probabilities). The runner ignores a failed
training command, so the files each step must write are checked too. Two things the runner cannot do without a
GPU are worked around the same way on both sides: the trial trainer (in nnUNet_extTrainer) trains on the CPU
whatever device it is given, one epoch of two iterations; nnUNetPredictor gets device=cpu when the runner leaves
the device out.

Then each side predicts the other's fold-0 model through ``runner.predict`` with the same arguments
(``--cross-predict``), and the segmentations and probabilities must equal the other side's own. Printed: PASS/FAIL
and seconds per step and side, files only one side wrote (training logs' time stamps ignored; which models and
ensembles exist depends on the random training, so those differences are listed, not failed), json files whose
top-level keys differ, and the cross-prediction comparison. Exit status 1 if a step fails on ours only or a
cross-prediction differs. Work goes into DIR (default ``$TMPDIR/monai_runner_trial``), deleted at the end unless
``--keep``; never inside the repository. About 5 minutes for ours, 20 for the reference, on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

TRAINER = "nnUNetTrainer_MonaiTrial"
TRAINER_SOURCE = f'''
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {TRAINER}(nnUNetTrainer):
    """One epoch of two iterations, on the CPU whatever the runner's nnUNetv2_train asks for."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, torch.device("cpu"))
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1
'''


def make_dataset(root: Path, n_train: int = 6, n_test: int = 2, size: int = 40) -> tuple[Path, Path]:
    """Images with one bright sphere (label 1) and, in half of the cases, a small cube (label 2)."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"))
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    datalist: dict = {"training": [], "testing": []}
    for i in range(n_train + n_test):
        centre = rng.integers(12, size - 12, 3)
        label = (((grid - centre[:, None, None, None]) ** 2).sum(0) <= rng.integers(36, 81)).astype(np.uint8)
        if i % 2 == 0:
            c = rng.integers(2, size - 8, 3)
            label[c[0]:c[0] + 5, c[1]:c[1] + 5, c[2]:c[2] + 5] = 2
        image = rng.normal(0, 20, label.shape) + 300 * (label == 1) - 200 * (label == 2)
        name = f"case{i:02d}.nii.gz"
        if i < n_train:
            nib.save(nib.Nifti1Image(image.astype(np.float32), affine), root / "imagesTr" / name)
            nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / name)
            datalist["training"].append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}", "fold": i % 5})
        else:
            nib.save(nib.Nifti1Image(image.astype(np.float32), affine), root / "imagesTs" / name)
            datalist["testing"].append(f"imagesTs/{name}")
    datalist_file = root / "datalist.json"
    datalist_file.write_text(json.dumps(datalist, indent=2))
    return root, datalist_file


def make_msd_task(dataroot: Path, task: Path) -> Path:
    """The same images as a Medical Segmentation Decathlon task folder (for convert_msd_dataset)."""
    import shutil

    datalist = json.loads((dataroot / "datalist.json").read_text())
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        shutil.copytree(dataroot / sub, task / sub)
    (task / "dataset.json").write_text(json.dumps({
        "name": "Spheres", "tensorImageSize": "3D", "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "sphere", "2": "cube"},
        "numTraining": len(datalist["training"]), "numTest": len(datalist["testing"]),
        "training": [{"image": "./" + d["image"], "label": "./" + d["label"]} for d in datalist["training"]],
        "test": ["./" + t for t in datalist["testing"]]}, indent=2))
    return task


def predict_on_cpu_by_default() -> None:
    """The runner builds nnUNetPredictor without a device (so: cuda); on a CPU-only machine use the CPU."""
    import torch
    from nnunetv2.inference import predict_from_raw_data as module

    cls = module.nnUNetPredictor
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("device", torch.device("cpu"))
        original(self, *args, **kwargs)

    cls.__init__ = __init__


class Steps:
    def __init__(self) -> None:
        self.results: list[dict] = []

    def run(self, name: str, fn, *checks) -> bool:
        """fn() runs the runner's step; each check is (description, callable -> bool)."""
        print(f"\n===== {name} =====", flush=True)
        t0 = time.time()
        error = None
        try:
            value = fn()
            if value is not None:
                print(f"[{name}] returned {value!r}", flush=True)
        except BaseException as e:  # noqa: BLE001 - a SystemExit from a console entry point is a failure too
            error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        failed = [] if error else [d for d, check in checks if not _safe(check)]
        ok = error is None and not failed
        reason = error or ("missing: " + "; ".join(failed) if failed else "")
        self.results.append({"step": name, "ok": ok, "seconds": round(time.time() - t0, 1), "reason": reason})
        print(f"[{'PASS' if ok else 'FAIL'}] {name} ({time.time() - t0:.1f} s) {reason}", flush=True)
        return ok


def _safe(check) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001
        return False


def _json_keys(path: str) -> object:
    with open(path) as f:
        content = json.load(f)
    if isinstance(content, dict):
        return sorted(content)
    return type(content).__name__


def summarise(work: Path) -> dict:
    """Relative file names, top-level keys of every json and hashes of the predicted segmentations."""
    files, keys, predictions = [], {}, {}
    for path in sorted(glob.glob(str(work / "**" / "*"), recursive=True)):
        rel = os.path.relpath(path, work)
        if os.path.isdir(path):
            continue
        files.append(rel)
        if path.endswith(".json"):
            try:
                keys[rel] = _json_keys(path)
            except Exception as e:  # noqa: BLE001
                keys[rel] = f"unreadable: {e}"
        if "pred" in rel and path.endswith(".nii.gz"):
            import nibabel as nib

            predictions[rel] = hashlib.sha1(np.ascontiguousarray(nib.load(path).get_fdata()).tobytes()).hexdigest()
    return {"files": files, "json_keys": keys, "prediction_sha1": predictions}


NAME = "Dataset{:03d}_Spheres"
DATASET_ID = 7
MSD_TASK_ID = 9


def drive(work: Path, summary_file: Path, skip_2d: bool) -> int:
    """Run the runner's steps in ``work`` with the nnunetv2 this interpreter imports (see the module docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # the runner's default nnU-Net folders (work_dir/...) are relative to the working directory
    trainers = work / "trainers"
    trainers.mkdir(exist_ok=True)
    (trainers / "monai_trial_trainer.py").write_text(TRAINER_SOURCE)
    os.environ["nnUNet_extTrainer"] = str(trainers)
    dataroot, datalist = make_dataset(work / "data" / "Spheres")
    msd_task = make_msd_task(dataroot, work / "data" / f"Task{MSD_TASK_ID:02d}_Spheres")

    import monai
    import nnunetv2
    import torch
    from monai.apps.nnunet import nnUNetV2Runner

    print(f"monai {monai.__version__}, nnunetv2 from {os.path.dirname(nnunetv2.__file__)}, torch {torch.__version__}"
          f", nnUNetv2_train: {shutil.which('nnUNetv2_train')}", flush=True)
    predict_on_cpu_by_default()

    steps = Steps()
    holder: dict = {}

    def construct():
        config = {"datalist": str(datalist), "dataroot": str(dataroot), "modality": "CT",
                  "dataset_name_or_id": str(DATASET_ID)}
        holder["runner"] = nnUNetV2Runner(input_config=config, trainer_class_name=TRAINER, work_dir="work_dir")

    if not steps.run("__init__", construct):
        return report(steps, work, summary_file)
    runner = holder["runner"]
    raw, pre, res = (Path(p) for p in (runner.nnunet_raw, runner.nnunet_preprocessed, runner.nnunet_results))
    name = NAME.format(DATASET_ID)
    configs = ("3d_fullres",) if skip_2d else ("3d_fullres", "2d")

    steps.run("convert_dataset", runner.convert_dataset,
              ("dataset.json", lambda: (raw / name / "dataset.json").is_file()),
              ("6 training images", lambda: len(list((raw / name / "imagesTr").glob("*_0000.nii.gz"))) == 6),
              ("2 test images", lambda: len(list((raw / name / "imagesTs").glob("*_0000.nii.gz"))) == 2),
              ("runner.dataset_name", lambda: runner.dataset_name == name))
    steps.run("convert_msd_dataset", lambda: runner.convert_msd_dataset(str(msd_task)),
              ("converted", lambda: len(list((raw / NAME.format(MSD_TASK_ID) / "imagesTr").iterdir())) == 6))
    steps.run("plan_and_process", lambda: runner.plan_and_process(verify_dataset_integrity=True),
              ("fingerprint", lambda: (pre / name / "dataset_fingerprint.json").is_file()),
              ("plans", lambda: (pre / name / "nnUNetPlans.json").is_file()),
              *[(f"{c} data", lambda c=c: len(list((pre / name / f"nnUNetPlans_{c}").iterdir())) >= 6)
                for c in configs])

    model = {c: res / name / f"{TRAINER}__nnUNetPlans__{c}" for c in configs}

    def trained(c, folds=range(5)):
        return all((model[c] / f"fold_{f}" / "checkpoint_final.pth").is_file()
                   and (model[c] / f"fold_{f}" / "validation" / "summary.json").is_file() for f in folds)

    steps.run("train_single_model 3d_fullres fold 0", lambda: runner.train_single_model("3d_fullres", 0),
              ("fold 0 checkpoint + validation", lambda: trained("3d_fullres", [0])),
              ("validation npz (export_validation_probabilities)",
               lambda: any((model["3d_fullres"] / "fold_0" / "validation").glob("*.npz"))))
    steps.run("train 3d_fullres, one device", lambda: runner.train(configs="3d_fullres", gpu_id_for_all=0),
              ("5 folds", lambda: trained("3d_fullres")))
    if not skip_2d:
        steps.run("train_parallel_cmd 2d, devices (0, 1)",
                  lambda: [len(v) for s in runner.train_parallel_cmd(configs="2d", gpu_id_for_all=(0, 1))
                           for v in s.values()])
        steps.run("train 2d, devices (0, 1) (train_parallel)", lambda: runner.train(configs="2d",
                                                                                   gpu_id_for_all=(0, 1)),
                  ("5 folds", lambda: trained("2d")))
    steps.run("validate_single_model 3d_fullres fold 0", lambda: runner.validate_single_model("3d_fullres", 0),
              ("summary", lambda: (model["3d_fullres"] / "fold_0" / "validation" / "summary.json").is_file()))
    # the runner's default configurations (2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres): those not planned are
    # left out, a planned one not trained is an error (on both sides)
    steps.run("find_best_configuration",
              lambda: runner.find_best_configuration(**({"configs": "3d_fullres"} if skip_2d else {})),
              ("inference_information.json", lambda: (res / name / "inference_information.json").is_file()))
    steps.run("predict_ensemble_postprocessing", runner.predict_ensemble_postprocessing,
              ("postprocessed predictions",
               lambda: len(list((res / name / "ensemble_predictions_postprocessed").glob("*.nii.gz"))) == 2))
    steps.run("predict (fold 0, no mirroring, probabilities)", lambda: runner_predict(runner, work, work / "own_pred"),
              ("2 predictions", lambda: len(list((work / "own_pred").glob("*.nii.gz"))) == 2),
              ("2 probabilities", lambda: len(list((work / "own_pred").glob("*.npz"))) == 2))
    return report(steps, work, summary_file)


def runner_predict(runner, side_work: Path, output: Path) -> None:
    """runner.predict on ``side_work``'s 3d_fullres fold-0 model and test images."""
    wd = side_work / "work_dir"
    name = NAME.format(DATASET_ID)
    runner.predict(str(wd / "nnUNet_raw_data_base" / name / "imagesTs"), str(output),
                   str(wd / "nnUNet_trained_models" / name / f"{TRAINER}__nnUNetPlans__3d_fullres"),
                   use_folds=(0,), use_mirroring=False, save_probabilities=True, verbose=False)


def cross_predict(other_work: Path, output: Path) -> int:
    """Predict the model another side trained, with this side's nnunetv2, through the runner."""
    os.environ["nnUNet_extTrainer"] = str(other_work / "trainers")
    predict_on_cpu_by_default()
    from monai.apps.nnunet import nnUNetV2Runner

    wd = other_work / "work_dir"
    runner = nnUNetV2Runner({"datalist": "unused", "dataroot": "unused", "modality": "CT",
                             "dataset_name_or_id": str(DATASET_ID),
                             "nnunet_raw": str(wd / "nnUNet_raw_data_base"),
                             "nnunet_preprocessed": str(wd / "nnUNet_preprocessed"),
                             "nnunet_results": str(wd / "nnUNet_trained_models")}, trainer_class_name=TRAINER)
    runner_predict(runner, other_work, output)
    return 0


def report(steps: Steps, work: Path, summary_file: Path) -> int:
    print("\n===== summary =====")
    for r in steps.results:
        print(f"{'PASS' if r['ok'] else 'FAIL'}  {r['step']}  ({r['seconds']} s)  {r['reason']}")
    summary_file.write_text(json.dumps({"steps": steps.results, **summarise(work / "work_dir")}, indent=1))
    return 0 if all(r["ok"] for r in steps.results) else 1


# ----------------------------------------------------------------------------------------------- orchestration

def _run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def _python_info(python: str, what: str) -> str:
    code = {"nnunetv2": "import os, nnunetv2; print(os.path.dirname(os.path.realpath(nnunetv2.__file__)))",
            "scripts": "import sysconfig; print(sysconfig.get_path('scripts'))",
            "monai": "import monai; print(monai.__version__)"}[what]
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    return done.stdout.strip() if done.returncode == 0 else ""


def _side_env(python: str, console_scripts: str) -> dict:
    env = dict(os.environ)
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "CUDA_VISIBLE_DEVICES"):
        env.pop(var, None)
    env["PATH"] = os.pathsep.join([os.path.dirname(python), console_scripts, env.get("PATH", "")])
    return env


def _compare(ours: dict, ref: dict) -> None:
    def files(summary):
        return {re.sub(r"training_log_[0-9_]+\.txt$", "training_log_<time>.txt", f) for f in summary["files"]}

    only_ours, only_ref = sorted(files(ours) - files(ref)), sorted(files(ref) - files(ours))
    print(f"\nfiles only ours wrote ({len(only_ours)}):", *only_ours, sep="\n  ")
    print(f"files only the reference wrote ({len(only_ref)}):", *only_ref, sep="\n  ")
    differing = [k for k in sorted(set(ours["json_keys"]) & set(ref["json_keys"]))
                 if ours["json_keys"][k] != ref["json_keys"][k]]
    print(f"json files with other top-level keys ({len(differing)}):")
    for k in differing:
        a, b = set(ours["json_keys"][k]), set(ref["json_keys"][k])
        print(f"  {k}: only ours {sorted(a - b)}, only reference {sorted(b - a)}")


def _same_predictions(a: Path, b: Path) -> list:
    import nibabel as nib

    problems = []
    for seg in sorted(a.glob("*.nii.gz")):
        other = b / seg.name
        x, y = nib.load(seg), nib.load(other)
        if not (np.array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj)) and np.allclose(x.affine, y.affine)):
            problems.append(f"{seg.name} differs")
        px = np.load(seg.with_name(seg.name.replace(".nii.gz", ".npz")))["probabilities"]
        py = np.load(other.with_name(other.name.replace(".nii.gz", ".npz")))["probabilities"]
        if not np.array_equal(px, py):
            problems.append(f"{seg.name} probabilities differ (max |d| {np.abs(px - py).max()})")
    return problems or ([] if any(a.glob("*.nii.gz")) else [f"no predictions in {a}"])


def orchestrate(args) -> int:
    here = os.path.abspath(__file__)
    repo = os.path.dirname(os.path.dirname(here))
    work = Path(args.work or os.path.join(tempfile.gettempdir(), "monai_runner_trial")).resolve()
    if str(work).startswith(repo + os.sep):
        sys.exit("--work must be outside the repository")
    work.mkdir(parents=True, exist_ok=True)
    if _python_info(sys.executable, "nnunetv2") != os.path.join(repo, "nnunetv2"):
        sys.exit(f"{sys.executable} does not import this repository's nnunetv2 (pip install -e {repo})")
    ours = os.path.join(work, "ours_venv", "bin", "python")
    if not os.path.isfile(ours):
        _run([sys.executable, "-m", "venv", "--system-site-packages", os.path.dirname(os.path.dirname(ours))])
    sides = {"ours": (ours, _python_info(sys.executable, "scripts"))}
    if not args.no_reference:
        if not args.reference_python:
            sys.exit("give --reference-python PATH (a python whose nnunetv2 is the reference) or --no-reference")
        sides["reference"] = (args.reference_python, _python_info(args.reference_python, "scripts"))
    for side, (python, _) in sides.items():
        if _python_info(python, "monai") != args.monai_version:
            _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                  f"monai=={args.monai_version}"])
        print(f"{side}: {python}, nnunetv2 from {_python_info(python, 'nnunetv2')}", flush=True)

    status, summaries = {}, {}
    for side, (python, scripts) in sides.items():
        shutil.rmtree(work / side, ignore_errors=True)
        t0 = time.time()
        print(f"\n### {side}: running the runner's steps (log: {work / (side + '.log')})", flush=True)
        with open(work / f"{side}.log", "w") as log:
            cmd = [python, here, "--drive", work / side, "--summary", work / f"{side}.json"]
            cmd += ["--skip-2d"] if args.skip_2d else []
            status[side] = subprocess.run([str(c) for c in cmd], env=_side_env(python, scripts), stdout=log,
                                          stderr=subprocess.STDOUT, cwd=work).returncode
        summaries[side] = json.loads((work / f"{side}.json").read_text())
        print(f"{side}: exit status {status[side]}, {time.time() - t0:.0f} s")

    failed_on_ours_only = False
    steps = {side: {r["step"]: r for r in s["steps"]} for side, s in summaries.items()}
    print("\n===== steps =====")
    for step, r in steps["ours"].items():
        line = f"{'PASS' if r['ok'] else 'FAIL'} ours {r['seconds']:>6} s"
        if "reference" in steps:
            ref = steps["reference"].get(step, {"ok": False, "seconds": "-", "reason": "not run"})
            line += f" | {'PASS' if ref['ok'] else 'FAIL'} reference {ref['seconds']:>6} s"
            failed_on_ours_only |= not r["ok"] and ref["ok"]
        print(f"{line} | {step} {r['reason']}")
    cross_ok = True
    if "reference" in sides:
        _compare(summaries["ours"], summaries["reference"])
        for side, other in (("ours", "reference"), ("reference", "ours")):
            python, scripts = sides[side]
            out = work / f"{side}_predicts_{other}_model"
            shutil.rmtree(out, ignore_errors=True)
            with open(work / f"{side}_predicts_{other}_model.log", "w") as log:
                rc = subprocess.run([python, here, "--cross-predict", str(work / other), str(out)],
                                    env=_side_env(python, scripts), stdout=log, stderr=subprocess.STDOUT,
                                    cwd=work).returncode
            problems = [f"exit status {rc}"] if rc else _same_predictions(out, work / other / "own_pred")
            cross_ok &= not problems
            whose = {"ours": "our", "reference": "the reference's"}[other]
            print(f"{'PASS' if not problems else 'FAIL'} {side} predicting {whose} fold-0 model: "
                  f"{'; '.join(problems) or 'segmentations and probabilities identical to its own'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    failed = failed_on_ours_only or not cross_ok or ("reference" not in sides and status["ours"] != 0)
    print("\nRESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", help="folder for venv, data and outputs (outside the repository)")
    parser.add_argument("--monai-version", default="1.6.1")
    parser.add_argument("--reference-python", help="python of an environment with the reference nnunetv2")
    parser.add_argument("--no-reference", action="store_true", help="run ours only")
    parser.add_argument("--skip-2d", action="store_true", help="3d_fullres only (no 2d training, no ensemble)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    parser.add_argument("--cross-predict", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        return drive(Path(args.drive).resolve(), Path(args.summary).resolve(), args.skip_2d)
    if args.cross_predict:
        return cross_predict(Path(args.cross_predict[0]).resolve(), Path(args.cross_predict[1]).resolve())
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
