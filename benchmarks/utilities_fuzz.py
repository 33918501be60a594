"""Differential trial, not a speed benchmark: do the small helpers that third-party code imports from nnunetv2 (the
compatibility surface: cropping, one-hot labels, normalization, resampling, path/name/json helpers, collation,
cross-validation splits, loggers, networks from plans) answer as the reference's (2.8.1) do, on random inputs?

    python benchmarks/utilities_fuzz.py [--cases 400] [--seed 0] [--entry-points] [--reference-python PATH] [--keep]

Each case is drawn from its own seeded generator, identically under both interpreters (the same numpy), and is one of:

* ``crop``: ``create_nonzero_mask``, ``crop_to_nonzero`` (with and without a segmentation, random ``nonzero_label``;
  the caller's segmentation afterwards too), ``get_bbox_from_mask`` and ``bounding_box_to_slice`` of
  ``nnunetv2.preprocessing.cropping.cropping`` on 2-D/3-D images of several dtypes with zero borders, holes, or no
  nonzero voxel at all;
* ``onehot``: ``convert_labelmap_to_one_hot`` on numpy (several dtypes, labels as list/array, missing and extra labels,
  output dtypes) and torch label maps;
* ``norm``: the default normalization schemes (``ZScoreNormalization``, ``CTNormalization``, ``NoNormalization``,
  ``RescaleTo01Normalization``, ``RGBTo01Normalization``) with and without the mask, random intensity properties,
  target dtypes and image dtypes (constant images included), and ``get_normalization_scheme`` of random channel names;
* ``resample``: ``compute_new_shape``, ``get_do_separate_z``, ``get_lowres_axis``, ``determine_do_sep_z_and_axis``,
  ``resample_data_or_seg_to_shape`` / ``_to_spacing`` (orders 0/1/3, ``order_z``, forced separate z),
  ``resample_torch_simple`` / ``resample_torch_fornnunet`` and ``recursive_find_resampling_fn_by_name``;
* ``misc``: ``collate_outputs``, ``generate_crossval_split``, the ``file_path_utilities`` helpers (identifiers,
  ``get_output_folder``, fold strings, ensemble names, path parsing),
  ``dumb_trainer_config_plans_to_trained_models_dict``,
  ``softmax_helper_dim0/1``, ``fix_types_iterable``, ``get_allowed_n_proc_DA`` under ``nnUNet_n_proc_DA``,
  ``recursive_find_trainer_class_by_name``, ``check_workers_alive_and_busy`` (on stand-ins for the pool, its workers
  and the pending results), ``dummy_context``, ``empty_cache`` and the constants ``ANISO_THRESHOLD``,
  ``default_num_processes``;
* ``logger``: ``MetaLogger`` / ``LocalLogger``: random ``log`` sequences (the moving average of the pseudo Dice),
  ``get_value``, ``get_checkpoint`` / ``load_checkpoint``;
* ``resave``: ``resample_and_save`` (a cascade's low-resolution logits, numpy or torch, float32/float16, to the next
  stage's shape; labels, regions, an ignore label or 300 labels; scipy- or torch-based resampling, transposed axes,
  2-D configurations; dataset.json as a dict or a file; the default, blosc2 and numpy dataset classes): the file it
  writes read back (values, dtype, shape, blosc2 chunks and blocks) and torch's thread count afterwards;
* ``revert``: ``LabelManager.revert_cropping_on_probabilities`` (numpy or torch probabilities of float16/32/64, ties,
  2-D/3-D crop boxes as lists, tuples or arrays, inside, touching or reaching beyond the image), the segmentation of
  the result, ``apply_inference_nonlin`` and ``convert_logits_to_segmentation`` of the same input; the manager built
  with ``force_use_labels`` and a caller's ``inference_nonlin`` now and then;
* ``overlay``: ``select_slice_to_plot``, ``select_slice_to_plot2``, ``generate_overlay`` (grey, grey with a channel
  axis, RGB; with and without a mapping) and ``hex_to_rgb`` of ``nnunetv2.utilities.overlay_plots``;
* ``unpack``: ``unpack_dataset`` (one process; with/without segmentations, overwriting stale ``.npy`` files or not,
  verifying) on random ``.npz`` files: every file afterwards, byte for byte;
* ``network``: ``get_network_from_plans`` of small PlainConvUNet / ResidualEncoderUNet architectures (2-D/3-D, deep
  supervision on/off/default, with and without initialisation) under a seeded torch, then ``InitWeights_He``: every
  weight and the output on a random input.

With ``--entry-points`` every case is instead one of two kinds drawn on a stream of their own (the kinds above and
their draws are unchanged without the flag, so earlier seeds' results stay valid):

* ``trainer``: ``get_trainer_from_args`` on a fabricated preprocessed dataset (plans with 3d_fullres, 3d_lowres and
  a cascade; dataset as int/str id or name or garbage; known, variant and unknown trainers; present, cascaded and
  missing configurations; folds as int/str/'all'/out of range; missing plans; cpu or cuda device): class, plans name,
  configuration, fold, device, folders, was_initialized, epochs, deep supervision; then ``maybe_load_checkpoint``
  (continue without or with a checkpoint the same side wrote, validation only with or without checkpoint_final,
  pretrained weights as a file, a missing file or a folder, continue plus pretrained): the trainer afterwards and
  whether its weights are the saved ones;
* ``export``: ``export_prediction_from_logits`` (numpy/torch float32/16 logits, labels or regions, transposed axes,
  cropped and resampled by scipy or torch, with or without probabilities, dataset.json dict or file, an output
  folder that does not exist yet): the segmentation read back with its geometry, the npz and pkl contents.

One driver process per side computes every case; every item is compared exactly (values, dtypes, shapes, refusal or
not; a case both refuse agrees). Prints the first difference of each disagreeing case and a summary; exit status 1 if
anything differs.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, run_both, trial_arguments, work_folder  # noqa: E402

KINDS = ["crop", "crop", "onehot", "norm", "norm", "resample", "resample", "misc", "misc", "logger", "network",
         "resave", "revert", "overlay", "unpack"]
ENTRY_KINDS = ["trainer", "export"]  # only with --entry-points (see _kind)
REFUSED = "refused"


def _attempt(fn):
    """The value of ``fn()`` made comparable, or REFUSED with the exception type: each item on its own."""
    try:
        return _comparable(fn())
    except Exception:  # ours refuses with its own messages and types (UserError where the reference asserts)
        return REFUSED


def _comparable(v):
    import inspect
    import numpy as np
    import torch
    if isinstance(v, torch.Tensor):
        return {"tensor": v.detach().cpu().numpy(), "dtype": str(v.dtype)}
    if inspect.isclass(v) or inspect.isfunction(v):
        return f"<{v.__name__}>"
    if isinstance(v, slice):
        return ("slice", v.start, v.stop, v.step)
    if isinstance(v, dict):
        return {"dict": [[_comparable(k), _comparable(x)] for k, x in v.items()]}
    if isinstance(v, (list, tuple)):
        return [type(v).__name__, [_comparable(x) for x in v]]
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, np.generic):
        return ("np", type(v).__name__, v.item())
    return (type(v).__name__, v)


def _image(rng, n_channels: int, shape, dtype):
    """Random image with zero borders, a hole, sometimes no nonzero voxel at all."""
    import numpy as np
    data = np.zeros((n_channels, *shape), dtype=dtype)
    if rng.random() < 0.1:
        return data
    lo = [int(rng.integers(0, s)) for s in shape]
    hi = [int(rng.integers(a + 1, s + 1)) for a, s in zip(lo, shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    for c in range(n_channels):
        if rng.random() < 0.2 and c > 0:
            continue
        block = rng.standard_normal([b - a for a, b in zip(lo, hi)]) * 50 + (50 if rng.random() < 0.5 else 0)
        data[c][box] = block.astype(dtype) if np.dtype(dtype).kind != "u" else np.abs(block).astype(dtype)
    if rng.random() < 0.5:  # a hole inside
        centre = [(a + b) // 2 for a, b in zip(lo, hi)]
        data[(slice(None),) + tuple(slice(c, c + 1) for c in centre)] = 0
    if rng.random() < 0.2:  # a stray voxel elsewhere
        data[(0,) + tuple(int(rng.integers(0, s)) for s in shape)] = 1
    return data


def _shape(rng, two_d=None):
    if two_d is None:
        two_d = rng.random() < 0.3
    return tuple(int(rng.integers(1, 12)) for _ in range(2 if two_d else 3))


def _seg(rng, shape, dtype, n_labels: int = 3):
    seg = rng.integers(0, n_labels + 1, size=shape)
    seg[rng.random(shape) < 0.5] = 0
    return seg.astype(dtype)


# ---------------------------------------------------------------------------------------------------------------------

def _crop_case(rng) -> dict:
    from nnunetv2.preprocessing.cropping import cropping as C
    shape = _shape(rng)
    dtype = rng.choice(["float32", "int16", "uint8", "float64"])
    data = _image(rng, int(rng.integers(1, 4)), shape, dtype)
    seg_dtype = str(rng.choice(["int8", "int16", "int32", "float32", "uint8", "none", "none"]))
    seg = None if seg_dtype == "none" else _seg(rng, (1, *shape), seg_dtype)
    nonzero_label = int(rng.choice([-1, -1, 0, 2, -5]))
    out: Dict[str, Any] = {"ndim": len(shape)}
    out["mask"] = _attempt(lambda: C.create_nonzero_mask(data.copy()))
    mask = rng.random(shape) < rng.choice([0.0, 0.01, 0.3])
    out["bbox"] = _attempt(lambda: C.get_bbox_from_mask(mask))
    out["slice"] = _attempt(lambda: C.bounding_box_to_slice(C.get_bbox_from_mask(mask)))
    d, s = data.copy(), None if seg is None else seg.copy()
    default_label = rng.random() < 0.2
    out["unsigned_seg_negative_label"] = seg_dtype == "uint8" and (default_label or nonzero_label < 0)
    out["crop"] = _attempt(lambda: C.crop_to_nonzero(d, s) if default_label else C.crop_to_nonzero(d, s, nonzero_label))
    out["seg_after"] = s
    out["data_after"] = d
    return out


def _onehot_case(rng) -> dict:
    import numpy as np
    import torch
    from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot
    shape = _shape(rng)
    n = int(rng.integers(1, 6))
    out: Dict[str, Any] = {}
    seg = _seg(rng, shape, rng.choice(["int8", "uint8", "int16", "int32", "int64", "float32"]), n)
    labels = list(range(n + 1))
    if rng.random() < 0.3:
        labels = sorted(rng.choice(np.arange(0, n + 3), size=int(rng.integers(1, n + 2)), replace=False).tolist())
    if rng.random() < 0.1:
        labels = labels + [300]
    as_ = rng.choice(["list", "array", "tuple"])
    lab = labels if as_ == "list" else (tuple(labels) if as_ == "tuple" else np.array(labels))
    odt = rng.choice([None, np.float32, np.uint8, bool, np.int16])
    out["numpy"] = _attempt(lambda: convert_labelmap_to_one_hot(seg.copy(), lab, odt) if odt is not None
                            else convert_labelmap_to_one_hot(seg.copy(), lab))
    # torch: the reference scatters by label value, so only consecutive labels 0..n-1 give a one-hot map
    tseg = torch.from_numpy(rng.integers(0, n + 1, size=shape).astype(rng.choice(["int64", "int16", "uint8"])))
    tdt = rng.choice([None, "float32", "bool", "float16"])
    tl = list(range(n + 1)) if rng.random() < 0.8 else list(range(n + 2))
    out["torch"] = _attempt(lambda: convert_labelmap_to_one_hot(tseg.clone(), tl, getattr(torch, tdt))
                            if tdt is not None else convert_labelmap_to_one_hot(tseg.clone(), tl))
    return out


NORMALIZATIONS = ["ZScoreNormalization", "CTNormalization", "NoNormalization", "RescaleTo01Normalization",
                  "RGBTo01Normalization"]
CHANNEL_NAMES = ["CT", "ct", "noNorm", "nonorm", "zscore", "ZScore", "rescale_to_0_1", "rgb_to_0_1", "RGB_to_0_1",
                 "T2", "MRI", "", "ADC", "Rescale_To_0_1"]


def _norm_case(rng) -> dict:
    import numpy as np
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as N
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme
    shape = _shape(rng)
    name = str(rng.choice(NORMALIZATIONS))
    dtype = rng.choice(["float32", "float64", "int16", "uint8", "float16", "int32"])
    img = _image(rng, 1, shape, dtype)[0]
    if rng.random() < 0.1:
        img[:] = 7 if np.dtype(dtype).kind != "f" else 0.5
    if name == "RGBTo01Normalization" and rng.random() < 0.7:
        img = np.clip(img, 0, 255)
    seg = _seg(rng, shape, "int16") if rng.random() < 0.7 else None
    if seg is not None and rng.random() < 0.5:
        seg[img == 0] = -1
    props = None
    if rng.random() < 0.9:
        lo = float(rng.normal(-100, 200))
        props = {"mean": float(rng.normal(0, 100)), "std": float(abs(rng.normal(0, 50))) * (rng.random() < 0.95),
                 "percentile_00_5": lo, "percentile_99_5": lo + float(abs(rng.normal(0, 300))) * (rng.random() < 0.95),
                 "min": lo - 10, "max": lo + 500, "median": 0.0}
    use_mask = rng.choice([True, False, None])
    target = rng.choice([np.float32, np.float64, np.float16])
    out: Dict[str, Any] = {"no_properties": props is None}

    def run():
        scheme = getattr(N, name)(use_mask_for_norm=use_mask, intensityproperties=props, target_dtype=target)
        return scheme.run(img.copy(), None if seg is None else seg.copy())
    out["normalized"] = _attempt(run)
    flag = "leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true"
    out["leaves_zero"] = _attempt(lambda: getattr(getattr(N, name), flag))
    cname = str(rng.choice(CHANNEL_NAMES))
    out["scheme"] = _attempt(lambda: get_normalization_scheme(cname))
    return out


def _resample_case(rng) -> dict:
    import numpy as np
    import torch
    from nnunetv2.preprocessing.resampling import default_resampling as D
    from nnunetv2.preprocessing.resampling import resample_torch as T
    from nnunetv2.preprocessing.resampling.utils import recursive_find_resampling_fn_by_name
    two_d = rng.random() < 0.3
    shape = tuple(int(rng.integers(1, 10)) for _ in range(2 if two_d else 3))
    dim = len(shape)
    cur = [float(rng.choice([0.5, 1.0, 1.0, 2.0, 3.3, 5.0])) for _ in range(dim)]
    new = [float(c * rng.choice([0.5, 0.7, 1.0, 1.0, 1.6, 2.0, 4.0])) for c in cur]
    if rng.random() < 0.2:
        new = list(cur)
    out: Dict[str, Any] = {"ndim": dim}
    out["new_shape"] = _attempt(lambda: D.compute_new_shape(shape, cur, new))
    out["sep_z_cur"] = _attempt(lambda: D.get_do_separate_z(cur, float(rng.choice([3, 2, 1.5]))))
    out["lowres_axis"] = _attempt(lambda: D.get_lowres_axis(new))
    fsz = rng.choice([None, True, False])
    out["sep_and_axis"] = _attempt(lambda: D.determine_do_sep_z_and_axis(fsz, cur, new, 3))
    is_seg = rng.random() < 0.35
    nc = int(rng.integers(1, 3))
    if is_seg:
        data = rng.integers(-1, 4, size=(nc, *shape)).astype(rng.choice(["int8", "int16", "float32"]))
    else:
        data = (rng.standard_normal((nc, *shape)) * 10).astype(rng.choice(["float32", "float64", "int16", "float16"]))
    order, order_z = int(rng.choice([0, 1, 3])), int(rng.choice([0, 1]))
    target = [int(x) for x in np.maximum(1, np.round(np.array(shape) * np.array(cur) / np.array(new)))]
    if rng.random() < 0.1:
        target = list(shape)
    out["to_shape"] = _attempt(lambda: D.resample_data_or_seg_to_shape(data.copy(), target, cur, new, is_seg, order,
                                                                        order_z, fsz))
    out["to_spacing"] = _attempt(lambda: D.resample_data_or_seg_to_spacing(data.copy(), cur, new, is_seg, order,
                                                                            order_z, fsz))
    if not two_d or rng.random() < 0.5:
        as_tensor = rng.random() < 0.5
        inp = torch.from_numpy(data.copy()) if as_tensor else data.copy()
        mem = rng.random() < 0.3
        out["torch_simple"] = _attempt(lambda: T.resample_torch_simple(inp, target, is_seg, num_threads=1,
                                                                       memefficient_seg_resampling=mem))
        inp2 = torch.from_numpy(data.copy()) if as_tensor else data.copy()
        out["torch_fornnunet"] = _attempt(lambda: T.resample_torch_fornnunet(
            inp2, target, cur, new, is_seg, num_threads=1, memefficient_seg_resampling=mem, force_separate_z=fsz))
    fn = str(rng.choice(["resample_data_or_seg_to_shape", "resample_torch_fornnunet", "resample_torch_simple",
                         "resample_data_or_seg_to_spacing", "no_such_fn", "compute_new_shape"]))
    out["by_name"] = _attempt(lambda: recursive_find_resampling_fn_by_name(fn))
    return out


TRAINERS = ["nnUNetTrainer", "nnUNetTrainerNoMirroring", "nnUNetTrainerDiceTopK10Loss", "nnUNetTrainer_5epochs",
            "nnUNetTrainerDA5", "nnUNetTrainerNoDeepSupervision", "nnUNetTrainerCELoss", "nnUNetTrainer_NoSuch",
            "nnUNetTrainerBN", "nnUNetTrainer_250epochs", "nnunettrainer"]


def _misc_case(rng) -> dict:
    import numpy as np
    import torch
    from nnunetv2.evaluation.find_best_configuration import dumb_trainer_config_plans_to_trained_models_dict
    from nnunetv2.utilities import file_path_utilities as F
    from nnunetv2.utilities.collate_outputs import collate_outputs
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.helpers import softmax_helper_dim0, softmax_helper_dim1
    from nnunetv2.utilities.json_export import fix_types_iterable
    out: Dict[str, Any] = {}

    # collate_outputs: per key scalars, arrays or lists, now and then something it cannot collate
    n_out = int(rng.integers(1, 4))
    kinds = {f"k{i}": str(rng.choice(["float", "int", "np_float", "array", "list", "str", "none"]))
             for i in range(int(rng.integers(1, 4)))}
    outputs = []
    for _ in range(n_out):
        o: Dict[str, Any] = {}
        for k, kind in kinds.items():
            o[k] = {"float": lambda: float(rng.random()), "int": lambda: int(rng.integers(0, 9)),
                    "np_float": lambda: np.float32(rng.random()), "array": lambda: rng.random(3).astype(np.float32),
                    "list": lambda: [int(x) for x in rng.integers(0, 5, size=int(rng.integers(0, 3)))],
                    "str": lambda: "s", "none": lambda: None}[kind]()
        outputs.append(o)
    out["collate"] = _attempt(lambda: collate_outputs(outputs))

    # cross-validation splits
    ids = [f"case_{i:03d}" for i in rng.permutation(int(rng.integers(1, 15)))]
    if rng.random() < 0.3:
        ids = np.array(ids)
    seed, n_splits = int(rng.choice([12345, 0, 7])), int(rng.choice([2, 3, 5, 5, 10]))
    out["splits"] = _attempt(lambda: generate_crossval_split(ids, seed, n_splits))

    # file path helpers
    tr = str(rng.choice(["nnUNetTrainer", "T_x", "A__B"]))
    pl = str(rng.choice(["nnUNetPlans", "nnUNetResEncUNetMPlans"]))
    cfg = str(rng.choice(["3d_fullres", "2d", "3d_lowres", "3d_cascade_fullres"]))
    out["identifier"] = _attempt(lambda: F.convert_trainer_plans_config_to_identifier(tr, pl, cfg))
    ident = f"{tr}__{pl}__{cfg}"
    out["from_identifier"] = _attempt(lambda: F.convert_identifier_to_trainer_plans_config(f"/x/{ident}"))
    ds = str(rng.choice(["Dataset001_A", "Dataset123_Liver", "Dataset999_Z"]))
    fold = rng.choice([None, 0, 3, "all", "1"])
    out["output_folder"] = _attempt(lambda: F.get_output_folder(ds, tr, pl, cfg, fold).replace(
        os.environ["nnUNet_results"], "<results>"))
    folds = [int(x) for x in rng.choice(5, size=int(rng.integers(1, 6)), replace=False)]
    if rng.random() < 0.2:
        folds = ["all"]
    out["folds_str"] = _attempt(lambda: F.folds_tuple_to_string(tuple(folds)))
    fstr = str(rng.choice(["0_1_2", "all", "3", "0_all", "x"]))
    out["folds_tuple"] = _attempt(lambda: F.folds_string_to_tuple(fstr))
    tr2 = str(rng.choice(["nnUNetTrainer", "nnUNetTrainerDA5"]))
    out["ensemble_name"] = _attempt(lambda: F.get_ensemble_name(f"/r/{ds}/{ident}", f"/r/{ds}/{tr2}__{pl}__2d",
                                                                tuple(folds)))
    out["ensemble_name_dtrc"] = _attempt(lambda: F.get_ensemble_name_from_d_tr_c(ds, tr, pl, cfg, tr2, pl, "2d",
                                                                                 tuple(folds)).replace(
        os.environ["nnUNet_results"], "<results>"))
    folds_part = F.folds_tuple_to_string(tuple(folds)) if folds != ["all"] else "all"
    ens = f"ensemble___{ident}___{tr2}__{pl}__2d___{folds_part}"
    out["ensemble_parse"] = _attempt(lambda: F.convert_ensemble_folder_to_model_identifiers_and_folds(ens))
    parts = ["/home", "u", ds, ident] + ([f"fold_{rng.choice([0, 'all'])}"] if rng.random() < 0.6 else []) + (
        ["validation"] if rng.random() < 0.3 else [])
    if rng.random() < 0.15:
        parts = [p for p in parts if p != ds]
    if rng.random() < 0.1:
        parts[3] = "onlyone"
    out["parse_path"] = _attempt(lambda: F.parse_dataset_trainer_plans_configuration_from_path("/".join(parts)))
    trs, cfgs, pls = (list(rng.choice(x, size=int(rng.integers(1, 3)), replace=False)) for x in
                      (["nnUNetTrainer", "T2"], ["2d", "3d_fullres", "3d_lowres"], ["nnUNetPlans", "P"]))
    out["dumb"] = _attempt(lambda: dumb_trainer_config_plans_to_trained_models_dict([str(t) for t in trs],
                                                                                   [str(c) for c in cfgs],
                                                                                   [str(p) for p in pls]))
    # helpers
    x = torch.from_numpy((rng.standard_normal((2, 3, 4)) * 5).astype(rng.choice(["float32", "float64"])))
    out["softmax0"] = _attempt(lambda: softmax_helper_dim0(x.clone()))
    out["softmax1"] = _attempt(lambda: softmax_helper_dim1(x.clone()))
    pool = [1, 2.5, np.float32(3.5), np.int64(4), True, np.bool_(False)]
    it = [pool[int(rng.integers(0, len(pool)))] for _ in range(int(rng.integers(0, 4)))]
    otype = rng.choice([list, tuple])
    out["fix_types"] = _attempt(lambda: fix_types_iterable(it, otype))
    # get_allowed_n_proc_DA reads the variable when called
    value = rng.choice([None, "0", "1", "3", "12", "999"])
    old = os.environ.pop("nnUNet_n_proc_DA", None)
    try:
        if value is not None:
            os.environ["nnUNet_n_proc_DA"] = str(value)
        out["n_proc_DA"] = _attempt(get_allowed_n_proc_DA)
    finally:
        os.environ.pop("nnUNet_n_proc_DA", None)
        if old is not None:
            os.environ["nnUNet_n_proc_DA"] = old
    name = str(rng.choice(TRAINERS))
    out["trainer_class"] = _attempt(lambda: recursive_find_trainer_class_by_name(name))
    # constants and context helpers that custom trainers use directly
    from nnunetv2.configuration import ANISO_THRESHOLD, default_num_processes
    from nnunetv2.utilities.helpers import dummy_context, empty_cache
    out["constants"] = _comparable([ANISO_THRESHOLD, default_num_processes])
    out["empty_cache_cpu"] = _attempt(lambda: empty_cache(torch.device("cpu")))

    # check_workers_alive_and_busy on stand-ins for the pool, its workers and the pending results
    class _Flag:
        def __init__(self, value: bool):
            self.value = value

        def is_alive(self) -> bool:
            return self.value

        def ready(self) -> bool:
            return self.value

    class _Pool:
        def __init__(self, n: int):
            self._pool = [None] * n
    workers = [_Flag(bool(rng.random() < 0.97)) for _ in range(int(rng.integers(0, 4)))]
    results = [_Flag(bool(rng.random() < 0.5)) for _ in range(int(rng.integers(0, 8)))]
    pool, queued = _Pool(int(rng.integers(1, 4))), int(rng.integers(0, 3))
    out["workers_busy"] = _attempt(lambda: F.check_workers_alive_and_busy(pool, workers, results, queued))

    def in_context():
        with dummy_context() as c:
            if rng.random() < 0.5:
                raise KeyError("passes through")
            return c
    out["dummy_context"] = _attempt(in_context)
    return out


LOG_KEYS = ["mean_fg_dice", "dice_per_class_or_region", "train_losses", "val_losses", "lrs", "epoch_start_timestamps",
            "epoch_end_timestamps", "ema_fg_dice", "not_a_key"]


def _logger_case(rng) -> dict:
    import numpy as np
    from nnunetv2.training.logging import nnunet_logger as L
    out: Dict[str, Any] = {}
    lg = L.MetaLogger("/nonexistent_folder", False) if rng.random() < 0.7 else L.LocalLogger()
    calls = []
    for epoch in range(int(rng.integers(1, 5))):
        for key in rng.permutation(LOG_KEYS[:7]):
            if rng.random() < 0.85:
                calls.append((str(key), epoch))
        if rng.random() < 0.15:
            calls.append((str(rng.choice(LOG_KEYS)), int(rng.integers(0, epoch + 3))))
    values = []
    # one number type per run: ours restores a Python-float moving average read from a checkpoint to the pseudo
    # Dice's NumPy type, so mixing Python floats and float32 in one run is not compared (see the README)
    number = [float, np.float32, np.float64][int(rng.integers(0, 3))]
    for key, epoch in calls:
        v = [float(x) for x in rng.random(3)] if key == "dice_per_class_or_region" else number(rng.random())
        values.append(_attempt(lambda: lg.log(key, v, epoch)))
    out["log_results"] = values
    out["checkpoint"] = _attempt(lambda: dict(lg.get_checkpoint()))
    key = str(rng.choice(LOG_KEYS))
    step = rng.choice([None, 0, 1, -1, 5])
    out["get_value"] = _attempt(lambda: lg.get_value(key, None if step is None else int(step)))
    fresh = L.MetaLogger("/nonexistent_folder", True) if rng.random() < 0.5 else L.LocalLogger()
    ck = lg.get_checkpoint()
    _attempt(lambda: fresh.load_checkpoint(ck))
    out["reloaded"] = _attempt(lambda: dict(fresh.get_checkpoint()))
    out["reloaded_then_log"] = _attempt(lambda: fresh.log("mean_fg_dice", number(0.5), len(ck["mean_fg_dice"])))
    out["reloaded_ema"] = _attempt(lambda: fresh.get_value("ema_fg_dice", None))
    return out


def _network_case(rng) -> dict:
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.network_initialization import InitWeights_He
    dim = 2 if rng.random() < 0.4 else 3
    n_stages = int(rng.integers(2, 5)) if rng.random() < 0.95 else 1  # one stage: both refuse (no decoder)
    res = rng.random() < 0.4
    strides = [[1] * dim] + [[int(rng.choice([1, 2, 2])) for _ in range(dim)] for _ in range(n_stages - 1)]
    kernels = [[int(rng.choice([1, 3, 3])) for _ in range(dim)] for _ in range(n_stages)]
    feats = [min(int(rng.choice([2, 4, 8])) * 2 ** i, 16) for i in range(n_stages)]
    kwargs = {"n_stages": n_stages, "features_per_stage": feats, "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
              "kernel_sizes": kernels, "strides": strides,
              "n_conv_per_stage" if not res else "n_blocks_per_stage": [int(rng.integers(1, 3))] * n_stages,
              "n_conv_per_stage_decoder": [1] * (n_stages - 1), "conv_bias": True,
              "norm_op": str(rng.choice([f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
                                     f"torch.nn.modules.batchnorm.BatchNorm{dim}d"])),
              "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
              "nonlin": str(rng.choice(["torch.nn.LeakyReLU", "torch.nn.ReLU"])), "nonlin_kwargs": {"inplace": True}}
    req = ["conv_op", "norm_op", "dropout_op", "nonlin"]
    if rng.random() < 0.1:
        req = req[:2]  # nonlin left as a string: both should refuse when building
    cls = ("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet" if res else
           "dynamic_network_architectures.architectures.unet.PlainConvUNet")
    cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    ds = rng.choice([None, True, False])
    allow_init = rng.random() < 0.7
    seed = int(rng.integers(0, 2 ** 31))
    out: Dict[str, Any] = {}
    patch = [int(rng.integers(1, 4 if dim == 3 else 8)) * 2 ** (n_stages - 1) for _ in range(dim)]
    x = torch.from_numpy(rng.standard_normal((1, cin, *patch)).astype("float32"))

    def build():
        torch.manual_seed(seed)
        net = get_network_from_plans(cls, dict(kwargs), req, cin, cout, allow_init=allow_init, deep_supervision=ds)
        result = {"class": type(net).__name__, "deep_supervision": net.decoder.deep_supervision,
                  "weights": {k: v.numpy().copy() for k, v in net.state_dict().items()}}
        net.apply(InitWeights_He(float(rng.choice([1e-2, 0.0]))))
        result["he_weights"] = {k: v.numpy().copy() for k, v in net.state_dict().items()}
        net.eval()
        with torch.no_grad():
            y = net(x)
        result["output"] = [t.numpy() for t in y] if isinstance(y, (list, tuple)) else y.numpy()
        return result
    out["network"] = _attempt(build)
    return out


def _resave_case(rng) -> dict:
    """``resample_and_save`` (a cascade's low-resolution prediction to the next stage's shape, written with the
    dataset class): the file read back."""
    import json
    import shutil
    import tempfile
    import blosc2
    import numpy as np
    import torch
    from nnunetv2.inference.export_prediction import resample_and_save
    from nnunetv2.training.dataloading import nnunet_dataset
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    two_d = rng.random() < 0.1  # 2-D configurations have no cascade: both refuse
    dim = 2 if two_d else 3
    shape = [int(v) for v in rng.integers(2, 14, dim)]
    target_shape = [int(v) for v in rng.integers(2, 20, dim)]
    spacing_cfg = [float(v) for v in rng.choice([0.5, 1.0, 1.0, 2.0, 4.0, 5.0], dim)]
    spacing_img = [float(v) for v in rng.uniform(0.4, 6, 3)]
    transpose = [int(v) for v in rng.permutation(3)] if rng.random() < 0.4 else [0, 1, 2]
    n_labels = int(rng.integers(1, 6)) if rng.random() < 0.9 else 300
    kind = str(rng.choice(["labels", "regions", "ignore"]))
    labels = {"background": 0, **{f"l{i}": i for i in range(1, n_labels + 1)}}
    regions_class_order = None
    if kind == "regions" and 2 <= n_labels < 20:
        labels = {"background": 0, "whole": list(range(1, n_labels + 1)), "top": n_labels}
        regions_class_order = [1, n_labels]
    elif kind == "ignore":
        labels["ignore"] = n_labels + 1
    dataset_json = {"labels": labels, "channel_names": {"0": "x"}, "numTraining": 1, "file_ending": ".nii.gz"}
    if regions_class_order:
        dataset_json["regions_class_order"] = regions_class_order
    fn, kwargs = [("resample_data_or_seg_to_shape", {"is_seg": False, "order": int(rng.choice([1, 3])), "order_z": 0,
                                                     "force_separate_z": rng.choice([None, None, True, False])}),
                  ("resample_torch_fornnunet", {"is_seg": False, "force_separate_z": None,
                                                "memefficient_seg_resampling": False})][int(rng.integers(0, 2))]
    config = {"data_identifier": "fuzz", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
              "patch_size": [int(v) for v in rng.choice([4, 8, 16, 64], dim)], "median_image_size_in_voxels": shape,
              "spacing": spacing_cfg, "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
              "resampling_fn_data": fn, "resampling_fn_data_kwargs": kwargs, "resampling_fn_seg": fn,
              "resampling_fn_seg_kwargs": dict(kwargs, is_seg=True), "resampling_fn_probabilities": fn,
              "resampling_fn_probabilities_kwargs": kwargs,
              "architecture": {"network_class_name": "x.y", "arch_kwargs": {}, "_kw_requires_import": []},
              "batch_dice": True}
    plans = {"dataset_name": "Dataset999_Fuzz", "plans_name": "fuzzPlans",
             "original_median_spacing_after_transp": spacing_img, "original_median_shape_after_transp": [9, 9, 9],
             "image_reader_writer": "SimpleITKIO", "transpose_forward": transpose,
             "transpose_backward": [int(i) for i in np.argsort(transpose)],
             "configurations": {"3d_lowres": config}, "experiment_planner_used": "ExperimentPlanner",
             "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {}}
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_lowres")
    heads = pm.get_label_manager(dataset_json).num_segmentation_heads
    logits = rng.normal(0, 3, (heads, *shape)).astype(np.float16 if rng.random() < 0.3 else np.float32)
    predicted = torch.from_numpy(logits) if rng.random() < 0.5 else logits
    cropped = ([1] if two_d else []) + target_shape
    props = {"spacing": spacing_img, "shape_after_cropping_and_before_resampling": cropped}
    dataset_class = [None, "nnUNetDatasetBlosc2", "nnUNetDatasetNumpy"][int(rng.integers(0, 3))]
    folder = tempfile.mkdtemp()
    try:
        dj = dataset_json
        if rng.random() < 0.3:
            dj = os.path.join(folder, "dataset.json")
            with open(dj, "w") as f:
                json.dump(dataset_json, f)
        out: Dict[str, Any] = {"ndim": dim}
        out["call"] = _attempt(lambda: resample_and_save(
            predicted, target_shape, os.path.join(folder, "case"), pm, cm, props, dj, 1,
            None if dataset_class is None else getattr(nnunet_dataset, dataset_class)))
        files = sorted(f for f in os.listdir(folder) if f != "dataset.json")
        out["files"] = files
        for f in files:
            path = os.path.join(folder, f)
            if f.endswith(".b2nd"):
                arr = blosc2.open(path, mode="r")
                out[f] = {"seg": arr[:], "chunks": list(arr.chunks), "blocks": list(arr.blocks)}
            elif f.endswith(".npz"):
                with np.load(path) as z:
                    out[f] = {k: z[k] for k in z.files}
        out["threads_after"] = torch.get_num_threads()
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _revert_case(rng) -> dict:
    """``LabelManager.revert_cropping_on_probabilities`` and what follows it: probabilities of several types back
    into the uncropped shape (crop boxes inside, touching or beyond the image), then to a segmentation."""
    import numpy as np
    import torch
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    n = int(rng.integers(1, 6))
    labels = {"background": 0, **{f"l{i}": i for i in range(1, n + 1)}}
    regions_class_order = None
    kind = str(rng.choice(["labels", "regions", "ignore"]))
    if kind == "regions" and n >= 2:
        labels = {"background": 0, "whole": list(range(1, n + 1)), "top": n}
        regions_class_order = [1, n]
    elif kind == "ignore":
        labels["ignore"] = n + 1
    # the constructor's other arguments: regions used as plain labels, a caller's own nonlinearity
    force = bool(rng.random() < 0.15)
    nonlin = [None, None, None, torch.sigmoid, lambda x: torch.softmax(x, 0)][int(rng.integers(0, 5))]
    manager = LabelManager(labels, regions_class_order, force_use_labels=force, inference_nonlin=nonlin)
    dim = 2 if rng.random() < 0.3 else 3
    crop = [int(v) for v in rng.integers(1, 8, dim)]
    full = [c + int(rng.integers(0, 6)) for c in crop]
    lo = [int(rng.integers(0, f - c + 1)) for f, c in zip(full, crop)]
    bbox = [[a, a + c] for a, c in zip(lo, crop)]
    if rng.random() < 0.3:  # a box reaching beyond the image on some axis, or lying wholly outside it
        axis = int(rng.integers(0, dim))
        if rng.random() < 0.5:
            shift = -bbox[axis][0] - int(rng.integers(1, crop[axis] + 3))
        else:
            shift = full[axis] - bbox[axis][1] + int(rng.integers(1, crop[axis] + 3))
        bbox[axis] = [bbox[axis][0] + shift, bbox[axis][1] + shift]
    if rng.random() < 0.1:  # a box of the last axes only (the crop then spans the leading ones)
        bbox = bbox[1:]
        full = [crop[0]] + full[1:]
    form = str(rng.choice(["list"] * 5 + ["tuple", "array"]))
    box = bbox if form == "list" else (tuple(tuple(b) for b in bbox) if form == "tuple" else np.array(bbox))
    dtype = str(rng.choice(["float32", "float32", "float16", "float64"]))
    probabilities = rng.random((manager.num_segmentation_heads, *crop)).astype(dtype)
    if rng.random() < 0.3:
        probabilities = np.round(probabilities * 2) / 2  # ties
    as_torch = rng.random() < 0.5
    p = torch.from_numpy(probabilities) if as_torch else probabilities
    out: Dict[str, Any] = {"box_form": form}
    out["reverted"] = _attempt(lambda: manager.revert_cropping_on_probabilities(p, box, full))
    out["input_unchanged"] = bool(np.array_equal(np.asarray(p), probabilities))

    def segmentation():
        reverted = manager.revert_cropping_on_probabilities(p, box, full)
        return manager.convert_probabilities_to_segmentation(reverted)
    out["segmentation"] = _attempt(segmentation)
    out["nonlin"] = _attempt(lambda: manager.apply_inference_nonlin(p))
    out["seg_from_logits"] = _attempt(lambda: manager.convert_logits_to_segmentation(p))
    return out


def _overlay_case(rng) -> dict:
    """The pure helpers of ``nnunetv2.utilities.overlay_plots``."""
    import numpy as np
    from nnunetv2.utilities import overlay_plots as O
    shape = [int(v) for v in rng.integers(1, 9, 3)]
    n = int(rng.integers(0, 5))
    seg = _seg(rng, shape, str(rng.choice(["uint8", "int16", "int32"])), n)
    image = (rng.standard_normal(shape) * 100).astype(str(rng.choice(["float32", "int16", "uint8", "float64"])))
    if rng.random() < 0.1:
        image[:] = 3
    out: Dict[str, Any] = {}
    out["slice"] = _attempt(lambda: O.select_slice_to_plot(image, seg))
    out["slice2"] = _attempt(lambda: O.select_slice_to_plot2(image, seg))
    k = int(rng.integers(0, shape[0]))
    img2d = image[k]
    form = str(rng.choice(["2d", "2d", "grey_channel", "rgb"]))
    if form == "grey_channel":
        img2d = img2d[:, :, None]
    elif form == "rgb":
        img2d = np.stack([img2d] * 3, -1)
    mapping = None
    if rng.random() < 0.3:
        mapping = {int(v): i for i, v in enumerate(np.unique(seg[k]))}
    intensity = float(rng.choice([0.6, 0.3, 1.0]))
    out["constant_image"] = bool(img2d.min() == img2d.max())
    out["overlay"] = _attempt(lambda: O.generate_overlay(img2d, seg[k], mapping, overlay_intensity=intensity))
    hexes = ["ff0000", "00FF7f", "abc", "12345g", "0a0b0c"]
    h = hexes[int(rng.integers(0, len(hexes)))]
    out["hex"] = _attempt(lambda: O.hex_to_rgb(h))
    return out


def _unpack_case(rng) -> dict:
    """``unpack_dataset`` (MONAI's runner calls it) on a folder of random preprocessed ``.npz`` files, some already
    unpacked (stale ``.npy`` files), one without a segmentation now and then: the files afterwards, byte for byte."""
    import hashlib
    import shutil
    import tempfile
    import numpy as np
    from nnunetv2.training.dataloading.utils import unpack_dataset
    folder = tempfile.mkdtemp()
    try:
        for i in range(int(rng.integers(1, 4))):
            shape = [int(v) for v in rng.integers(1, 6, 3)]
            arrays = {"data": rng.standard_normal((int(rng.integers(1, 3)), *shape)).astype(
                str(rng.choice(["float32", "float16"]))),
                "seg": rng.integers(-1, 3, (1, *shape)).astype(str(rng.choice(["int8", "int16"])))}
            if rng.random() < 0.1:
                del arrays["seg"]
            np.savez_compressed(os.path.join(folder, f"case_{i}.npz"), **arrays)
            if rng.random() < 0.3:  # unpacked before, from other data
                np.save(os.path.join(folder, f"case_{i}.npy"), np.zeros(2, dtype=np.float32))
            if rng.random() < 0.2:
                np.save(os.path.join(folder, f"case_{i}_seg.npy"), np.ones(2, dtype=np.int8))
        unpack_seg, overwrite, verify = (bool(rng.random() < p) for p in (0.8, 0.3, 0.3))
        out: Dict[str, Any] = {"call": _attempt(lambda: unpack_dataset(folder, unpack_seg, overwrite, 1, verify))}
        if out["call"] == REFUSED:
            # what a refused call leaves differs: the reference's pool finishes the other files, ours (one process)
            # stops at the first broken one
            return out
        for f in sorted(os.listdir(folder)):
            with open(os.path.join(folder, f), "rb") as fh:
                out[f] = hashlib.sha256(fh.read()).hexdigest() if f.endswith(".npy") else "npz"
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------------
# entry points (drawn only with --entry-points, so that the kinds and draws of the cases above stay as they were)

def _tiny_plans_module():
    """tests/_tiny_plans.py loaded by its path: putting the checkout on sys.path would shadow the reference."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "_tiny_plans_fuzz", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                                         "_tiny_plans.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entry_dataset(rng, dataset_id: int):
    """A fabricated preprocessed dataset (plans with 3d_fullres, 3d_lowres and 3d_cascade_fullres; dataset.json)
    under nnUNet_preprocessed: (dataset name, plans, dataset.json)."""
    import copy
    import json
    from nnunetv2 import paths
    name = f"Dataset{dataset_id:03d}_EntryFuzz"
    plans = _tiny_plans_module().tiny_unet_plans(name)
    plans["plans_name"] = "nnUNetPlans"
    full = plans["configurations"]["3d_fullres"]
    low = copy.deepcopy(full)
    low.update(data_identifier="nnUNetPlans_3d_lowres", next_stage=["3d_cascade_fullres"])
    full["batch_size"] = int(rng.integers(1, 4))
    plans["configurations"]["3d_lowres"] = low
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    n_labels = int(rng.integers(1, 4))
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, **{f"l{i}": i for i in
                                                                                  range(1, n_labels + 1)}},
                    "numTraining": 4, "file_ending": ".nii.gz"}
    folder = os.path.join(paths.nnUNet_preprocessed, name)
    for identifier in ("nnUNetPlans_3d_fullres", "nnUNetPlans_3d_lowres"):  # what initialize() looks at
        os.makedirs(os.path.join(folder, identifier), exist_ok=True)
        for fname in ("case_0.b2nd", "case_0.pkl"):
            open(os.path.join(folder, identifier, fname), "wb").close()
    for fname, content in (("nnUNetPlans.json", plans), ("dataset.json", dataset_json)):
        with open(os.path.join(folder, fname), "w") as f:
            json.dump(content, f)
    return name, plans, dataset_json


