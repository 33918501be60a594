"""Pack trained models of one dataset into a zip whose member names are relative to ``nnUNet_results``.

The archive content and member order follow the reference. Everything to include is collected
and checked first, so a missing fold or checkpoint is reported before anything is written; the zip is written
under a temporary name and renamed at the end, so an interrupted export never leaves a half-zip behind.
"""
from __future__ import annotations

import logging
import os
import zipfile
from typing import List, Sequence, Tuple, Union

from nnunetv2.errors import UserError
from nnunetv2.file_io import TMP_PREFIX, atomic_path, finished_files, folder_is_locked, maybe_mkdir_p
from nnunetv2.model_sharing.model_update import MODEL_UPDATE_PREFIX
from nnunetv2.paths import nnUNet_results
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
from nnunetv2.utilities.file_path_utilities import (convert_ensemble_folder_to_model_identifiers_and_folds,
                                                    convert_identifier_to_trainer_plans_config,
                                                    folds_tuple_to_string)

logger = logging.getLogger(__name__)

# Files of a model folder / crossval / ensemble folder that are exported without --exp_cv_preds.
_MODEL_FILES = ("plans.json", "dataset_fingerprint.json", "dataset.json")
_SUMMARY_FILES = ("summary.json", "postprocessing.pkl", "postprocessing.json")


def _listing(folder: str, what: str = "entries") -> str:
    if not os.path.isdir(folder):
        return f"{folder} does not exist"
    # leave out what our writers and installs leave behind for an instant (or after a kill): no one's result
    names = sorted(n for n in os.listdir(folder) if not n.startswith((TMP_PREFIX, MODEL_UPDATE_PREFIX)))
    return f"{what} in {folder}: {', '.join(names) if names else 'none'}"


def _fold_folder_name(fold: Union[int, str]) -> str:
    return "fold_all" if str(fold) == "all" else f"fold_{fold}"


def _busy_fold_error(fold_dir: str) -> UserError:
    return UserError(f"Another nnU-Net process is training or validating {fold_dir} right now: its files are not "
                     f"final (old and new checkpoints, validation results would be mixed).",
                     "Wait until that run has finished, or pass --not_strict to leave this fold out.")


def _fold_members(fold_dir: str, save_checkpoints: Sequence[str], export_crossval_predictions: bool
                  ) -> Tuple[List[str], List[str]]:
    """Files of one fold in archive order, and a list of what is missing (empty if the fold is complete)."""
    members, missing = [], []
    if os.path.isfile(os.path.join(fold_dir, "debug.json")):
        members.append(os.path.join(fold_dir, "debug.json"))
    for chk in save_checkpoints:
        p = os.path.join(fold_dir, chk)
        (members if os.path.isfile(p) else missing).append(p)
    p = os.path.join(fold_dir, "progress.png")
    (members if os.path.isfile(p) else missing).append(p)
    p = os.path.join(fold_dir, "network_architecture.pdf")
    if os.path.isfile(p):
        members.append(p)
    val_dir = os.path.join(fold_dir, "validation")
    if export_crossval_predictions:
        if os.path.isdir(val_dir):
            members += [os.path.join(val_dir, f) for f in finished_files(val_dir)
                        if not f.endswith(".npz") and not f.endswith(".pkl")]
        else:
            missing.append(val_dir)
    else:
        p = os.path.join(val_dir, "summary.json")
        (members if os.path.isfile(p) else missing).append(p)
    return members, missing


