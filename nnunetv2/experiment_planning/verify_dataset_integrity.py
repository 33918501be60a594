"""Check a raw dataset before planning: dataset.json, file names, readability, geometry and label values.

Unlike the reference, which stops at the first failing check, every problem found is reported (file, what is wrong,
how to fix it) and the check fails once at the end, listing them all.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Sequence, Type

import numpy as np

from nnunetv2.errors import UserError, plain_numbers
from nnunetv2.utilities.input_checks import (broken_link_problem, channel_count_problem, is_nifti,
                                             multi_channel_label_problem,
                                             non_integer_label_values, nonfinite_voxels_in_nifti)

logger = logging.getLogger(__name__)

_MAX_LISTED = 50  # problems shown in the exception message; all of them are logged


class DatasetIntegrityError(UserError):
    """Raised when a dataset has problems; ``problems`` holds every one of them as a one-line message."""

    def __init__(self, folder: str, problems: List[str]):
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        super().__init__(f"Dataset integrity check failed for {folder}: {len(problems)} problem(s) found:\n"
                         f"{listed}{more}", "Fix the files listed above and run the check again.")

    def one_line(self) -> str:
        return (f"Dataset integrity check failed: {len(self.problems)} problem(s) found (listed above); "
                f"first: {self.problems[0]}")


# --------------------------------------------------------------------------------------------------------------------
# per-case checks (run in worker processes)
# --------------------------------------------------------------------------------------------------------------------
def _label_problems(seg: np.ndarray, label_file: str, expected_labels: Sequence[int]) -> List[str]:
    if np.isnan(seg).any():
        return [f"{label_file}: the segmentation contains NaN values. Labels must be integers."]
    fractional = non_integer_label_values(seg)
    if fractional:
        return [f"{label_file}: label values that are not whole numbers (e.g. "
                f"{', '.join(f'{v:g}' for v in fractional)}) would be truncated. Round the label map and save it "
                f"with an integer pixel type."]
    found = np.unique(seg)
    unexpected = [v for v in found if v not in set(expected_labels)]
    if unexpected:
        shown = ", ".join(str(int(v)) if float(v).is_integer() else str(v) for v in unexpected)
        return [f"{label_file}: label value(s) {shown} are not declared in dataset.json (declared: "
                f"{', '.join(str(int(v)) for v in expected_labels)}). Declare them under 'labels' or fix the file."]
    return []


def _spatial_part(value: Sequence[float], key: str) -> List[float]:
    """Origin/direction of the first three image axes: a 4-D file (channels along the 4th ITK axis) carries a 4th
    origin entry and a 4x4 direction that have no counterpart in its 3-D label."""
    value = list(value)
    if key == "direction" and len(value) == 16:
        return [value[r * 4 + c] for r in range(3) for c in range(3)]
    if key == "origin" and len(value) == 4:
        return value[:3]
    return value


def _geometry_problems(img_props: dict, seg_props: dict, image_files: Sequence[str], label_file: str) -> List[str]:
    problems = []
    if len(img_props["spacing"]) != len(seg_props["spacing"]):
        return [f"{label_file}: has {len(seg_props['spacing'])} spatial dimensions, its image(s) "
                f"{len(img_props['spacing'])} ({image_files[0]}). Image and label must share one geometry."]
    if not np.allclose(img_props["spacing"], seg_props["spacing"]):
        problems.append(f"{label_file}: spacing {plain_numbers(seg_props['spacing'])} differs from that of its "
                        f"image(s) {plain_numbers(img_props['spacing'])} ({image_files[0]}). Image and label must "
                        f"share one geometry.")
    if "sitk_stuff" in img_props and "sitk_stuff" in seg_props:
        for key in ("origin", "direction"):
            a, b = _spatial_part(img_props["sitk_stuff"][key], key), _spatial_part(seg_props["sitk_stuff"][key], key)
            if len(a) != len(b) or not np.allclose(a, b):
                problems.append(f"{label_file}: {key} {plain_numbers(b)} differs from that of its image "
                                f"{plain_numbers(a)} ({image_files[0]}). Fix the header of one of them (check "
                                f"alignment with nnUNetv2_plot_overlay_pngs).")
    if "nibabel_stuff" in img_props and "nibabel_stuff" in seg_props:
        a, b = img_props["nibabel_stuff"]["original_affine"], seg_props["nibabel_stuff"]["original_affine"]
        if np.shape(a) != np.shape(b) or not np.allclose(a, b):
            problems.append(f"{label_file}: the affine differs from that of its image ({image_files[0]}). Fix the "
                            f"header of one of them.")
    return problems


def case_problems(image_files: Sequence[str], label_file: str, expected_num_channels: int,
                  readerclass: Type, expected_labels: Sequence[int]) -> List[str]:
    """Every problem of one training case (images and label), as one-line messages."""
    rw = readerclass()
    problems = []
    try:
        images, img_props = rw.read_images(image_files)
    except Exception as e:  # a UserError from the reader already names the file; anything else gets named here
        return [_read_failure(image_files, e)]
    try:
        seg, seg_props = rw.read_seg(label_file)
    except Exception as e:
        return [_read_failure([label_file], e)]
    if not np.isfinite(images).all():
        kinds = [k for k, bad in (("NaN", np.isnan(images).any()), ("inf", np.isinf(images).any())) if bad]
        problems.append(f"{', '.join(image_files)}: the image contains {' and '.join(kinds)} values. Replace them "
                        f"(e.g. with 0) before training.")
    problems += _hidden_nonfinite_problems(image_files, rw)
    multi_channel = multi_channel_label_problem(seg, label_file)
    if multi_channel:
        return problems + [" ".join(multi_channel)]
    problems += _label_problems(seg, label_file, expected_labels)
    if images.shape[1:] != seg.shape[1:]:
        problems.append(f"{label_file}: shape {tuple(seg.shape[1:])} differs from the shape of its image(s) "
                        f"{tuple(images.shape[1:])} ({image_files[0]}). Image and label must have the same size.")
    else:
        problems += _geometry_problems(img_props, seg_props, image_files, label_file)
    channels = channel_count_problem(images.shape[0], image_files, expected_num_channels)
    if channels is not None:
        problems.append(channels + ".")
    return problems


def _hidden_nonfinite_problems(image_files: Sequence[str], rw) -> List[str]:
    """NaN/inf in float NIfTI files read by SimpleITK, which turns them into 0 (invisible in the array)."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    if not isinstance(rw, SimpleITKIO):
        return []
    problems = []
    for f in image_files:
        n = nonfinite_voxels_in_nifti(f) if is_nifti(f) else 0
        if n:
            problems.append(f"{f}: {n} NaN/inf voxel(s) in the file (SimpleITK reads them as 0). Replace them "
                            f"(e.g. with 0) before training.")
    return problems


