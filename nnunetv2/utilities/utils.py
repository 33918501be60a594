"""How the list of training cases of a raw dataset is built.

Images follow ``<CASE>_<CCCC><file_ending>``; the case identifier is the name without its last
``len(file_ending) + 5`` characters. Listing a folder once and grouping its files by identifier gives the same
result as matching every identifier against every file, in a fraction of the time.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Iterable, List, Optional

import numpy as np

from nnunetv2.errors import UserError
from nnunetv2.file_io import TMP_PREFIX
from nnunetv2.utilities.input_checks import broken_link_problem

_CHANNEL_SUFFIX = re.compile(r"_\d\d\d\d")


_APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07"


def is_appledouble(path: str) -> bool:
    """Whether ``path`` is one of the ``._<name>`` files macOS writes beside every file it copies to a drive that
    cannot hold its metadata (exFAT/FAT USB disks, many network shares). They carry the name of an image with the
    image's ending but hold no image, so they are never a case."""
    if not os.path.basename(path).startswith("._"):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(4) == _APPLEDOUBLE_MAGIC
    except OSError:
        return False


def sorted_files_with_ending(folder: str, file_ending: str) -> List[str]:
    """Names (not paths) of the plain files in ``folder`` ending with ``file_ending`` (case sensitive), sorted.
    Our own temporary files (a writer killed mid-write leaves one behind) and macOS's metadata files (``._<name>``)
    are not listed."""
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        raise UserError(f"Folder {folder} does not exist.",
                        "Check the dataset folder (training images go into imagesTr/).") from None
    except NotADirectoryError:
        raise UserError(f"{folder} is not a folder.", "Pass the folder that holds the image files.") from None
    files = []
    for e in sorted(entries):
        if not e.endswith(file_ending) or e.startswith(TMP_PREFIX):
            continue
        path = os.path.join(folder, e)
        if os.path.isfile(path):
            if not is_appledouble(path):
                files.append(e)
            continue
        problem = broken_link_problem(path)
        if problem is not None:  # skipping it would silently drop a case
            raise UserError(problem + ".", "Point the link to the real file, or remove it.")
    return files


def _identifier_of(name: str, file_ending: str) -> Optional[str]:
    """The case identifier of an image file name ``<id>_<4 digits><file_ending>``, or None if it does not fit."""
    if not name.endswith(file_ending):
        return None
    stem = name[:len(name) - len(file_ending)]
    if len(stem) < 5 or _CHANNEL_SUFFIX.fullmatch(stem[-5:]) is None:
        return None
    return stem[:-5]


def get_identifiers_from_splitted_dataset_folder(folder: str, file_ending: str) -> np.ndarray:
    """Sorted unique case identifiers of the files in ``folder`` ending with ``file_ending``.

    Like the reference, the identifier is the name minus its last ``len(file_ending) + 5`` characters, whether or
    not the file follows the ``_XXXX`` channel convention.
    """
    files = sorted_files_with_ending(folder, file_ending)
    crop = len(file_ending) + 5
    return np.unique([f[:-crop] for f in files])


def create_paths_fn(folder: str, files: List[str], file_ending: str, f: str) -> List[str]:
    """Full paths of those ``files`` that are channel files of case ``f`` (``<f>_XXXX<file_ending>``)."""
    pattern = re.compile(re.escape(f) + r"_\d\d\d\d" + re.escape(file_ending))
    return [os.path.join(folder, i) for i in files if pattern.fullmatch(i)]


def create_lists_from_splitted_dataset_folder(folder: str, file_ending: str, identifiers: Optional[Iterable[str]] = None,
                                              num_processes: int = 12) -> List[List[str]]:
    """One sorted list of channel files per identifier (in the order of ``identifiers``).

    ``num_processes`` is kept for signature compatibility; a single pass over the folder listing is faster than
    any process pool.
    """
    files = sorted_files_with_ending(folder, file_ending)
    if identifiers is None:
        crop = len(file_ending) + 5
        identifiers = np.unique([f[:-crop] for f in files])
    groups: Dict[str, List[str]] = {}
    for name in files:  # sorted, so every group is sorted too
        ident = _identifier_of(name, file_ending)
        if ident is not None:
            groups.setdefault(ident, []).append(os.path.join(folder, name))
    return [list(groups.get(str(i), [])) for i in identifiers]


def _resolve_listed_path(raw_dataset_folder: str, path: str) -> str:
    expanded = os.path.expandvars(path)
    if os.path.isabs(expanded):
        return expanded
    return os.path.abspath(os.path.join(raw_dataset_folder, expanded))