def _model_members(model_dir: str, folds: Sequence, strict: bool, save_checkpoints: Sequence[str],
                   export_crossval_predictions: bool) -> List[str]:
    """Files of one trained configuration in archive order; [] if non-strict and no fold is usable."""
    members: List[str] = []
    exported_folds = []
    for fold in folds:
        fold_dir = os.path.join(model_dir, _fold_folder_name(fold))
        if not os.path.isdir(fold_dir):
            if strict:
                raise UserError(f"Fold folder {fold_dir} does not exist ({_listing(model_dir)}).",
                                "Choose existing folds with -f, or pass --not_strict to skip missing ones.")
            logger.warning(f"Skipping fold {fold}: {fold_dir} does not exist.")
            continue
        if folder_is_locked(fold_dir):
            if strict:
                raise _busy_fold_error(fold_dir)
            logger.warning(f"Skipping fold {fold}: another nnU-Net process is training or validating it right now.")
            continue
        fold_files, missing = _fold_members(fold_dir, save_checkpoints, export_crossval_predictions)
        if missing:
            if strict:
                missing_names = ", ".join(os.path.relpath(m, fold_dir) for m in missing)
                raise UserError(f"Cannot export {fold_dir}: missing {missing_names} "
                                f"({_listing(fold_dir, 'files')}).",
                                "Train/validate that fold to the end, choose checkpoints with -chk, "
                                "or pass --not_strict to skip incomplete folds.")
            logger.warning(f"Skipping fold {fold}: missing {', '.join(os.path.relpath(m, fold_dir) for m in missing)}.")
            continue
        logger.info(f"Exporting {_fold_folder_name(fold)}")
        members += fold_files
        exported_folds.append(fold)
    if not exported_folds:
        if strict:  # only reachable with an empty fold list
            raise UserError(f"No folds to export from {model_dir}.", "Pass folds with -f.")
        return []

    missing = [os.path.join(model_dir, f) for f in _MODEL_FILES if not os.path.isfile(os.path.join(model_dir, f))]
    if missing:
        raise UserError(f"Cannot export {model_dir}: missing {', '.join(missing)}.",
                        "These files are written when training starts; is this a complete nnU-Net model folder?")

    # The reference names the crossval folder after the requested folds, not the ones found.
    cv_dir = os.path.join(model_dir, f"crossval_results_folds_{folds_tuple_to_string(folds)}")
    if os.path.isdir(cv_dir):
        if export_crossval_predictions:
            members += [os.path.join(cv_dir, f) for f in finished_files(cv_dir)]
        else:
            members += [os.path.join(cv_dir, f) for f in _SUMMARY_FILES if os.path.isfile(os.path.join(cv_dir, f))]
    members += [os.path.join(model_dir, f) for f in _MODEL_FILES]
    return members


def _ensemble_members(ensembles_dir: str, trainer: str, plans_identifier: str, configurations: Sequence[str],
                      export_crossval_predictions: bool) -> List[str]:
    members = []
    for name in sorted(d for d in os.listdir(ensembles_dir) if os.path.isdir(os.path.join(ensembles_dir, d))
                       and not d.startswith((TMP_PREFIX, MODEL_UPDATE_PREFIX))):  # no ensembles: see _listing
        ens_dir = os.path.join(ensembles_dir, name)
        if name.count("___") < 2:
            # not ensemble___<models>___<folds> (a folder made by hand): no ensemble of the exported models, and
            # no reason to refuse the export either
            continue
        identifiers, _ = convert_ensemble_folder_to_model_identifiers_and_folds(ens_dir)
        parsed = [convert_identifier_to_trainer_plans_config(i) for i in identifiers]
        if not all(len(p) == 3 and p[0] == trainer and p[1] == plans_identifier and p[2] in configurations
                   for p in parsed):
            continue
        logger.info(f"found matching ensemble: {name}")
        if export_crossval_predictions:
            members += [os.path.join(ens_dir, f) for f in finished_files(ens_dir)]
        else:
            members += [os.path.join(ens_dir, f) for f in _SUMMARY_FILES if os.path.isfile(os.path.join(ens_dir, f))]
    return members


