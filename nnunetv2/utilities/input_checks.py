"""Cheap checks of the arrays and files every run reads anyway, so that a wrong input is named instead of being
silently altered (labels truncated to integers, a case dropped, NaN read as 0) or failing deep inside.

Each check works on data already in memory (one pass, in bounded blocks) or on file metadata; none reads an image
a second time, except ``nonfinite_voxels_in_nifti`` for float NIfTI files, whose NaN/inf SimpleITK hides.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import sys
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2.errors import UserError, plain_numbers

_BLOCK_VOXELS = 1 << 24  # ~64 MB of float32 per block: bounded extra memory for the checks below


def is_whole_number(value) -> bool:
    """A Python or numpy integer, not a bool (True is an int to Python, but never a count, label or axis)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _blocks(a: np.ndarray) -> Iterator[np.ndarray]:
    """Views of ``a`` along its largest leading axis, each about ``_BLOCK_VOXELS`` elements."""
    if a.ndim == 0 or a.size <= _BLOCK_VOXELS:
        yield a
        return
    flat = a.reshape(-1) if a.flags.c_contiguous else None
    if flat is not None:
        for i in range(0, flat.size, _BLOCK_VOXELS):
            yield flat[i:i + _BLOCK_VOXELS]
        return
    step = max(1, a.shape[0] * _BLOCK_VOXELS // a.size)
    for i in range(0, a.shape[0], step):
        yield a[i:i + step]


def broken_link_problem(path: str) -> Optional[str]:
    """Why ``path`` is a symbolic link that leads nowhere (a loop or a missing target), or None if it is not one."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{path} is a symbolic link loop (it leads back to itself through links), not a file"
        return f"{path} is a symbolic link to {os.readlink(path)}, which does not exist"
    return None


def non_integer_label_values(seg: np.ndarray, max_shown: int = 5) -> List[float]:
    """Up to ``max_shown`` label values that are not whole numbers (a label map saved as float and then resampled,
    e.g. 0.9999). Integer arrays pass at no cost."""
    if seg.dtype.kind in "iub":
        return []
    found: List[float] = []
    for block in _blocks(seg):
        bad = block[np.trunc(block) != block]  # NaN is caught here too (NaN != NaN)
        if bad.size:
            found.extend(float(v) for v in np.unique(bad)[:max_shown])
            if len(found) >= max_shown:
                break
    return sorted(set(found))[:max_shown]


def check_integer_labels(seg: np.ndarray, label_file: str, bad: Optional[List[float]] = None) -> None:
    """UserError if the label map holds values that are not whole numbers (storing them as integers would
    truncate 0.9999 to 0 and 1.9999 to 1 without a word). ``bad``: those values, where already known."""
    bad = non_integer_label_values(seg) if bad is None else bad
    if bad:
        raise UserError(f"{label_file} holds label values that are not whole numbers (e.g. "
                        f"{', '.join(f'{v:g}' for v in bad)}); nnU-Net stores labels as integers and would truncate "
                        f"them.", "Round the label map (e.g. np.round) and save it with an integer pixel type.")


def highest_label(label_manager) -> int:
    """The highest value a label map of the dataset may hold: its highest label, or its ignore label."""
    return max(label_manager.all_labels + [label_manager.ignore_label or 0])


def label_key(value):
    """A label or region as class_locations keys it, in plain Python: an int, or a tuple of ints for a region (from
    dataset.json's lists, or numpy's integers in keys that crossed a process boundary)."""
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value)


def check_label_range(seg: np.ndarray, label_file: str, highest_label: int, lowest_label: int = 0) -> None:
    """UserError if the label map (of ``label_file``) holds values below ``lowest_label`` or above the highest label
    dataset.json declares (its ignore label included). Training would otherwise stop at its first batch with "index
    255 is out of bounds" (on a GPU: "device-side assert triggered"), or, with regions, train on such voxels as
    background without a word; negative values too (the default preprocessor checks a label file's own ones before
    cropping marks the voxels outside the image with -1). Two passes over the map (min and max); the values are
    looked up only when something is wrong."""
    if seg.size == 0:
        return
    low, high = seg.min(), seg.max()
    if low >= lowest_label and high <= highest_label:
        return
    bad = np.unique(seg[(seg < lowest_label) | (seg > highest_label)])
    shown = ", ".join(f"{v:g}" for v in bad[:5].tolist()) + (", ..." if bad.size > 5 else "")
    mask_value = next((v for v in (255, 65535) if v in bad and highest_label < v), None)
    hint = (f"Binary masks saved with {mask_value} for foreground? Map {mask_value} to 1 (or to the label it stands "
            f"for). " if mask_value is not None else "")
    fix = "Fix the label file, or declare the values under 'labels' in dataset.json"
    if bad[0] < 0:  # labels are never negative
        hint += ("Negative values marking unannotated voxels? Declare an ignore label in dataset.json (the highest "
                 f"label value, e.g. \"ignore\": {highest_label + 1}) and give those voxels that value. ")
        fix = "Fix the label file"
    raise UserError(f"{label_file} holds label value(s) {shown}, but dataset.json declares labels 0..{highest_label} "
                    f"only.", f"{hint}{fix}; nnUNetv2_plan_and_preprocess --verify_dataset_integrity lists every "
                              f"such file.")


def check_labels_fit_int16(seg: np.ndarray, label_file: str, highest_label: int) -> None:
    """UserError if the label map holds values that a 16-bit label map cannot hold. Preprocessing stores labels as
    int16, and the cast would wrap them without a word: 65535, the foreground of 16-bit binary masks, becomes -1,
    which marks voxels outside the image's nonzero region, so training would learn that object as background.
    Undeclared values are named as ``check_label_range`` names them; declared ones above 32767 get their own line."""
    if seg.size == 0:
        return
    limits = np.iinfo(np.int16)
    if seg.min() >= limits.min and seg.max() <= limits.max:
        return
    check_label_range(seg, label_file, highest_label, lowest_label=-1)
    raise UserError(f"{label_file}: dataset.json declares labels up to {highest_label}, but nnU-Net stores label maps "
                    f"as 16-bit integers (at most {limits.max}).",
                    "Renumber the labels 0, 1, 2, ... in dataset.json and in the label files.")


def check_labels_are_channels(seg: np.ndarray, label_file: str, labels: Sequence[int],
                              ignore_label: Optional[int]) -> None:
    """Without regions, training takes label value k for output channel k, so the declared labels must be 0..n-1. With
    a gap ({0, 1, 3}) a voxel of 3 names a channel the network does not have, and training stops at its first batch
    with an index error. UserError where such a voxel exists (a declared gap that no file uses trains as in the
    reference); free for consecutive labels."""
    n = len(labels)
    if sorted(labels) == list(range(n)) or seg.size == 0 or seg.max() < n:
        return
    bad = np.unique(seg[(seg >= n) & (seg != (-2 if ignore_label is None else ignore_label))])
    if bad.size == 0:
        return
    shown = ", ".join(f"{v:g}" for v in bad[:5].tolist()) + (", ..." if bad.size > 5 else "")
    raise UserError(f"{label_file} holds label value(s) {shown}, but the labels dataset.json declares "
                    f"({', '.join(map(str, sorted(labels)))}) are not consecutive: training takes label k for output "
                    f"channel k of {n}.", "Renumber the labels 0, 1, 2, ... in dataset.json and in the label files "
                                          "(nnUNetv2_plan_and_preprocess --verify_dataset_integrity names every "
                                          "problem of a dataset).")


_folders_warned_about_non_integer_labels: set = set()


def warn_non_integer_labels(seg: np.ndarray, label_file: str, log: logging.Logger) -> bool:
    """Warn (through ``log``) if the label map holds values that are not whole numbers; whether it does. For the
    checks that run before the preprocessor is known: the reference accepts such maps there, and packages built on
    it (regression / distance-map stacks with their own preprocessor) feed continuous maps as labels on purpose. The
    default preprocessor, which stores labels as integers, refuses them (``check_integer_labels``). One warning per
    label folder and process: a regression dataset would otherwise print one for every case."""
    bad = non_integer_label_values(seg)
    folder = os.path.dirname(os.path.abspath(label_file))
    if bad and folder not in _folders_warned_about_non_integer_labels:
        _folders_warned_about_non_integer_labels.add(folder)
        log.warning("WARNING: %s holds label values that are not whole numbers (e.g. %s); other label files of that "
                    "folder may too (named once). The default preprocessor refuses them (it stores labels as "
                    "integers); only a custom preprocessor that keeps them as they are can use this dataset.",
                    label_file, ", ".join(f"{v:g}" for v in bad))
    return bool(bad)


def multi_channel_label_problem(seg: np.ndarray, label_file: str) -> Optional[Tuple[str, str]]:
    """(what is wrong, how to fix it) when a label file was read as several channels, else None: a 4-D file holds
    several volumes; a 2-D colour image (RGB/RGBA, or a palette png, which is read as its colours) several colour
    channels."""
    if seg.shape[0] == 1:
        return None
    natural_image = str(label_file).lower().endswith((".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"))
    if natural_image and seg.ndim == 4 and seg.shape[0] in (3, 4) and seg.shape[1] == 1:
        return (f"{label_file} is a colour image ({seg.shape[0]} channels that differ: RGB/RGBA, or a palette png, "
                f"which is read as its colours), but a label file must hold one label value per pixel.",
                "Save the labels as a greyscale image of the values 0, 1, 2, ... (for a palette png: "
                "Image.fromarray(np.asarray(Image.open(f))) keeps its indices).")
    return (f"{label_file} holds {seg.shape[0]} volumes (a 4-D file), but a label file must hold one label map.",
            "Save the labels of a case as one 3-D (or 2-D) image.")


def check_single_channel_label(seg: np.ndarray, label_file: str) -> None:
    """A label file holds one map; a 4-D file (several volumes) or a colour image is read as several channels."""
    problem = multi_channel_label_problem(seg, label_file)
    if problem:
        raise UserError(*problem)


def channel_count_problem(num_channels: int, image_files: Sequence[str], expected: int,
                          what: str = "dataset.json's channel_names") -> Optional[str]:
    """Why a case's images do not give ``expected`` channels (naming the case's files), or None."""
    if num_channels == expected:
        return None
    files = ", ".join(str(f) for f in image_files)
    if len(image_files) > expected:
        why = (f"{len(image_files)} image files were found for the case but {what} declares {expected} channel(s) "
               f"(a stray file such as _{expected:04d}?)")
    elif len(image_files) == 1 and num_channels > expected:
        kind = "an RGBA image" if num_channels == 4 and expected == 3 else "a 4-D or colour image"
        why = f"the file holds {num_channels} channels ({kind}), but {what} declares {expected}"
    elif len(image_files) == 1 and num_channels < expected:
        others = [re.sub(r"_0000(\.[^/\\]+)$", rf"_{c:04d}\1", str(image_files[0]))
                  for c in range(num_channels, expected)]
        why = (f"the image files give {num_channels} channel(s), but {what} declares {expected}: missing "
               f"{', '.join(others)} (one file per channel), or a grey image where a colour one is expected?")
    else:
        why = f"the image files give {num_channels} channel(s), but {what} declares {expected}"
    return f"{files}: {why}"


def check_channel_count(num_channels: int, image_files: Sequence[str], expected: int,
                        what: str = "dataset.json's channel_names") -> None:
    problem = channel_count_problem(num_channels, image_files, expected, what)
    if problem is not None:
        raise UserError(problem + ".", "Each case needs exactly one image file per declared channel "
                                       "(CASE_0000, CASE_0001, ...), each holding one channel (RGB: 3 for a .png).")


_ARRAY_HINT = ("nnU-Net takes images as numpy arrays (channels, z, y, x), 2-D images as (channels, 1, y, x), with "
               "properties {'spacing': (sz, sy, sx)} in the same axis order (2-D: e.g. (999, sy, sx)); "
               "SimpleITKIO().read_images([file_0000, ...]) returns both in this form.")


def case_array_problem(data, properties) -> Optional[str]:
    """What is wrong with an image handed to nnU-Net as an array (predict_single_npy_array, run_case_npy, ...), or
    None. Readers always produce the right form; a caller's own array is often 3-D (no channel axis), a batch
    (5-D), a torch tensor, or comes with no or a mis-sized spacing, which otherwise fail deep inside."""
    if not isinstance(data, np.ndarray):
        if type(data).__module__.startswith("torch"):
            return "The image is a torch tensor, not a numpy array (use tensor.cpu().numpy())."
        return f"The image is a {type(data).__name__}, not a numpy array."
    if data.ndim != 4:
        extra = " (a batch axis?)" if data.ndim == 5 else " (no channel axis: add it with image[None])" \
            if data.ndim in (2, 3) else ""
        return f"The image array has shape {tuple(data.shape)}: {data.ndim} axes{extra}, where 4 are needed."
    if 0 in data.shape:
        return f"The image array has shape {tuple(data.shape)}: no voxels."
    if not isinstance(properties, dict) or "spacing" not in properties:
        got = "have no 'spacing'" if isinstance(properties, dict) else \
            f"are {'None' if properties is None else 'a ' + type(properties).__name__}"
        return f"The image properties {got}; a dict with 'spacing' (one value per spatial axis) is needed."
    spacing = properties["spacing"]
    try:
        if isinstance(spacing, (str, bytes)):
            raise TypeError
        values = [float(v) for v in spacing]
    except (TypeError, ValueError):
        return f"The image spacing {spacing!r} is not a sequence of numbers."
    if len(values) != 3:
        return (f"The image spacing {plain_numbers(spacing)} has {len(values)} value(s), but the image has 3 "
                f"spatial axes (shape {tuple(data.shape)}).")
    if not all(np.isfinite(v) and v > 0 for v in values):
        return f"The image spacing {plain_numbers(spacing)} is not positive and finite on every axis."
    return None


def check_case_array(data, properties) -> None:
    problem = case_array_problem(data, properties)
    if problem is not None:
        raise UserError(problem, _ARRAY_HINT)


def nonfinite_counts(images: np.ndarray) -> tuple:
    """(number of NaN, number of +-inf) values in a float array (in blocks: no full-size temporaries)."""
    if images.dtype.kind not in "fc":
        return 0, 0
    nan = inf = 0
    for block in _blocks(images):
        finite = np.isfinite(block)
        if not finite.all():
            n_nan = int(np.isnan(block).sum())
            nan += n_nan
            inf += int(finite.size - finite.sum()) - n_nan
    return nan, inf


def is_nifti(path: str) -> bool:
    return str(path).endswith((".nii", ".nii.gz"))


def nonfinite_voxels_in_nifti(path: str) -> int:
    """NaN and inf voxels stored in a float NIfTI file. SimpleITK's NIfTI reader replaces them by 0 without a
    word, so they can only be seen in the file itself; integer files cannot hold them and cost nothing here."""
    from nnunetv2.imageio.nifti_completeness import load_nifti_lazily
    with open(path, "rb") as f:
        img = load_nifti_lazily(str(path), f)
        if img.get_data_dtype().kind not in "fc":
            return 0
        nan, inf = nonfinite_counts(img.dataobj.get_unscaled())
    return nan + inf


def labels_in_no_case(found: set, foreground: Sequence, label_names: dict) -> List[str]:
    """The foreground labels / regions (``foreground``: the label manager's, as ints or sequences) that are not in
    ``found`` (class_locations keys that at least one case holds: ints, or tuples for regions), each as
    ``'name' (value)`` with its name from dataset.json's ``labels`` (``label_names``: name -> int or list)."""
    names = {}
    for name, value in label_names.items():
        names.setdefault(label_key(value), name)
    missing = [label_key(k) for k in foreground if label_key(k) not in found]
    return [f"'{names[k]}' ({', '.join(map(str, k)) if isinstance(k, tuple) else k})" if k in names else str(k)
            for k in missing]


def warn_labels_in_no_case(found: set, label_manager, dataset_json: dict, num_cases: int, where: str) -> None:
    """Print one warning if a foreground label (or region) that dataset.json declares occurs in none of the
    ``num_cases`` preprocessed cases of ``where``: training has nothing to learn it from and the model will predict it
    nowhere (label files all background, or a label declared that the files never use)."""
    foreground = label_manager.foreground_regions if label_manager.has_regions else label_manager.foreground_labels
    missing = labels_in_no_case(found, foreground, dataset_json.get('labels', {}))
    if missing:
        what = "region(s)" if label_manager.has_regions else "label(s)"
        print(f"WARNING: {what} {', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''} of dataset.json occur "
              f"in none of the {num_cases} training case(s) of {where}: training has nothing to learn them from, and "
              f"the model will predict them nowhere. Check the label files and the labels dataset.json declares.",
              file=sys.stderr, flush=True)
