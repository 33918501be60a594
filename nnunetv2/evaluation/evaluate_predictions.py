"""Segmentation metrics (Dice, IoU, TP/FP/FN/TN) per case and per folder, and the ``summary.json`` format.

The summary JSON is written exactly like the reference's: label keys stringified with ``str()``
(``1`` -> ``"1"``, region ``(1, 2)`` -> ``"(1, 2)"``), sorted keys, indent 4, NaN as the bare token ``NaN``.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import warnings
from typing import List, Optional, Tuple, Union

import numpy as np

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.evaluation._counting import confusion_matrix, counts_from_confusion
from nnunetv2.evaluation._parallel import starmap
from nnunetv2.file_io import load_json, maybe_mkdir_p, save_json
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from nnunetv2.imageio.reader_writer_registry import (determine_reader_writer_from_dataset_json,
                                                    determine_reader_writer_from_file_ending)
from nnunetv2.imageio.simpleitk_reader_writer import read_seg_in_own_type
from nnunetv2.utilities.console_command import as_command
from nnunetv2.utilities.utils import sorted_files_with_ending

logger = logging.getLogger(__name__)

LabelOrRegion = Union[int, Tuple[int, ...]]
METRIC_NAMES = ('Dice', 'IoU', 'FP', 'TP', 'FN', 'TN', 'n_pred', 'n_ref')


# ---------------------------------------------------------------------------------------------------------------
# summary.json keys
def label_or_region_to_key(label_or_region: Union[int, Tuple[int, ...]]) -> str:
    return str(label_or_region)


def key_to_label_or_region(key: str):
    """Inverse of label_or_region_to_key: ``"1"`` -> 1, ``"(1, 2)"`` -> (1, 2)."""
    try:
        return int(key)
    except ValueError:
        inner = key.strip().lstrip('(').rstrip(')')
        try:
            return tuple(int(i) for i in inner.split(',') if i.strip())
        except ValueError:
            raise UserError(f"'{key}' is not a label or region key of a summary.json.",
                            "Expected an integer like \"1\" or a tuple like \"(1, 2)\".") from None


def _to_python(value):
    """NumPy scalars -> Python scalars, recursively in dicts/lists (JSON cannot hold NumPy types)."""
    if isinstance(value, dict):
        return {(int(k) if isinstance(k, np.integer) else k): _to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_python(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def save_summary_json(results: dict, output_file: str) -> None:
    """Write ``results`` with label/region keys stringified (the caller's dict is not modified)."""
    results_converted = copy.deepcopy(_to_python(results))
    results_converted['mean'] = {label_or_region_to_key(k): v for k, v in results_converted['mean'].items()}
    for case in results_converted['metric_per_case']:
        case['metrics'] = {label_or_region_to_key(k): v for k, v in case['metrics'].items()}
    save_json(results_converted, output_file, sort_keys=True)


def load_summary_json(filename: str) -> dict:
    results = load_json(filename)
    results['mean'] = {key_to_label_or_region(k): v for k, v in results['mean'].items()}
    for case in results['metric_per_case']:
        case['metrics'] = {key_to_label_or_region(k): v for k, v in case['metrics'].items()}
    return results


# ---------------------------------------------------------------------------------------------------------------
# masks and counts
def labels_to_list_of_regions(labels: List[int]) -> List[Tuple[int]]:
    return [(i,) for i in labels]


def region_or_label_to_mask(segmentation: np.ndarray, region_or_label) -> np.ndarray:
    """Boolean mask of a label (``seg == label``) or of a region (union over its labels)."""
    if np.isscalar(region_or_label):
        return segmentation == region_or_label
    mask = np.zeros_like(segmentation, dtype=bool)
    for r in region_or_label:
        mask |= segmentation == r
    return mask


def compute_tp_fp_fn_tn(mask_ref: np.ndarray, mask_pred: np.ndarray, ignore_mask: Optional[np.ndarray] = None):
    """(tp, fp, fn, tn) of two boolean masks, counting only voxels outside ``ignore_mask``."""
    if ignore_mask is None:
        use = np.ones_like(mask_ref, dtype=bool)
    else:
        use = ~ignore_mask
    tp = int(np.count_nonzero(mask_ref & mask_pred & use))
    fp = int(np.count_nonzero(~mask_ref & mask_pred & use))
    fn = int(np.count_nonzero(mask_ref & ~mask_pred & use))
    tn = int(np.count_nonzero(~mask_ref & ~mask_pred & use))
    return tp, fp, fn, tn


def _metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict:
    if tp + fp + fn == 0:
        dice = iou = np.nan
    else:
        # same operand order as the reference so the floats are bit-identical
        dice = 2 * tp / (2 * tp + fp + fn)
        iou = tp / (tp + fp + fn)
    return {'Dice': dice, 'IoU': iou, 'FP': fp, 'TP': tp, 'FN': fn, 'TN': tn, 'n_pred': tp + fp, 'n_ref': tp + fn}


def _metrics_of_arrays(seg_ref: np.ndarray, seg_pred: np.ndarray, labels_or_regions, ignore_label=None) -> dict:
    """{label_or_region: metrics} for two label maps of equal shape."""
    return _metrics_and_confusion(seg_ref, seg_pred, labels_or_regions, ignore_label)[0]


def _metrics_and_confusion(seg_ref: np.ndarray, seg_pred: np.ndarray, labels_or_regions, ignore_label=None):
    """``_metrics_of_arrays`` and the confusion matrix it counted from (None where the maps do not qualify)."""
    conf = confusion_matrix(seg_ref, seg_pred, ignore_label)
    ignore_mask = None
    if conf is None and ignore_label is not None:
        ignore_mask = seg_ref == ignore_label
    out = {}
    for r in labels_or_regions:
        if conf is not None:
            counts = counts_from_confusion(conf, r)
        else:
            counts = compute_tp_fp_fn_tn(region_or_label_to_mask(seg_ref, r), region_or_label_to_mask(seg_pred, r),
                                         ignore_mask)
        out[r] = _metrics_from_counts(*counts)
    return out, conf


def _unknown_values(conf: Optional[np.ndarray], seg: np.ndarray, axis: int, known: set, max_shown: int = 5) -> list:
    """Values of ``seg`` (the reference for axis 1, the prediction for axis 0 of the confusion matrix) that are no
    label of the dataset. Free from the confusion matrix; only maps it could not count are searched again."""
    if conf is not None:
        present = np.flatnonzero(conf.sum(axis=axis))
    else:
        present = np.unique(seg)
    return [v.item() for v in present if v.item() not in known][:max_shown]


def compute_metrics(reference_file: str, prediction_file: str, image_reader_writer: BaseReaderWriter,
                    labels_or_regions: Union[List[int], List[Union[int, Tuple[int, ...]]]],
                    ignore_label: int = None) -> dict:
    return _case_metrics(reference_file, prediction_file, image_reader_writer, labels_or_regions, ignore_label)[0]


def _case_metrics(reference_file: str, prediction_file: str, image_reader_writer: BaseReaderWriter,
                  labels_or_regions, ignore_label: int = None, known_values: Optional[set] = None):
    """``compute_metrics``, and with ``known_values`` (every value dataset.json defines) also the values of the
    reference and of the prediction that are none of them: ``(result, unknown in reference, unknown in
    prediction)``."""
    # label values only are compared: 8/16-bit label files need no float32 copy
    seg_ref = read_seg_in_own_type(image_reader_writer, reference_file)[0]
    seg_pred = read_seg_in_own_type(image_reader_writer, prediction_file)[0]
    if seg_ref.shape != seg_pred.shape:
        raise UserError(f"Prediction {prediction_file} has shape {tuple(seg_pred.shape[1:])} but reference "
                        f"{reference_file} has shape {tuple(seg_ref.shape[1:])}.",
                        "Predictions must be in the geometry of the reference segmentations.")
    metrics, conf = _metrics_and_confusion(seg_ref, seg_pred, labels_or_regions, ignore_label)
    result = {'reference_file': reference_file, 'prediction_file': prediction_file, 'metrics': metrics}
    if known_values is None:
        return result, [], []
    return result, _unknown_values(conf, seg_ref, 1, known_values), _unknown_values(conf, seg_pred, 0, known_values)


def _warn_about_unknown_values(cases: list, dataset_json_file: str) -> None:
    """One warning per kind of file (predictions, references) holding values dataset.json does not define: no
    label counts them, so they score as background (a prediction from another dataset, or a wrong reference
    folder, evaluates without an error)."""
    for what, i in (('prediction', 2), ('reference', 1)):
        bad = [(c[0]['prediction_file' if i == 2 else 'reference_file'], c[i]) for c in cases if c[i]]
        if bad:
            first_file, first_values = bad[0]
            logger.warning("%d %s file(s) hold label values that %s does not define, scored as background for "
                           "every label (first: %s with %s). Are they from another dataset or label set?",
                           len(bad), what, dataset_json_file, first_file, ', '.join(map(str, first_values)))


def _warn_about_labels_in_no_reference(results: List[dict], regions_or_labels, folder_ref: str) -> None:
    """One warning for the labels (regions) that no reference file holds: their Dice is 0 wherever they are predicted
    and NaN elsewhere, in every case, which looks like a model that failed (a wrong reference folder, or references
    saved with other values, e.g. 0/255 masks evaluated with -l 1). Free: the metrics count the reference voxels."""
    if not results:
        return
    absent = [r for r in regions_or_labels
              if all(res['metrics'].get(r, {}).get('n_ref', 1) == 0 for res in results)]
    if absent:
        logger.warning("Label(s) or region(s) %s occur in none of the %d reference file(s) in %s: their Dice is 0 "
                       "wherever they are predicted and NaN elsewhere. The wrong reference folder, or references "
                       "saved with other values (e.g. 0/255 masks)?", ', '.join(map(str, absent)), len(results),
                       folder_ref)


# ---------------------------------------------------------------------------------------------------------------
# folders
def _require_folder(folder: str, what: str) -> None:
    if not os.path.isdir(folder):
        raise UserError(f"The {what} folder {folder} does not exist.", "Check the path.")


def _summarize(results: List[dict], regions_or_labels) -> dict:
    """Per-label nanmeans over cases and their plain mean over foreground labels (NaN-propagating, like the
    reference: one label that is NaN in every case makes the foreground mean NaN)."""
    means = {}
    if len(results) > 0:
        for r in regions_or_labels:
            means[r] = {}
            for m in METRIC_NAMES:
                values = [i['metrics'][r][m] for i in results]
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore', RuntimeWarning)  # "Mean of empty slice" for all-NaN labels
                    means[r][m] = np.nanmean(values)
    foreground_mean = {}
    for m in METRIC_NAMES:
        values = [means[k][m] for k in means.keys() if k != 0 and k != '0']
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            foreground_mean[m] = np.mean(values)
    return _to_python({'metric_per_case': results, 'mean': means, 'foreground_mean': foreground_mean})


_warned_empty_regions: set = set()


def _warn_about_empty_regions(regions_or_labels) -> None:
    """A region without labels (dataset.json "x": []) matches no voxel: its Dice and IoU are NaN in every case, and
    the NaN spreads into the foreground mean (the reference scores it so too, and summary.json stays the same).
    Said once per set of regions: postprocessing evaluates the same regions several times."""
    key = tuple(regions_or_labels)
    if key in _warned_empty_regions or not any(_is_empty_region(r) for r in regions_or_labels):
        return
    _warned_empty_regions.add(key)
    logger.warning("A region has no labels (an empty list in dataset.json 'labels', key %r in summary.json): its "
                   "Dice and IoU are NaN in every case, and so is the foreground mean Dice. Give the region its "
                   "labels, or remove it from 'labels' and 'regions_class_order' (and retrain).",
                   label_or_region_to_key(()))


def _is_empty_region(r) -> bool:
    return isinstance(r, (tuple, list)) and len(r) == 0


def compute_metrics_on_folder(folder_ref: str, folder_pred: str, output_file: str,
                              image_reader_writer: BaseReaderWriter, file_ending: str,
                              regions_or_labels: Union[List[int], List[Union[int, Tuple[int, ...]]]],
                              ignore_label: int = None, num_processes: int = default_num_processes,
                              chill: bool = True, _dataset_labels: Optional[Tuple[str, set]] = None) -> dict:
    """Evaluate every prediction in ``folder_pred`` against the same-named file in ``folder_ref``.

    ``_dataset_labels``: (dataset.json's path, every value it defines) where the labels come from a dataset.json,
    to warn about files holding other values (not for a chosen subset of labels, as evaluate_simple's -l)."""
    if output_file is not None and not output_file.endswith('.json'):
        raise UserError(f"The output file {output_file} must end with .json.", "Pass e.g. -o summary.json.")
    if output_file is not None:
        # its folder now: a missing one is created, a read-only or full disk fails before the evaluation, not after
        maybe_mkdir_p(os.path.dirname(os.path.abspath(output_file)))
    _require_folder(folder_ref, 'reference')
    _require_folder(folder_pred, 'prediction')
    files_pred = sorted_files_with_ending(folder_pred, file_ending)
    if not files_pred:
        # the reference fails here with an IndexError; a summary of NaNs written instead would hide the wrong folder
        # or file ending behind a plausible-looking result
        raise UserError(f"There are no predictions ending with {file_ending} in {folder_pred}: nothing to evaluate.",
                        "Check the prediction folder and the file ending.")
    if not chill:
        present = set(files_pred)
        missing = [f for f in sorted_files_with_ending(folder_ref, file_ending) if f not in present]
        if missing:
            shown = ', '.join(missing[:5]) + (f' and {len(missing) - 5} more' if len(missing) > 5 else '')
            raise UserError(f"Not all files in folder_ref exist in folder_pred: {len(missing)} reference file(s) "
                            f"have no prediction in {folder_pred} ({shown}).",
                            "Predict them, or evaluate only the existing predictions with --chill.")
    missing_ref = [f for f in files_pred if not os.path.isfile(os.path.join(folder_ref, f))]
    if missing_ref:
        raise UserError(f"No reference segmentation in {folder_ref} for prediction(s) {', '.join(missing_ref[:5])}.",
                        "Remove those predictions or evaluate against the right reference folder.")
    _warn_about_empty_regions(regions_or_labels)
    args = [(os.path.join(folder_ref, f), os.path.join(folder_pred, f), image_reader_writer, regions_or_labels,
             ignore_label) for f in files_pred]
    if _dataset_labels is None:
        results = starmap(compute_metrics, args, num_processes, desc='Evaluating')
        _warn_about_labels_in_no_reference(results, regions_or_labels, folder_ref)
    else:
        cases = starmap(_case_metrics, [(*a, _dataset_labels[1]) for a in args], num_processes, desc='Evaluating')
        _warn_about_unknown_values(cases, _dataset_labels[0])
        results = [c[0] for c in cases]
        if not any(c[1] for c in cases):  # (references of unknown values are named above: the likelier cause)
            _warn_about_labels_in_no_reference(results, regions_or_labels, folder_ref)
    result = _summarize(results, regions_or_labels)
    if output_file is not None:
        save_summary_json(result, output_file)
    return result


def _dataset_reader_writer(folder_ref: str, dataset_json: dict) -> BaseReaderWriter:
    file_ending = dataset_json['file_ending']
    _require_folder(folder_ref, 'reference')
    files_ref = sorted_files_with_ending(folder_ref, file_ending)
    if not files_ref:
        raise UserError(f"No reference files ending with {file_ending} in {folder_ref}.",
                        "Check the folder and 'file_ending' in dataset.json.")
    return determine_reader_writer_from_dataset_json(dataset_json, os.path.join(folder_ref, files_ref[0]),
                                                     verbose=False)()


def _load_json_arg(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"The {what} file {path} does not exist.", "Check the path.")
    return load_json(path)


def compute_metrics_on_folder2(folder_ref: str, folder_pred: str, dataset_json_file: str, plans_file: str,
                               output_file: str = None, num_processes: int = default_num_processes,
                               chill: bool = False) -> dict:
    """Folder evaluation with labels/regions, ignore label and reader taken from a dataset.json + plans."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # pulls in torch; only needed here

    from nnunetv2.utilities.dataset_json import check_dataset_json_for_use

    dataset_json = check_dataset_json_for_use(_load_json_arg(dataset_json_file, 'dataset.json'), dataset_json_file,
                                              needs_channels=False)  # labels only: a reduced one worked before
    rw = _dataset_reader_writer(folder_ref, dataset_json)
    if output_file is None:
        output_file = os.path.join(folder_pred, 'summary.json')
    lm = PlansManager(_load_json_arg(plans_file, 'plans')).get_label_manager(dataset_json)
    known = {int(v) for v in lm.all_labels} | ({int(lm.ignore_label)} if lm.has_ignore_label else set())
    return compute_metrics_on_folder(folder_ref, folder_pred, output_file, rw, dataset_json['file_ending'],
                                     lm.foreground_regions if lm.has_regions else lm.foreground_labels,
                                     lm.ignore_label, num_processes, chill=chill,
                                     _dataset_labels=(dataset_json_file, known))


def compute_metrics_on_folder_simple(folder_ref: str, folder_pred: str, labels: Union[Tuple[int, ...], List[int]],
                                     output_file: str = None, num_processes: int = default_num_processes,
                                     ignore_label: int = None, chill: bool = False) -> None:
    """Folder evaluation of the given integer labels; ending and reader come from the first reference file.

    Like the reference, the ending is only the last extension (``.gz`` for ``.nii.gz``) and nothing is returned.
    Unlike it, ``.json`` files are passed over when picking that first file: they are the spacing side-cars of
    ``.tif`` segmentations (a raw labelsTr folder holds one per label), never segmentations themselves.
    """
    _require_folder(folder_ref, 'reference')
    files_ref = sorted_files_with_ending(folder_ref, '')  # every file, whatever its ending
    if not files_ref:
        raise UserError(f"The reference folder {folder_ref} contains no files.", "Check the path.")
    segmentation_files = [f for f in files_ref if not f.endswith('.json')] or files_ref
    example_file = os.path.join(folder_ref, segmentation_files[0])
    file_ending = os.path.splitext(example_file)[-1]
    rw = determine_reader_writer_from_file_ending(file_ending, example_file, allow_nonmatching_filename=True,
                                                  verbose=False)
    if output_file is None:
        output_file = os.path.join(folder_pred, 'summary.json')
    compute_metrics_on_folder(folder_ref, folder_pred, output_file, rw(), file_ending, labels, ignore_label,
                              num_processes, chill=chill)


# ---------------------------------------------------------------------------------------------------------------
# console entry points
def evaluate_folder_entry_point_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Compare predicted segmentations with reference segmentations (matched by file name): Dice, '
                    'IoU and voxel counts per case and label/region, and their means, written to summary.json. '
                    'The labels come from dataset.json, the file reader from plans.json.')
    parser.add_argument('gt_folder', type=str, help='Folder with the reference (ground truth) segmentations.')
    parser.add_argument('pred_folder', type=str, help='Folder with the predicted segmentations.')
    parser.add_argument('-djfile', type=str, required=True,
                        help='dataset.json with the labels (nnUNetv2_predict copies it into its output folder).')
    parser.add_argument('-pfile', type=str, required=True,
                        help='plans.json of the model (nnUNetv2_predict copies it into its output folder).')
    parser.add_argument('-o', type=str, required=False, default=None,
                        help='Output file. Default: pred_folder/summary.json')
    parser.add_argument('-np', type=int, required=False, default=default_num_processes,
                        help=f'Number of processes. Default: {default_num_processes}')
    parser.add_argument('--chill', action='store_true',
                        help="Evaluate only the reference files that have a prediction instead of failing when "
                             "some are missing.")
    return parser


@exit_on_user_error
def evaluate_folder_entry_point():
    args = evaluate_folder_entry_point_parser().parse_args()
    compute_metrics_on_folder2(args.gt_folder, args.pred_folder, args.djfile, args.pfile, args.o, args.np,
                               chill=args.chill)


def evaluate_simple_entry_point_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Compare predicted segmentations with reference segmentations (matched by file name) for the '
                    'given labels, without dataset.json or plans.json (the file type is taken from the file '
                    'ending): Dice, IoU and voxel counts, written to summary.json.')
    parser.add_argument('gt_folder', type=str, help='Folder with the reference (ground truth) segmentations.')
    parser.add_argument('pred_folder', type=str, help='Folder with the predicted segmentations.')
    parser.add_argument('-l', type=int, nargs='+', required=True, help='Labels to evaluate, e.g. -l 1 2')
    parser.add_argument('-il', type=int, required=False, default=None,
                        help='Ignore label: reference voxels with this value are left out. Default: none')
    parser.add_argument('-o', type=str, required=False, default=None,
                        help='Output file. Default: pred_folder/summary.json')
    parser.add_argument('-np', type=int, required=False, default=default_num_processes,
                        help=f'Number of processes. Default: {default_num_processes}')
    parser.add_argument('--chill', action='store_true',
                        help="Evaluate only the reference files that have a prediction instead of failing when "
                             "some are missing.")
    return parser


@exit_on_user_error
def evaluate_simple_entry_point():
    args = evaluate_simple_entry_point_parser().parse_args()
    compute_metrics_on_folder_simple(args.gt_folder, args.pred_folder, args.l, args.o, args.np, args.il,
                                     chill=args.chill)


# the console scripts (pyproject.toml): the entry points in a command's process (utilities.console_command)
evaluate_folder_entry_point_command = as_command(evaluate_folder_entry_point, quick_exit=False)
evaluate_simple_entry_point_command = as_command(evaluate_simple_entry_point, quick_exit=False)