def _relative(path, *roots):
    """A path made comparable: relative to the nnUNet folders (both sides use the same ones)."""
    if path is None:
        return path
    path = str(path)
    from nnunetv2 import paths
    for label, root in (("preprocessed", str(paths.nnUNet_preprocessed)), ("results", str(paths.nnUNet_results))):
        if path.startswith(root):
            return f"<{label}>{path[len(root):]}"
    return path


def _trainer_summary(trainer) -> dict:
    return {"class": type(trainer).__name__, "plans_name": trainer.plans_manager.plans_name,
            "configuration": trainer.configuration_name, "fold": _comparable(trainer.fold),
            "device": str(trainer.device), "output_folder": _relative(trainer.output_folder),
            "output_folder_base": _relative(trainer.output_folder_base),
            "preprocessed_folder": _relative(trainer.preprocessed_dataset_folder),
            "segs_from_previous_stage": _relative(trainer.folder_with_segs_from_previous_stage),
            "is_cascaded": bool(trainer.is_cascaded), "was_initialized": bool(trainer.was_initialized),
            "num_epochs": int(trainer.num_epochs), "deep_supervision": bool(trainer.enable_deep_supervision),
            "current_epoch": int(trainer.current_epoch), "batch_size": int(trainer.configuration_manager.batch_size)}