def _read_failure(files: Sequence[str], e: Exception) -> str:
    text = e.one_line() if isinstance(e, UserError) else f"{type(e).__name__}: {' '.join(str(e).split())}"
    return f"cannot read {', '.join(files)}: {text}"


def verify_labels(label_file: str, readerclass: Type, expected_labels: List[int]) -> bool:
    """Reference-compatible single check: True if the label file holds only expected values."""
    seg, _ = readerclass().read_seg(label_file)
    problems = _label_problems(seg, label_file, expected_labels)
    for p in problems:
        logger.error(p)
    return not problems


def check_cases(image_files: List[str], label_file: str, expected_num_channels: int, readerclass: Type) -> bool:
    """Reference-compatible single check of one case (labels not checked here): True if it is fine."""
    rw = readerclass()
    seg, _ = rw.read_seg(label_file)
    expected = [int(v) for v in np.unique(seg) if not np.isnan(v)]
    problems = case_problems(image_files, label_file, expected_num_channels, readerclass, expected)
    for p in problems:
        logger.error(p)
    return not problems


# --------------------------------------------------------------------------------------------------------------------
# dataset-level checks
# --------------------------------------------------------------------------------------------------------------------
def _file_name_problems(folder: str, dataset: Dict[str, dict], file_ending: str, num_channels: int) -> List[str]:
    """Missing labels/channels, labels without images, files with the wrong ending or name (imagesTr/labelsTr form)."""
    problems = []
    images_dir, labels_dir = os.path.join(folder, "imagesTr"), os.path.join(folder, "labelsTr")
    image_pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(file_ending) + r"$")
    for sub in (images_dir, labels_dir):
        for f in sorted(os.listdir(sub)):
            if f.startswith(".") or os.path.isdir(os.path.join(sub, f)):
                continue
            if _is_spacing_side_car(f, file_ending, dataset):
                continue
            if not f.endswith(file_ending):
                problems.append(f"{os.path.join(sub, f)}: does not end with '{file_ending}' (the file_ending of "
                                f"dataset.json). Convert it or remove it.")
            elif sub == images_dir and not image_pattern.match(f):
                problems.append(f"{os.path.join(sub, f)}: image names must be CASE_XXXX{file_ending} with a 4-digit "
                                f"channel index (e.g. case1_0000{file_ending}).")
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    from nnunetv2.imageio.tif_reader_writer import Tiff3DIO

    # an image format that holds several channels per file (RGB png for R, G, B; not .tif, which 3-D readers take
    # one channel per file), and most cases with one file: a case with a few more files has stray files, not
    # missing ones
    rgb_endings = set(NaturalImage2DIO.supported_file_endings) - set(Tiff3DIO.supported_file_endings)
    one_file_layout = (num_channels > 1 and file_ending in rgb_endings
                       and 2 * sum(len(e["images"]) == 1 for e in dataset.values()) > len(dataset))
    for identifier, entry in dataset.items():
        if len(entry["images"]) > num_channels:
            problems.append(channel_count_problem(len(entry["images"]), entry["images"], num_channels) + ".")
        first = os.path.join(images_dir, f"{identifier}_0000{file_ending}")
        stray_files = one_file_layout and 1 < len(entry["images"]) < num_channels and first in entry["images"]
        if stray_files:
            # asking for the remaining _XXXX files would give a case of num_channels files of num_channels channels
            # each: the extra files are what is wrong
            extra = [os.path.basename(f) for f in sorted(entry["images"]) if f != first]
            problems.append(f"{images_dir}: case {identifier} has {len(entry['images'])} image files, but the other "
                            f"cases hold all {num_channels} channels in one file ({identifier}_0000{file_ending}). "
                            f"Remove {', '.join(extra)}.")
        for c in range(0 if stray_files else num_channels):
            expected = os.path.join(images_dir, f"{identifier}_{c:04d}{file_ending}")
            # one file may hold several channels (an RGB png for channel_names R, G, B): the channels it gives are
            # counted when the case is read, so only a case of several files must have one file per channel
            if expected not in entry["images"] and (c == 0 or len(entry["images"]) > 1):
                problems.append(f"{expected}: missing (case {identifier} needs one file per channel, "
                                f"_0000.._{num_channels - 1:04d}).")
        if broken_link_problem(entry["label"]):
            problems.append(f"{broken_link_problem(entry['label'])}. Point the link to the real file, or remove it.")
        elif not os.path.isfile(entry["label"]):
            problems.append(f"{entry['label']}: missing; the image {entry['images'][0] if entry['images'] else identifier}"
                            f" has no label. Add it or remove the image.")
    for f in sorted(os.listdir(labels_dir)):
        if f.endswith(file_ending) and not f.startswith("."):
            identifier = f[:-len(file_ending)]
            link_problem = broken_link_problem(os.path.join(labels_dir, f))
            if identifier not in dataset and link_problem:
                problems.append(f"{link_problem}. Point the link to the real file, or remove it.")
            elif identifier not in dataset:
                problems.append(f"{os.path.join(labels_dir, f)}: a label without image (no {identifier}_0000"
                                f"{file_ending} in imagesTr). Add the image or remove the label.")
    return problems


