"""Differential trial, not a speed benchmark: does our preprocessing give bit for bit the reference's (2.8.1) results on
random cases far from the golden datasets?

    python benchmarks/preprocessing_fuzz.py [--cases 200] [--seed 0] [--reference-python PATH] [--keep]

Each case is drawn from its own seeded generator, identically under both interpreters: a 2-D or 3-D image of 1-3
channels (random shape, zero borders or none, CT-like integers or floats, constant channels), a segmentation with
blobs of several labels (or none: the inference path), a spacing and a target spacing (up to 8x anisotropic, so that
resampling along z alone happens), a random axis order (transpose_forward), a normalization scheme per channel with
and without the nonzero mask, plain labels, regions or an ignore label, and one of the resampling functions
(scipy-based with its orders, torch-based, none). ``DefaultPreprocessor.run_case_npy`` runs every case in one process
per side (ours: this checkout; the reference from a temporary folder), and the preprocessed data, segmentation and
properties (bounding box, shapes, sampled foreground locations) are compared exactly. A case both sides refuse counts
as agreement. Prints the first difference of each disagreeing case and a summary; exit status 1 if anything differs.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, run_both, trial_arguments, work_folder  # noqa: E402
SCHEMES = ["CTNormalization", "ZScoreNormalization", "RescaleTo01Normalization", "NoNormalization"]


def _draw_case(seed: int):
    """(data, seg or None, properties, plans, configuration name, dataset_json) of one random case."""
    import numpy as np
    rng = np.random.default_rng(seed)
    two_d = rng.random() < 0.25
    n_channels = int(rng.integers(1, 4))
    shape = [1] + [int(v) for v in rng.integers(8, 64, 2)] if two_d else [int(v) for v in rng.integers(4, 40, 3)]
    if rng.random() < 0.3:
        data = rng.integers(-1024, 2000, (n_channels, *shape)).astype(rng.choice([np.int16, np.float32]))
    else:
        data = (rng.normal(100, 50, (n_channels, *shape))).astype(np.float32)
    if rng.random() < 0.5:  # zero border (cropping to the nonzero region matters)
        border = [int(rng.integers(0, max(1, s // 3))) for s in shape]
        mask = np.zeros(shape, dtype=bool)
        mask[tuple(slice(b, s - b if s - b > b else s) for b, s in zip(border, shape))] = True
        data[:, ~mask] = 0
    if rng.random() < 0.1:
        data[int(rng.integers(0, n_channels))] = 7  # a constant channel
    n_labels = int(rng.integers(1, 5))
    seg = None
    if rng.random() < 0.8:
        seg = np.zeros((1, *shape), dtype=np.float32 if rng.random() < 0.5 else np.int16)  # as the readers give it
        for label in range(1, n_labels + 1):
            for _ in range(int(rng.integers(0, 3))):
                centre = [int(rng.integers(0, s)) for s in shape]
                radius = [int(rng.integers(1, max(2, s // 3))) for s in shape]
                seg[(0, *[slice(max(0, c - r), c + r) for c, r in zip(centre, radius)])] = label
    kind = rng.choice(["labels", "labels", "regions", "ignore"])
    labels = {"background": 0, **{f"l{i}": i for i in range(1, n_labels + 1)}}
    dataset_json = {"channel_names": {str(c): "x" for c in range(n_channels)}, "numTraining": 1,
                    "file_ending": ".nii.gz"}
    if kind == "regions" and n_labels >= 2:
        labels = {"background": 0, "whole": list(range(1, n_labels + 1)), "top": n_labels}
        dataset_json["regions_class_order"] = [1, n_labels]
    elif kind == "ignore":
        labels["ignore"] = n_labels + 1
        if seg is not None:
            seg[(0, *[slice(0, max(1, s // 4)) for s in shape])] = n_labels + 1
    dataset_json["labels"] = labels

    if two_d:
        spacing = [999.0] + [float(rng.uniform(0.2, 2)) for _ in range(2)]
    else:
        spacing = [float(rng.uniform(0.3, 6)) for _ in range(3)]
    transpose = [int(v) for v in rng.permutation(3)] if not two_d and rng.random() < 0.4 else [0, 1, 2]
    spacing_t = [spacing[i] for i in transpose]
    factors = rng.uniform(0.5, 2.0, 3)
    if rng.random() < 0.2:
        factors[:] = 1
    target = [float(s * f) for s, f in zip(spacing_t, factors)]
    if not two_d and rng.random() < 0.3:  # make one axis much coarser than the others
        target[int(rng.integers(0, 3))] *= float(rng.uniform(3, 8))
    configuration = "2d" if two_d else "3d_fullres"
    resampling = rng.choice(["default", "default_orders", "torch", "torch_sepz", "none"])
    if resampling == "torch" or resampling == "torch_sepz":
        fn = "resample_torch_fornnunet"
        sepz = None if resampling == "torch_sepz" else False
        data_kwargs = {"is_seg": False, "force_separate_z": sepz, "memefficient_seg_resampling": False}
        seg_kwargs = {"is_seg": True, "force_separate_z": sepz, "memefficient_seg_resampling": False}
    elif resampling == "none":
        fn, data_kwargs, seg_kwargs = "no_resampling_hack", {}, {}
    else:
        fn = "resample_data_or_seg_to_shape"
        order = int(rng.choice([0, 1, 3])) if resampling == "default_orders" else 3
        data_kwargs = {"is_seg": False, "order": order, "order_z": int(rng.choice([0, 1])), "force_separate_z": None}
        seg_kwargs = {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None}
    schemes = [str(rng.choice(SCHEMES)) for _ in range(n_channels)]
    config = {
        "data_identifier": "fuzz", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [8, 8] if two_d else [8, 8, 8], "median_image_size_in_voxels": shape[1:] if two_d else shape,
        "spacing": target[1:] if two_d else target, "normalization_schemes": schemes,
        "use_mask_for_norm": [bool(rng.random() < 0.5) for _ in range(n_channels)],
        "resampling_fn_data": fn, "resampling_fn_data_kwargs": data_kwargs,
        "resampling_fn_seg": fn, "resampling_fn_seg_kwargs": seg_kwargs,
        "resampling_fn_probabilities": fn, "resampling_fn_probabilities_kwargs": data_kwargs,
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": {}, "_kw_requires_import": []},
        "batch_dice": True}
    intensities = {}
    for c in range(n_channels):
        lo, hi = sorted(float(v) for v in rng.uniform(-500, 1500, 2))
        intensities[str(c)] = {"max": hi, "mean": (lo + hi) / 2, "median": (lo + hi) / 2, "min": lo,
                               "percentile_00_5": lo, "percentile_99_5": hi, "std": float(rng.uniform(1, 300))}
    plans = {"dataset_name": "Dataset999_Fuzz", "plans_name": "fuzzPlans",
             "original_median_spacing_after_transp": spacing_t, "original_median_shape_after_transp": shape,
             "image_reader_writer": "SimpleITKIO", "transpose_forward": transpose,
             "transpose_backward": [int(i) for i in __import__("numpy").argsort(transpose)],
             "configurations": {configuration: config}, "experiment_planner_used": "ExperimentPlanner",
             "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": intensities}
    return data, seg, {"spacing": spacing}, plans, configuration, dataset_json


def drive(first_seed: int, n_cases: int, result_file: str) -> None:
    from _fuzz_harness import drive_cases
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    def preprocess(i: int) -> dict:
        data, seg, properties, plans, configuration, dataset_json = _draw_case(first_seed + i)
        plans_manager = PlansManager(plans)
        out_data, out_seg, out_props = DefaultPreprocessor(verbose=False).run_case_npy(
            data, seg, properties, plans_manager, plans_manager.get_configuration(configuration), dataset_json)
        return {"data": out_data, "seg": out_seg, "properties": out_props}

    drive_cases(list(range(n_cases)), preprocess, result_file)


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=200)
    args = p.parse_args()
    if args.driver:
        drive(int(args.driver[0]), int(args.driver[1]), args.driver[2])
        return 0

    with work_folder("nnunet_preprocessing_fuzz_", args.keep) as base:
        ref, ours = run_both(args, __file__, [str(args.seed), str(args.cases)], base,
                             lambda side: {"OMP_NUM_THREADS": "1"})
        cases = list(range(args.cases))
        differing, refused_both = compare_outcomes(ref, ours, cases, lambda i: f"case seed {args.seed + i}")
        timed = [i for i in cases[1:] if not ref["outcomes"][i]["error"] and not ours["outcomes"][i]["error"]]
        if timed:
            ratios = sorted(ours["outcomes"][i]["seconds"] / max(ref["outcomes"][i]["seconds"], 1e-9) for i in timed)
            print(f"per case (the first left out: it pays for imports): median time ratio "
                  f"{ratios[len(ratios) // 2]:.2f}")
        print_summary("cases", args.cases, differing, refused_both, ref, ours)
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