def _trainer_case(rng) -> dict:
    """``get_trainer_from_args`` and ``maybe_load_checkpoint`` of ``nnunetv2.run.run_training`` on a fabricated
    preprocessed dataset: dataset given as id/str id/name, trainers known and unknown, configurations present,
    cascaded or missing, folds as int/str/'all'/out of range, plans identifiers present or not, devices; then
    continuing without or with a checkpoint (written by the same side), validation only, pretrained weights
    (a file, a missing file, a folder): what the trainer ends up with, and refusals."""
    import shutil
    import torch
    from nnunetv2 import paths
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint
    dataset_id = int(rng.integers(900, 990))
    name, plans, dataset_json = _entry_dataset(rng, dataset_id)
    try:
        dataset = [dataset_id, str(dataset_id), name, "notanid"][int(rng.choice(4, p=[0.1, 0.4, 0.4, 0.1]))]
        configuration = str(rng.choice(["3d_fullres"] * 4 + ["3d_lowres", "3d_cascade_fullres", "2d"]))
        fold = [0, 1, 4, "0", "3", "all", 5, -1, "x"][int(rng.choice(9, p=[.2, .1, .1, .15, .1, .15, .08, .06, .06]))]
        trainer_name = str(rng.choice(["nnUNetTrainer"] * 4 + ["nnUNetTrainer_5epochs",
                                       "nnUNetTrainerNoDeepSupervision", "nnUNetTrainer_DoesNotExist"]))
        plans_identifier = "nnUNetPlans" if rng.random() < 0.9 else "nnUNetResEncUNetMPlans"
        device = torch.device(str(rng.choice(["cpu", "cpu", "cpu", "cuda"])))
        out: Dict[str, Any] = {"args": [_comparable(dataset), configuration, _comparable(fold), trainer_name,
                                        plans_identifier, str(device)]}

        def build(continue_training=False):
            return get_trainer_from_args(dataset, configuration, fold, trainer_name, plans_identifier,
                                         continue_training, device)
        try:
            trainer = build()
        except Exception:
            out["trainer"] = REFUSED
            return out
        out["trainer"] = _trainer_summary(trainer)
        if device.type != "cpu":
            return out
        out["folder_files"] = sorted(f.split("_")[0] for f in os.listdir(trainer.output_folder))
        action = str(rng.choice(["continue_none", "continue", "validation_none", "validation", "pretrained",
                                 "pretrained_missing", "pretrained_folder", "continue_and_pretrained", "nothing"]))
        out["action"] = action
        if action in ("continue", "validation", "pretrained", "continue_and_pretrained"):
            first = build()
            first.initialize()
            first.current_epoch = int(rng.integers(1, 5))
            checkpoint = {"continue": "checkpoint_latest.pth", "continue_and_pretrained": "checkpoint_latest.pth"}.get(
                action, "checkpoint_final.pth")
            first.save_checkpoint(os.path.join(first.output_folder, checkpoint))
            weights = os.path.join(first.output_folder, checkpoint)
        else:
            weights = os.path.join(trainer.output_folder, "nonexistent.pth")
            if action == "pretrained_folder":
                weights = trainer.output_folder
        continue_training = action.startswith("continue")
        validation_only = action.startswith("validation")
        pretrained = weights if action.startswith("pretrained") or action == "continue_and_pretrained" else None
        try:
            second = build(continue_training)
            maybe_load_checkpoint(second, continue_training, validation_only, pretrained)
            out["loaded"] = _trainer_summary(second)
            if second.was_initialized:
                out["weights"] = {k: v.detach().cpu().numpy() for k, v in second.network.state_dict().items()}
                if action != "nothing" and not action.endswith(("_none", "_missing", "_folder")):
                    ref_weights = torch.load(weights, map_location="cpu", weights_only=False)["network_weights"]
                    out["same_as_saved"] = all(torch.equal(v.cpu(), ref_weights[k].cpu())
                                               for k, v in second.network.state_dict().items())
                out.pop("weights")  # random initialisation differs between the sides' seeds; equality is enough
        except Exception:
            out["loaded"] = REFUSED
        return out
    finally:
        for root in (paths.nnUNet_preprocessed, paths.nnUNet_results):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _export_case(rng) -> dict:
    """``export_prediction_from_logits``: random logits (numpy or torch, float32/16) of label or region plans,
    cropped and resampled, transposed axes, with or without probabilities, dataset.json as dict or file: the files
    written (segmentation read back with its geometry; npz and pkl contents)."""
    import json
    import pickle
    import shutil
    import tempfile
    import numpy as np
    import SimpleITK as sitk
    import torch
    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    name = "Dataset991_ExportFuzz"
    plans = _tiny_plans_module().tiny_plans(name)
    transpose = [[0, 1, 2], [2, 0, 1], [1, 0, 2]][int(rng.integers(0, 3))]
    plans["transpose_forward"] = transpose
    plans["transpose_backward"] = [int(i) for i in np.argsort(transpose)]
    config = plans["configurations"]["3d_fullres"]
    if rng.random() < 0.3:
        config["resampling_fn_probabilities"] = "resample_torch_fornnunet"
        config["resampling_fn_probabilities_kwargs"] = {"is_seg": False, "force_separate_z": None,
                                                        "memefficient_seg_resampling": False}
    n = int(rng.integers(1, 4))
    labels: Dict[str, Any] = {"background": 0, **{f"l{i}": i for i in range(1, n + 1)}}
    regions = n >= 2 and rng.random() < 0.25
    dataset_json: Dict[str, Any] = {"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": 2,
                                    "file_ending": ".nii.gz"}
    if regions:
        dataset_json["labels"] = {"background": 0, "whole": list(range(1, n + 1)), "top": n}
        dataset_json["regions_class_order"] = [1, n]
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    heads = pm.get_label_manager(dataset_json).num_segmentation_heads
    # the image as read (array axes), transposed, then cropped (box and shapes in the transposed order, as the
    # preprocessor records them), then resampled to the configuration's spacing
    original = [int(v) for v in rng.integers(3, 9, 3)]
    spacing_orig = [float(v) for v in rng.choice([0.5, 1.0, 1.5, 3.0], 3)]
    original_t = [original[t] for t in transpose]
    lo = [int(rng.integers(0, 2)) for _ in range(3)]
    hi = [int(o - rng.integers(0, 2)) for o in original_t]
    bbox = [[a, b] for a, b in zip(lo, hi)]
    cropped_t = [b - a for a, b in bbox]
    spacing_t = [spacing_orig[t] for t in transpose]
    target = [float(v) for v in rng.choice([0.5, 1.0, 2.0], 3)]
    config["spacing"] = target
    cm = PlansManager(plans).get_configuration("3d_fullres")
    pm = PlansManager(plans)
    shape = [max(1, int(round(c * s / t))) for c, s, t in zip(cropped_t, spacing_t, target)]
    if rng.random() < 0.3:
        shape = list(cropped_t)
        cm.configuration["spacing"] = spacing_t
    logits = rng.normal(0, 3, (heads, *shape)).astype(np.float16 if rng.random() < 0.2 else np.float32)
    predicted = torch.from_numpy(logits) if rng.random() < 0.5 else logits
    props = {"spacing": spacing_orig, "shape_before_cropping": original_t, "bbox_used_for_cropping": bbox,
             "shape_after_cropping_and_before_resampling": cropped_t,
             "sitk_stuff": {"spacing": tuple(spacing_orig[::-1]), "origin": tuple(float(v) for v in rng.normal(0, 5, 3)),
                            "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}}
    save_probabilities = bool(rng.random() < 0.5)
    folder = tempfile.mkdtemp()
    try:
        dj: Any = dataset_json
        if rng.random() < 0.3:
            dj = os.path.join(folder, "dataset.json")
            with open(dj, "w") as f:
                json.dump(dataset_json, f)
        missing_folder = bool(rng.random() < 0.2)
        out_dir = os.path.join(folder, "out", "sub") if missing_folder else folder
        out: Dict[str, Any] = {"missing_folder": missing_folder, "call": _attempt(lambda: export_prediction_from_logits(
            predicted, props, cm, pm, dj, os.path.join(out_dir, "case"), save_probabilities, 1))}
        out["input_unchanged"] = bool(np.array_equal(np.asarray(predicted), logits))
        files = sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs
                       if f != "dataset.json")
        out["files"] = files
        for f in files:
            path = os.path.join(folder, f)
            if f.endswith(".nii.gz"):
                img = sitk.ReadImage(path)
                out[f] = {"array": sitk.GetArrayFromImage(img), "spacing": img.GetSpacing(),
                          "origin": img.GetOrigin(), "direction": img.GetDirection()}
            elif f.endswith(".npz"):
                with np.load(path) as z:
                    out[f] = {k: z[k] for k in z.files}
            elif f.endswith(".pkl"):
                with open(path, "rb") as fh:
                    out[f] = _comparable(pickle.load(fh))
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


CASES = {"crop": _crop_case, "onehot": _onehot_case, "norm": _norm_case, "resample": _resample_case,
         "misc": _misc_case, "logger": _logger_case, "network": _network_case, "resave": _resave_case,
         "revert": _revert_case, "overlay": _overlay_case, "unpack": _unpack_case, "trainer": _trainer_case,
         "export": _export_case}


# ---------------------------------------------------------------------------------------------------------------------
# documented differences (documentation/differences_from_reference.md): an item that differs only so is left out

def _documented(out_ref: dict, out_ours: dict):
    """(reason, item) of each item where the two outcomes differ in a documented way."""
    import numpy as np
    found = []
    refused = lambda v: isinstance(v, str) and v == REFUSED  # noqa: E731
    if "ensemble_name_dtrc" in out_ref and refused(out_ref["ensemble_name_dtrc"]) \
            and not refused(out_ours["ensemble_name_dtrc"]):
        found.append(("get_ensemble_name_from_d_tr_c returns the name (the reference None)", "ensemble_name_dtrc"))
    if out_ref.get("ndim") == 2:
        for item in ("bbox", "slice", "crop", "torch_fornnunet"):
            if item in out_ref and refused(out_ref[item]) and not refused(out_ours[item]):
                found.append(("2-D bounding boxes, cropping and torch resampling of (c, x, y) data answered (the "
                              "reference handles 3-D only)", item))
                if item == "crop":  # ours then wrote the label outside the mask into the caller's segmentation
                    found.append(("2-D bounding boxes, cropping and torch resampling of (c, x, y) data answered (the "
                                  "reference handles 3-D only)", "seg_after"))
    if out_ref.get("ndim") == 2 and "call" in out_ref and refused(out_ref["call"]) and not refused(out_ours["call"]):
        for item in ["call", "files"] + list(out_ours["files"]):
            found.append(("2-D bounding boxes, cropping and torch resampling of (c, x, y) data answered (the "
                          "reference handles 3-D only)", item))
    if out_ref.get("missing_folder") and refused(out_ref["call"]) and not refused(out_ours["call"]):
        for item in ["call", "files"] + list(out_ours["files"]):
            found.append(("export_prediction_from_logits creates the missing folder of its output file (the "
                          "reference fails)", item))
    if "trainer" in out_ref and out_ref["args"][0][0] == "int" \
            and refused(out_ref["trainer"]) and not refused(out_ours["trainer"]):
        for item in ["trainer", "folder_files", "action", "loaded", "same_as_saved"]:
            if item in out_ours:
                found.append(("get_trainer_from_args takes a dataset id as an int (the reference calls startswith "
                              "on it)", item))
    if out_ref.get("unsigned_seg_negative_label") and refused(out_ref["crop"]) and not refused(out_ours["crop"]):
        found.append(("crop_to_nonzero widens an unsigned segmentation to hold a negative label (the reference fails)",
                      "crop"))
    if out_ref.get("box_form") in ("tuple", "array"):
        for item in ("reverted", "segmentation"):
            if refused(out_ref[item]) and not refused(out_ours[item]):
                found.append(("crop boxes as tuples or arrays accepted by revert_cropping_on_probabilities (the "
                              "reference's integer check takes lists only)", item))
    if out_ref.get("constant_image") and "overlay" in out_ref and not refused(out_ref["overlay"]):
        found.append(("generate_overlay of a constant image: ours scales it to 0 and overlays the labels (the "
                      "reference divides by 0 and casts NaN)", "overlay"))
    if out_ref.get("no_properties") and refused(out_ref["normalized"]) and not refused(out_ours["normalized"]):
        found.append(("normalization schemes built without intensityproperties (the reference asserts a dict)",
                      "normalized"))
    for item in ("to_shape", "to_spacing"):
        if item in out_ref and isinstance(out_ref[item], np.ndarray) and 0 in out_ref[item].shape \
                and refused(out_ours[item]):
            found.append(("resampling to 0 voxels along an axis refused (the reference returns an empty array)", item))
    return found


def _kind(seed: int, entry_points: bool = False) -> str:
    """The kind of a case: from KINDS as it always was, or (--entry-points) from ENTRY_KINDS on a stream of its
    own, so that adding entry-point kinds changes no earlier seed's kind or draws."""
    import numpy as np
    if entry_points:
        return ENTRY_KINDS[int(np.random.default_rng([seed, 3]).integers(0, len(ENTRY_KINDS)))]
    return KINDS[int(np.random.default_rng([seed, 2]).integers(0, len(KINDS)))]


def drive(first_seed: int, n_cases: int, entry_points: bool, result_file: str) -> None:
    import numpy as np
    import torch
    from _fuzz_harness import drive_cases
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    drive_cases(list(range(n_cases)),
                lambda i: CASES[_kind(first_seed + i, entry_points)](np.random.default_rng(first_seed + i)),
                result_file)


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=4)
    p.add_argument("--cases", type=int, default=400)
    p.add_argument("--entry-points", action="store_true",
                   help="draw only the entry-point kinds (trainer, export) instead of the helpers'")
    args = p.parse_args()
    if args.driver:
        drive(int(args.driver[0]), int(args.driver[1]), args.driver[2] == "1", args.driver[3])
        return 0
    entry = args.entry_points

    with work_folder("nnunet_utilities_fuzz_", args.keep) as base:
        env = {"OMP_NUM_THREADS": "1"}
        if entry:  # the fabricated datasets and the trainers' output folders; each case removes its own
            env.update(nnUNet_preprocessed=os.path.join(base, "preprocessed"),
                       nnUNet_results=os.path.join(base, "results"))
        ref, ours = run_both(args, __file__, [str(args.seed), str(args.cases), "1" if entry else "0"], base,
                             lambda side: env)
        kinds: Dict[str, int] = {}
        for i in range(args.cases):
            kinds[_kind(args.seed + i, entry)] = kinds.get(_kind(args.seed + i, entry), 0) + 1
        print(f"{args.cases} cases (seed {args.seed}): " + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())))
        designed: Dict[str, int] = {}
        n_designed = 0
        for i in range(args.cases):
            r, o = ref["outcomes"][i], ours["outcomes"][i]
            if r["error"] or o["error"]:
                continue
            found = _documented(r, o)
            for reason, item in found:
                designed[reason] = designed.get(reason, 0) + 1
                r.pop(item, None), o.pop(item, None)
            n_designed += bool(found)
        differing, refused_both = compare_outcomes(
            ref, ours, list(range(args.cases)), lambda i: f"{_kind(args.seed + i, entry)} case seed {args.seed + i}")
        for reason, n in sorted(designed.items()):
            print(f"BY DESIGN ({n} items): {reason}")
        print_summary("cases", args.cases, differing, refused_both, ref, ours)
        print(f"{n_designed} cases had items that differ by design (left out of the comparison)")
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
