"""Differential trial, not a speed benchmark: do the steps after the network (export, sliding-window layout, label
conversion, postprocessing, evaluation counts) give bit for bit the reference's (2.8.1) results on random inputs?

    python benchmarks/inference_fuzz.py [--cases 300] [--seed 0] [--reference-python PATH] [--keep]

Each case is drawn from its own seeded generator, identically under both interpreters, and is one of:

* ``export``: random logits (float32 or float16, numpy or torch) of a 2-D or 3-D configuration through
  ``convert_predicted_logits_to_segmentation_with_correct_shape`` with probabilities: random original shape, crop
  box, axis order, spacings (anisotropic or not), labels, regions or an ignore label, and the scipy- or torch-based
  probability resampling;
* ``windows``: ``compute_steps_for_sliding_window`` and ``compute_gaussian`` for random image/tile sizes and steps;
* ``labels``: a ``LabelManager``'s logits -> segmentation (with ties) and ``revert_cropping_on_probabilities``;
* ``components``: ``remove_all_but_largest_component_from_segmentation`` on random blobs, labels and regions;
* ``counts``: ``region_or_label_to_mask`` and ``compute_tp_fp_fn_tn`` with and without an ignore mask.

One driver process per side (ours: this checkout; the reference from a temporary folder) computes every case; the
results are compared exactly (a case both sides refuse counts as agreement). Prints the first difference of each
disagreeing case and a summary; exit status 1 if anything differs.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, run_both, trial_arguments, work_folder  # noqa: E402

KINDS = ["export", "export", "export", "windows", "labels", "components", "counts"]


def _label_dict(rng, n_labels: int, kind: str):
    """(labels of dataset.json, regions_class_order or None) of one kind: plain labels, regions or an ignore label."""
    labels = {"background": 0, **{f"l{i}": i for i in range(1, n_labels + 1)}}
    if kind == "regions" and n_labels >= 2:
        return {"background": 0, "whole": list(range(1, n_labels + 1)), "top": n_labels}, [1, n_labels]
    if kind == "ignore":
        labels["ignore"] = n_labels + 1
    return labels, None


def _blobs(rng, shape, n_labels: int, dtype):
    import numpy as np
    seg = np.zeros(shape, dtype=dtype)
    for label in range(1, n_labels + 1):
        for _ in range(int(rng.integers(0, 4))):
            centre = [int(rng.integers(0, s)) for s in shape]
            radius = [int(rng.integers(1, max(2, s // 3))) for s in shape]
            seg[tuple(slice(max(0, c - r), c + r) for c, r in zip(centre, radius))] = label
    return seg


def _export_case(rng) -> dict:
    import numpy as np
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    two_d = rng.random() < 0.3
    if two_d:
        original = [1, int(rng.integers(8, 60)), int(rng.integers(8, 60))]
        spacing = [999.0, float(rng.uniform(0.3, 2)), float(rng.uniform(0.3, 2))]
        transpose = [0, 1, 2]
    else:
        original = [int(v) for v in rng.integers(4, 36, 3)]
        spacing = [float(v) for v in rng.uniform(0.4, 6, 3)]
        transpose = [int(v) for v in rng.permutation(3)] if rng.random() < 0.4 else [0, 1, 2]
    # the shapes and the crop box a preprocessor records are those after the axes were transposed
    original_t = [original[i] for i in transpose]
    lo = [int(rng.integers(0, max(1, s // 3))) for s in original_t]
    hi = [int(s - rng.integers(0, max(1, (s - l) // 3))) for s, l in zip(original_t, lo)]
    bbox = [[a, b] for a, b in zip(lo, hi)]
    cropped_t = [b - a for a, b in bbox]
    spacing_t = [spacing[i] for i in transpose]
    target = [float(s * f) for s, f in zip(spacing_t, rng.uniform(0.5, 2, 3))]
    if rng.random() < 0.2:
        target = list(spacing_t)
    if not two_d and rng.random() < 0.3:
        target[int(rng.integers(0, 3))] *= float(rng.uniform(3, 8))
    if two_d:
        target[0] = spacing_t[0]
    new_shape = [int(v) for v in compute_new_shape(cropped_t, spacing_t, target)]
    n_labels = int(rng.integers(1, 5))
    labels, regions_class_order = _label_dict(rng, n_labels, str(rng.choice(["labels", "regions", "ignore"])))
    dataset_json = {"labels": labels, "channel_names": {"0": "x"}, "numTraining": 1, "file_ending": ".nii.gz"}
    if regions_class_order:
        dataset_json["regions_class_order"] = regions_class_order
    if rng.random() < 0.5:
        fn, kwargs = "resample_data_or_seg_to_shape", {"is_seg": False, "order": 1, "order_z": 0,
                                                       "force_separate_z": None}
    else:
        fn, kwargs = "resample_torch_fornnunet", {"is_seg": False, "force_separate_z": None,
                                                  "memefficient_seg_resampling": False}
    configuration = "2d" if two_d else "3d_fullres"
    config = {"data_identifier": "fuzz", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
              "patch_size": [8] * (2 if two_d else 3), "median_image_size_in_voxels": new_shape,
              "spacing": target[1:] if two_d else target, "normalization_schemes": ["ZScoreNormalization"],
              "use_mask_for_norm": [False], "resampling_fn_data": fn, "resampling_fn_data_kwargs": kwargs,
              "resampling_fn_seg": fn, "resampling_fn_seg_kwargs": dict(kwargs, is_seg=True),
              "resampling_fn_probabilities": fn, "resampling_fn_probabilities_kwargs": kwargs,
              "architecture": {"network_class_name": "x.y", "arch_kwargs": {}, "_kw_requires_import": []},
              "batch_dice": True}
    plans = {"dataset_name": "Dataset999_Fuzz", "plans_name": "fuzzPlans",
             "original_median_spacing_after_transp": spacing_t, "original_median_shape_after_transp": cropped_t,
             "image_reader_writer": "SimpleITKIO", "transpose_forward": transpose,
             "transpose_backward": [int(i) for i in np.argsort(transpose)], "configurations": {configuration: config},
             "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {"0": {"max": 1., "mean": 0., "median": 0., "min": -1.,
                                                                  "percentile_00_5": -1., "percentile_99_5": 1.,
                                                                  "std": 1.}}}
    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    label_manager = plans_manager.get_label_manager(dataset_json)
    logits = rng.normal(0, 3, (label_manager.num_segmentation_heads, *new_shape)).astype(
        np.float16 if rng.random() < 0.3 else np.float32)
    if rng.random() < 0.5:
        logits = torch.from_numpy(logits)
    properties = {"spacing": spacing, "shape_before_cropping": original_t, "bbox_used_for_cropping": bbox,
                  "shape_after_cropping_and_before_resampling": cropped_t}
    seg, probabilities = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, plans_manager, configuration_manager, label_manager, properties, return_probabilities=True,
        num_threads_torch=1)
    return {"seg": np.asarray(seg), "probabilities": np.asarray(probabilities)}


def _windows_case(rng) -> dict:
    import numpy as np
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
    dims = int(rng.choice([2, 3]))
    tile = [int(v) for v in rng.integers(2, 64, dims)]
    image = [int(t + rng.integers(0, 200)) for t in tile]
    step = float(rng.choice([0.5, 0.25, 1.0, float(rng.uniform(0.1, 1))]))
    steps = compute_steps_for_sliding_window(tuple(image), tuple(tile), step)
    sigma = float(rng.choice([1 / 8, float(rng.uniform(0.05, 0.5))]))
    scale = float(rng.choice([1, 10]))
    dtype = torch.float16 if rng.random() < 0.5 else torch.float32
    gaussian = compute_gaussian(tuple(tile), sigma, scale, dtype, torch.device("cpu"))
    return {"steps": [[int(s) for s in axis] for axis in steps], "gaussian": gaussian.float().numpy(),
            "gaussian_dtype": str(gaussian.dtype)}


def _labels_case(rng) -> dict:
    import numpy as np
    import torch
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    n_labels = int(rng.integers(1, 6))
    labels, regions_class_order = _label_dict(rng, n_labels, str(rng.choice(["labels", "regions", "ignore"])))
    manager = LabelManager(labels, regions_class_order)
    shape = [int(v) for v in rng.integers(1, 12, 3)]
    logits = rng.integers(-2, 3, (manager.num_segmentation_heads, *shape)).astype(np.float32)  # many ties
    out = {"segmentation": np.asarray(manager.convert_logits_to_segmentation(logits)),
           "segmentation_torch": np.asarray(manager.convert_logits_to_segmentation(torch.from_numpy(logits)))}
    full = [s + int(rng.integers(0, 5)) for s in shape]
    lo = [int(rng.integers(0, f - s + 1)) for f, s in zip(full, shape)]
    bbox = [[a, a + s] for a, s in zip(lo, shape)]
    probabilities = rng.random((manager.num_segmentation_heads, *shape)).astype(np.float32)
    out["reverted"] = np.asarray(manager.revert_cropping_on_probabilities(probabilities, bbox, full))
    return out


def _components_case(rng) -> dict:
    import numpy as np
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation
    shape = [int(v) for v in rng.integers(2, 30, int(rng.choice([2, 3])))]
    n_labels = int(rng.integers(1, 5))
    seg = _blobs(rng, shape, n_labels, rng.choice([np.uint8, np.int16]))
    choice = rng.choice(["one", "all", "region"])
    if choice == "one":
        targets = [int(rng.integers(1, n_labels + 1))]
    elif choice == "all":
        targets = list(range(1, n_labels + 1))
    else:
        targets = [tuple(range(1, n_labels + 1))]
    return {"segmentation": remove_all_but_largest_component_from_segmentation(seg.copy(), targets)}


def _counts_case(rng) -> dict:
    import numpy as np
    from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn, region_or_label_to_mask
    shape = [int(v) for v in rng.integers(2, 24, 3)]
    n_labels = int(rng.integers(1, 5))
    ref, pred = _blobs(rng, shape, n_labels, np.uint8), _blobs(rng, shape, n_labels, np.uint8)
    out = {}
    for key in [1, n_labels, tuple(range(1, n_labels + 1))]:
        mask_ref, mask_pred = region_or_label_to_mask(ref, key), region_or_label_to_mask(pred, key)
        ignore = (ref == n_labels) if rng.random() < 0.5 else None
        out[str(key)] = {"mask": mask_ref, "counts": [int(v) for v in compute_tp_fp_fn_tn(mask_ref, mask_pred,
                                                                                           ignore)]}
    return out


CASES = {"export": _export_case, "windows": _windows_case, "labels": _labels_case, "components": _components_case,
         "counts": _counts_case}


def _kind(seed: int) -> str:
    import numpy as np
    return KINDS[int(np.random.default_rng([seed, 1]).integers(0, len(KINDS)))]


def drive(first_seed: int, n_cases: int, result_file: str) -> None:
    import numpy as np
    from _fuzz_harness import drive_cases
    drive_cases(list(range(n_cases)),
                lambda i: CASES[_kind(first_seed + i)](np.random.default_rng(first_seed + i)), result_file)


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=300)
    args = p.parse_args()
    if args.driver:
        drive(int(args.driver[0]), int(args.driver[1]), args.driver[2])
        return 0

    with work_folder("nnunet_inference_fuzz_", args.keep) as base:
        ref, ours = run_both(args, __file__, [str(args.seed), str(args.cases)], base,
                             lambda side: {"OMP_NUM_THREADS": "1"})
        differing, refused_both = compare_outcomes(
            ref, ours, list(range(args.cases)), lambda i: f"{_kind(args.seed + i)} case seed {args.seed + i}")
        print_summary("cases", args.cases, differing, refused_both, ref, ours)
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
