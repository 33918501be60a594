"""Shared pieces of the MSD and nnU-Net v1 converters: input checks, dataset.json translation, staged output.

Everything the converters check happens before anything is written, and the new dataset is assembled in a hidden
sibling folder that is renamed into place only when complete, so a failure or a kill never leaves a
half-converted dataset under its final name (at worst a hidden ``.nnunet_tmp_*`` folder after a hard kill, which
the next conversion to the same name removes).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from typing import Iterable, Iterator, List

from nnunetv2.errors import UserError
from nnunetv2.file_io import TMP_PREFIX, folder_lock
from nnunetv2.utilities.dataset_name_id_conversion import find_candidate_datasets

logger = logging.getLogger(__name__)

DATASET_NAME_PATTERN = re.compile(r"^Dataset\d{3,}_.+$")
STAGING_PREFIX = TMP_PREFIX  # our temporaries' prefix: tools and the kill tests know it


def require_folder(folder: str, what: str, hint: str) -> None:
    if not os.path.isdir(folder):
        raise UserError(f"{what} {folder} does not exist or is not a folder.", hint)


def require_subfolders(source_folder: str, names: Iterable[str], kind: str) -> None:
    for name in names:
        path = os.path.join(source_folder, name)
        if not os.path.isdir(path):
            raise UserError(f"{kind} folder {source_folder} has no '{name}' subfolder (expected {path}).",
                            f"Give the path of the extracted {kind} task folder (the one that contains imagesTr, "
                            f"labelsTr and dataset.json).")


def load_source_dataset_json(source_folder: str, kind: str) -> dict:
    """Read ``<source_folder>/dataset.json`` of an old-style task and check that it can be translated."""
    file = os.path.join(source_folder, "dataset.json")
    if not os.path.isfile(file):
        raise UserError(f"{kind} folder {source_folder} has no dataset.json (expected {file}).",
                        f"Give the path of the extracted {kind} task folder.")
    try:
        with open(file, encoding="utf-8-sig") as f:  # with or without a byte-order mark
            content = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"Cannot read {file}: {e}.", "Fix or replace the file (it must be valid JSON).") from None
    if not isinstance(content, dict):
        raise UserError(f"{file} does not contain a JSON object.", "It must map keys such as 'modality' and "
                                                                   "'labels' to values.")
    for key in ("modality", "labels"):
        if not isinstance(content.get(key), dict):
            raise UserError(f"{file} lacks the key '{key}' (an object such as {{\"0\": ...}}); found keys "
                            f"{sorted(content)}.",
                            "Only old-style (MSD / nnU-Net v1) dataset.json files can be converted; a v2 dataset "
                            "needs no conversion.")
    invert_labels(content["labels"], file)  # validates now, before anything is written
    return content


def invert_labels(labels: dict, file: str) -> dict:
    """``{"0": "background", "1": "liver"}`` -> ``{"background": 0, "liver": 1}`` (order of the source kept)."""
    inverted = {}
    for value, name in labels.items():
        try:
            int_value = int(value)
        except (TypeError, ValueError):
            raise UserError(f"{file}: label key {value!r} is not an integer; old-style 'labels' map label values to "
                            f"names, e.g. {{\"0\": \"background\", \"1\": \"liver\"}}.",
                            "Fix the 'labels' entry (a v2 dataset.json needs no conversion).") from None
        if not isinstance(name, str):
            raise UserError(f"{file}: label {value!r} has the name {name!r}, which is not a string.",
                            "Give every label a name.")
        if name in inverted:
            raise UserError(f"{file}: the label name '{name}' is used for both {inverted[name]} and {int_value}.",
                            "Give every label value its own name.")
        inverted[name] = int_value
    return inverted


def translate_dataset_json(old: dict, file: str, drop: Iterable[str], channel_names_last: bool) -> dict:
    """A v2 ``dataset.json`` made from an old-style one (the reference's key order is kept).

    ``labels`` is inverted in place, ``file_ending`` is set to ``.nii.gz``, ``modality`` becomes ``channel_names``
    (appended), and the keys in ``drop`` are removed. ``channel_names_last``: the MSD converter appends
    ``channel_names`` after ``file_ending``, the v1 converter before it.
    """
    new = dict(old)
    new["labels"] = invert_labels(old["labels"], file)
    channel_names = new.pop("modality")
    for key in drop:
        new.pop(key, None)
    if channel_names_last:
        new["file_ending"] = ".nii.gz"
        new["channel_names"] = channel_names
    else:
        new["channel_names"] = channel_names
        new["file_ending"] = ".nii.gz"
    return new


def check_target_name(name: str) -> None:
    """The new dataset's folder name: a plain name (no path); warn when it does not follow ``DatasetXXX_Name``."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise UserError(f"'{name}' is not a valid dataset name: give a name, not a path.",
                        "Use the DatasetXXX_Name convention, e.g. Dataset005_Prostate.")
    if not DATASET_NAME_PATTERN.match(name):
        logger.warning("The target name '%s' does not follow the DatasetXXX_Name convention (e.g. Dataset005_Prostate);"
                       " nnU-Net will not find it by id.", name)


