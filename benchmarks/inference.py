"""Benchmark: nnUNetv2_predict of ours vs the reference (2.8.1) with the golden trained models.

    python benchmarks/inference.py [--models 902 903] [--modes default disable_tta] [--large-factor 3]
                                   [--device cpu] [--npp 1] [--nps 1] [--reference-python PATH] [--keep]

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
from _harness import Measurement, console_script, default_reference_python, measure_tree, reference_python  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NNUNET_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
MODELS = {  # id -> (dataset folder, configuration, segmentation file ending)
    902: ("Dataset902_SynthMRRegions", "3d_fullres", ".nii.gz"),
    903: ("Dataset903_SynthNatural2D", "2d", ".png"),
}


def _install_models(results: str, ids: List[int]) -> None:
    """What nnUNetv2_install_pretrained_model_from_zip does: unzip into nnUNet_results."""
    for d in ids:
        for z in glob.glob(os.path.join(SHARED, "reference", "models", MODELS[d][0], "*.zip")):
            with zipfile.ZipFile(z) as f:
                f.extractall(results)


def _generate_raw(raw: str, ids: List[int]) -> None:
    for d in ids:
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
    cmd = [exe, "-i", inp, "-o", out, "-d", str(d), "-c", MODELS[d][1], "-f", "0", "-tr", "nnUNetTrainer_5epochs",
           "-p", "nnUNetPlansTiny", "--save_probabilities", "-device", args.device, "-npp", str(args.npp),
           "-nps", str(args.nps)]
    return cmd + (["--disable_tta"] if disable_tta else [])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, nargs="+", default=[902, 903], choices=sorted(MODELS))
    p.add_argument("--modes", nargs="+", default=["default", "disable_tta", "large"],
                   choices=["default", "disable_tta", "large"])
    p.add_argument("--large-factor", type=float, default=3.0,
                   help="per-axis upsampling of mr_008 for the large mode (voxels grow by factor**3)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (passed as -device to both)")
    p.add_argument("--npp", type=int, default=1, help="-npp for both")
    p.add_argument("--nps", type=int, default=1, help="-nps for both")
    p.add_argument("--repeats", type=int, default=1, help="runs per row; the fastest is reported")
    p.add_argument("--reference-python", default=default_reference_python(),
                   help="python of an env with nnunetv2==2.8.1 (default: /opt/nnunet_ref if present)")
    p.add_argument("--reference-venv", default=os.path.join(tempfile.gettempdir(), "nnunet_ref_venv"))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()

    ref_python = reference_python(args.reference_python, args.reference_venv)
    ours_exe = shutil.which("nnUNetv2_predict") or "nnUNetv2_predict"
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
    _generate_raw(raw, args.models)

    jobs = []  # (label, model id, input folder, n cases, disable_tta)
    for d in args.models:
        inp = os.path.join(raw, MODELS[d][0], "imagesTs")
        n_cases = len({f[: -len("_0000" + MODELS[d][2])] for f in os.listdir(inp) if "_0000" in f})
        for mode in ("default", "disable_tta"):
            if mode in args.modes:
                jobs.append((f"{d} {MODELS[d][1]} {mode}", d, inp, n_cases, mode == "disable_tta"))
    if "large" in args.modes and 902 in args.models:
        large_in = os.path.join(base, "large_in")
        _make_large_input(os.path.join(raw, MODELS[902][0], "imagesTs"), large_in, "mr_008", args.large_factor)
        jobs.append((f"902 large x{args.large_factor:g}^3 no-TTA", 902, large_in, 1, True))

    rows = []
    try:
        for label, d, inp, n_cases, no_tta in jobs:
            best: Dict[str, Measurement] = {}
            outs = {}
            for tag, exe, cwd in (("ref", ref_exe, base), ("ours", ours_exe, REPO)):
                for r in range(args.repeats):
                    out = os.path.join(base, tag, "pred", label.replace(" ", "_"), str(r))
                    m = measure_tree(_predict_cmd(exe, inp, out, d, args, no_tta), envs[tag], cwd=cwd)
                    if m.returncode != 0:
                        print(f"{label}: {tag} failed (exit {m.returncode})", flush=True)
                    if tag not in best or m.wall_s < best[tag].wall_s:
                        best[tag], outs[tag] = m, out
            same, delta, n_diff = compare_outputs(outs["ours"], outs["ref"], MODELS[d][2])
            rows.append((label, n_cases, best["ours"], best["ref"], same, delta, n_diff))
            print(f"{label}: ours {best['ours'].wall_s:.1f} s / reference {best['ref'].wall_s:.1f} s, "
                  f"seg identical: {same}, max |dp| {delta:.2e}", flush=True)
        print()
        print("MB = peak summed RSS of the process tree; PSS = the same with shared pages split between processes")
        print(f"{'run':<26}{'ours s/case':>12}{'ref s/case':>11}{'ratio':>7}{'ours MB':>9}{'ref MB':>8}{'ratio':>7}"
              f"{'ours PSS':>9}{'ref PSS':>8}{'ratio':>7}{'seg same':>10}{'max|dp|':>10}")
        for label, n, o, r, same, delta, n_diff in rows:
            print(f"{label:<26}{o.wall_s / n:>12.2f}{r.wall_s / n:>11.2f}{o.wall_s / r.wall_s:>7.2f}"
                  f"{o.peak_rss_mb:>9.0f}{r.peak_rss_mb:>8.0f}{o.peak_rss_mb / max(r.peak_rss_mb, 1):>7.2f}"
                  f"{o.peak_pss_mb:>9.0f}{r.peak_pss_mb:>8.0f}{o.peak_pss_mb / max(r.peak_pss_mb, 1):>7.2f}"
                  f"{('yes' if same else f'NO ({n_diff})'):>10}{delta:>10.1e}")
        tot_o, tot_r = sum(r[2].wall_s for r in rows), sum(r[3].wall_s for r in rows)
        print(f"\ntotal wall time ratio (ours / reference): {tot_o / tot_r:.2f}")
    finally:
        if args.keep:
            print(f"work folder kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
