"""Differential trial, not a speed benchmark: do evaluation, ensembling, postprocessing and the choice of the best
configuration write the reference's (2.8.1) files and return its values on random folders?

    python benchmarks/evaluation_fuzz.py [--cases 200] [--seed 0] [--np 1] [--reference-python PATH] [--keep]

Each case is drawn from its own seeded generator and written once into a template folder, which is then copied
for each side, so that both read the same inputs and each writes its own outputs. A case is one of:

* ``evaluate``: random 2-D/3-D segmentations (.nii.gz, .png or .tif with or without spacing side-cars; 8 to 32-bit
  and float label files) of a few labels, with empty references or predictions (NaN Dice), labels absent from both,
  an ignore label, regions, files in one folder only, predictions of another shape, through
  ``compute_metrics_on_folder`` (label 0 and regions in the list included), ``compute_metrics_on_folder_simple``
  or ``compute_metrics_on_folder2``, with and without ``chill``;
* ``ensemble``: 1-5 folders of probabilities (.npz, float32 or float16, ties included) with the properties (.pkl)
  an export writes, labels or regions, written as .nii.gz, .png or .tif, through ``ensemble_folders`` with and
  without the merged probabilities;
* ``postprocessing``: predictions with several components per label, ground truth, labels, regions or an ignore
  label, through ``determine_postprocessing`` and then ``apply_postprocessing_to_folder`` on another folder;
* ``find_best``: a fake nnUNet_results tree (1-4 trained configurations or trainers, 1-3 folds, validation
  segmentations, probabilities and properties, per-fold summary.json; ties between models, labels that no case
  holds, so NaN results) through ``find_best_configuration`` with and without ensembles.

Compared exactly: every file a case leaves behind (JSON parsed and as text, NIfTI voxels, type and geometry and the
uncompressed file, PNG pixels, .npz arrays, pickles with functions named), and the values returned; paths of the
two work folders are replaced by one placeholder, and NaN equals NaN. Hidden files (our ensembling and
postprocessing markers, locks) are not compared. A case both sides refuse counts as agreement. With ``--np 1`` the
reference's one-worker spawn pools run in its own process, as ours do (the results are the same, minus seconds of
pool start-up per call). Exit status 1 if anything differs.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, run_both, trial_arguments, work_folder  # noqa: E402

KINDS = ["evaluate", "evaluate", "evaluate", "ensemble", "ensemble", "postprocessing", "postprocessing", "find_best"]
FIRST_DATASET_ID = 100  # find_best cases get one dataset each in a shared nnUNet_* tree per side
PLACEHOLDER = "<WORK>"
WORK_VARIABLE = "EVALUATION_FUZZ_WORK"  # tells each driver its own copy of the cases


# --------------------------------------------------------------------------------------------------------------
# drawing the inputs (our interpreter, once; numpy and SimpleITK only)
def _blobs(rng, shape, labels, max_per_label: int = 3, min_per_label: int = 0):
    import numpy as np
    seg = np.zeros(shape, dtype=np.uint8)
    for label in labels:
        for _ in range(int(rng.integers(min_per_label, max_per_label + 1))):
            centre = [int(rng.integers(0, s)) for s in shape]
            radius = [int(rng.integers(1, max(2, s // 3))) for s in shape]
            seg[tuple(slice(max(0, c - r), c + r) for c, r in zip(centre, radius))] = label
    return seg


def _perturb(rng, seg, labels):
    """A prediction near ``seg``: shifted, with spurious specks and, sometimes, a label dropped."""
    import numpy as np
    pred = np.roll(seg, int(rng.integers(-2, 3)), axis=int(rng.integers(0, seg.ndim)))
    for _ in range(int(rng.integers(0, 4))):
        if labels:
            corner = [int(rng.integers(0, s)) for s in seg.shape]
            pred[tuple(slice(c, c + int(rng.integers(1, 3))) for c in corner)] = int(rng.choice(labels))
    if labels and rng.random() < 0.2:
        pred[pred == int(rng.choice(labels))] = 0
    return pred


DIRECTIONS = [(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),
              (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)]
# segmentation formats: (file ending, the reader/writer that plans name)
FORMATS = {"nii": (".nii.gz", "SimpleITKIO"), "png": (".png", "NaturalImage2DIO"), "tif": (".tif", "Tiff3DIO")}
LABEL_TYPES = ["uint8", "uint8", "uint8", "uint16", "int16", "int32", "float32"]  # what label files come as


def _geometry(rng, two_d: bool):
    """(spacing z, y, x; origin; direction) of a case."""
    spacing = [999.0 if two_d else float(rng.uniform(0.5, 4))] + [float(v) for v in rng.uniform(0.3, 2, 2)]
    origin = [float(v) for v in rng.uniform(-50, 50, 3)]
    return spacing, origin, DIRECTIONS[int(rng.integers(0, len(DIRECTIONS)))]


def _write_image(seg, path: str, geometry, dtype: str = "uint8", sidecar: bool = True, flat: bool = False) -> None:
    """A segmentation file: .png as 2-D uint8; .tif of ``dtype`` with its spacing side-car CASE.json (if
    ``sidecar``), a single slice as a 2-D image if ``flat``; else 3-D of ``dtype`` with geometry, by SimpleITK."""
    import SimpleITK as sitk
    if path.endswith(".tif"):
        import tifffile
        tifffile.imwrite(path, (seg[0] if flat and seg.shape[0] == 1 else seg).astype(dtype))
        if sidecar:
            _save_json({"spacing": list(geometry[0])}, path[:-4] + ".json")
        return
    if path.endswith(".png"):
        sitk.WriteImage(sitk.GetImageFromArray(seg[0] if seg.ndim == 3 else seg), path)
        return
    spacing, origin, direction = geometry
    image = sitk.GetImageFromArray(seg.astype(dtype))
    image.SetSpacing(spacing[::-1])
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, path)


def _properties(shape, geometry) -> dict:
    """What the predictor pickles beside its probabilities (SimpleITK reader's properties plus the preprocessor's)."""
    spacing, origin, direction = geometry
    return {"sitk_stuff": {"spacing": tuple(spacing[::-1]), "origin": tuple(origin), "direction": direction},
            "spacing": list(spacing), "shape_before_cropping": tuple(shape),
            "bbox_used_for_cropping": [[0, s] for s in shape],
            "shape_after_cropping_and_before_resampling": tuple(shape)}


def _labels_of(rng, n_labels: int, kind: str):
    """(dataset.json labels, regions_class_order or None, foreground labels or regions, ignore label or None)."""
    labels = {"background": 0, **{f"l{i}": i for i in range(1, n_labels + 1)}}
    if kind == "regions" and n_labels >= 2:
        if n_labels == 2:
            return {"background": 0, "whole": [1, 2], "top": 2}, [1, 2], [(1, 2), (2,)], None
        regions = {"background": 0, "whole": list(range(1, n_labels + 1)), "inner": list(range(2, n_labels + 1)),
                   "top": n_labels}
        return regions, [1, 2, n_labels], [tuple(range(1, n_labels + 1)), tuple(range(2, n_labels + 1)),
                                           (n_labels,)], None
    if kind == "ignore":
        labels["ignore"] = n_labels + 1
        return labels, None, list(range(1, n_labels + 1)), n_labels + 1
    return labels, None, list(range(1, n_labels + 1)), None


def _plans(dataset_name: str, configurations, reader: str = "SimpleITKIO") -> dict:
    return {"dataset_name": dataset_name, "plans_name": "nnUNetPlans", "image_reader_writer": reader,
            "label_manager": "LabelManager", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
            "original_median_shape_after_transp": [8, 16, 16],
            "configurations": {c: {"data_identifier": f"nnUNetPlans_{c}", "preprocessor_name": "DefaultPreprocessor",
                                   "batch_size": 2, "patch_size": [8, 16, 16], "spacing": [1.0, 1.0, 1.0],
                                   "architecture": {"network_class_name": "dynamic_network_architectures."
                                                    "architectures.unet.PlainConvUNet", "arch_kwargs": {},
                                                    "_kw_requires_import": []}} for c in configurations}}


def _dataset_json(labels: dict, regions_class_order, file_ending: str, n: int) -> dict:
    d = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": n, "file_ending": file_ending}
    if regions_class_order:
        d["regions_class_order"] = regions_class_order
    return d


def _save_json(obj, path: str) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def _draw_evaluate(rng, folder: str) -> dict:
    import numpy as np
    reader = str(rng.choice(["nii", "nii", "nii", "nii", "png", "tif"]))
    api = str(rng.choice(["folder", "folder", "simple", "folder2"]))
    # evaluate_simple's ending is that of the folder's first file, and side-cars sort first: a known difference
    sidecars = api != "simple" and rng.random() < 0.7
    # where the reader is chosen by the .tif ending (not Tiff3DIO passed in), both implementations take a 2-D
    # reader, which reads a 3-D stack of 3 or 4 slices as colour channels; ours then reads an empty one as its one
    # grey channel, or refuses one of several components per voxel (both by design): these get 2-D images
    two_d = reader == "png" or (reader == "tif" and api != "folder") or rng.random() < 0.3
    flat = reader == "tif" and api != "folder"  # and as 2-D files: (1, y, 4) would read as 4 colour channels
    ending = FORMATS[reader][0]
    n_labels = int(rng.integers(1, 5))
    kind = str(rng.choice(["labels", "labels", "regions", "ignore"]))
    labels, order, fg, ignore = _labels_of(rng, n_labels, kind)
    present = [int(v) for v in rng.choice(range(1, n_labels + 1), int(rng.integers(0, n_labels + 1)), replace=False)]
    os.makedirs(os.path.join(folder, "gt"))
    os.makedirs(os.path.join(folder, "pred"))
    geometry = _geometry(rng, two_d)
    ref_type, pred_type = (str(rng.choice(LABEL_TYPES)) for _ in range(2))
    no_predictions = rng.random() < 0.04  # a prediction folder without a single file
    n_cases = int(rng.integers(1, 6))
    for case in range(n_cases):
        shape = ([1] if two_d else [int(rng.integers(2, 10))]) + [int(v) for v in rng.integers(4, 24, 2)]
        gt = _blobs(rng, shape, present) if rng.random() > 0.15 else _blobs(rng, shape, [])
        pred = _perturb(rng, gt, present) if rng.random() > 0.2 else _blobs(rng, shape, present)
        if rng.random() < 0.03:  # a prediction of another shape (one that broadcasts, where possible)
            pred = pred[:1] if pred.shape[0] > 1 else np.concatenate([pred, pred])
        if rng.random() < 0.1:
            pred[:] = 0
        if ignore is not None and rng.random() < 0.7:
            gt[tuple(slice(0, max(1, s // 3)) for s in shape)] = ignore
        name = f"case_{case:02d}{ending}"
        _write_image(gt, os.path.join(folder, "gt", name), geometry, ref_type, sidecars, flat)
        if (rng.random() > 0.1 or case == 0) and not no_predictions:
            _write_image(pred, os.path.join(folder, "pred", name), geometry, pred_type, sidecars, flat)
    if rng.random() < 0.1:  # a prediction without reference
        _write_image(_blobs(rng, [1, 8, 8] if two_d else [3, 8, 8], present), os.path.join(
            folder, "pred", f"extra{ending}"), geometry, pred_type, sidecars, flat)
    spec = {"kind": "evaluate", "api": api, "ending": ending, "chill": bool(rng.random() < 0.6),
            "output": str(rng.choice(["summary.json", "out/summary.json", "none"]))}
    if api == "folder":
        fg = list(fg)
        if rng.random() < 0.2:
            fg = [0] + fg
        if kind == "labels" and n_labels >= 2 and rng.random() < 0.3:
            fg.append(tuple(range(1, n_labels + 1)))
        spec.update(reader=reader, regions_or_labels=[list(r) if isinstance(r, tuple) else r for r in fg],
                    ignore_label=ignore)
    elif api == "simple":
        spec.update(labels=([0] if rng.random() < 0.2 else []) + list(range(1, n_labels + 1)), ignore_label=ignore)
    else:
        _save_json(_dataset_json(labels, order, ending, n_cases), os.path.join(folder, "dataset.json"))
        _save_json(_plans("Dataset999_Fuzz", ["3d_fullres"], FORMATS[reader][1]), os.path.join(folder, "plans.json"))
    return spec


def _random_probabilities(rng, n_channels: int, shape, regions: bool, ties: bool, dtype):
    import numpy as np
    if ties:
        values = rng.integers(0, 5, (n_channels, *shape)).astype(np.float32) / 4
        if not regions:
            values[0] = np.maximum(0, 1 - values[1:].sum(0)) if n_channels > 1 else values[0]
    elif regions:
        values = 1 / (1 + np.exp(-rng.normal(0, 2, (n_channels, *shape))))
    else:
        logits = rng.normal(0, 2, (n_channels, *shape))
        values = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    return values.astype(dtype)


def _draw_ensemble(rng, folder: str) -> dict:
    import numpy as np
    fmt = str(rng.choice(["nii"] * 6 + ["png", "tif"]))  # the format the ensemble writes
    png = fmt == "png"
    two_d = png or rng.random() < 0.3
    n_labels = int(rng.integers(1, 5))
    kind = str(rng.choice(["labels", "labels", "regions", "ignore"]))
    labels, order, fg, _ = _labels_of(rng, n_labels, kind)
    regions = order is not None
    n_channels = len(fg) if regions else n_labels + 1
    n_folders = int(rng.choice([1, 2, 2, 3, 4, 5]))
    n_cases = int(rng.integers(1, 5))
    dataset_json = _dataset_json(labels, order, FORMATS[fmt][0], n_cases)
    plans = _plans("Dataset999_Fuzz", ["3d_fullres"], FORMATS[fmt][1])
    ties = bool(rng.random() < 0.3)
    shapes = [([1] if two_d else [int(rng.integers(2, 8))]) + [int(v) for v in rng.integers(4, 16, 2)]
              for _ in range(n_cases)]
    geometry = [_geometry(rng, two_d) for _ in range(n_cases)]
    lacking = (int(rng.integers(1, n_folders)), int(rng.integers(0, n_cases))) if n_folders > 1 and \
        rng.random() < 0.08 else None
    for k in range(n_folders):
        sub = os.path.join(folder, f"in{k}")
        os.makedirs(sub)
        if k == 0 or rng.random() < 0.5:
            _save_json(dataset_json, os.path.join(sub, "dataset.json"))
            _save_json(plans, os.path.join(sub, "plans.json"))
        for case, shape in enumerate(shapes):
            if (k, case) == lacking:
                continue  # a case this folder lacks
            dtype = np.float16 if rng.random() < 0.2 else np.float32
            probabilities = _random_probabilities(rng, n_channels, shape, regions, ties, dtype)
            spacing, origin, direction = geometry[case]
            if rng.random() < 0.3:
                origin = [o + k for o in origin]  # the members disagree: the first folder's properties count
            np.savez_compressed(os.path.join(sub, f"case_{case:02d}.npz"), probabilities=probabilities)
            with open(os.path.join(sub, f"case_{case:02d}.pkl"), "wb") as f:
                if fmt == "nii":
                    properties = _properties(shape, (spacing, origin, direction))
                else:  # what those readers return
                    properties = {"spacing": (999.0, 1.0, 1.0) if png else list(spacing)}
                pickle.dump(properties, f)
    _save_json(dataset_json, os.path.join(folder, "dataset_arg.json"))
    _save_json(plans, os.path.join(folder, "plans_arg.json"))
    return {"kind": "ensemble", "n_folders": n_folders, "save_probabilities": bool(rng.random() < 0.5),
            "dataset_json": str(rng.choice(["none", "file", "dict"])),
            "plans": str(rng.choice(["none", "file", "dict"]))}


def _draw_postprocessing(rng, folder: str) -> dict:
    fmt = str(rng.choice(["nii"] * 6 + ["png", "tif"]))
    png = fmt == "png"
    two_d = png or rng.random() < 0.25
    ending = FORMATS[fmt][0]
    n_labels = int(rng.integers(1, 4))
    kind = str(rng.choice(["labels", "labels", "regions", "ignore"]))
    labels, order, fg, ignore = _labels_of(rng, n_labels, kind)
    n_cases = int(rng.integers(1, 5))
    dataset_json = _dataset_json(labels, order, ending, n_cases)
    plans = _plans("Dataset999_Fuzz", ["3d_fullres"], FORMATS[fmt][1])
    all_labels = list(range(1, n_labels + 1))
    for sub in ("gt", "pred", "test"):
        os.makedirs(os.path.join(folder, sub))
    geometry = _geometry(rng, two_d)
    for case in range(n_cases):
        shape = ([1] if two_d else [int(rng.integers(3, 10))]) + [int(v) for v in rng.integers(6, 24, 2)]
        gt = _blobs(rng, shape, all_labels, max_per_label=2, min_per_label=int(rng.random() < 0.7))
        pred = _perturb(rng, gt, all_labels)
        if rng.random() < 0.5:  # more components, where the prediction has none
            extra = _blobs(rng, shape, all_labels, max_per_label=2)
            pred[pred == 0] = extra[pred == 0]
        if ignore is not None and rng.random() < 0.6:
            gt[tuple(slice(0, max(1, s // 4)) for s in shape)] = ignore
        name = f"case_{case:02d}{ending}"
        _write_image(gt, os.path.join(folder, "gt", name), geometry, str(rng.choice(LABEL_TYPES)))
        _write_image(pred, os.path.join(folder, "pred", name), geometry)
        if case == 0 and rng.random() < 0.15:  # a reference without prediction (the search warns)
            _write_image(gt, os.path.join(folder, "gt", f"extra{ending}"), geometry)
        _write_image(_perturb(rng, _blobs(rng, shape, all_labels), all_labels), os.path.join(folder, "test", name),
                     geometry, str(rng.choice(LABEL_TYPES)))
    for sub in ("pred", "test"):
        _save_json(dataset_json, os.path.join(folder, sub, "dataset.json"))
        _save_json(plans, os.path.join(folder, sub, "plans.json"))
    _save_json(dataset_json, os.path.join(folder, "dataset_arg.json"))
    _save_json(plans, os.path.join(folder, "plans_arg.json"))
    return {"kind": "postprocessing", "dataset_json": str(rng.choice(["none", "file", "dict"])),
            "plans": str(rng.choice(["none", "file", "dict"])), "keep": bool(rng.random() < 0.7),
            "apply_args": str(rng.choice(["none", "dict"]))}


def _draw_find_best(rng, trees: str, dataset_id: int) -> dict:
    import numpy as np
    name = f"Dataset{dataset_id:03d}_Fuzz"
    n_labels = int(rng.integers(1, 4))
    kind = str(rng.choice(["labels", "labels", "regions", "ignore"]))
    labels, order, fg, ignore = _labels_of(rng, n_labels, kind)
    regions = order is not None
    absent = n_labels if (not regions and n_labels >= 2 and rng.random() < 0.3) else None  # in no reference: NaN
    folds = [[0], [0, 1], [0, 1], [0, 1, 2], [1, 3], [0, 1, 2, 3, 4]][int(rng.integers(0, 6))]
    n_cases = int(rng.integers(len(folds), len(folds) + 4))
    pool = [("nnUNetTrainer", "2d"), ("nnUNetTrainer", "3d_fullres"), ("nnUNetTrainer", "3d_lowres"),
            ("nnUNetTrainerX", "3d_fullres")]
    trained = [pool[i] for i in sorted(rng.choice(len(pool), int(rng.integers(1, 5)), replace=False))]
    configurations = sorted({c for _, c in trained} | ({"3d_lowres"} if rng.random() < 0.3 else set()))
    plans = _plans(name, configurations)
    dataset_json = _dataset_json(labels, order, ".nii.gz", n_cases)
    raw, pre, res = (os.path.join(trees, n, name) for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"))
    for d in (os.path.join(raw, "labelsTr"), os.path.join(pre, "gt_segmentations"), res):
        os.makedirs(d)
    _save_json(plans, os.path.join(pre, "nnUNetPlans.json"))
    _save_json(dataset_json, os.path.join(raw, "dataset.json"))
    geometry = _geometry(rng, False)
    present = [v for v in range(1, n_labels + 1) if v != absent]
    gts, shapes = [], []
    for case in range(n_cases):
        shape = [int(rng.integers(2, 7))] + [int(v) for v in rng.integers(6, 16, 2)]
        gt = _blobs(rng, shape, present, max_per_label=2)
        gts.append(gt.copy())
        if ignore is not None and rng.random() < 0.6:
            gt[:, : shape[1] // 4] = ignore  # the models never predict it
        shapes.append(shape)
        for d in (os.path.join(raw, "labelsTr"), os.path.join(pre, "gt_segmentations")):
            _write_image(gt, os.path.join(d, f"case_{case:02d}.nii.gz"), geometry)
    n_channels = len(fg) if regions else n_labels + 1
    earlier = []
    for trainer, configuration in trained:
        model = os.path.join(res, f"{trainer}__nnUNetPlans__{configuration}")
        os.makedirs(model)
        _save_json(plans, os.path.join(model, "plans.json"))
        _save_json(dataset_json, os.path.join(model, "dataset.json"))
        copy_of = earlier[int(rng.integers(0, len(earlier)))] if earlier and rng.random() < 0.25 else None
        noise = float(rng.uniform(0.3, 3))
        per_case = {}
        for case, (gt, shape) in enumerate(zip(gts, shapes)):
            if copy_of is not None:
                per_case[case] = copy_of[case]  # a tie with an earlier model
                continue
            if regions:
                target = np.stack([np.isin(gt, r) for r in fg]).astype(np.float64)
                probabilities = 1 / (1 + np.exp(-(4 * target - 2 + rng.normal(0, noise, target.shape))))
            else:
                target = np.stack([gt == v for v in range(n_channels)]).astype(np.float64)
                logits = 3 * target + rng.normal(0, noise, target.shape)
                if absent is not None and rng.random() < 0.7:
                    logits[absent] -= 20  # nobody predicts it either: NaN for this label
                probabilities = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
            probabilities = probabilities.astype(np.float32)
            if regions:
                seg = np.zeros(shape, np.uint8)
                for k, label in enumerate(order):
                    seg[probabilities[k] > 0.5] = label
            else:
                seg = probabilities.argmax(0).astype(np.uint8)
            per_case[case] = (probabilities, seg)
        earlier.append(per_case)
        for k, fold in enumerate(folds):
            validation = os.path.join(model, f"fold_{fold}", "validation")
            os.makedirs(validation)
            scored = []
            for case in range(n_cases):
                if case % len(folds) != k:
                    continue
                probabilities, seg = per_case[case]
                _write_image(seg, os.path.join(validation, f"case_{case:02d}.nii.gz"), geometry)
                np.savez_compressed(os.path.join(validation, f"case_{case:02d}.npz"), probabilities=probabilities)
                with open(os.path.join(validation, f"case_{case:02d}.pkl"), "wb") as f:
                    pickle.dump(_properties(shapes[case], geometry), f)
                scored.append(os.path.join(validation, f"case_{case:02d}.nii.gz"))
            if rng.random() < 0.8:  # a validation's summary.json (its numbers are not used: the folds are rescored)
                dice = float(rng.choice([float("nan"), 0.5, float(rng.random())]))
                _save_json({"metric_per_case": [{"prediction_file": p, "reference_file": p, "metrics": {}}
                                                for p in scored],
                            "mean": {}, "foreground_mean": {"Dice": dice}},
                           os.path.join(model, f"fold_{fold}", "validation", "summary.json"))
    allowed = [{"plans": "nnUNetPlans", "configuration": c, "trainer": t} for t, c in trained]
    rng.shuffle(allowed)
    if rng.random() < 0.15:  # a configuration that the plans do not have: skipped by both
        allowed.append({"plans": "nnUNetPlans", "configuration": "3d_cascade_fullres", "trainer": "nnUNetTrainer"})
    if rng.random() < 0.1 and ("nnUNetTrainer", "3d_lowres") not in trained and "3d_lowres" in configurations:
        allowed.append({"plans": "nnUNetPlans", "configuration": "3d_lowres", "trainer": "nnUNetTrainer"})  # untrained
    return {"kind": "find_best", "dataset_id": dataset_id, "dataset_name": name, "allowed": allowed,
            "allow_ensembling": bool(rng.random() < 0.7), "folds": folds,
            "id_or_name": str(rng.choice(["id", "id_text", "name"]))}


def _kind(seed: int) -> str:
    import numpy as np
    return KINDS[int(np.random.default_rng([seed, 7]).integers(0, len(KINDS)))]


def write_template(template: str, first_seed: int, n_cases: int) -> None:
    import numpy as np
    trees = os.path.join(template, "trees")
    for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.makedirs(os.path.join(trees, n))
    next_id = FIRST_DATASET_ID
    for i in range(n_cases):
        seed = first_seed + i
        rng = np.random.default_rng(seed)
        folder = os.path.join(template, f"c{i:04d}")
        os.makedirs(folder)
        kind = _kind(seed)
        if kind == "evaluate":
            spec = _draw_evaluate(rng, folder)
        elif kind == "ensemble":
            spec = _draw_ensemble(rng, folder)
        elif kind == "postprocessing":
            spec = _draw_postprocessing(rng, folder)
        else:
            spec = _draw_find_best(rng, trees, next_id)
            next_id += 1
        _save_json(spec, os.path.join(folder, "case.json"))


# --------------------------------------------------------------------------------------------------------------
# the driver (each side's interpreter)
def _inline_single_worker_pools() -> None:
    """The reference starts a spawn pool for every step even with one worker (seconds of start-up each, a dozen per
    postprocessing case); a one-worker pool computes exactly what a loop in this process computes, as ours does."""
    import multiprocessing

    class _InlinePool:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def starmap(self, fn, iterable, chunksize=None):
            return [fn(*a) for a in iterable]

        def map(self, fn, iterable, chunksize=None):
            return [fn(a) for a in iterable]

    real = multiprocessing.get_context

    class _Context:
        def __init__(self, context):
            self._context = context

        def Pool(self, processes=None, *args, **kwargs):  # noqa: N802 (multiprocessing's name)
            if processes == 1:
                return _InlinePool()
            return self._context.Pool(processes, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self._context, name)

    multiprocessing.get_context = lambda method=None: _Context(real(method))


def _plain(value, work: str):
    """JSON-like plain data: paths of this side's work folder replaced, NaN as a string (NaN equals NaN), tuples kept
    apart from lists, numpy scalars as Python numbers, functions by module and name."""
    import math
    import numpy as np
    if isinstance(value, dict):
        return {_plain(k, work): _plain(v, work) for k, v in value.items()}
    if isinstance(value, tuple):
        return ("tuple", *[_plain(v, work) for v in value])
    if isinstance(value, list):
        return [_plain(v, work) for v in value]
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else value
    if isinstance(value, str):
        return value.replace(work, PLACEHOLDER)
    if callable(value):
        return f"function {getattr(value, '__module__', '?')}.{getattr(value, '__name__', repr(value))}"
    return value


def _read_file(path: str, work: str):
    import gzip
    import hashlib
    import numpy as np
    if path.endswith(".json"):
        with open(path, "rb") as f:
            text = f.read().decode()
        return {"json": _plain(json.loads(text), work), "text": text.replace(work, PLACEHOLDER)}
    if path.endswith(".txt"):
        with open(path) as f:
            return {"text": f.read().replace(work, PLACEHOLDER)}
    if path.endswith(".nii.gz") or path.endswith(".png"):
        import SimpleITK as sitk
        image = sitk.ReadImage(path)
        with open(path, "rb") as f:
            raw = f.read()
        content = gzip.decompress(raw) if path.endswith(".gz") else raw
        return {"voxels": sitk.GetArrayFromImage(image), "pixel_type": image.GetPixelIDTypeAsString(),
                "spacing": image.GetSpacing(), "origin": image.GetOrigin(), "direction": image.GetDirection(),
                "content_sha1": hashlib.sha1(content).hexdigest()}
    if path.endswith(".tif"):
        import tifffile
        with open(path, "rb") as f:
            raw = f.read()
        return {"voxels": tifffile.imread(path), "sha1": hashlib.sha1(raw).hexdigest()}
    if path.endswith(".npz"):
        with np.load(path) as z:
            return {"arrays": {k: z[k] for k in z.files}}
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            return {"pickle": _plain(pickle.load(f), work)}
    with open(path, "rb") as f:
        return {"sha1": hashlib.sha1(f.read()).hexdigest()}


def _snapshot(roots, work: str) -> dict:
    """Every non-hidden file under ``roots``, read (see ``_read_file``), by path relative to ``work``."""
    files = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                files[os.path.relpath(path, work)] = _read_file(path, work)
    return files


def _json_arg(choice: str, folder: str, name: str):
    if choice == "none":
        return None
    path = os.path.join(folder, name)
    if choice == "file":
        return path
    with open(path) as f:
        return json.load(f)


def _run_evaluate(spec: dict, folder: str, np_: int):
    from nnunetv2.evaluation import evaluate_predictions as ev
    gt, pred = os.path.join(folder, "gt"), os.path.join(folder, "pred")
    output = None if spec["output"] == "none" else os.path.join(folder, spec["output"])
    if output is not None:
        os.makedirs(os.path.dirname(output), exist_ok=True)  # ours would create it, the reference fails at the end
    if spec["api"] == "folder":
        if spec["reader"] == "png":
            from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO as Reader
        elif spec["reader"] == "tif":
            from nnunetv2.imageio.tif_reader_writer import Tiff3DIO as Reader
        else:
            from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO as Reader
        regions_or_labels = [tuple(r) if isinstance(r, list) else r for r in spec["regions_or_labels"]]
        return ev.compute_metrics_on_folder(gt, pred, output, Reader(), spec["ending"], regions_or_labels,
                                            spec["ignore_label"], np_, chill=spec["chill"])
    if spec["api"] == "simple":
        return ev.compute_metrics_on_folder_simple(gt, pred, spec["labels"], output, np_, spec["ignore_label"],
                                                   chill=spec["chill"])
    ev.compute_metrics_on_folder2(gt, pred, os.path.join(folder, "dataset.json"), os.path.join(folder, "plans.json"),
                                  output, np_, chill=spec["chill"])
    return None  # ours also returns the summary (the reference returns nothing): the files are compared


def _run_ensemble(spec: dict, folder: str, np_: int):
    from nnunetv2.ensembling.ensemble import ensemble_folders
    return ensemble_folders([os.path.join(folder, f"in{k}") for k in range(spec["n_folders"])],
                            os.path.join(folder, "out"), spec["save_probabilities"], np_,
                            _json_arg(spec["dataset_json"], folder, "dataset_arg.json"),
                            _json_arg(spec["plans"], folder, "plans_arg.json"))


def _run_postprocessing(spec: dict, folder: str, np_: int):
    from nnunetv2.postprocessing.remove_connected_components import (apply_postprocessing_to_folder,
                                                                      determine_postprocessing)
    fns, kwargs = determine_postprocessing(os.path.join(folder, "pred"), os.path.join(folder, "gt"),
                                           _json_arg(spec["plans"], folder, "plans_arg.json"),
                                           _json_arg(spec["dataset_json"], folder, "dataset_arg.json"), np_,
                                           keep_postprocessed_files=spec["keep"])
    apply_postprocessing_to_folder(os.path.join(folder, "test"), os.path.join(folder, "test_pp"), fns, kwargs,
                                   _json_arg(spec["apply_args"], folder, "plans_arg.json"),
                                   _json_arg(spec["apply_args"], folder, "dataset_arg.json"), np_)
    return fns, kwargs


def _run_find_best(spec: dict, np_: int):
    from nnunetv2.evaluation.find_best_configuration import find_best_configuration
    dataset = {"id": spec["dataset_id"], "id_text": str(spec["dataset_id"]), "name": spec["dataset_name"]}
    return find_best_configuration(dataset[spec["id_or_name"]],
                                   [dict(m) for m in spec["allowed"]], spec["allow_ensembling"], np_,
                                   overwrite=True, folds=tuple(spec["folds"]))


def drive(n_cases: int, np_: int, result_file: str) -> None:
    from _fuzz_harness import drive_cases
    if np_ == 1:
        _inline_single_worker_pools()
    work = os.path.realpath(os.environ[WORK_VARIABLE])
    trees = os.path.join(work, "trees")

    def compute(i: int) -> dict:
        folder = os.path.join(work, f"c{i:04d}")
        with open(os.path.join(folder, "case.json")) as f:
            spec = json.load(f)
        if spec["kind"] == "evaluate":
            returned, roots = _run_evaluate(spec, folder, np_), [folder]
        elif spec["kind"] == "ensemble":
            returned, roots = _run_ensemble(spec, folder, np_), [folder]
        elif spec["kind"] == "postprocessing":
            returned, roots = _run_postprocessing(spec, folder, np_), [folder]
        else:
            returned = _run_find_best(spec, np_)
            roots = [os.path.join(trees, n, spec["dataset_name"])
                     for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")]
        return {"returned": _plain(returned, work), "files": _snapshot(roots, work)}

    drive_cases(list(range(n_cases)), compute, result_file)


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--np", type=int, default=1, help="num_processes of every call (1: no worker processes)")
    args = p.parse_args()
    if args.driver:
        drive(int(args.driver[0]), int(args.driver[1]), args.driver[2])
        return 0

    with work_folder("nnunet_evaluation_fuzz_", args.keep) as base:
        template = os.path.join(base, "template")
        write_template(template, args.seed, args.cases)
        for side in ("ref", "ours"):
            shutil.copytree(template, os.path.join(base, side))

        def env(side: str) -> dict:
            trees = os.path.join(base, side, "trees")
            return {"OMP_NUM_THREADS": "1", "nnUNet_def_n_proc": "2", WORK_VARIABLE: os.path.join(base, side),
                    **{n: os.path.join(trees, n) for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}

        ref, ours = run_both(args, __file__, [str(args.cases), str(args.np)], base, env)
        describe = lambda i: f"{_kind(args.seed + i)} case seed {args.seed + i} (c{i:04d})"  # noqa: E731
        by_design = []
        for i in range(args.cases):
            why = _by_design(ref["outcomes"][i], ours["outcomes"][i])
            if why:
                by_design.append(i)
                print(f"by design {describe(i)}: {why}")
        compared = [i for i in range(args.cases) if i not in by_design]
        differing, refused_both = compare_outcomes(ref, ours, compared, describe)
        differing += _load_reference_postprocessing_files(base, ref, compared, describe)
        print_summary("cases compared", len(compared), differing, refused_both, ref, ours)
        if by_design:
            print(f"{len(by_design)} more differ by design (documentation/differences_from_reference.md)")
        return 1 if differing else 0


def _load_reference_postprocessing_files(base: str, ref: dict, keys, describe) -> int:
    """Users keep their postprocessing.pkl files when they swap implementations: does ours load each one the
    reference wrote (nnUNetv2_apply_postprocessing -pp_pkl_file) as the same functions and arguments? The number
    that do not."""
    from nnunetv2.postprocessing._safe_pickle import load_postprocessing_pickle
    work, failed = os.path.realpath(os.path.join(base, "ref")), 0
    for i in keys:
        relative = os.path.join(f"c{i:04d}", "pred", "postprocessing.pkl")
        written = (ref["outcomes"][i].get("files") or {}).get(relative)
        if written is None:
            continue
        try:
            loaded = _plain(tuple(load_postprocessing_pickle(os.path.join(work, relative))), work)
        except Exception as e:  # noqa: BLE001 (any failure to load it is the finding)
            loaded = f"{type(e).__name__}: {e}"
        if loaded != written["pickle"]:
            failed += 1
            print(f"DIFFERENT {describe(i)}: the reference's postprocessing.pkl loads in ours as {loaded!r}, "
                  f"written {written['pickle']!r}")
    return failed


def _by_design(ref: dict, ours: dict) -> str:
    """Why the two outcomes differ on purpose (documentation/differences_from_reference.md), or ''."""
    if (ref["error"] or "").startswith("IndexError") and not ours["error"]:
        # find_best_configuration: the reference stops on a NaN Dice listed first (its max() keeps NaN, and no
        # result equals it); ours never selects NaN and picks from the others
        results = list(ours["returned"].get("all_results", {}).values()) if ours["returned"] else []
        if results and results[0] == "NaN" and \
                ours["returned"]["best_model_or_ensemble"]["result_on_crossval_pre_pp"] != "NaN":
            return "the reference fails on its first result being NaN (IndexError), ours selects among the others"
    if not ref["error"] and (ours["error"] or "").startswith("UserError") and " has shape " in ours["error"] and \
            "geometry of the reference" in ours["error"]:
        # a prediction of another shape than its reference, which the reference scores on the broadcast masks
        return "a prediction of another shape than its reference: ours refuses, the reference scores the " \
            "broadcast masks"
    return ""


if __name__ == "__main__":
    sys.exit(main())
