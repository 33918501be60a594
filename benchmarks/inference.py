"""Benchmark: nnUNetv2_predict of ours vs the reference (2.8.1) with the golden trained models and a realistic one.

    python benchmarks/inference.py [--models 901 902 903] [--modes default disable_tta large fast]
                                   [--large-factor 3] [--device cpu] [--npp 1] [--nps 1] [--reference-python PATH]
                                   [--keep]

Model 901 is the realistic case: the default 3d_fullres network the reference plans for the golden CT dataset
(PlainConvUNet, 5 stages, 32..320 features, patch 32x112x112) with seeded random weights from our trainer's
initialisation, built by ``_realistic_model.py``; both implementations load the same checkpoint and predict the
dataset's 3 test volumes. The golden tiny models (902, 903) are so small that start-up dominates their time.
"fast" mode runs ours with ``nnUNet_cpu_fast=1`` (bfloat16, opt-in) with and without TTA, timed against the same
reference runs, and prints its agreement with our exact (default) mode: share of equal voxels and the smallest
per-label Dice over the cases.

Both implementations get their own nnUNet_results with the golden export zips of ../shared/reference/models
installed (unzipped), and predict the same test images (regenerated with the datasets' generate.sh) with
``--save_probabilities``. For every model and mode the script prints wall time per case and the peak RSS of the whole
process tree (ours, reference, ratios) and whether the outputs agree: segmentations voxel-identical, max |delta| of the
probabilities. Memory is reported as summed RSS and summed PSS (shared pages split) of the tree. "large" mode upsamples the test image mr_008 of Dataset902 by ``--large-factor`` per axis (spacing
divided by the same factor, so the network sees the same data after resampling but the export resamples the
probabilities back to a volume ``factor**3`` times larger) and predicts it with ``--disable_tta``: this isolates the
RAM of preprocessing/export of a large image. Issue targets: time <= 0.67x the reference, peak RAM well below it.
The reference runs from a temporary folder so that our package cannot shadow it.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _realistic_model as realistic  # noqa: E402
from _harness import (BackgroundLoad, Measurement, TreeMeasurement, console_script,  # noqa: E402
                      default_reference_python, measure_tree, our_console_script, reference_python)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NNUNET_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
MODELS = {  # id -> (dataset folder, configuration, segmentation file ending)
    901: (realistic.DATASET, realistic.CONFIGURATION, ".nii.gz"),
    902: ("Dataset902_SynthMRRegions", "3d_fullres", ".nii.gz"),
    903: ("Dataset903_SynthNatural2D", "2d", ".png"),
}
TRAINER_PLANS = {901: (realistic.TRAINER, realistic.PLANS)}  # the golden zips: nnUNetTrainer_5epochs, nnUNetPlansTiny


def _install_models(results: str, ids: List[int]) -> None:
    """What nnUNetv2_install_pretrained_model_from_zip does: unzip into nnUNet_results (the golden models)."""
    for d in ids:
        if d not in GOLDEN:
            continue
        for z in glob.glob(os.path.join(SHARED, "reference", "models", MODELS[d][0], "*.zip")):
            with zipfile.ZipFile(z) as f:
                f.extractall(results)


GOLDEN = (902, 903)


def _generate_raw(raw: str, ids: List[int]) -> None:
    for d in ids:
        if d not in GOLDEN:
            realistic.generate_raw(SHARED, raw)
            continue
        subprocess.run(["bash", "generate.sh"], cwd=os.path.join(SHARED, "reference", MODELS[d][0]),
                       env=dict(os.environ, nnUNet_raw=raw), check=True, stdout=subprocess.DEVNULL)


def _make_large_input(src_dir: str, dst_dir: str, case: str, factor: float) -> None:
    """Upsample every channel of ``case`` by ``factor`` per axis (linear), spacing / factor, same origin/direction."""
    import SimpleITK as sitk
    os.makedirs(dst_dir, exist_ok=True)
    for f in sorted(glob.glob(os.path.join(src_dir, f"{case}_[0-9][0-9][0-9][0-9].nii.gz"))):
        img = sitk.ReadImage(f)
        size = [int(round(s * factor)) for s in img.GetSize()]
        spacing = [sp * s_old / s_new for sp, s_old, s_new in zip(img.GetSpacing(), img.GetSize(), size)]
        out = sitk.Resample(sitk.Cast(img, sitk.sitkFloat32), size, sitk.Transform(), sitk.sitkLinear,
                            img.GetOrigin(), spacing, img.GetDirection(), 0.0, sitk.sitkFloat32)
        sitk.WriteImage(out, os.path.join(dst_dir, os.path.basename(f).replace(case, f"{case}_large")))


def _read_seg(path: str) -> np.ndarray:
    if path.endswith(".png"):
        from PIL import Image
        return np.asarray(Image.open(path))
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def agreement(ours: str, other: str, ending: str) -> Tuple[float, float]:
    """(share of equal voxels over all cases, smallest per-label Dice over cases and labels) of two folders."""
    from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn
    n_equal, n_total, min_dice = 0, 0, 1.0
    for name in sorted(os.path.basename(p) for p in glob.glob(os.path.join(other, "*" + ending))):
        if not os.path.isfile(os.path.join(ours, name)):
            return float("nan"), float("nan")
        a, b = _read_seg(os.path.join(ours, name)), _read_seg(os.path.join(other, name))
        n_equal, n_total = n_equal + int((a == b).sum()), n_total + a.size
        for label in np.union1d(np.unique(a), np.unique(b)):
            if label != 0:
                tp, fp, fn, _ = compute_tp_fp_fn_tn(a == label, b == label)
                min_dice = min(min_dice, 2 * tp / (2 * tp + fp + fn))
    return (n_equal / n_total if n_total else float("nan")), min_dice


def compare_outputs(ours: str, ref: str, ending: str) -> Tuple[bool, float, int]:
    """(all segmentations identical, max |delta| of the probabilities, number of differing seg voxels)."""
    same, max_delta, n_diff = True, 0.0, 0
    ref_segs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ref, "*" + ending)))
    if not ref_segs:
        return False, float("nan"), -1
    for name in ref_segs:
        p_ours = os.path.join(ours, name)
        if not os.path.isfile(p_ours):
            return False, float("nan"), -1
        a, b = _read_seg(p_ours), _read_seg(os.path.join(ref, name))
        if a.shape != b.shape or a.dtype != b.dtype:
            return False, float("nan"), -1
        n = int((a != b).sum())
        n_diff += n
        same &= n == 0
        npz = name[: -len(ending)] + ".npz"
        if os.path.isfile(os.path.join(ref, npz)):
            if not os.path.isfile(os.path.join(ours, npz)):
                return False, float("nan"), n_diff
            pa = np.load(os.path.join(ours, npz))["probabilities"]
            pb = np.load(os.path.join(ref, npz))["probabilities"]
            if pa.shape != pb.shape:
                return False, float("nan"), n_diff
            max_delta = max(max_delta, float(np.abs(pa.astype(np.float64) - pb).max()))
    return same, max_delta, n_diff


def _predict_cmd(exe: str, inp: str, out: str, d: int, args, disable_tta: bool) -> List[str]:
    trainer, plans = TRAINER_PLANS.get(d, ("nnUNetTrainer_5epochs", "nnUNetPlansTiny"))
    cmd = [exe, "-i", inp, "-o", out, "-d", str(d), "-c", MODELS[d][1], "-f", "0", "-tr", trainer,
           "-p", plans, "--save_probabilities", "-device", args.device, "-npp", str(args.npp),
           "-nps", str(args.nps)]
    return cmd + (["--disable_tta"] if disable_tta else [])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, nargs="+", default=[901, 902, 903], choices=sorted(MODELS))
    p.add_argument("--modes", nargs="+", default=["default", "disable_tta", "large", "fast"],
                   choices=["default", "disable_tta", "large", "fast"])
    p.add_argument("--large-factor", type=float, default=3.0,
                   help="per-axis upsampling of mr_008 for the large mode (voxels grow by factor**3)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (passed as -device to both)")
    p.add_argument("--npp", type=int, default=1, help="-npp for both")
    p.add_argument("--nps", type=int, default=1, help="-nps for both")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per row, ours and the reference alternating; the fastest is reported. Memory is "
                        "measured in the first run only (its polling takes CPU from the run it measures)")
    p.add_argument("--reference-python", default=default_reference_python(),
                   help="python of an env with nnunetv2==2.8.1 (default: /opt/nnunet_ref if present)")
    p.add_argument("--reference-venv", default=os.path.join(tempfile.gettempdir(), "nnunet_ref_venv"))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--background-load", type=int, default=0, metavar="N",
                   help="run N busy processes (one core each) during every measurement: the same load for both")
    args = p.parse_args()

    ref_python = reference_python(args.reference_python, args.reference_venv)
    ours_exe = our_console_script("nnUNetv2_predict")
    ref_exe = console_script(ref_python, "nnUNetv2_predict")
    base = tempfile.mkdtemp(prefix="nnunet_bench_inf_")
    raw = os.path.join(base, "raw")
    envs: Dict[str, Dict[str, str]] = {}
    for tag in ("ours", "ref"):
        results = os.path.join(base, tag, "results")
        os.makedirs(results)
        os.makedirs(os.path.join(base, tag, "preprocessed"))
        _install_models(results, args.models)
        envs[tag] = dict(os.environ, nnUNet_raw=raw, nnUNet_results=results,
                         nnUNet_preprocessed=os.path.join(base, tag, "preprocessed"), nnUNet_compile="f")
    envs["ours"].pop("nnUNet_cpu_fast", None)
    envs["fast"] = dict(envs["ours"], nnUNet_cpu_fast="1")
    _generate_raw(raw, args.models)
    if 901 in args.models:
        model = realistic.build_model_folder(SHARED, os.path.join(raw, realistic.DATASET),
                                             envs["ours"]["nnUNet_results"])
        realistic.install_copy(model, envs["ref"]["nnUNet_results"])

    jobs = []  # (label, model id, input folder, n cases, disable_tta, fast)
    for d in args.models:
        inp = os.path.join(raw, MODELS[d][0], "imagesTs")
        n_cases = len({f[: -len("_0000" + MODELS[d][2])] for f in os.listdir(inp) if "_0000" in f})
        for mode in ("default", "disable_tta"):
            if mode in args.modes:
                jobs.append((f"{d} {MODELS[d][1]} {mode}", d, inp, n_cases, mode == "disable_tta", False))
        if "fast" in args.modes:
            for no_tta in (False, True):
                jobs.append((f"{d} {MODELS[d][1]} fast{' no-TTA' if no_tta else ''}", d, inp, n_cases, no_tta, True))
    if "large" in args.modes and 902 in args.models:
        large_in = os.path.join(base, "large_in")
        _make_large_input(os.path.join(raw, MODELS[902][0], "imagesTs"), large_in, "mr_008", args.large_factor)
        jobs.append((f"902 large x{args.large_factor:g}^3 no-TTA", 902, large_in, 1, True, False))

    rows = []
    ref_runs: Dict[tuple, Tuple[Measurement, str]] = {}  # (model, input, no_tta) -> fastest reference run, output
    exact_outs: Dict[tuple, str] = {}  # the same key -> our exact (default mode) output
    load = BackgroundLoad(args.background_load)
    try:
        load.__enter__()
        for label, d, inp, n_cases, no_tta, fast in jobs:
            key = (d, inp, no_tta)
            best: Dict[str, Measurement] = {}
            outs = {}
            tags = ("ours",) if key in ref_runs else ("ref", "ours")
            for r in range(args.repeats):
                for tag in tags:
                    exe, cwd = (ref_exe, base) if tag == "ref" else (ours_exe, REPO)
                    out = os.path.join(base, tag, "pred", label.replace(" ", "_"), str(r))
                    # memory is polled in the first run only: the polling thread takes CPU from the run it measures
                    # (0.2-0.5 s of a 9 s one), so the later runs time each side undisturbed
                    m = measure_tree(_predict_cmd(exe, inp, out, d, args, no_tta),
                                     envs["fast" if fast and tag == "ours" else tag], cwd=cwd, memory=r == 0)
                    if m.returncode != 0:
                        print(f"{label}: {tag} failed (exit {m.returncode})", flush=True)
                    if r == 0:
                        best[tag], outs[tag] = m, out
                    elif m.wall_s < best[tag].wall_s:  # the fastest time, with the first run's memory
                        best[tag] = TreeMeasurement(m.wall_s, best[tag].peak_rss_mb, m.returncode,
                                                    best[tag].peak_pss_mb)
            if "ref" in best:
                ref_runs[key] = (best["ref"], outs["ref"])
            best["ref"], outs["ref"] = ref_runs[key]
            if not fast:
                exact_outs[key] = outs["ours"]
            same, delta, n_diff = compare_outputs(outs["ours"], outs["ref"], MODELS[d][2])
            agree = agreement(outs["ours"], exact_outs[key], MODELS[d][2]) if fast and key in exact_outs else None
            rows.append((label, n_cases, best["ours"], best["ref"], same, delta, n_diff, agree))
            print(f"{label}: ours {best['ours'].wall_s:.1f} s / reference {best['ref'].wall_s:.1f} s, "
                  f"seg identical: {same} ({n_diff} voxels differ), max |dp| {delta:.2e}"
                  + (f"; vs our exact mode: {agree[0]:.4%} voxels equal, min per-label Dice {agree[1]:.4f}"
                     if agree else ""), flush=True)
        load.__exit__(None, None, None)
        print()
        if args.background_load:
            print(f"measured with {args.background_load} busy background processes")
        print("MB = peak summed RSS of the process tree; PSS = the same with shared pages split between processes.")
        print("fast rows: the reference column is the reference's run of the same mode; 'vs exact' = share of "
              "voxels equal to our exact mode / smallest per-label Dice")
        print(f"{'run':<28}{'ours s/case':>12}{'ref s/case':>11}{'ratio':>7}{'ours MB':>9}{'ref MB':>8}{'ratio':>7}"
              f"{'ours PSS':>9}{'ref PSS':>8}{'ratio':>7}{'seg same':>12}{'max|dp|':>10}{'vs exact':>20}")
        for label, n, o, r, same, delta, n_diff, agree in rows:
            print(f"{label:<28}{o.wall_s / n:>12.2f}{r.wall_s / n:>11.2f}{o.wall_s / r.wall_s:>7.2f}"
                  f"{o.peak_rss_mb:>9.0f}{r.peak_rss_mb:>8.0f}{o.peak_rss_mb / max(r.peak_rss_mb, 1):>7.2f}"
                  f"{o.peak_pss_mb:>9.0f}{r.peak_pss_mb:>8.0f}{o.peak_pss_mb / max(r.peak_pss_mb, 1):>7.2f}"
                  f"{('yes' if same else f'NO ({n_diff})'):>12}{delta:>10.1e}"
                  + (f"{agree[0]:>11.4%} / {agree[1]:.4f}" if agree else ""))
        for subset, name in (([r for r in rows if r[0].split()[0] in ("902", "903") and r[7] is None], "tiny models"),
                             ([r for r in rows if r[0].startswith("901") and r[7] is None], "realistic model")):
            if subset:
                tot_o, tot_r = sum(r[2].wall_s for r in subset), sum(r[3].wall_s for r in subset)
                print(f"total wall time ratio, {name}, exact mode (ours / reference): {tot_o / tot_r:.2f}")
    finally:
        load.__exit__(None, None, None)
        if args.keep:
            print(f"work folder kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
