"""Connected-component postprocessing: keep only the largest component of the foreground or of single labels.

``determine_postprocessing`` tries (1) keeping the largest foreground component and (2) keeping the
largest component per label/region, keeps what improves Dice on the cross-validation predictions, and stores the
chosen steps in ``postprocessing.pkl``. That pickle names ``remove_all_but_largest_component_from_segmentation`` of
this module by qualified name, so the function must stay here under this name (reference-made files load here and
ours load in the reference).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
from typing import Callable, List, Sequence, Tuple, Union

import numpy as np

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.evaluation._parallel import shared_pool, starmap
from nnunetv2.evaluation.evaluate_predictions import (compute_metrics_on_folder, load_summary_json,
                                                      region_or_label_to_mask)
from nnunetv2.file_io import atomic_path, atomic_path_named_by_writer, finished_files, folder_lock, json_safe, \
    load_json, maybe_mkdir_p, save_json, save_pickle
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from nnunetv2.imageio.simpleitk_reader_writer import read_seg_in_own_type
from nnunetv2.postprocessing._components import largest_components
from nnunetv2.postprocessing._safe_pickle import load_postprocessing_pickle
from nnunetv2.utilities.console_command import as_command
from nnunetv2.utilities.dataset_json import check_dataset_json_for_use
from nnunetv2.utilities.output_guard import check_output_files, claim_output_folder, refuse_input_as_output
from nnunetv2.utilities.utils import sorted_files_with_ending

logger = logging.getLogger(__name__)

_APPLY_COMMAND = 'nnUNetv2_apply_postprocessing'


def remove_all_but_largest_component_from_segmentation(segmentation: np.ndarray,
                                                       labels_or_regions: Union[int, Tuple[int, ...],
                                                                                List[Union[int, Tuple[int, ...]]]],
                                                       background_label: int = 0) -> np.ndarray:
    """Copy of ``segmentation`` in which the union of ``labels_or_regions`` keeps only its largest component(s)."""
    if not isinstance(labels_or_regions, (list, tuple, np.ndarray)):
        labels_or_regions = [labels_or_regions]
    mask = np.zeros_like(segmentation, dtype=bool)
    for label_or_region in labels_or_regions:
        mask |= region_or_label_to_mask(segmentation, label_or_region)
    remove = mask & ~largest_components(mask)
    ret = np.copy(segmentation)
    ret[remove] = background_label
    return ret


def apply_postprocessing(segmentation: np.ndarray, pp_fns: List[Callable], pp_fn_kwargs: List[dict]) -> np.ndarray:
    for fn, kwargs in zip(pp_fns, pp_fn_kwargs):
        segmentation = fn(segmentation, **kwargs)
    return segmentation


def _read_for_postprocessing(segmentation_file: str, image_reader_writer: BaseReaderWriter,
                             pp_fns: List[Callable]) -> Tuple[np.ndarray, dict]:
    """``read_seg``; where every step is our component removal, in the file's unsigned integer type (plain
    SimpleITKIO only): the steps keep the same voxels, and ``write_seg`` stores the same values (it picks uint8 or
    uint16 from the largest label either way), without a float32 copy of the volume."""
    if not all(fn is remove_all_but_largest_component_from_segmentation for fn in pp_fns):
        return image_reader_writer.read_seg(segmentation_file)
    seg, props = read_seg_in_own_type(image_reader_writer, segmentation_file)
    if seg.dtype.kind == 'i':  # negative labels are cast differently from int than from float when written
        seg = seg.astype(np.float32)
    return seg, props


def load_postprocess_save(segmentation_file: str, output_fname: str, image_reader_writer: BaseReaderWriter,
                          pp_fns: List[Callable], pp_fn_kwargs: List[dict]) -> None:
    seg, props = _read_for_postprocessing(segmentation_file, image_reader_writer, pp_fns)
    seg = apply_postprocessing(seg[0], pp_fns, pp_fn_kwargs)
    # under the final name in a private folder: the TIFF writer's spacing side-car takes its name from this path
    with atomic_path_named_by_writer(output_fname) as tmp:
        image_reader_writer.write_seg(seg, tmp, props)


# ---------------------------------------------------------------------------------------------------------------
def _load_plans_and_dataset_json(folder: str, plans_file_or_dict, dataset_json_file_or_dict):
    """(plans dict, dataset.json dict); missing arguments default to the copies inside ``folder``."""
    out = []
    for value, name, flag in ((plans_file_or_dict, 'plans.json', '-plans_json'),
                              (dataset_json_file_or_dict, 'dataset.json', '-dataset_json')):
        if value is None:
            value = os.path.join(folder, name)
            if not os.path.isfile(value):
                raise UserError(f"{name} not found in {folder} and no {name} was given.", f"Pass it with {flag}.")
        source = 'the dataset.json given'
        if not isinstance(value, dict):
            if not os.path.isfile(value):
                raise UserError(f"The {name} file {value} does not exist.", f"Check the {flag} path.")
            source, value = value, load_json(value)
        out.append(value)
    return out[0], check_dataset_json_for_use(out[1], source)


def _managers(plans: dict, dataset_json: dict):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans_manager = PlansManager(plans)
    return plans_manager, plans_manager.get_label_manager(dataset_json)


def _apply_to_files(files: Sequence[str], input_folder: str, output_folder: str, rw: BaseReaderWriter,
                    pp_fns: List[Callable], pp_fn_kwargs: List[dict], num_processes: int) -> None:
    maybe_mkdir_p(output_folder)
    starmap(load_postprocess_save,
            [(os.path.join(input_folder, f), os.path.join(output_folder, f), rw, pp_fns, pp_fn_kwargs) for f in files],
            num_processes, desc='Postprocessing')


def _atomic_copy(src: str, dst: str) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def determine_postprocessing(folder_predictions: str, folder_ref: str, plans_file_or_dict: Union[str, dict] = None,
                             dataset_json_file_or_dict: Union[str, dict] = None,
                             num_processes: int = default_num_processes, keep_postprocessed_files: bool = True):
    """Find the connected-component steps that improve Dice; write postprocessing.pkl/.json."""
    # another run on the same folder (a second find_best_configuration) waits: both write postprocessed/ and
    # postprocessing.pkl, and a merge of the cross-validation results (same parent folder) would delete the folder
    with folder_lock(os.path.dirname(os.path.abspath(folder_predictions)), 'determining the postprocessing'):
        try:
            with shared_pool(num_processes):  # one worker pool for the whole series of evaluations
                return _determine_postprocessing(folder_predictions, folder_ref, plans_file_or_dict,
                                                 dataset_json_file_or_dict, num_processes, keep_postprocessed_files)
        finally:  # the scratch folder goes, also on failure
            shutil.rmtree(os.path.join(folder_predictions, 'postprocessed', 'temp'), ignore_errors=True)


def _determine_postprocessing(folder_predictions, folder_ref, plans_file_or_dict, dataset_json_file_or_dict,
                              num_processes, keep_postprocessed_files):
    for folder, what in ((folder_predictions, 'prediction'), (folder_ref, 'reference')):
        if not os.path.isdir(folder):
            raise UserError(f"The {what} folder {folder} does not exist.", "Check the path.")
    plans, dataset_json = _load_plans_and_dataset_json(folder_predictions, plans_file_or_dict,
                                                       dataset_json_file_or_dict)
    plans_manager, label_manager = _managers(plans, dataset_json)
    rw = plans_manager.image_reader_writer_class()
    file_ending = dataset_json['file_ending']
    labels_or_regions = label_manager.foreground_regions if label_manager.has_regions \
        else label_manager.foreground_labels
    ignore_label = label_manager.ignore_label

    def evaluate(folder: str) -> dict:
        compute_metrics_on_folder(folder_ref, folder, os.path.join(folder, 'summary.json'), rw, file_ending,
                                  labels_or_regions, ignore_label, num_processes, chill=True)
        return load_summary_json(os.path.join(folder, 'summary.json'))

    output_folder = os.path.join(folder_predictions, 'postprocessed')
    # the scratch folder keeps the reference's name: the candidates' summary.json files name the files in it. Leftovers
    # of an interrupted run would be evaluated as predictions, so it starts empty; the caller removes it, also on
    # failure, and holds the folder lock, so another run on the same folder does not share it
    temp = os.path.join(output_folder, 'temp')
    shutil.rmtree(temp, ignore_errors=True)
    maybe_mkdir_p(temp)

    files_predictions = sorted_files_with_ending(folder_predictions, file_ending)
    missing = set(sorted_files_with_ending(folder_ref, file_ending)) - set(files_predictions)
    if missing:
        print(f'WARNING: Not all files in folder_ref were found in folder_predictions. Determining postprocessing '
              f'should always be done on the entire dataset! {len(missing)} reference file(s) have no prediction.')

    if os.path.isfile(os.path.join(folder_predictions, 'summary.json')):
        baseline_results = _existing_summary(os.path.join(folder_predictions, 'summary.json'), labels_or_regions)
    else:
        baseline_results = evaluate(folder_predictions)

    pp_fns, pp_fn_kwargs = [], []

    # 1) keep only the largest foreground component (all non-background labels merged, also for regions)
    # the pickle holds the label manager's values as they are (NumPy integers for labels, as the reference's does)
    output_here = os.path.join(temp, 'keep_largest_fg')
    kwargs = {'labels_or_regions': list(label_manager.foreground_labels)}
    _apply_to_files(files_predictions, folder_predictions, output_here, rw,
                    [remove_all_but_largest_component_from_segmentation], [kwargs], num_processes)
    pp_results = evaluate(output_here)
    before, after = baseline_results['foreground_mean']['Dice'], pp_results['foreground_mean']['Dice']
    # NaN compares False both ways: a NaN baseline never accepts, a NaN per-class value never vetoes
    worse = any(pp_results['mean'][r]['Dice'] < baseline_results['mean'][r]['Dice'] for r in labels_or_regions)
    if after > before and not worse:
        print(f'Results were improved by removing all but the largest foreground region. '
              f'Mean dice before: {round(before, 5)} after: {round(after, 5)}')
        source = output_here
        pp_fns.append(remove_all_but_largest_component_from_segmentation)
        pp_fn_kwargs.append(kwargs)
        baseline_results = pp_results
    else:
        print('Removing all but the largest foreground region did not improve results!')
        source = folder_predictions

    # 2) keep only the largest component of each label/region, one at a time, building on what was accepted
    if len(labels_or_regions) > 1:
        current_best = os.path.join(temp, 'keep_largest_perClassOrRegion_currentBest')
        for label_or_region in labels_or_regions:
            kwargs = {'labels_or_regions': label_or_region}
            output_here = os.path.join(temp, 'keep_largest_perClassOrRegion')
            shutil.rmtree(output_here, ignore_errors=True)
            _apply_to_files(files_predictions, source, output_here, rw,
                            [remove_all_but_largest_component_from_segmentation], [kwargs], num_processes)
            pp_results = evaluate(output_here)
            before = baseline_results['mean'][label_or_region]['Dice']
            after = pp_results['mean'][label_or_region]['Dice']
            if after > before:
                print(f'Results were improved by removing all but the largest component for {label_or_region}. '
                      f'Dice before: {round(before, 5)} after: {round(after, 5)}')
                shutil.rmtree(current_best, ignore_errors=True)
                shutil.move(output_here, current_best)
                source = current_best
                baseline_results = pp_results
                pp_fns.append(remove_all_but_largest_component_from_segmentation)
                pp_fn_kwargs.append(kwargs)
            else:
                print(f'Removing all but the largest component for {label_or_region} did not improve results! '
                      f'Dice before: {round(before, 5)} after: {round(after, 5)}')

    # the chosen source (possibly the untouched predictions, with all their side files) becomes 'postprocessed'
    for f in finished_files(source):
        _atomic_copy(os.path.join(source, f), os.path.join(output_folder, f))

    save_pickle((pp_fns, pp_fn_kwargs), os.path.join(folder_predictions, 'postprocessing.pkl'))
    baseline = load_summary_json(os.path.join(folder_predictions, 'summary.json'))
    final = load_summary_json(os.path.join(output_folder, 'summary.json'))
    save_json({'input_folder': _summary_for_json(baseline), 'postprocessed': _summary_for_json(final),
               'postprocessing_fns': [fn.__name__ for fn in pp_fns],
               'postprocessing_kwargs': json_safe(pp_fn_kwargs)},
              os.path.join(folder_predictions, 'postprocessing.json'))

    shutil.rmtree(temp, ignore_errors=True)
    if not keep_postprocessed_files:
        shutil.rmtree(output_folder, ignore_errors=True)
    return pp_fns, pp_fn_kwargs


def _existing_summary(summary_file: str, labels_or_regions) -> dict:
    """The summary.json already in the prediction folder, reused as the baseline; one that does not fit the labels
    (from another dataset or label set, edited by hand) would give meaningless comparisons or a KeyError."""
    hint = "Delete it; it is then computed anew from the predictions and the reference folder."
    try:
        summary = load_summary_json(summary_file)
        missing = [r for r in labels_or_regions if r not in summary['mean'] or 'Dice' not in summary['mean'][r]]
        summary['foreground_mean']['Dice']
    except KeyError as e:
        raise UserError(f"{summary_file} is not a complete evaluation summary: it lacks the key {e}.", hint) from None
    except (TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{summary_file} is not an evaluation summary ({type(e).__name__}: {e}).", hint) from None
    if missing:
        raise UserError(f"{summary_file} holds no Dice for label/region(s) {', '.join(map(str, missing))} of this "
                        f"dataset: it is stale (from other labels or predictions).", hint)
    return summary


def _summary_for_json(summary: dict) -> dict:
    return {'foreground_mean': summary['foreground_mean'], 'mean': {str(k): v for k, v in summary['mean'].items()}}


def _check_steps_fit_labels(pp_fns: List[Callable], pp_fn_kwargs: List[dict], label_manager,
                            dataset_json_source: str) -> None:
    """UserError if a component-removal step names label values the dataset does not have: the steps were chosen
    for another dataset (or label set), and applying them would quietly do nothing or act on a label that means
    something else here."""
    known = {int(v) for v in label_manager.all_labels}
    unknown = set()
    for fn, kwargs in zip(pp_fns, pp_fn_kwargs):
        if fn is not remove_all_but_largest_component_from_segmentation:
            continue  # other steps' arguments mean something else
        value = kwargs.get('labels_or_regions', [])
        for item in value if isinstance(value, (list, tuple, np.ndarray)) else [value]:
            for v in item if isinstance(item, (list, tuple, np.ndarray)) else [item]:
                if not (float(v).is_integer() and int(v) in known):
                    unknown.add(v.item() if isinstance(v, np.generic) else v)
    if unknown:
        raise UserError(f"The postprocessing steps name label value(s) {', '.join(map(str, sorted(unknown)))} that "
                        f"{dataset_json_source} does not define (its labels: {', '.join(map(str, sorted(known)))}): "
                        f"they were determined for another dataset or label set.",
                        "Use the postprocessing.pkl of the model that made these predictions (or its dataset.json "
                        "with -dataset_json).")


def apply_postprocessing_to_folder(input_folder: str, output_folder: str, pp_fns: List[Callable],
                                   pp_fn_kwargs: List[dict], plans_file_or_dict: Union[str, dict] = None,
                                   dataset_json_file_or_dict: Union[str, dict] = None, num_processes: int = 8) -> None:
    """Apply the steps to every segmentation in ``input_folder``; same-named files in ``output_folder``."""
    if not os.path.isdir(input_folder):
        raise UserError(f"The input folder {input_folder} does not exist.", "Check the -i path.")
    plans, dataset_json = _load_plans_and_dataset_json(input_folder, plans_file_or_dict, dataset_json_file_or_dict)
    plans_manager, label_manager = _managers(plans, dataset_json)
    _check_steps_fit_labels(pp_fns, pp_fn_kwargs, label_manager, dataset_json_file_or_dict if isinstance(
        dataset_json_file_or_dict, str) else os.path.join(input_folder, 'dataset.json'))
    rw = plans_manager.image_reader_writer_class()
    files = sorted_files_with_ending(input_folder, dataset_json['file_ending'])
    # the segmentations keep their names: writing into the input folder (or over files another command wrote)
    # would replace what the user still has no other copy of
    refuse_input_as_output(output_folder, [input_folder], _APPLY_COMMAND)
    check_output_files(output_folder, files, _APPLY_COMMAND)
    claim_output_folder(output_folder, _APPLY_COMMAND, {'input_folder': os.path.abspath(input_folder)})
    _apply_to_files(files, input_folder, output_folder, rw, pp_fns, pp_fn_kwargs, num_processes)


# ---------------------------------------------------------------------------------------------------------------
def entry_point_determine_postprocessing_folder_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Find out whether keeping only the largest connected component (of the foreground, and per '
                    'label) improves the Dice of a folder of predictions; writes postprocessing.pkl and '
                    'postprocessing.json into the input folder (and the postprocessed predictions into '
                    'input_folder/postprocessed).')
    parser.add_argument('-i', type=str, required=True,
                        help='Folder with the predictions, e.g. the crossval_results_folds_0_1_2_3_4 folder of '
                             'nnUNetv2_accumulate_crossval_results.')
    parser.add_argument('-ref', type=str, required=True, help='Folder with the reference (ground truth) segmentations')
    parser.add_argument('-plans_json', type=str, required=False, default=None,
                        help='plans file to use. If not specified we will look for the plans.json file in the '
                             'input folder (input_folder/plans.json)')
    parser.add_argument('-dataset_json', type=str, required=False, default=None,
                        help='dataset.json file to use. If not specified we will look for the dataset.json file '
                             'in the input folder (input_folder/dataset.json)')
    parser.add_argument('-np', type=int, required=False, default=default_num_processes,
                        help=f'number of processes to use. Default: {default_num_processes}')
    parser.add_argument('--remove_postprocessed', action='store_true', required=False,
                        help='Delete input_folder/postprocessed afterwards (keep only postprocessing.pkl/.json).')
    return parser


@exit_on_user_error
def entry_point_determine_postprocessing_folder():
    args = entry_point_determine_postprocessing_folder_parser().parse_args()
    determine_postprocessing(args.i, args.ref, args.plans_json, args.dataset_json, args.np,
                             not args.remove_postprocessed)


def entry_point_apply_postprocessing_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Apply the postprocessing chosen by nnUNetv2_determine_postprocessing '
                                                 '(postprocessing.pkl) to every segmentation in a folder.')
    parser.add_argument('-i', type=str, required=True, help='Folder with the segmentations to postprocess')
    parser.add_argument('-o', type=str, required=True, help='Output folder (not the input folder)')
    parser.add_argument('-pp_pkl_file', type=str, required=True,
                        help='postprocessing.pkl written by nnUNetv2_determine_postprocessing')
    parser.add_argument('-np', type=int, required=False, default=default_num_processes,
                        help=f'number of processes to use. Default: {default_num_processes}')
    parser.add_argument('-plans_json', type=str, required=False, default=None,
                        help='plans file to use. If not specified we will look for the plans.json file in the '
                             'input folder (input_folder/plans.json)')
    parser.add_argument('-dataset_json', type=str, required=False, default=None,
                        help='dataset.json file to use. If not specified we will look for the dataset.json file '
                             'in the input folder (input_folder/dataset.json)')
    return parser


@exit_on_user_error
def entry_point_apply_postprocessing():
    args = entry_point_apply_postprocessing_parser().parse_args()
    pp_fns, pp_fn_kwargs = load_postprocessing_pickle(args.pp_pkl_file)
    apply_postprocessing_to_folder(args.i, args.o, pp_fns, pp_fn_kwargs, args.plans_json, args.dataset_json, args.np)


# the console scripts (pyproject.toml): the entry points in a command's process (utilities.console_command)
entry_point_determine_postprocessing_folder_command = as_command(entry_point_determine_postprocessing_folder,
                                                                 quick_exit=False)
entry_point_apply_postprocessing_command = as_command(entry_point_apply_postprocessing, quick_exit=False)
