"""Differential trial, not a speed benchmark: do the utilities that third-party code calls on plans and dataset.json
files answer as the reference's (2.8.1) do, for random inputs?

    python benchmarks/plans_fuzz.py [--cases 200] [--seed 0] [--reference-python PATH] [--keep]

Each case is one of:
  plans      a random plans dict (2-D/3-D configurations, cascades, ``inherits_from`` chains of any depth, missing
             parents, cycles, old-format configurations without ``architecture``, resampling functions with kwargs,
             a ``label_manager`` key or none) and a random dataset.json (labels, regions with
             ``regions_class_order``, an ignore label, bad backgrounds): every public property of ``PlansManager``,
             ``get_configuration`` of every configuration (and one that is missing) with every property of its
             ``ConfigurationManager`` (resampling functions compared by name and keyword arguments), and the
             ``LabelManager`` from ``get_label_manager``: its properties, ``filter_background``,
             ``apply_inference_nonlin`` / ``convert_logits_to_segmentation`` /
             ``convert_probabilities_to_segmentation`` on seeded random logits (numpy and torch);
             ``determine_num_input_channels`` for every configuration (by manager and by name; ``channel_names``
             and the older ``modality`` key).
  names      a random tree of ``Dataset###_Name`` folders (and files) under nnUNet_raw / _preprocessed / _results:
             ``find_candidate_datasets``, ``convert_id_to_dataset_name``, ``convert_dataset_name_to_id``,
             ``maybe_convert_to_dataset_name`` for ids, digit strings and names.
  raw        a random raw dataset folder (channel files, other endings, names without channel suffix, sub-folders,
             a ``dataset`` key with relative, absolute and ``$VAR`` paths): ``get_identifiers_from_splitted_dataset_folder``,
             ``create_lists_from_splitted_dataset_folder``, ``get_filenames_of_train_images_and_targets``.
  gen_json   ``generate_dataset_json`` with random arguments: the written file, parsed and as text.
  json       ``recursive_fix_for_json_export`` on a random dict of numpy scalars/arrays, tuples, torch devices and
             numpy keys: the fixed dict with the type of every value.

Every item is compared exactly; an item both sides refuse counts as agreement (ours raises a one-line UserError where
the reference asserts). Prints the first difference of each disagreeing case and a summary; exit status 1 if
anything differs.
"""
from __future__ import annotations

import json
import os
import random
import sys
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, trial_arguments, work_folder  # noqa: E402

KINDS = ["plans"] * 4 + ["names"] * 2 + ["raw"] * 2 + ["gen_json"] * 2 + ["json"]


# ---------------------------------------------------------------------------------------------------------------------
# random inputs (drawn in the parent, written as JSON so both drivers see the same)

def _labels(rng: random.Random) -> dict:
    n = rng.choice([0, 1, 2, 3, 5, 12])
    labels: Dict[str, Any] = {"background": rng.choice([0] * 12 + [1, [0], "0", 0.0])}
    values = list(range(1, n + 1))
    if rng.random() < 0.2:
        rng.shuffle(values)
    for v in values:
        labels[f"l{v}"] = v
    if n >= 2 and rng.random() < 0.3:  # regions
        for i in range(rng.randint(1, 3)):
            labels[f"r{i}"] = sorted(rng.sample(range(1, n + 1), rng.randint(1, n)))
        if rng.random() < 0.3:
            labels["single"] = [rng.randint(1, n)]
    if rng.random() < 0.2:
        labels["ignore"] = rng.choice([n + 1, n + 1, n + 2, n])
    if rng.random() < 0.05:
        labels[f"dup"] = rng.randint(0, n + 1)
    return labels


def _dataset_json(rng: random.Random) -> dict:
    labels = _labels(rng)
    dj = {"channel_names": {str(i): rng.choice(["CT", "MRI", "zscore"]) for i in range(rng.randint(1, 3))},
          "labels": labels, "numTraining": rng.randint(1, 20), "file_ending": rng.choice([".nii.gz", ".png"])}
    n_regions = sum(1 for k, v in labels.items() if isinstance(v, list) and k != "background")
    has_regions = any(isinstance(v, list) and len(v) > 1 for v in labels.values())
    if has_regions or rng.random() < 0.1:
        fg = [v for k, v in labels.items() if k not in ("background", "ignore")]
        k = len(fg) if rng.random() < 0.85 else max(0, len(fg) + rng.choice([-1, 1]))
        dj["regions_class_order"] = list(range(1, k + 1)) if rng.random() < 0.8 else rng.sample(range(1, 20), min(k, 19))
        del n_regions
    return dj


