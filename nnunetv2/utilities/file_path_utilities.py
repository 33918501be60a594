"""Names of model, fold and ensemble folders, and small helpers around them."""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

from batchgenerators.utilities.file_and_folder_operations import *  # noqa: F401,F403 (part of the public surface)

from nnunetv2.paths import nnUNet_results
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name


def convert_trainer_plans_config_to_identifier(trainer_name: str, plans_identifier: str, configuration: str) -> str:
    return f"{trainer_name}__{plans_identifier}__{configuration}"


def convert_identifier_to_trainer_plans_config(identifier: str) -> List[str]:
    return os.path.basename(identifier).split("__")


def get_output_folder(dataset_name_or_id: Union[str, int], trainer_name: str = "nnUNetTrainer",
                      plans_identifier: str = "nnUNetPlans", configuration: str = "3d_fullres",
                      fold: Optional[Union[str, int]] = None) -> str:
    folder = os.path.join(nnUNet_results, maybe_convert_to_dataset_name(dataset_name_or_id),
                          convert_trainer_plans_config_to_identifier(trainer_name, plans_identifier, configuration))
    return folder if fold is None else os.path.join(folder, f"fold_{fold}")


def parse_dataset_trainer_plans_configuration_from_path(path: str):
    """(dataset, trainer, plans, configuration) from a path into a model folder, or None if it has none."""
    parts = path.split(os.sep)
    fold_positions = [i for i, p in enumerate(parts) if p.startswith("fold_")]
    if fold_positions:
        idx = fold_positions[0]
        assert idx >= 2, "Bad path, cannot extract what I need. Your path needs to be at least " \
                         "DatasetXXX/MODULE__PLANS__CONFIGURATION/fold_X"
        if not parts[idx - 2].startswith("Dataset"):
            return None
        split = parts[idx - 1].split("__")
        assert len(split) == 3, "Bad path, cannot extract what I need. Your path needs to be at least " \
                                "DatasetXXX/MODULE__PLANS__CONFIGURATION/fold_X"
        return (parts[idx - 2], *split)
    dataset_positions = [i for i, p in enumerate(parts) if p.startswith("Dataset")]
    if not dataset_positions:
        return None
    idx = dataset_positions[0]
    split = parts[idx + 1].split("__")
    assert len(split) == 3, "Bad path, cannot extract what I need. Your path needs to be at least " \
                            "DatasetXXX/MODULE__PLANS__CONFIGURATION"
    return (parts[idx], *split)


def get_ensemble_name(model1_folder: str, model2_folder: str, folds: Sequence) -> str:
    return ("ensemble___" + os.path.basename(model1_folder) + "___" + os.path.basename(model2_folder) + "___"
            + folds_tuple_to_string(folds))


def get_ensemble_name_from_d_tr_c(dataset, tr1, p1, c1, tr2, p2, c2, folds) -> str:
    # The reference forgets to return this value; returning it is the evident intent.
    model1 = get_output_folder(dataset, tr1, p1, c1)
    model2 = get_output_folder(dataset, tr2, p2, c2)
    return get_ensemble_name(model1, model2, folds)


def convert_ensemble_folder_to_model_identifiers_and_folds(ensemble_folder: str) -> Tuple[List[str], str]:
    prefix, *models, folds = os.path.basename(ensemble_folder).split("___")
    return models, folds


def folds_tuple_to_string(folds: Sequence) -> str:
    return "_".join(str(f) for f in folds)


def folds_string_to_tuple(folds_string: str) -> list:
    out = []
    for part in folds_string.split("_"):
        try:
            out.append(int(part))
        except ValueError:
            out.append(part)
    return out


def check_workers_alive_and_busy(export_pool, worker_list: List, results_list: List,
                                 allowed_num_queued: int = 0) -> bool:
    """True if the export pool has enough queued work; raises ``WorkerDiedError`` if a worker process died."""
    dead = [w for w in worker_list if not w.is_alive()]
    if dead:
        from nnunetv2.utilities.worker_processes import raise_worker_died
        raise_worker_died("export worker", dead[0], "-nps")
    not_ready = [not r.ready() for r in results_list]
    return sum(not_ready) >= len(export_pool._pool) + allowed_num_queued
