"""Collect the validation predictions of all folds of a model into one folder and evaluate them."""
from __future__ import annotations

import os
import shutil
from typing import List, Optional, Sequence, Tuple, Union

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError
from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
from nnunetv2.file_io import atomic_path, folder_is_locked, folder_lock, load_json, maybe_mkdir_p
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.utilities.output_guard import claim_output_folder
from nnunetv2.utilities.utils import sorted_files_with_ending


def _atomic_copy(src: str, dst: str) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def reference_folder_for_dataset(dataset_name: str) -> str:
    """``$nnUNet_raw/<ds>/labelsTr`` if it exists, else ``$nnUNet_preprocessed/<ds>/gt_segmentations``.

    Unlike the reference, an unset nnUNet_raw also falls back to the preprocessed copy instead of failing.
    """
    if nnUNet_raw.is_set():
        labels_tr = os.path.join(nnUNet_raw, dataset_name, 'labelsTr')
        if os.path.isdir(labels_tr):
            return labels_tr
    return os.path.join(nnUNet_preprocessed, dataset_name, 'gt_segmentations')


def _check_validation_finished(validation: str, fold, dataset_name: str, file_ending: str) -> None:
    """UserError if the fold's validation is still running (its trainer writes summary.json last) or was cut off:
    no summary.json and validation cases of splits_final.json without a prediction. Merged anyway, the cross-validation
    score (and the postprocessing chosen from it) would silently rest on part of the cases."""
    summary_file = os.path.join(validation, 'summary.json')
    if os.path.isfile(summary_file):
        _check_scored_predictions_present(validation, summary_file, fold, file_ending)
        return
    if not nnUNet_preprocessed.is_set():
        return
    splits_file = os.path.join(nnUNet_preprocessed, dataset_name, 'splits_final.json')
    if not isinstance(fold, int) or not os.path.isfile(splits_file):
        return
    try:
        expected = load_json(splits_file)[fold]['val']
    except (UserError, LookupError, TypeError):
        return  # not the default split file layout (custom splits): nothing to compare with
    missing = sorted(c for c in expected if not os.path.isfile(os.path.join(validation, c + file_ending)))
    if missing:
        raise UserError(f"The validation of fold {fold} is not finished: {validation} has no summary.json and no "
                        f"prediction for {len(missing)} of the {len(expected)} validation case(s) of "
                        f"{splits_file} (first: {missing[0]}).",
                        f"Wait until the training of fold {fold} has finished, or rerun its validation "
                        f"(nnUNetv2_train ... {fold} --val).")


def _check_scored_predictions_present(validation: str, summary_file: str, fold, file_ending: str) -> None:
    """UserError if a prediction that the fold's summary.json scored is gone from its folder (deleted or moved since
    the validation): merged anyway, this model's cross-validation score would rest on fewer cases than the other
    models' it is compared with, and the comparison would pick a model without a word."""
    try:
        cases = load_json(summary_file)['metric_per_case']
        # the folder may have moved since (or come from Windows): the file names only
        scored = [c['prediction_file'].replace('\\', '/').rsplit('/', 1)[-1] for c in cases]
    except (UserError, LookupError, TypeError, AttributeError):
        return  # not a summary.json as our evaluation writes it: nothing to compare with
    missing = sorted(f for f in scored if not os.path.isfile(os.path.join(validation, f)))
    if missing and not sorted_files_with_ending(validation, file_ending):
        # no prediction at all: a model exported without its cross-validation predictions (the export keeps only
        # summary.json there, as the reference's does); its merged folder comes with it, and --no_overwrite uses it
        return
    if missing:
        raise UserError(f"{len(missing)} of the {len(scored)} validation predictions of fold {fold} that "
                        f"{summary_file} scored are missing from {validation} (first: {missing[0]}).",
                        f"Restore them, or rerun the validation of fold {fold} (nnUNetv2_train ... {fold} --val).")


def _check_fold_not_busy(fold_folder: str, fold) -> None:
    """UserError if an nnUNetv2_train (training or --val) holds this fold right now (see run._fold_claim): its
    validation folder then still holds the predictions and summary.json of the model being replaced, or is being
    rewritten. Merged, they would score (and choose the postprocessing for) a model that is about to change."""
    if folder_is_locked(fold_folder):
        raise UserError(f"Another nnU-Net process is training or validating fold {fold} right now ({fold_folder}): "
                        f"its validation results are not final.",
                        f"Wait until that run of fold {fold} has finished, then run this again.")


