"""Dataset ids (integers) and names (``DatasetXXX_Name``) across nnUNet_raw, nnUNet_preprocessed, nnUNet_results."""
from __future__ import annotations

import os
from typing import Union

import numpy as np

from nnunetv2.errors import UserError
from nnunetv2.paths import _v1_hint, nnUNet_preprocessed, nnUNet_raw, nnUNet_results


def _roots_text() -> str:
    return (f"nnUNet_raw={nnUNet_raw.get()}, nnUNet_preprocessed={nnUNet_preprocessed.get()}, "
            f"nnUNet_results={nnUNet_results.get()}")


def find_candidate_datasets(dataset_id: int) -> np.ndarray:
    """Names of the folders starting with ``Dataset%03d`` in the set and existing data roots (sorted, unique)."""
    prefix = "Dataset%03d" % dataset_id
    names = []
    for root in (nnUNet_preprocessed, nnUNet_raw, nnUNet_results):
        if root.is_set() and os.path.isdir(root.get()):
            names += [d for d in os.listdir(root.get())
                      if d.startswith(prefix) and os.path.isdir(os.path.join(root.get(), d))]
    return np.unique(np.array(names, dtype=str))


def convert_id_to_dataset_name(dataset_id: int) -> str:
    candidates = find_candidate_datasets(dataset_id)
    if len(candidates) > 1:
        raise UserError(
            f"More than one dataset name found for dataset id {dataset_id}: {', '.join(candidates)}.",
            f"Rename or remove all but one of them (looked in {_roots_text()}).")
    if len(candidates) == 0:
        roots = (nnUNet_raw, nnUNet_preprocessed, nnUNet_results)
        looked = ", ".join(f"{r.env_var_name}={r.get()}" for r in roots if r.is_set())
        unset = [r.env_var_name for r in roots if not r.is_set()]
        # unset variables are the likeliest cause (a new shell without setup_paths.sh): named, not shown as "=None"
        unset_text = f" {', '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set.{_v1_hint()}" if unset else ""
        raise UserError(
            f"Could not find a dataset with the id {dataset_id} (looked for folders starting with "
            f"'Dataset{dataset_id:03d}_'{' in ' + looked if looked else ''}).{unset_text}",
            "Set the variables with 'source setup_paths.sh [BASE_DIR]' or export them yourself (see "
            "documentation/setting_up_paths.md)." if unset else
            "Check the id and that nnUNet_raw, nnUNet_preprocessed and nnUNet_results point to your data "
            "(source setup_paths.sh).")
    return candidates[0]


def convert_dataset_name_to_id(dataset_name: str) -> int:
    if not dataset_name.startswith("Dataset"):
        raise UserError(f"'{dataset_name}' is not a dataset name.", "Dataset names look like Dataset005_Name.")
    try:
        return int(dataset_name[7:10])
    except ValueError:
        raise UserError(f"Cannot read a dataset id from '{dataset_name}'.",
                        "Dataset names look like Dataset005_Name (at least three digits).") from None


def maybe_convert_to_dataset_name(dataset_name_or_id: Union[int, str]) -> str:
    """A name starting with 'Dataset' is returned as is; an id (int or digits) is resolved to its folder name."""
    if isinstance(dataset_name_or_id, str) and dataset_name_or_id.startswith("Dataset"):
        return dataset_name_or_id
    if isinstance(dataset_name_or_id, str):
        try:
            dataset_name_or_id = int(dataset_name_or_id)
        except ValueError:
            raise UserError(
                f"'{dataset_name_or_id}' is neither a dataset id nor a dataset name.",
                "Give an integer id (e.g. 5) or a full name starting with 'Dataset' (e.g. Dataset005_Name).",
            ) from None
    return convert_id_to_dataset_name(int(dataset_name_or_id))
