"""Benchmark and check: export of logits that must be resampled (image spacing != the configuration's), ours vs the
reference (2.8.1).

    python benchmarks/export_resampling.py [--repeats 5] [--reference-python PATH]

Synthetic float16 logits (3 classes, softmax; smooth fields like a network's) go through
``convert_predicted_logits_to_segmentation_with_correct_shape(..., return_probabilities=True)`` of each
implementation: upsampling, downsampling, an anisotropic case (in-plane per slice, then slices picked along z) and
a larger upsampled volume. The plans are the golden 3d_fullres tiny plans of ../shared (probabilities resampled with
order 1, order_z 0, as the default planner writes). Prints the CPU seconds of each case (best of ``--repeats``, one
torch thread), the ratio, whether the probabilities are bit-identical, their max |delta| and the share of values off
by more than 1e-5, and whether the segmentations are identical. The script re-runs itself under each
implementation's python; the reference runs from a temporary folder so that our checkout cannot shadow it.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import default_reference_python, reference_python  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NNUNET_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
PLANS = os.path.join(SHARED, "reference", "models", "Dataset902_SynthMRRegions", "nnUNetPlansTiny.json")
DATASET_JSON = {"channel_names": {"0": "a"}, "labels": {"background": 0, "x": 1, "y": 2}, "numTraining": 1,
                "file_ending": ".nii.gz"}
CONFIG_SPACING = [1.0476, 0.97295, 0.9709]
# name: (logits shape, shape after cropping (the original resolution), original spacing)
CASES = {
    "up x1.5": ((3, 48, 52, 50), (75, 81, 78), [0.67, 0.62, 0.65]),
    "down x0.7": ((3, 60, 64, 58), (41, 47, 40), [1.53, 1.32, 1.4]),
    "anisotropic (sep. z)": ((3, 40, 60, 62), (12, 70, 72), [3.5, 0.834, 0.838]),
    "large up x1.3": ((3, 96, 128, 128), (130, 170, 160), [0.77, 0.73, 0.776]),
}


def _make_cases(path: str) -> None:
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(42)
    cases = {}
    for name, (logit_shape, target, spacing) in CASES.items():
        logits = np.stack([gaussian_filter(rng.standard_normal(logit_shape[1:]), 3) * 40
                           for _ in range(logit_shape[0])]).astype(np.float16)
        props = {"spacing": spacing, "shape_after_cropping_and_before_resampling": list(target),
                 "shape_before_cropping": [target[0] + 2, target[1] + 3, target[2]],
                 "bbox_used_for_cropping": [[1, target[0] + 1], [0, target[1]], [0, target[2]]]}
        cases[name] = (logits, props)
    with open(path, "wb") as f:
        pickle.dump(cases, f)


def _worker(cases_file: str, out_file: str, repeats: int) -> None:
    """Runs under one implementation's python: export every case, keep the results and the best CPU time."""
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    torch.set_num_threads(1)
    with open(PLANS) as f:
        plans = PlansManager(json.load(f))
    configuration = plans.get_configuration("3d_fullres")
    configuration.configuration["spacing"] = CONFIG_SPACING
    labels = plans.get_label_manager(DATASET_JSON)
    with open(cases_file, "rb") as f:
        cases = pickle.load(f)
    results = {}
    for name, (logits, props) in cases.items():
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            seg, probs = convert_predicted_logits_to_segmentation_with_correct_shape(
                torch.from_numpy(logits.copy()), plans, configuration, labels, copy.deepcopy(props), True, 1)
            best = min(best, time.process_time() - start)
        results[name] = (best, seg, probs)
    with open(out_file, "wb") as f:
        pickle.dump(results, f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--reference-python", default=default_reference_python())
    p.add_argument("--reference-venv", default=os.path.join(tempfile.gettempdir(), "nnunet_ref_venv"))
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker(*args.worker, args.repeats)
        return
    ref_python = reference_python(args.reference_python, args.reference_venv)
    with tempfile.TemporaryDirectory() as tmp:
        cases_file = os.path.join(tmp, "cases.pkl")
        _make_cases(cases_file)
        outs = {}
        for tag, python, cwd in (("ours", sys.executable, REPO), ("ref", ref_python, tmp)):
            outs[tag] = os.path.join(tmp, f"{tag}.pkl")
            subprocess.run([python, os.path.abspath(__file__), "--repeats", str(args.repeats), "--worker", cases_file,
                            outs[tag]], cwd=cwd, check=True)
        results = {}
        for tag, path in outs.items():
            with open(path, "rb") as f:
                results[tag] = pickle.load(f)
    print(f"{'case':<24}{'ours s':>8}{'ref s':>8}{'ratio':>7}{'bit-identical':>15}{'max|dp|':>10}"
          f"{'>1e-5':>9}{'seg same':>10}")
    for name in CASES:
        t_o, seg_o, p_o = results["ours"][name]
        t_r, seg_r, p_r = results["ref"][name]
        diff = np.abs(p_o.astype(np.float64) - p_r)
        print(f"{name:<24}{t_o:>8.3f}{t_r:>8.3f}{t_o / t_r:>7.2f}{str(bool(np.array_equal(p_o, p_r))):>15}"
              f"{diff.max():>10.1e}{(diff > 1e-5).mean():>9.1e}{str(bool(np.array_equal(seg_o, seg_r))):>10}")


if __name__ == "__main__":
    main()