def _configuration(rng: random.Random, dim: int, old_format: bool) -> dict:
    n_stages = rng.randint(2, 6)
    strides = [[1] * dim] + [[rng.choice([1, 2, 2]) for _ in range(dim)] for _ in range(n_stages - 1)]
    kernels = [[rng.choice([1, 3, 3]) for _ in range(dim)] for _ in range(n_stages)]
    resample = ["resample_data_or_seg_to_shape", "resample_torch_fornnunet", "resample_torch_simple",
                "resample_data_or_seg_to_spacing", "no_such_resampling_fn"]
    cfg: Dict[str, Any] = {
        "data_identifier": f"nnUNetPlans_{dim}d", "preprocessor_name": rng.choice(["DefaultPreprocessor"] * 30 + ["Nope"]),
        "batch_size": rng.randint(1, 64), "patch_size": [rng.choice([16, 32, 48, 64, 160]) for _ in range(dim)],
        "median_image_size_in_voxels": [rng.uniform(10, 600) for _ in range(dim)],
        "spacing": [rng.uniform(0.1, 5) for _ in range(dim)],
        "normalization_schemes": [rng.choice(["ZScoreNormalization", "CTNormalization", "NoNormalization"])
                                  for _ in range(rng.randint(1, 3))],
        "use_mask_for_norm": [rng.random() < 0.5 for _ in range(rng.randint(1, 3))],
        "batch_dice": rng.random() < 0.5,
    }
    for key in ("data", "seg", "probabilities"):
        if rng.random() < 0.95:
            cfg[f"resampling_fn_{key}"] = rng.choice(resample[:-1] if rng.random() < 0.95 else resample)
            kwargs = {}
            if rng.random() < 0.7:
                kwargs = {"is_seg": key == "seg", "order": rng.choice([0, 1, 3]), "order_z": rng.choice([0, 1]),
                          "force_separate_z": rng.choice([None, True, False])}
            if rng.random() < 0.95:
                cfg[f"resampling_fn_{key}_kwargs"] = kwargs
    if old_format:
        cfg.update({"UNet_class_name": rng.choice(["PlainConvUNet", "ResidualEncoderUNet", "OtherUNet"]),
                    "UNet_base_num_features": rng.choice([16, 32]), "unet_max_num_features": rng.choice([320, 512]),
                    "n_conv_per_stage_encoder": [2] * n_stages, "n_conv_per_stage_decoder": [2] * (n_stages - 1),
                    "num_pool_per_axis": [n_stages - 1] * dim, "pool_op_kernel_sizes": strides,
                    "conv_kernel_sizes": kernels})
    else:
        cfg["architecture"] = {
            "network_class_name": rng.choice(["dynamic_network_architectures.architectures.unet.PlainConvUNet",
                                              "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"]),
            "arch_kwargs": {"n_stages": n_stages, "features_per_stage": [min(32 * 2 ** i, 320) for i in range(n_stages)],
                            "conv_op": f"torch.nn.modules.conv.Conv{dim}d", "kernel_sizes": kernels,
                            "strides": strides, "n_conv_per_stage": [2] * n_stages,
                            "n_conv_per_stage_decoder": [2] * (n_stages - 1), "conv_bias": True,
                            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
                            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    return cfg


def _plans(rng: random.Random) -> dict:
    configurations: Dict[str, dict] = {}
    if rng.random() < 0.9:
        configurations["2d"] = _configuration(rng, 2, rng.random() < 0.1)
    if rng.random() < 0.9:
        configurations["3d_fullres"] = _configuration(rng, 3, rng.random() < 0.1)
    if rng.random() < 0.4:
        configurations["3d_lowres"] = _configuration(rng, 3, rng.random() < 0.1)
        configurations["3d_lowres"]["next_stage"] = rng.choice(["3d_cascade_fullres", ["3d_cascade_fullres"],
                                                                ["3d_cascade_fullres", "x"]])
        configurations["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    for i in range(rng.choice([0, 0, 1, 2, 4])):  # derived configurations, chains, missing parents and cycles
        parent = rng.choice(list(configurations) + ["missing"] if configurations else ["missing"])
        if rng.random() < 0.1:
            parent = f"extra{rng.randint(0, 4)}"
        child: Dict[str, Any] = {"inherits_from": parent}
        for key, value in (("batch_size", rng.randint(1, 8)), ("patch_size", [32, 32, 32]),
                           ("spacing", [1.0, 1.0, 1.0]), ("batch_dice", True), ("next_stage", "3d_fullres")):
            if rng.random() < 0.3:
                child[key] = value
        if rng.random() < 0.1:
            child = _configuration(rng, 3, False)
            child["inherits_from"] = parent
        configurations[f"extra{i}"] = child
    plans: Dict[str, Any] = {
        "dataset_name": f"Dataset{rng.randint(0, 999):03d}_X", "plans_name": rng.choice(["nnUNetPlans", "p"]),
        "original_median_spacing_after_transp": [rng.uniform(0.5, 3) for _ in range(3)],
        "original_median_shape_after_transp": [rng.randint(10, 500) for _ in range(3)],
        "image_reader_writer": rng.choice(["SimpleITKIO", "NibabelIO", "NibabelIOWithReorient", "Tiff3DIO",
                                           "NaturalImage2DIO", "SimpleITKIOWithReorient", "NoSuchIO"]),
        "transpose_forward": rng.choice([[0, 1, 2], [2, 0, 1], [1, 2, 0]]),
        "transpose_backward": [0, 1, 2], "configurations": configurations,
        "experiment_planner_used": rng.choice(["ExperimentPlanner", "nnUNetPlannerResEncM"] * 6 + ["NoPlanner"]),
        "foreground_intensity_properties_per_channel": {"0": {"mean": 1.0}}}
    if rng.random() < 0.1:
        plans["foreground_intensity_properties_by_modality"] = plans.pop("foreground_intensity_properties_per_channel")
    if rng.random() < 0.2:
        plans["label_manager"] = rng.choice(["LabelManager", "NoSuchLabelManager"])
    if rng.random() < 0.05:
        del plans[rng.choice(["dataset_name", "plans_name", "transpose_forward", "image_reader_writer"])]
    return plans


def _names_case(rng: random.Random) -> dict:
    folders = []
    ids = [rng.randint(0, 1200) for _ in range(rng.randint(1, 5))] + [rng.choice([0, 1, 5, 99, 100, 999, 1000])]
    for _ in range(rng.randint(0, 8)):
        i = rng.choice(ids)
        name = rng.choice([f"Dataset{i:03d}_N{rng.randint(0, 2)}", f"Dataset{i:03d}", f"Dataset{i:04d}_Y",
                           f"Task{i:03d}_T", f"dataset{i:03d}_low"])
        folders.append({"root": rng.choice(["raw", "preprocessed", "results"]), "name": name,
                        "file": rng.random() < 0.1})
    queries: List[Any] = []
    for _ in range(rng.randint(1, 5)):
        i = rng.choice(ids)
        queries.append(rng.choice([i, str(i), f"{i:03d}", f"Dataset{i:03d}_Q", f"Dataset{i}", "Dataset_x", "abc",
                                   f"Task{i:03d}_T", f" {i}", -i]))
    return {"folders": folders, "queries": queries, "unset": rng.choice([[], [], ["results"], ["raw", "results"]])}


def _raw_case(rng: random.Random) -> dict:
    ending = rng.choice([".nii.gz", ".nii.gz", ".png", ".mha", ".tif"])
    files = []
    n_channels = rng.randint(1, 3)
    for c in range(rng.randint(0, 6)):
        case = rng.choice([f"case{c:03d}", f"c_{c}", f"Pat{c}_0000", f"x.{c}", f"{c}"])
        for ch in range(n_channels):
            if rng.random() < 0.92:
                files.append(f"imagesTr/{case}_{ch:04d}{ending}")
        if rng.random() < 0.9:
            files.append(f"labelsTr/{case}{ending}")
    for _ in range(rng.randint(0, 3)):  # things that are no channel files
        files.append(rng.choice([f"imagesTr/odd{ending}", f"imagesTr/y_{rng.randint(0, 9):03d}{ending}",
                                 f"imagesTr/z_0000{ending}.bak", "imagesTr/readme.txt", f"imagesTr/._a_0000{ending}",
                                 f"imagesTr/sub_0000{ending}/", f"imagesTr/q_00000{ending}", f"imagesTr/{ending}"]))
    dj: Dict[str, Any] = {"file_ending": ending}
    if rng.random() < 0.3:
        dataset = {}
        for c in range(rng.randint(0, 3)):
            dataset[f"k{c}"] = {"images": [rng.choice([f"imagesTr/case{c:03d}_0000{ending}", f"./a/../b{c}{ending}",
                                                       f"/abs/p{c}{ending}", f"$FUZZ_VAR/i{c}{ending}",
                                                       f"${{FUZZ_VAR}}/j{c}{ending}"])
                                           for _ in range(rng.randint(1, 2))],
                                "label": rng.choice([f"labelsTr/case{c:03d}{ending}", f"$FUZZ_VAR/l{c}{ending}",
                                                     f"/abs/l{c}{ending}", f"$UNSET_FUZZ/l{c}"])}
        dj["dataset"] = dataset
    return {"files": files, "dataset_json": dj, "ending": ending, "identifiers": rng.random() < 0.3}


def _gen_json_case(rng: random.Random) -> dict:
    labels = _labels(rng)
    if rng.random() < 0.2:
        labels = {k: (v if not isinstance(v, list) else tuple(v)) for k, v in labels.items()}
    kwargs: Dict[str, Any] = {
        "channel_names": rng.choice([{0: "CT"}, {"0": "T1", "1": "T2"}, {0: "R", 1: "G", 2: "B"}, {}]),
        "labels": labels, "num_training_cases": rng.randint(0, 500),
        "file_ending": rng.choice([".nii.gz", ".png", ".tif", "nii"])}
    optional = {"citation": rng.choice(["a paper", ["a", "b"], None]),
                "regions_class_order": rng.choice([[1, 2, 3], (1, 2), None, []]),
                "dataset_name": rng.choice(["Dataset001_X", "any", None]), "reference": "ref", "release": "1.0",
                "description": "d", "overwrite_image_reader_writer": rng.choice(["SimpleITKIO", "NibabelIO", None]),
                "license": rng.choice(["CC-BY", "hidden"]), "converted_by": "me",
                "numTraining": 3, "extra_key": {"x": [1, 2]}, "file_ending_2": ".x"}
    for k, v in optional.items():
        if rng.random() < 0.35:
            kwargs[k] = v
    tuple_labels = any(isinstance(v, tuple) for v in labels.values())
    for k in [k for k, v in labels.items() if isinstance(v, tuple)]:
        labels[k] = {"__tuple__": list(labels[k])}
    return {"kwargs": kwargs, "tuple_labels": tuple_labels,
            "tuple_regions_order": isinstance(kwargs.get("regions_class_order"), tuple)}


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "none", "bool", "np_int", "np_float", "np_bool", "array", "tuple", "list",
             "device"] + (["dict"] if depth < 2 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-5, 5)
    if kind == "float":
        return rng.uniform(-2, 2)
    if kind == "str":
        return rng.choice(["a", "", "1"])
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "np_int":
        return {"t": rng.choice(["int8", "uint16", "int32", "int64", "uint64"]), "v": rng.randint(0, 100)}
    if kind == "np_float":
        return {"t": rng.choice(["float16", "float32", "float64"]), "v": rng.uniform(-3, 3)}
    if kind == "np_bool":
        return {"t": "bool_", "v": rng.random() < 0.5}
    if kind == "array":
        shape = [rng.randint(0, 3) for _ in range(rng.randint(0, 2))]
        return {"t": "array", "dtype": rng.choice(["int64", "float32", "bool", "uint8"]), "shape": shape,
                "seed": rng.randint(0, 10 ** 6)}
    if kind == "device":
        return {"t": "device", "v": rng.choice(["cpu", "cuda:0", "cuda"])}
    if kind in ("tuple", "list"):
        return {"t": kind, "v": [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]}
    items = []
    for i in range(rng.randint(0, 4)):
        key = rng.choice([f"k{i}", {"t": "int64", "v": i}, i, {"t": "uint8", "v": i + 10}, f"s{i}"])
        items.append([key, _json_value(rng, depth + 1)])
    return {"t": "dict", "items": items}


def _case(rng: random.Random, kind: str) -> dict:
    if kind == "plans":
        return {"kind": kind, "plans": _plans(rng), "dataset_json": _dataset_json(rng), "seed": rng.randint(0, 10 ** 6)}
    if kind == "names":
        return {"kind": kind, **_names_case(rng)}
    if kind == "raw":
        return {"kind": kind, **_raw_case(rng)}
    if kind == "gen_json":
        return {"kind": kind, **_gen_json_case(rng)}
    return {"kind": kind, "value": {"t": "dict", "items": [[f"k{i}", _json_value(rng)] for i in range(rng.randint(1, 6))]}}


# ---------------------------------------------------------------------------------------------------------------------
# driver (runs under either implementation's python)

REFUSED = "refused"


def _attempt(fn):
    """The value of ``fn()`` made comparable, or REFUSED: each item is refused or answered on its own."""
    try:
        return _comparable(fn())
    except Exception:
        return REFUSED


def _comparable(v):
    import functools
    import inspect
    import numpy as np
    import torch
    if isinstance(v, functools.partial):
        return {"partial": _comparable(v.func), "args": _comparable(list(v.args)), "kwargs": _comparable(v.keywords)}
    if inspect.isclass(v) or inspect.isfunction(v) or inspect.isbuiltin(v):
        return f"<{getattr(v, '__name__', repr(v))}>"
    if isinstance(v, torch.Tensor):
        return {"tensor": v.detach().cpu().numpy()}
    if isinstance(v, dict):
        # np.str_ keys (from np.unique) and str keys are the same key to any caller
        return {(str(k) if isinstance(k, str) else repr(k)): _comparable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_comparable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v
    if callable(v):
        return f"<callable {getattr(v, '__name__', type(v).__name__)}>"
    return v


def _typed(v):
    """A value with the name of its type, recursively, so that json-export results are compared by type too."""
    if isinstance(v, dict):
        return ["dict", [[_typed(k), _typed(x)] for k, x in v.items()]]
    if isinstance(v, (list, tuple)):
        return [type(v).__name__, [_typed(x) for x in v]]
    return [type(v).__name__, repr(v)]


CONFIGURATION_PROPERTIES = [
    "data_identifier", "preprocessor_name", "preprocessor_class", "batch_size", "patch_size",
    "median_image_size_in_voxels", "spacing", "normalization_schemes", "use_mask_for_norm", "network_arch_class_name",
    "network_arch_init_kwargs", "network_arch_init_kwargs_req_import", "pool_op_kernel_sizes", "resampling_fn_data",
    "resampling_fn_probabilities", "resampling_fn_seg", "batch_dice", "next_stage_names", "previous_stage_name"]
PLANS_PROPERTIES = [
    "dataset_name", "plans_name", "original_median_spacing_after_transp", "original_median_shape_after_transp",
    "image_reader_writer_class", "transpose_forward", "transpose_backward", "available_configurations",
    "experiment_planner_class", "experiment_planner_name", "label_manager_class",
    "foreground_intensity_properties_per_channel"]
LABEL_PROPERTIES = ["has_regions", "has_ignore_label", "all_regions", "all_labels", "ignore_label",
                    "foreground_regions", "foreground_labels", "num_segmentation_heads"]


def _drive_plans(case: dict) -> dict:
    import copy
    import numpy as np
    import torch
    from nnunetv2.utilities.label_handling.label_handling import (LabelManager, determine_num_input_channels,
                                                                 get_labelmanager_class_from_plans)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans = case["plans"]
    out: Dict[str, Any] = {}
    pm = PlansManager(copy.deepcopy(plans))
    out["plans"] = {p: _attempt(lambda: getattr(pm, p)) for p in PLANS_PROPERTIES}
    configs = {}
    dj_modality = {("modality" if k == "channel_names" else k): v for k, v in case["dataset_json"].items()}
    for name in list(plans["configurations"]) + ["not_a_configuration"]:
        def one(name=name):
            cm = pm.get_configuration(name)
            result = {p: _attempt(lambda: getattr(cm, p)) for p in CONFIGURATION_PROPERTIES}
            # by manager and by name, with channel_names and with the older 'modality' key
            result["num_input_channels"] = _attempt(
                lambda: determine_num_input_channels(pm, cm, copy.deepcopy(case["dataset_json"])))
            result["num_input_channels_by_name"] = _attempt(
                lambda: determine_num_input_channels(pm, name, copy.deepcopy(case["dataset_json"])))
            result["num_input_channels_modality"] = _attempt(
                lambda: determine_num_input_channels(pm, cm, copy.deepcopy(dj_modality)))
            return result
        configs[name] = _attempt(one)
    out["configurations"] = configs
    out["plans_unchanged"] = pm.plans == plans
    out["labelmanager_class"] = _attempt(lambda: get_labelmanager_class_from_plans(copy.deepcopy(plans)))
    dj = case["dataset_json"]
    try:
        lm = pm.get_label_manager(copy.deepcopy(dj))
    except Exception:
        out["label_manager"] = REFUSED
        return out
    lab = {p: _attempt(lambda: getattr(lm, p)) for p in LABEL_PROPERTIES}
    lab["filter_background_labels"] = _attempt(lambda: LabelManager.filter_background(lm.all_labels))
    if lm.all_regions is not None:
        lab["filter_background_regions"] = _attempt(lambda: LabelManager.filter_background(lm.all_regions))
    rng = np.random.default_rng(case["seed"])
    heads = _attempt(lambda: lm.num_segmentation_heads)
    if isinstance(heads, int) and heads > 0:
        shape = (heads,) + tuple(int(s) for s in rng.integers(1, 5, size=int(rng.integers(2, 4))))
        logits = (rng.standard_normal(shape) * 3).astype(np.float32)
        if rng.random() < 0.3:
            logits[:, ..., 0] = 0  # ties
        lab["nonlin_torch"] = _attempt(lambda: lm.apply_inference_nonlin(torch.from_numpy(logits.copy())))
        lab["nonlin_numpy"] = _attempt(lambda: lm.apply_inference_nonlin(logits.copy()))
        lab["seg_from_logits_numpy"] = _attempt(lambda: lm.convert_logits_to_segmentation(logits.copy()))
        lab["seg_from_logits_torch"] = _attempt(lambda: lm.convert_logits_to_segmentation(torch.from_numpy(logits.copy())))
        probs = torch.softmax(torch.from_numpy(logits), 0).numpy()
        lab["seg_from_probabilities"] = _attempt(lambda: lm.convert_probabilities_to_segmentation(probs.copy()))
    out["label_manager"] = lab
    return out


def _drive_names(case: dict, roots: Dict[str, str]) -> dict:
    import shutil
    for root in roots.values():
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
    for folder in case["folders"]:
        path = os.path.join(roots[folder["root"]], folder["name"])
        if folder["file"]:
            open(path, "w").close()
        else:
            os.makedirs(path, exist_ok=True)
    for unset in case["unset"]:  # a root that does not exist on disk
        shutil.rmtree(roots[unset])
    from nnunetv2.utilities import dataset_name_id_conversion as c
    out = {}
    for i, q in enumerate(case["queries"]):
        item = {"maybe": _attempt(lambda: c.maybe_convert_to_dataset_name(q))}
        if isinstance(q, int):
            # an empty result's dtype (float for np.unique([])) is of no use to anyone: compared as a list of names
            item["candidates"] = _attempt(lambda: [str(n) for n in c.find_candidate_datasets(q)])
            item["id_to_name"] = _attempt(lambda: c.convert_id_to_dataset_name(q))
        if isinstance(q, str):
            item["name_to_id"] = _attempt(lambda: c.convert_dataset_name_to_id(q))
        out[f"q{i}"] = item
    return out


def _drive_raw(case: dict, folder: str) -> dict:
    import copy
    import numpy as np
    from nnunetv2.utilities import utils
    for f in case["files"]:
        path = os.path.join(folder, f)
        if f.endswith("/"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "w").close()
    os.makedirs(os.path.join(folder, "imagesTr"), exist_ok=True)
    os.environ["FUZZ_VAR"] = os.path.join(folder, "var")

    def relative(v):
        if isinstance(v, str):
            return v.replace(folder, "<F>")
        if isinstance(v, dict):
            return {k: relative(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [relative(x) for x in v]
        if isinstance(v, np.ndarray):
            return [relative(x) for x in v.tolist()]
        return v

    images = os.path.join(folder, "imagesTr")
    ending = case["ending"]
    out = {"identifiers": _attempt(lambda: relative(utils.get_identifiers_from_splitted_dataset_folder(images, ending)))}
    ids = None
    if case["identifiers"]:
        ids = sorted({f.split("/")[1][:-len(ending) - 5] for f in case["files"] if f.startswith("imagesTr/")})[:2]
        ids.append("not_there")
    out["lists"] = _attempt(lambda: relative(utils.create_lists_from_splitted_dataset_folder(
        images, ending, ids, num_processes=1)))
    dj = case["dataset_json"]
    out["train"] = _attempt(lambda: relative(utils.get_filenames_of_train_images_and_targets(folder, copy.deepcopy(dj))))
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(dj, f)
    out["train_from_file"] = _attempt(lambda: relative(utils.get_filenames_of_train_images_and_targets(folder)))
    return out


def _drive_gen_json(case: dict, folder: str) -> dict:
    import copy
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
    kwargs = copy.deepcopy(case["kwargs"])
    kwargs["labels"] = {k: tuple(v["__tuple__"]) if isinstance(v, dict) else v for k, v in kwargs["labels"].items()}
    if case["tuple_regions_order"]:
        kwargs["regions_class_order"] = tuple(kwargs["regions_class_order"])
    before = copy.deepcopy(kwargs)
    os.makedirs(folder, exist_ok=True)
    try:
        generate_dataset_json(folder, **kwargs)
    except Exception:
        return {"written": REFUSED, "files": sorted(os.listdir(folder))}
    with open(os.path.join(folder, "dataset.json")) as f:
        text = f.read()
    return {"text": text, "parsed": json.loads(text), "arguments_unchanged": _typed(before) == _typed(kwargs),
            "files": sorted(os.listdir(folder))}


def _build_json_value(spec):
    import numpy as np
    import torch
    if not isinstance(spec, dict):
        return spec
    t = spec["t"]
    if t == "dict":
        return {_build_json_value(k): _build_json_value(v) for k, v in spec["items"]}
    if t in ("tuple", "list"):
        items = [_build_json_value(x) for x in spec["v"]]
        return tuple(items) if t == "tuple" else items
    if t == "array":
        rng = np.random.default_rng(spec["seed"])
        return (rng.standard_normal(spec["shape"]) * 10).astype(spec["dtype"])
    if t == "device":
        return torch.device(spec["v"])
    return getattr(np, t)(spec["v"])


def _drive_json(case: dict) -> dict:
    from nnunetv2.utilities.json_export import recursive_fix_for_json_export
    value = _build_json_value(case["value"])
    recursive_fix_for_json_export(value)
    try:
        dumped = json.dumps(value)
    except Exception:
        dumped = REFUSED
    return {"fixed": _typed(value), "dumped": dumped}


def drive(cases_file: str, work: str, result_file: str) -> None:
    from _fuzz_harness import drive_cases
    with open(cases_file) as f:
        cases = json.load(f)
    roots = {"raw": os.environ["nnUNet_raw"], "preprocessed": os.environ["nnUNet_preprocessed"],
             "results": os.environ["nnUNet_results"]}

    def compute(key: str) -> dict:
        case = cases[int(key)]
        kind = case["kind"]
        if kind == "plans":
            return _drive_plans(case)
        if kind == "names":
            return _drive_names(case, roots)
        if kind == "raw":
            return _drive_raw(case, os.path.join(work, f"raw_{key}"))
        if kind == "gen_json":
            return _drive_gen_json(case, os.path.join(work, f"gen_{key}"))
        return _drive_json(case)

    drive_cases([str(i) for i in range(len(cases))], compute, result_file)


# ---------------------------------------------------------------------------------------------------------------------
# documented differences: a case differs by design when it agrees once they are taken out

CLASS_LOOKUPS = ("experiment_planner_class", "label_manager_class", "preprocessor_class")


def _without_documented(case: dict, outcome: dict, side: str) -> dict:
    """A copy of one side's outcome with the documented differences taken out."""
    import copy
    out = copy.deepcopy({k: v for k, v in outcome.items() if k != "seconds"})
    if out["error"]:
        return out
    if case["kind"] == "plans" and side == "ref":
        # an unknown class name: the reference hands back None (and fails later), ours refuses naming close matches
        for p in CLASS_LOOKUPS:
            if out["plans"].get(p, REFUSED) is None:
                out["plans"][p] = REFUSED
        if out["labelmanager_class"] is None:
            out["labelmanager_class"] = REFUSED
        for cfg in out["configurations"].values():
            if isinstance(cfg, dict) and cfg.get("preprocessor_class", REFUSED) is None:
                cfg["preprocessor_class"] = REFUSED
    if case["kind"] == "gen_json":
        # ours writes the citation it is given (the reference the release) and leaves the caller's dicts alone
        out.pop("arguments_unchanged", None)
        if case["kwargs"].get("citation") is not None and isinstance(out.get("parsed"), dict):
            out["parsed"].pop("citation", None)
            out.pop("text", None)
    return out


def by_design(case: dict, ref: dict, ours: dict):
    """Why the case differs by design, or None (it agrees, or it differs in an undocumented way)."""
    from _fuzz_harness import first_difference
    plain = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    if (ref["error"] is None) == (ours["error"] is None) and (ref["error"] or not first_difference(plain(ref), plain(ours))):
        return None
    if case["kind"] == "json" and ours["error"] is None and (
            ref["error"] or  # "only 1d arrays", or an array inside a list taken for a shape
            (ref["error"] is None and ref["dumped"] == REFUSED and ours["dumped"] != REFUSED)):
        # every numpy scalar type, arrays of any dimension and devices inside lists are converted by ours; the
        # reference asserts on arrays that are not 1-D and leaves other values that json cannot write
        return "recursive_fix_for_json_export converts what the reference leaves unwritable or asserts on"
    r, o = _without_documented(case, ref, "ref"), _without_documented(case, ours, "ours")
    if (r["error"] is None) == (o["error"] is None) and (r["error"] or not first_difference(r, o)):
        return {"plans": "unknown planner/preprocessor/label manager class: reference None, ours refuses",
                "gen_json": "generate_dataset_json: citation written as given, caller's dicts unchanged"}.get(
            case["kind"], "documented")
    return None


# ---------------------------------------------------------------------------------------------------------------------

def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=200)
    args = p.parse_args()
    if args.driver:
        drive(args.driver[0], args.driver[1], args.driver[2])
        return 0
    rng = random.Random(args.seed)
    cases = [_case(rng, rng.choice(KINDS)) for _ in range(args.cases)]
    with work_folder("nnunet_plans_fuzz_", args.keep) as base:
        cases_file = os.path.join(base, "cases.json")
        with open(cases_file, "w") as f:
            json.dump(cases, f)
        kinds = {k: sum(c["kind"] == k for c in cases) for k in dict.fromkeys(KINDS)}
        print(f"{len(cases)} cases (seed {args.seed}): " + ", ".join(f"{v} {k}" for k, v in kinds.items()), flush=True)

        def env(side: str) -> Dict[str, str]:
            return {f"nnUNet_{r}": os.path.join(base, f"roots_{side}", r) for r in ("raw", "preprocessed", "results")}

        work = {s: os.path.join(base, f"work_{s}") for s in ("ref", "ours")}
        # the driver's work folder is passed as an argument: one per side, so that the paths compared are the same
        # after replacing the folder by a placeholder
        ref, ours = None, None
        from _fuzz_harness import run_driver  # one side at a time, each with its own work folder
        from _harness import default_reference_python, reference_python
        ref_python = reference_python(args.reference_python or default_reference_python(), args.reference_venv)
        ref = run_driver("ref", ref_python, __file__, [cases_file, work["ref"]], base, env("ref"))
        ours = run_driver("ours", sys.executable, __file__, [cases_file, work["ours"]], base, env("ours"))
        keys = [str(i) for i in range(len(cases))]
        designed = {}
        for k in keys:
            reason = by_design(cases[int(k)], ref["outcomes"][k], ours["outcomes"][k])
            if reason:
                designed[k] = reason
        compared = [k for k in keys if k not in designed]
        differing, refused_both = compare_outcomes(ref, ours, compared, lambda k: f"case {k} ({cases[int(k)]['kind']})")
        reasons = {}
        for reason in designed.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, n in sorted(reasons.items()):
            print(f"BY DESIGN ({n} cases): {reason}")
        print_summary("cases compared", len(compared), differing, refused_both, ref, ours)
        print(f"{len(designed)} cases differ by design (documented in documentation/differences_from_reference.md)")
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
