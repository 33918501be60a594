"""Differential trial, not a speed benchmark: do our experiment planners write the same plans as the reference (2.8.1)
for datasets far from the golden ones?

    python benchmarks/planning_fuzz.py [--datasets 40] [--seed 0] [--planners ExperimentPlanner nnUNetPlannerResEncM ...]
                                       [--time-limit 120] [--reference-python PATH] [--keep]

Planning is arithmetic on two files: ``dataset.json`` and ``dataset_fingerprint.json`` (image shapes after cropping,
spacings, intensity statistics per channel). The script draws random datasets that no golden dataset resembles
(thick and thin slices, one anisotropic in-plane axis, spacings that vary between cases, a handful to hundreds of
cases, images from a few voxels to 1500^3, 2-D collections, 1-4 channels of every normalization scheme, 2-40 labels,
regions) and writes for each only those two files plus one tiny image and label per case (the planners list the
cases and read one file to pick the image reader). Every planner then plans every dataset in one process per side
(ours: this checkout; the reference from a temporary folder), also with other GPU memory targets, a fixed target
spacing and without transposition, and every plans file is compared key by key (floats exactly). A variant both
sides refuse counts as agreement (ours raises UserError where the reference asserts). A planning that takes longer
than ``--time-limit`` seconds on either side is stopped, named and not compared (the reference needs minutes per
planner for the largest images). Prints the first difference of each disagreeing plan and a summary; exit status 1 if
anything differs.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, run_both, trial_arguments, work_folder  # noqa: E402

FIRST_ID = 700
DEFAULT_PLANNERS = ["ExperimentPlanner", "nnUNetPlannerResEncM", "nnUNetPlannerResEncL", "nnUNetPlannerResEncXL",
                    "nnUNetPlanner_torchres"]
CHANNEL_KINDS_3D = ["CT", "MRI", "T2", "noNorm", "rescale_to_0_1", "zscore", "ADC"]
CHANNEL_KINDS_2D = ["rgb_to_0_1", "zscore", "noNorm", "rescale_to_0_1", "Microscopy"]


# ---------------------------------------------------------------------------------------------------------------------
# random datasets

def _jittered(rng: random.Random, base: List[float], spread: float) -> List[float]:
    return [b * rng.uniform(1 - spread, 1 + spread) for b in base]


def _draw_geometry(rng: random.Random) -> Tuple[List[List[int]], List[List[float]], bool]:
    """(shapes after cropping, spacings, is 2-D) of one random dataset."""
    kind = rng.choice(["iso", "thick_z", "thin_z", "aniso_inplane", "varying", "tiny", "huge", "2d", "2d_nifti"])
    n = rng.choice([1, 2, 3, 5, 8, 20, 60, 250])
    shapes, spacings = [], []
    if kind in ("2d", "2d_nifti"):
        base = [1, rng.randint(16, 2500), rng.randint(16, 2500)]
        sp = [999.0, 1.0, 1.0] if kind == "2d" else [rng.uniform(1, 5), rng.uniform(0.1, 1), rng.uniform(0.1, 1)]
        for _ in range(n):
            shapes.append([1] + [max(1, round(s)) for s in _jittered(rng, base[1:], rng.choice([0, 0.1, 0.5]))])
            spacings.append(list(sp) if kind == "2d" or rng.random() < 0.5 else [sp[0]] + _jittered(rng, sp[1:], 0.2))
        return shapes, spacings, True
    if kind == "iso":
        base_sp = [rng.uniform(0.3, 3)] * 3
        base = [rng.randint(20, 400) for _ in range(3)]
    elif kind == "thick_z":
        base_sp = [rng.uniform(2.5, 12), rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.2)]
        base = [rng.randint(8, 120), rng.randint(128, 700), rng.randint(128, 700)]
    elif kind == "thin_z":
        base_sp = [rng.uniform(0.2, 0.6), rng.uniform(0.8, 3), rng.uniform(0.8, 3)]
        base = [rng.randint(100, 600), rng.randint(30, 200), rng.randint(30, 200)]
    elif kind == "aniso_inplane":
        axis = rng.randrange(3)
        base_sp = [rng.uniform(0.4, 1.0) for _ in range(3)]
        base_sp[axis] = rng.uniform(3, 9)
        base = [rng.randint(50, 300) for _ in range(3)]
        base[axis] = rng.randint(10, 60)
    elif kind == "varying":
        base_sp = [rng.uniform(0.5, 5), rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5)]
        base = [rng.randint(30, 200) for _ in range(3)]
    elif kind == "tiny":
        base_sp = [rng.uniform(0.5, 4) for _ in range(3)]
        base = [rng.randint(2, 12) for _ in range(3)]
    else:  # huge
        base_sp = [rng.uniform(0.05, 1) for _ in range(3)]
        base = [rng.randint(600, 1500) for _ in range(3)]
    spread = 0.6 if kind == "varying" else rng.choice([0, 0.05, 0.3])
    for _ in range(n):
        shapes.append([max(1, round(s)) for s in _jittered(rng, base, spread)])
        spacings.append(_jittered(rng, base_sp, spread) if rng.random() < 0.7 else list(base_sp))
    return shapes, spacings, False


def _intensity_properties(rng: random.Random) -> Dict[str, float]:
    lo = rng.uniform(-1200, 100)
    hi = lo + rng.uniform(1, 4000)
    mean = rng.uniform(lo, hi)
    return {"max": hi, "mean": mean, "median": rng.uniform(lo, hi), "min": lo, "percentile_00_5": lo + 0.01 * (hi - lo),
            "percentile_99_5": hi - 0.01 * (hi - lo), "std": rng.uniform(0.1, (hi - lo) / 2)}


def _dataset_files(rng: random.Random) -> Tuple[dict, dict, bool]:
    """(dataset.json, dataset_fingerprint.json, is 2-D) of one random dataset."""
    shapes, spacings, two_d = _draw_geometry(rng)
    kinds = CHANNEL_KINDS_2D if two_d else CHANNEL_KINDS_3D
    channels = {str(i): rng.choice(kinds) for i in range(rng.choice([1, 1, 2, 3, 4]))}
    n_labels = rng.choice([1, 2, 3, 5, 13, 40])
    labels = {"background": 0}
    labels.update({f"l{i}": i for i in range(1, n_labels + 1)})
    if n_labels >= 3 and rng.random() < 0.2:  # regions
        labels = {"background": 0, "whole": list(range(1, n_labels + 1)), "core": [2, 3], "inner": 3}
    dataset_json = {"channel_names": channels, "labels": labels, "numTraining": len(shapes),
                    "file_ending": ".nii.gz"}
    if "whole" in labels:
        dataset_json["regions_class_order"] = [1, 2, 3]
    fingerprint = {
        "foreground_intensity_properties_per_channel": {c: _intensity_properties(rng) for c in channels},
        "median_relative_size_after_cropping": rng.choice([1.0, rng.uniform(0.2, 1.0)]),
        "shapes_after_crop": shapes, "spacings": spacings}
    return dataset_json, fingerprint, two_d


def _write_dataset(raw: str, pre: str, dataset_id: int, rng: random.Random) -> Tuple[str, bool, List[float]]:
    """Write one random dataset; returns (name, is 2-D, its median spacing, for a fixed-target-spacing variant)."""
    import numpy as np
    import SimpleITK as sitk
    name = f"Dataset{dataset_id:03d}_Fuzz"
    dataset_json, fingerprint, two_d = _dataset_files(rng)
    folder = os.path.join(raw, name)
    os.makedirs(os.path.join(folder, "imagesTr"))
    os.makedirs(os.path.join(folder, "labelsTr"))
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(dataset_json, f, indent=2)
    tiny = sitk.GetImageFromArray(np.zeros((2, 2, 2), dtype=np.uint8))
    for case in range(dataset_json["numTraining"]):
        for channel in dataset_json["channel_names"]:
            sitk.WriteImage(tiny, os.path.join(folder, "imagesTr", f"case{case:04d}_{int(channel):04d}.nii.gz"))
        sitk.WriteImage(tiny, os.path.join(folder, "labelsTr", f"case{case:04d}.nii.gz"))
    os.makedirs(os.path.join(pre, name))
    with open(os.path.join(pre, name, "dataset_fingerprint.json"), "w") as f:
        json.dump(fingerprint, f, indent=2)
    shutil.copy(os.path.join(folder, "dataset.json"), os.path.join(pre, name, "dataset.json"))
    median = [float(np.median([s[a] for s in fingerprint["spacings"]])) for a in range(3)]
    return name, two_d, median


def _jobs(datasets: List[Tuple[int, bool, List[float]]], planners: List[str], rng: random.Random) -> List[dict]:
    """Every planner on every dataset with defaults, plus one random variant per dataset."""
    jobs = []
    for dataset_id, two_d, median in datasets:
        for planner in planners:
            jobs.append({"dataset": dataset_id, "planner": planner, "gpu": None, "plans_name": None,
                         "spacing": None, "suppress_transpose": False})
        variant = {"dataset": dataset_id, "planner": rng.choice(planners), "gpu": None, "plans_name": "fuzzVariant",
                   "spacing": None, "suppress_transpose": False}
        choice = rng.choice(["gpu", "spacing", "transpose"])
        if choice == "gpu":
            variant["gpu"] = rng.choice([2, 4, 11, 24, 40, 80])
        elif choice == "spacing":
            variant["spacing"] = [round(s * rng.uniform(0.5, 2), 3) for s in median]
        else:
            variant["suppress_transpose"] = True
        jobs.append(variant)
    return jobs


# ---------------------------------------------------------------------------------------------------------------------
# driver (runs under either implementation's python)

def drive(jobs_file: str, time_limit_s: float, result_file: str) -> None:
    import nnunetv2
    from _fuzz_harness import drive_cases
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    with open(jobs_file) as f:
        jobs = {_job_key(job): job for job in json.load(f)}

    def plan(key: str) -> dict:
        job = jobs[key]
        cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "experiment_planning"), job["planner"],
                                          "nnunetv2.experiment_planning")
        kwargs = {}
        if job["gpu"] is not None:
            kwargs["gpu_memory_target_in_gb"] = job["gpu"]
        if job["plans_name"] is not None:
            kwargs["plans_name"] = job["plans_name"]
        if job["spacing"] is not None:
            kwargs["overwrite_target_spacing"] = job["spacing"]
        if job["suppress_transpose"]:
            kwargs["suppress_transpose"] = True
        planner = cls(job["dataset"], **kwargs)
        planner.plan_experiment()
        return {"plans_file": planner.plans_identifier + ".json"}

    drive_cases(list(jobs), plan, result_file, time_limit_s)


def _job_key(job: dict) -> str:
    return (f"{job['dataset']}|{job['planner']}|gpu={job['gpu']}|spacing={job['spacing']}|"
            f"no_transpose={job['suppress_transpose']}")


# ---------------------------------------------------------------------------------------------------------------------
# comparison

def _load_plans(pre: str, dataset_id: int, plans_file: str) -> dict:
    with open(os.path.join(pre, f"Dataset{dataset_id:03d}_Fuzz", plans_file)) as f:
        plans = json.load(f)
    plans.pop("dataset_name", None)
    return plans


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--datasets", type=int, default=40, help="number of random datasets")
    p.add_argument("--planners", nargs="+", default=DEFAULT_PLANNERS)
    p.add_argument("--time-limit", type=float, default=120,
                   help="seconds one planning may take on either side; longer ones are named and not compared")
    args = p.parse_args()
    if args.driver:
        drive(args.driver[0], float(args.driver[1]), args.driver[2])
        return 0

    rng = random.Random(args.seed)
    with work_folder("nnunet_planning_fuzz_", args.keep) as base:
        raw, template = os.path.join(base, "raw"), os.path.join(base, "pre_template")
        datasets = []
        for i in range(args.datasets):
            _, two_d, median = _write_dataset(raw, template, FIRST_ID + i, rng)
            datasets.append((FIRST_ID + i, two_d, median))
        jobs = _jobs(datasets, args.planners, rng)
        jobs_file = os.path.join(base, "jobs.json")
        with open(jobs_file, "w") as f:
            json.dump(jobs, f)
        print(f"{len(datasets)} random datasets, {len(jobs)} plannings per side (seed {args.seed}) in {base}",
              flush=True)
        for side in ("ref", "ours"):
            shutil.copytree(template, os.path.join(base, f"pre_{side}"))
        ref, ours = run_both(args, __file__, [jobs_file, str(args.time_limit)], base, lambda side: {
            "nnUNet_raw": raw, "nnUNet_preprocessed": os.path.join(base, f"pre_{side}")})
        results = {"ref": ref, "ours": ours}
        keys = [_job_key(j) for j in jobs]
        timed_out = [k for k in keys if ref["outcomes"][k].get("timed_out") or ours["outcomes"][k].get("timed_out")]
        for k in timed_out:
            sides = [s for s in ("ref", "ours") if results[s]["outcomes"][k].get("timed_out")]
            print(f"not compared (over {args.time_limit:g} s on {' and '.join(sides)}): {k}")
        compared = [k for k in keys if k not in timed_out]
        for side in ("ref", "ours"):  # compare the plans themselves, not the names of their files
            for k in compared:
                outcome = results[side]["outcomes"][k]
                if not outcome["error"]:
                    outcome["plans"] = _load_plans(os.path.join(base, f"pre_{side}"), int(k.split("|")[0]),
                                                   outcome.pop("plans_file"))
        differing, refused_both = compare_outcomes(ref, ours, compared, str)
        print_summary("plannings compared", len(compared), differing, refused_both, ref, ours)
        slowest = sorted(compared, key=lambda k: -ref["outcomes"][k]["seconds"])[:3]
        print("slowest for the reference: " + "; ".join(
            f"{k} {ref['outcomes'][k]['seconds']:.1f} s (ours {ours['outcomes'][k]['seconds']:.1f} s)"
            for k in slowest))
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
