"""Checks and file chores of planner construction: fingerprint present, target spacing valid, splits in sync."""
from __future__ import annotations

import os
import shutil
from typing import Optional, Sequence

from nnunetv2.errors import UserError
from nnunetv2.file_io import atomic_path, load_json, maybe_mkdir_p


def load_fingerprint_or_fail(preprocessed_folder: str, dataset_name: str) -> dict:
    fingerprint_file = os.path.join(preprocessed_folder, 'dataset_fingerprint.json')
    if not os.path.isfile(fingerprint_file):
        dataset_id = dataset_name[7:10] if dataset_name.startswith('Dataset') else dataset_name
        raise UserError(f"Fingerprint missing for dataset {dataset_name} ({fingerprint_file} does not exist).",
                        hint=f"Run nnUNetv2_extract_fingerprint -d {int(dataset_id) if dataset_id.isdigit() else dataset_id} "
                             f"first (or nnUNetv2_plan_and_preprocess).")
    return load_json(fingerprint_file)


def check_overwrite_target_spacing(spacing: Optional[Sequence[float]]) -> Optional[list]:
    """None, or exactly three positive numbers (one per image axis, in the reader's axis order) as floats.

    The reference only checked non-emptiness; a wrong count failed much later with an obscure index error.
    """
    if spacing is None:
        return None
    try:
        values = [float(i) for i in spacing]
    except (TypeError, ValueError):
        raise UserError(f"overwrite_target_spacing must be numbers, got {spacing!r}.",
                        hint="Give three values, e.g. -overwrite_target_spacing 3.0 0.8 0.8.") from None
    if len(values) != 3:
        raise UserError(f"overwrite_target_spacing needs exactly 3 values (one per image axis, in the order the "
                        f"reader returns the axes), got {len(values)}: {list(spacing)}.",
                        hint="Give three values, e.g. -overwrite_target_spacing 3.0 0.8 0.8 (2D datasets too: "
                             "the first value is the slice axis).")
    if not all(v > 0 for v in values):
        raise UserError(f"overwrite_target_spacing values must be > 0, got {values}.")
    return values


def sync_raw_splits_file(raw_dataset_folder: str, preprocessed_folder: str) -> None:
    """A ``splits_final.json`` shipped with the raw dataset is copied to preprocessed (or checked against it)."""
    raw_splits = os.path.join(raw_dataset_folder, 'splits_final.json')
    if not os.path.isfile(raw_splits):
        return
    target = os.path.join(preprocessed_folder, 'splits_final.json')
    if not os.path.isfile(target):
        maybe_mkdir_p(preprocessed_folder)
        with atomic_path(target) as tmp:
            shutil.copyfile(raw_splits, tmp)
        return
    new_splits = load_json(raw_splits)
    existing = load_json(target)
    for fold, split in enumerate(new_splits):
        if fold >= len(existing) or set(split['train']) != set(existing[fold]['train']) or \
                set(split['val']) != set(existing[fold]['val']):
            raise UserError(f"{raw_splits} disagrees with the existing {target} in fold {fold}.",
                            hint="Delete the preprocessed splits_final.json (it is then copied from the raw "
                                 "dataset) or make both files equal.")