def collect_export_members(dataset_name_or_id, configurations=("2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"),
                           trainer: str = "nnUNetTrainer", plans_identifier: str = "nnUNetPlans",
                           folds=(0, 1, 2, 3, 4), strict: bool = True,
                           save_checkpoints=("checkpoint_final.pth",),
                           export_crossval_predictions: bool = False) -> List[str]:
    """Absolute paths of the files ``export_pretrained_model`` puts into the zip, in archive order."""
    results = nnUNet_results.require()
    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    dataset_dir = os.path.join(results, dataset_name)
    if isinstance(save_checkpoints, str):
        save_checkpoints = (save_checkpoints,)
    members: List[str] = []
    exported_configurations = []
    for c in configurations:
        logger.info(f"Configuration {c}")
        model_dir = os.path.join(dataset_dir, f"{trainer}__{plans_identifier}__{c}")
        if not os.path.isdir(model_dir):
            if strict:
                raise UserError(f"{dataset_name} is missing the trained model of configuration {c}: {model_dir} "
                                f"does not exist ({_listing(dataset_dir, 'trained models')}).",
                                "Choose configurations with -c (and -tr/-p), or pass --not_strict to skip "
                                "missing ones.")
            logger.info(f"Skipping configuration {c}: {model_dir} does not exist.")
            continue
        model_files = _model_members(model_dir, folds, strict, save_checkpoints, export_crossval_predictions)
        if model_files:
            members += model_files
            exported_configurations.append(c)
        else:
            logger.warning(f"Skipping configuration {c}: none of the folds {list(folds)} can be exported.")
    if not exported_configurations:
        raise UserError(f"Nothing to export for {dataset_name} (trainer {trainer}, plans {plans_identifier}, "
                        f"configurations {list(configurations)}, folds {list(folds)}; "
                        f"{_listing(dataset_dir, 'trained models')}).",
                        "Check -c, -tr, -p and -f.")

    ensembles_dir = os.path.join(dataset_dir, "ensembles")
    if not os.path.isdir(ensembles_dir):
        # Reference behaviour: without an ensembles folder, inference_information.json is not exported either.
        logger.info(f"No ensemble directory found for task {dataset_name}")
        return members
    members += _ensemble_members(ensembles_dir, trainer, plans_identifier, exported_configurations,
                                 export_crossval_predictions)
    # 'inference_information.txt' is what the reference looks for (find_best writes inference_instructions.txt,
    # so it is never found); kept for an identical archive.
    for f in ("inference_information.json", "inference_information.txt"):
        if os.path.isfile(os.path.join(dataset_dir, f)):
            members.append(os.path.join(dataset_dir, f))
    return members


def _exported_fold_dirs(members: List[str]) -> List[str]:
    """The fold folders (``fold_X``) the members come from (a fold's files, or those of its validation folder)."""
    dirs = set()
    for m in members:
        parent = os.path.dirname(m)
        for d in (parent, os.path.dirname(parent)):
            if os.path.basename(d).startswith("fold_"):
                dirs.add(d)
                break
    return sorted(dirs)


def export_pretrained_model(dataset_name_or_id, output_file: str,
                            configurations=("2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"),
                            trainer: str = "nnUNetTrainer", plans_identifier: str = "nnUNetPlans",
                            folds=(0, 1, 2, 3, 4), strict: bool = True, save_checkpoints=("checkpoint_final.pth",),
                            export_crossval_predictions: bool = False) -> None:
    """Write the trained models of a dataset to ``output_file`` (zip, members relative to nnUNet_results).

    ``strict=False`` skips missing configurations and missing or incomplete folds (with a warning) instead of
    failing; at least one configuration must remain.
    """
    members = collect_export_members(dataset_name_or_id, configurations, trainer, plans_identifier, folds, strict,
                                     save_checkpoints, export_crossval_predictions)
    results = os.path.abspath(nnUNet_results.require())
    output_file = os.path.abspath(output_file)
    out_dir = os.path.dirname(output_file)
    if os.path.isdir(output_file):
        raise UserError(f"Output {output_file} is a folder.", "Give the name of the zip file to write, e.g. model.zip.")
    maybe_mkdir_p(out_dir)
    with atomic_path(output_file) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for m in members:
                zf.write(m, arcname=os.path.relpath(m, results).replace(os.sep, "/"))
        # a training of an exported fold that started while the zip was written may have replaced some of its files
        started = [d for d in _exported_fold_dirs(members) if folder_is_locked(d)]
        if started:
            raise _busy_fold_error(started[0])
    logger.info(f"Exported {len(members)} files to {output_file}")
    logger.info("Done")
