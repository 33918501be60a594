"""Apply the plans of one dataset to another (pretrain on A, fine-tune on B with A's network and preprocessing)."""
from __future__ import annotations

import argparse
import os
from typing import Optional, Union

from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.file_io import load_json, save_json
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
from nnunetv2.utilities.plans_handling.plans_handler import check_plans_identifier


def _renamed_data_identifier(data_identifier: str, source_plans: str, target_plans: str) -> str:
    if data_identifier.startswith(source_plans):
        return target_plans + data_identifier[len(source_plans):]
    return f"{target_plans}_{data_identifier}"


def move_plans_between_datasets(source_dataset_name_or_id: Union[int, str], target_dataset_name_or_id: Union[int, str],
                                source_plans_identifier: str, target_plans_identifier: Optional[str] = None) -> None:
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.dataset_json import load_dataset_json
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    if target_plans_identifier is None:
        target_plans_identifier = source_plans_identifier
    check_plans_identifier(source_plans_identifier, "-sp")
    check_plans_identifier(target_plans_identifier, "-tp")
    source = maybe_convert_to_dataset_name(source_dataset_name_or_id)
    target = maybe_convert_to_dataset_name(target_dataset_name_or_id)

    source_plans_file = os.path.join(nnUNet_preprocessed, source, source_plans_identifier + ".json")
    if not os.path.isfile(source_plans_file):
        raise UserError(f"Source plans {source_plans_file} not found.",
                        f"Plan the source dataset first (nnUNetv2_plan_experiment) or check -sp.")
    target_raw = os.path.join(nnUNet_raw, target)
    target_dataset_json = load_dataset_json(os.path.join(target_raw, "dataset.json"))

    plans = load_json(source_plans_file)
    plans["dataset_name"] = target
    if source_plans_identifier != target_plans_identifier:
        for configuration in plans["configurations"].values():
            if "data_identifier" in configuration:
                configuration["data_identifier"] = _renamed_data_identifier(
                    configuration["data_identifier"], source_plans_identifier, target_plans_identifier)
    cases = get_filenames_of_train_images_and_targets(target_raw, target_dataset_json)
    if not cases:
        raise UserError(f"The target dataset {target_raw} has no training cases.",
                        "The reader/writer is chosen from its first training image.")
    reader = determine_reader_writer_from_dataset_json(target_dataset_json, next(iter(cases.values()))["images"][0],
                                                       allow_nonmatching_filename=True, verbose=False)
    plans["image_reader_writer"] = reader.__name__
    plans["plans_name"] = target_plans_identifier

    # The reference fails when the target folder does not exist yet; creating it is what users expect.
    target_folder = os.path.join(nnUNet_preprocessed, target)
    os.makedirs(target_folder, exist_ok=True)
    save_json(plans, os.path.join(target_folder, target_plans_identifier + ".json"), sort_keys=False)


def entry_point_move_plans_between_datasets_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Transfer the plans of a source dataset to a target dataset. "
                                                 "Preprocess the target afterwards with -plans_name TARGET_PLANS.")
    parser.add_argument("-s", type=str, required=True, help="Source dataset name or id")
    parser.add_argument("-t", type=str, required=True, help="Target dataset name or id")
    parser.add_argument("-sp", type=str, required=True, help="Source plans identifier (e.g. nnUNetPlans)")
    parser.add_argument("-tp", type=str, required=False, default=None,
                        help="Target plans identifier. Default: same as the source's")
    return parser


@exit_on_user_error
def entry_point_move_plans_between_datasets() -> None:
    args = entry_point_move_plans_between_datasets_parser().parse_args()
    move_plans_between_datasets(args.s, args.t, args.sp, args.tp)


if __name__ == "__main__":  # pragma: no cover
    entry_point_move_plans_between_datasets()