def _is_spacing_side_car(fname: str, file_ending: str, dataset: Dict[str, dict]) -> bool:
    """CASE.json next to the .tif files of case CASE holds their spacing (Tiff3DIO); it belongs there."""
    from nnunetv2.imageio.tif_reader_writer import Tiff3DIO

    return (file_ending in Tiff3DIO.supported_file_endings and fname.endswith(".json")
            and fname[:-len(".json")] in dataset)


def _listed_file_problems(dataset: Dict[str, dict]) -> List[str]:
    problems = []
    for identifier, entry in dataset.items():
        for f in list(entry["images"]) + [entry["label"]]:
            if broken_link_problem(f):
                problems.append(f"{broken_link_problem(f)} (listed for case {identifier} under 'dataset' in "
                                f"dataset.json).")
            elif not os.path.isfile(f):
                problems.append(f"{f}: listed for case {identifier} under 'dataset' in dataset.json but missing.")
    return problems


def _run_case_checks(jobs: List[tuple], num_processes: int) -> List[str]:
    from nnunetv2.utilities.case_pool import run_cases
    per_case = run_cases(case_problems, jobs, [job[1] for job in jobs], num_processes, desc="Verifying cases",
                         show_progress_bar=num_processes > 1)
    return [p for problems in per_case for p in problems]