def conflicting_datasets(dataset_id: int, except_name: str = None) -> List[str]:
    """Folders in nnUNet_raw/preprocessed/results that already use ``dataset_id`` (optionally ignoring one name)."""
    return [str(c) for c in find_candidate_datasets(dataset_id) if str(c) != except_name]


def nifti_files(folder: str) -> List[str]:
    """Sorted ``.nii.gz`` file names in ``folder``, skipping hidden files and macOS ``._`` / ``_`` junk."""
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder)
                  if f.endswith(".nii.gz") and not f.startswith((".", "_")) and os.path.isfile(os.path.join(folder, f)))


def _remove_abandoned_staging_folders(parent: str, name: str) -> None:
    """Delete the staging folders for ``name`` that killed conversions left behind (a kill -9 runs no clean-up):
    each holds a partial copy of the dataset, and every new attempt would add one. A folder whose conversion still
    runs holds its lock and is left alone."""
    prefix = f"{STAGING_PREFIX}{name}_"
    for entry in sorted(os.listdir(parent)):
        path = os.path.join(parent, entry)
        if not entry.startswith(prefix) or not os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            with folder_lock(path, "removing an abandoned staging folder", wait=False):
                shutil.rmtree(path, ignore_errors=True)
        except BlockingIOError:
            continue


@contextlib.contextmanager
def staged_dataset_folder(final_folder: str) -> Iterator[str]:
    """Yield a fresh hidden sibling of ``final_folder`` to build the dataset in; rename it into place on success.

    On any failure (including Ctrl-C) the staging folder is deleted and ``final_folder`` is never touched.
    """
    final_folder = os.path.abspath(final_folder)
    parent, name = os.path.split(final_folder)
    os.makedirs(parent, exist_ok=True)
    _remove_abandoned_staging_folders(parent, name)
    staging = os.path.join(parent, f"{STAGING_PREFIX}{name}_{uuid.uuid4().hex[:12]}")
    try:
        os.mkdir(staging)
    except OSError as e:  # read-only or full: name the folder the user chose, not the staging folder's random name
        raise OSError(e.errno, e.strerror, parent) from e
    try:
        # locked while it is filled: a conversion started meanwhile sees that it is not abandoned
        with folder_lock(staging, "converting"):
            yield staging
            if os.path.lexists(final_folder):  # appeared while we were converting
                raise UserError(f"{final_folder} appeared while the conversion was running; it was left untouched.",
                                "Remove or rename it and convert again.")
            os.rename(staging, final_folder)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and e.errno is not None:
            # "src -> <staging>/imagesTr/x.nii.gz": name the file as it would be in the final folder
            staged = next((n for n in (e.filename2, e.filename) if isinstance(n, str)
                           and n.startswith(staging + os.sep)), None)
            if staged is not None:
                raise OSError(e.errno, e.strerror, final_folder + staged[len(staging):]) from e
        raise
