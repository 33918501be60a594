"""Convert an nnU-Net v1 raw task (``TaskXXX_Name`` with imagesTr/labelsTr/dataset.json) into a v2 raw dataset.

The images already follow the ``_0000`` channel naming, so files are copied as they are; only dataset.json is
translated. Console command: ``nnUNetv2_convert_old_nnUNet_dataset``.
"""
from __future__ import annotations

import argparse
import os
import shutil

from tqdm import tqdm

from nnunetv2.dataset_conversion._conversion_common import (DATASET_NAME_PATTERN, check_target_name,
                                                            conflicting_datasets, load_source_dataset_json,
                                                            require_folder, require_subfolders,
                                                            staged_dataset_folder, translate_dataset_json)
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.file_io import save_json
from nnunetv2.paths import nnUNet_raw

REQUIRED_SUBFOLDERS = ("imagesTr", "labelsTr")
OPTIONAL_SUBFOLDERS = ("imagesTs", "labelsTs", "imagesVal", "labelsVal")
V1_ONLY_KEYS = ("tensorImageSize", "numTest", "training", "test")


def convert(source_folder: str, target_dataset_name: str) -> None:
    """Copy the v1 task ``source_folder`` to ``nnUNet_raw/<target_dataset_name>`` with a v2 dataset.json.

    Everything is checked before anything is written; an existing dataset is never touched. The copy is built in
    a hidden sibling folder and renamed into place at the end.
    """
    source_folder = os.path.abspath(os.fspath(source_folder))
    require_folder(source_folder, "nnU-Net v1 task folder",
                   "Give the path of the old task (the folder containing imagesTr, labelsTr and dataset.json), "
                   "not just its name.")
    require_subfolders(source_folder, REQUIRED_SUBFOLDERS, "nnU-Net v1")
    dataset_json_file = os.path.join(source_folder, "dataset.json")
    old_json = load_source_dataset_json(source_folder, "nnU-Net v1")

    check_target_name(target_dataset_name)
    target_folder = os.path.join(nnUNet_raw, target_dataset_name)
    if os.path.lexists(target_folder):
        raise UserError(f"The target dataset {target_folder} already exists; it was left untouched.",
                        "Choose another name, or delete that folder yourself if you really want to replace it.")
    if DATASET_NAME_PATTERN.match(target_dataset_name):
        taken = conflicting_datasets(int(target_dataset_name[7:].split("_", 1)[0]), except_name=target_dataset_name)
        if taken:
            raise UserError(f"The id of {target_dataset_name} is already used by: {', '.join(taken)}.",
                            "Choose another id so that every id names one dataset.")

    new_json = translate_dataset_json(old_json, dataset_json_file, drop=V1_ONLY_KEYS, channel_names_last=False)
    subfolders = [s for s in REQUIRED_SUBFOLDERS + OPTIONAL_SUBFOLDERS
                  if os.path.isdir(os.path.join(source_folder, s))]
    with staged_dataset_folder(target_folder) as staging:
        for sub in tqdm(subfolders, desc="Copying", unit="folder"):
            shutil.copytree(os.path.join(source_folder, sub), os.path.join(staging, sub))
        save_json(new_json, os.path.join(staging, "dataset.json"), sort_keys=False)


def convert_entry_point_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Convert an nnU-Net v1 raw task into an nnU-Net v2 raw dataset "
                                                 "(written to $nnUNet_raw/<output_dataset_name>).")
    parser.add_argument("input_folder", type=str,
                        help="Path of the old task folder (the one containing imagesTr, labelsTr and dataset.json), "
                             "not just the task name: nnU-Net v2 does not know where v1 tasks live.")
    parser.add_argument("output_dataset_name", type=str,
                        help="Name (not path) of the new dataset, following the DatasetXXX_Name convention, "
                             "e.g. Dataset005_Prostate.")
    return parser


@exit_on_user_error
def convert_entry_point() -> None:
    args = convert_entry_point_parser().parse_args()
    convert(args.input_folder, args.output_dataset_name)


if __name__ == "__main__":
    convert_entry_point()