def _determine_reader(dataset_json: dict, cases: Dict[str, dict], max_tries: int = 5):
    """Reader class chosen from the first readable case's first image, and the cases whose first image could not be
    read on the way (so that one corrupt file does not hide the checks of all others)."""
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    unreadable = {}
    for identifier, entry in list(cases.items())[:max_tries]:
        try:
            return determine_reader_writer_from_dataset_json(dataset_json, entry["images"][0], verbose=False), unreadable
        except UserError as e:
            unreadable[identifier] = e
    return None, unreadable


def dataset_problems(folder: str, num_processes: int = 8) -> List[str]:
    """Every problem of the raw dataset in ``folder`` (empty list: the dataset is fine)."""
    from nnunetv2.utilities.dataset_json import dataset_json_problems, load_dataset_json, num_training_mismatch
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    dj_file = os.path.join(folder, "dataset.json")
    dataset_json = load_dataset_json(dj_file)
    problems = dataset_json_problems(dataset_json, source=dj_file)
    if problems:  # the rest of the checks rely on a sound dataset.json
        return problems
    if "dataset" not in dataset_json:
        missing = [d for d in ("imagesTr", "labelsTr") if not os.path.isdir(os.path.join(folder, d))]
        if missing:
            return [f"{os.path.join(folder, d)}: folder missing (needed unless dataset.json lists the files under "
                    f"'dataset')." for d in missing]
    file_ending = dataset_json["file_ending"]
    num_channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {})))
    dataset = get_filenames_of_train_images_and_targets(folder, dataset_json)
    mismatch = num_training_mismatch(dataset_json, len(dataset))
    if mismatch is not None:
        problems.append(f"{dj_file}: {mismatch}. Correct numTraining or add/remove cases.")
    if "dataset" in dataset_json:
        problems += _listed_file_problems(dataset)
    else:
        problems += _file_name_problems(folder, dataset, file_ending, num_channels)
    # cases with missing files are reported above already; reading them would only repeat that
    complete = {k: v for k, v in dataset.items() if v["images"] and all(os.path.isfile(f) for f in v["images"])
                and os.path.isfile(v["label"]) and ("dataset" in dataset_json or len(v["images"]) in (1, num_channels))}
    if not complete:
        return problems or [f"{folder}: no complete training case found."]

    label_manager = LabelManager(dataset_json["labels"], regions_class_order=dataset_json.get("regions_class_order"))
    expected_labels = [int(v) for v in label_manager.all_labels]
    if label_manager.has_ignore_label:
        expected_labels.append(int(label_manager.ignore_label))
    reader, unreadable = _determine_reader(dataset_json, complete)
    problems += [_read_failure([complete[k]["images"][0]], e) for k, e in unreadable.items()]
    if reader is None:
        return problems
    jobs = [(v["images"], v["label"], num_channels, reader, expected_labels)
            for k, v in complete.items() if k not in unreadable]
    return problems + _run_case_checks(jobs, num_processes)


def verify_dataset_integrity(folder: str, num_processes: int = 8) -> None:
    """Raise ``DatasetIntegrityError`` listing every problem of the raw dataset in ``folder``; log all of them."""
    problems = dataset_problems(folder, num_processes)
    if problems:
        for p in problems:
            logger.error(p)
        raise DatasetIntegrityError(folder, problems)
    logger.info("Verified dataset %s: no problems found.", folder)