def evaluate_with_dataset_labels(folder_ref: str, folder_pred: str, plans: Union[str, dict], dataset_json: dict,
                                 num_processes: int) -> dict:
    """Evaluate ``folder_pred`` into its summary.json with the labels/regions/ignore label of the dataset."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # torch-heavy; import when used
    plans_manager = PlansManager(plans)
    lm = plans_manager.get_label_manager(dataset_json)
    if not os.path.isdir(folder_ref):
        raise UserError(f"The reference segmentation folder {folder_ref} does not exist.",
                        "Run the preprocessing (it copies labelsTr to gt_segmentations) or set nnUNet_raw.")
    return compute_metrics_on_folder(folder_ref, folder_pred, os.path.join(folder_pred, 'summary.json'),
                                     plans_manager.image_reader_writer_class(), dataset_json['file_ending'],
                                     lm.foreground_regions if lm.has_regions else lm.foreground_labels,
                                     lm.ignore_label, num_processes)


def accumulate_cv_results(trained_model_folder: str, merged_output_folder: str,
                          folds: Union[List[int], Sequence[int]], num_processes: int = default_num_processes,
                          overwrite: bool = True, marker_command: Optional[str] = None) -> None:
    """``marker_command``: mark the (re)created merged folder as written by that command (output_guard), before
    anything is copied into it, so that a rerun after an interruption may replace it."""
    # another run on the same model (a second find_best_configuration, accumulate_crossval_results) would delete and
    # refill the merged folder while this one fills it: the second waits for the first
    with folder_lock(os.path.dirname(os.path.abspath(merged_output_folder)), 'merging cross-validation results'):
        _accumulate_cv_results(trained_model_folder, merged_output_folder, folds, num_processes, overwrite,
                               marker_command)


def check_folds_ready(trained_model_folder: str, folds: Sequence[int]) -> Tuple[dict, dict]:
    """UserError unless ``trained_model_folder`` is a trained model whose ``folds`` all have a finished validation
    that no running nnUNetv2_train is rewriting; its (dataset.json, plans.json) otherwise. Checked before anything is
    deleted or rebuilt: a refused run leaves no half-merged folder behind and keeps the result of an earlier run."""
    for name in ('dataset.json', 'plans.json'):
        if not os.path.isfile(os.path.join(trained_model_folder, name)):
            raise UserError(f"{os.path.join(trained_model_folder, name)} does not exist: {trained_model_folder} is "
                            f"not a trained model folder.", "Check the dataset, trainer, plans and configuration.")
    dataset_json = load_json(os.path.join(trained_model_folder, 'dataset.json'))
    plans = load_json(os.path.join(trained_model_folder, 'plans.json'))
    for fold in folds:
        validation = os.path.join(trained_model_folder, f'fold_{fold}', 'validation')
        if not os.path.isdir(validation):
            raise UserError(f"fold {fold} of model {trained_model_folder} is missing ({validation} does not exist).",
                            "Please train it (and run its validation) first.")
        _check_fold_not_busy(os.path.dirname(validation), fold)
        _check_validation_finished(validation, fold, plans['dataset_name'], dataset_json['file_ending'])
    return dataset_json, plans


def _accumulate_cv_results(trained_model_folder: str, merged_output_folder: str, folds: Sequence[int],
                           num_processes: int, overwrite: bool, marker_command: Optional[str] = None) -> None:
    dataset_json, plans = check_folds_ready(trained_model_folder, folds)
    file_ending = dataset_json['file_ending']
    if overwrite and os.path.isdir(merged_output_folder):
        shutil.rmtree(merged_output_folder)
    maybe_mkdir_p(merged_output_folder)
    if marker_command is not None:
        claim_output_folder(merged_output_folder, marker_command,
                            {'trained_model_folder': os.path.abspath(trained_model_folder)})
    for name in ('dataset.json', 'plans.json'):
        _atomic_copy(os.path.join(trained_model_folder, name), os.path.join(merged_output_folder, name))

    copied_any = False
    for fold in folds:
        validation = os.path.join(trained_model_folder, f'fold_{fold}', 'validation')
        for f in sorted_files_with_ending(validation, file_ending):  # not the temporaries of a killed writer
            target = os.path.join(merged_output_folder, f)
            if overwrite and os.path.isfile(target):
                raise UserError(f"More than one of your folds has a prediction for case {f} "
                                f"(found again in {validation}).",
                                "Each case must be in exactly one validation fold (check splits_final.json).")
            if overwrite or not os.path.isfile(target):
                _atomic_copy(os.path.join(validation, f), target)
                copied_any = True

    if copied_any or not os.path.isfile(os.path.join(merged_output_folder, 'summary.json')):
        dataset_name = plans['dataset_name']
        evaluate_with_dataset_labels(reference_folder_for_dataset(dataset_name), merged_output_folder, plans,
                                     dataset_json, num_processes)