def get_filenames_of_train_images_and_targets(raw_dataset_folder: str, dataset_json: Optional[dict] = None) -> dict:
    """``{identifier: {'images': [paths], 'label': path}}`` for the training cases of a raw dataset.

    With a ``dataset`` key in dataset.json its entries are used (and updated in place, like the reference): paths
    get environment variables expanded, relative ones are made absolute relative to the dataset folder.
    Otherwise cases come from ``imagesTr/`` and labels are ``labelsTr/<id><file_ending>`` (not checked here).
    """
    raw_dataset_folder = os.fspath(raw_dataset_folder)
    if dataset_json is None:
        from nnunetv2.utilities.dataset_json import load_dataset_json
        dataset_json = load_dataset_json(raw_dataset_folder)
    if "dataset" in dataset_json:
        dataset = dataset_json["dataset"]
        if not isinstance(dataset, dict):
            raise UserError(f"The 'dataset' entry of dataset.json in {raw_dataset_folder} must be an object "
                            f"mapping case identifiers to {{'images': [...], 'label': ...}}, not "
                            f"{type(dataset).__name__}.")
        for case, entry in dataset.items():
            if not isinstance(entry, dict) or "label" not in entry or not isinstance(entry.get("images"), list):
                raise UserError(f"Case {case!r} of the 'dataset' entry of dataset.json in {raw_dataset_folder} "
                                f"must be an object with 'images' (a list of paths) and 'label' (a path).")
            entry["label"] = _resolve_listed_path(raw_dataset_folder, entry["label"])
            entry["images"] = [_resolve_listed_path(raw_dataset_folder, i) for i in entry["images"]]
        return dataset
    from nnunetv2.utilities.dataset_json import file_ending_problem
    problem = file_ending_problem(dataset_json)
    if problem is not None:
        raise UserError(f"{os.path.join(raw_dataset_folder, 'dataset.json')} {problem}.", "Fix it in dataset.json.")
    file_ending = dataset_json["file_ending"]
    images_folder = os.path.join(raw_dataset_folder, "imagesTr")
    if not os.path.isdir(images_folder):
        raise UserError(f"{images_folder} does not exist.",
                        "Put the training images there, or list the cases under a 'dataset' key in dataset.json.")
    identifiers = get_identifiers_from_splitted_dataset_folder(images_folder, file_ending)
    images = create_lists_from_splitted_dataset_folder(images_folder, file_ending, identifiers)
    from nnunetv2.utilities.other_endings import warn_other_endings
    warn_other_endings(images_folder, sorted(os.listdir(images_folder)), file_ending, "dataset.json's file_ending",
                       "are left out of the dataset")
    labels_folder = os.path.join(raw_dataset_folder, "labelsTr")
    return {str(i): {"images": im, "label": os.path.join(labels_folder, str(i) + file_ending)}
            for i, im in zip(identifiers, images)}


def check_every_case_has_images(raw_dataset_folder: str, dataset_json: dict, dataset: dict) -> None:
    """A UserError for the first case of ``dataset`` (as returned by ``get_filenames_of_train_images_and_targets``)
    without any image file: in imagesTr that is a file not named ``CASE_XXXX<file_ending>`` (its name minus the
    ending and five more characters became a case identifier, as in the reference)."""
    empty = [k for k, v in dataset.items() if not v["images"]]
    if not empty:
        return
    if "dataset" in dataset_json:
        raise UserError(f"Case {empty[0]!r} of the 'dataset' entry of "
                        f"{os.path.join(raw_dataset_folder, 'dataset.json')} lists no image files.",
                        "Give every case at least one image path under 'images'.")
    file_ending = dataset_json["file_ending"]
    images_folder = os.path.join(raw_dataset_folder, "imagesTr")
    bad = [f for f in sorted_files_with_ending(images_folder, file_ending) if _identifier_of(f, file_ending) is None]
    more = f" ({len(bad) - 1} more such file(s))" if len(bad) > 1 else ""
    name = bad[0] if bad else f"{empty[0]}_XXXX{file_ending}"
    raise UserError(f"{os.path.join(images_folder, name)} does not follow the naming CASE_XXXX{file_ending} "
                    f"(XXXX = 4-digit channel index){more}.",
                    f"Name each image CASE_0000{file_ending} (then _0001, ... for more channels), e.g. "
                    f"{name[:-len(file_ending)]}_0000{file_ending} if {name[:-len(file_ending)]} is the case name; "
                    f"labels in labelsTr keep the name CASE{file_ending}.")
