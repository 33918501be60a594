"""Pick the best trained configuration (or pair ensemble) from cross-validation Dice.

Writes ``$nnUNet_results/<dataset>/inference_information.json`` and ``inference_instructions.txt``.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
from copy import deepcopy
from typing import List, Optional, Tuple, Union

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.evaluation.accumulate_cv_results import (accumulate_cv_results, check_folds_ready,
                                                     evaluate_with_dataset_labels)
from nnunetv2.evaluation.evaluate_predictions import load_summary_json
from nnunetv2.file_io import atomic_path, folder_lock, load_json, save_json
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_results
from nnunetv2.utilities.console_command import as_command
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
from nnunetv2.utilities.file_path_utilities import (convert_identifier_to_trainer_plans_config, folds_tuple_to_string,
                                                    get_ensemble_name, get_output_folder)
from nnunetv2.utilities.output_guard import marker_name

default_trained_models = tuple(
    {'plans': 'nnUNetPlans', 'configuration': c, 'trainer': 'nnUNetTrainer'}
    for c in ('2d', '3d_fullres', '3d_lowres', '3d_cascade_fullres')
)


def filter_available_models(model_dict: Union[List[dict], Tuple[dict, ...]], dataset_name_or_id: Union[str, int]):
    """Models whose configuration exists in their plans; each of those must have been trained."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # torch-heavy; import when used
    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    valid = []
    for trained_model in model_dict:
        plans_file = os.path.join(nnUNet_preprocessed, dataset_name, trained_model['plans'] + '.json')
        if not os.path.isfile(plans_file):
            raise UserError(f"Plans file {plans_file} (plans '{trained_model['plans']}') does not exist.",
                            "Check -p, or run the planning for this dataset first.")
        plans_manager = PlansManager(plans_file)
        if trained_model['configuration'] not in plans_manager.available_configurations:
            print(f"Configuration {trained_model['configuration']} not found in plans {trained_model['plans']}.\n"
                  f"Inferred plans file: {plans_file}.")
            continue
        folder = get_output_folder(dataset_name_or_id, trained_model['trainer'], trained_model['plans'],
                                   trained_model['configuration'], fold=None)
        if not os.path.isdir(folder):
            raise UserError(f"Trained model {trained_model['trainer']}__{trained_model['plans']}__"
                            f"{trained_model['configuration']} has no output folder (expected {folder}).",
                            "Train it first (with --npz if you want to ensemble configurations), or leave it out "
                            "with -c/-tr/-p.")
        valid.append(trained_model)
    return valid


def generate_inference_command(dataset_name_or_id: Union[int, str], configuration_name: str,
                               plans_identifier: str = 'nnUNetPlans', trainer_name: str = 'nnUNetTrainer',
                               folds: Union[List[int], Tuple[int, ...]] = (0, 1, 2, 3, 4),
                               folder_with_segs_from_prev_stage: str = None, input_folder: str = 'INPUT_FOLDER',
                               output_folder: str = 'OUTPUT_FOLDER', save_npz: bool = False) -> str:
    """The ``nnUNetv2_predict`` command line for one model.

    Like the reference (whose cascade detection never triggers), no previous-stage command is generated for cascade
    configurations; ``-prev_stage_predictions`` appears only when a folder is passed explicitly. Each fold is
    preceded by a space, hence the double space after ``-f``.
    """
    fold_str = ''.join(f' {f}' for f in folds)
    command = (f'nnUNetv2_predict -d {dataset_name_or_id} -i {input_folder} -o {output_folder} -f {fold_str} '
               f'-tr {trainer_name} -c {configuration_name} -p {plans_identifier}')
    if folder_with_segs_from_prev_stage is not None:
        command += f' -prev_stage_predictions {folder_with_segs_from_prev_stage}'
    if save_npz:
        command += ' --save_probabilities'
    return command


def _pick_best(all_results: dict) -> str:
    """Key with the highest Dice; ties -> first in insertion order. NaN results are never selected (the reference
    crashes when the first result is NaN)."""
    candidates = [(k, v['result']) for k, v in all_results.items()
                  if v['result'] is not None and not math.isnan(v['result'])]
    if not candidates:
        raise UserError("The foreground mean Dice is NaN for every model and ensemble, so none can be selected "
                        f"({', '.join(all_results)}).",
                        "A label that is absent from all references and predictions makes the mean NaN; check "
                        "dataset.json labels and the validation predictions.")
    best = max(v for _, v in candidates)
    return next(k for k, v in candidates if v == best)


def find_best_configuration(dataset_name_or_id, allowed_trained_models=default_trained_models,
                            allow_ensembling: bool = True, num_processes: int = default_num_processes,
                            overwrite: bool = True, folds: Union[List[int], Tuple[int, ...]] = (0, 1, 2, 3, 4),
                            strict: bool = False) -> dict:
    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    # a second run at once (or a rerun while the first is going) would rebuild the merged folders, ensembles and
    # postprocessing under the first: it waits for the first instead
    with folder_lock(os.path.join(nnUNet_results, dataset_name), 'finding the best configuration'):
        return _find_best_configuration(dataset_name_or_id, dataset_name, allowed_trained_models, allow_ensembling,
                                        num_processes, overwrite, folds)


def _find_best_configuration(dataset_name_or_id, dataset_name, allowed_trained_models, allow_ensembling,
                             num_processes, overwrite, folds) -> dict:
    from nnunetv2.ensembling.ensemble import ensemble_crossvalidations
    from nnunetv2.postprocessing.remove_connected_components import determine_postprocessing

    gt_folder = os.path.join(nnUNet_preprocessed, dataset_name, 'gt_segmentations')
    models = filter_available_models(deepcopy(allowed_trained_models), dataset_name_or_id)
    if not models:
        raise UserError(f"None of the requested configurations exists in the plans of {dataset_name}.",
                        "Check -c/-p against the configurations in the plans file.")
    folders = [get_output_folder(dataset_name_or_id, m['trainer'], m['plans'], m['configuration'], fold=None)
               for m in models]

    for folder in folders:  # a run refused for an unfinished fold changes nothing
        check_folds_ready(folder, folds)
    # the results of an earlier run name the postprocessing.pkl and plans.json of the folder they chose, which this
    # run deletes (merged folders) or rewrites (ensembles) before it writes its own results last: a crash or kill in
    # between would leave them pointing at missing files. Gone now, they are absent until this run completes
    for name in ('inference_information.json', 'inference_instructions.txt'):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(nnUNet_results, dataset_name, name))

    all_results = {}
    for folder in folders:
        merged = os.path.join(folder, f'crossval_results_folds_{folds_tuple_to_string(folds)}')
        accumulate_cv_results(folder, merged, folds, num_processes, overwrite)
        all_results[os.path.basename(folder)] = {
            'source': merged, 'result': load_summary_json(os.path.join(merged, 'summary.json'))['foreground_mean']['Dice']}

    if allow_ensembling:
        for i in range(len(folders)):
            for j in range(i + 1, len(folders)):
                identifier = get_ensemble_name(folders[i], folders[j], folds)
                out = os.path.join(nnUNet_results, dataset_name, 'ensembles', identifier)
                ensemble_crossvalidations([folders[i], folders[j]], out, folds, num_processes, overwrite=overwrite)
                evaluate_with_dataset_labels(gt_folder, out, os.path.join(folders[i], 'plans.json'),
                                             load_json(os.path.join(folders[i], 'dataset.json')), num_processes)
                all_results[identifier] = {
                    'source': out, 'result': load_summary_json(os.path.join(out, 'summary.json'))['foreground_mean']['Dice']}

    best_key = _pick_best(all_results)
    source = all_results[best_key]['source']
    print()
    print('***All results:***')
    for k, v in all_results.items():
        print(f"{k}: {v['result']}")
    print(f"\n*Best*: {best_key}: {all_results[best_key]['result']}")
    print()
    print('***Determining postprocessing for best model/ensemble***')
    determine_postprocessing(source, gt_folder, plans_file_or_dict=os.path.join(source, 'plans.json'),
                             dataset_json_file_or_dict=os.path.join(source, 'dataset.json'),
                             num_processes=num_processes, keep_postprocessed_files=True)

    if best_key.startswith('ensemble___'):
        member_identifiers = best_key.split('___')[1:3]
    else:
        member_identifiers = [best_key]
    selected = []
    for identifier in member_identifiers:
        tr, pl, c = convert_identifier_to_trainer_plans_config(identifier)
        selected.append({'configuration': c, 'trainer': tr, 'plans_identifier': pl})

    result = {
        'folds': folds,
        'dataset_name_or_id': dataset_name_or_id,
        'considered_models': models,
        'ensembling_allowed': allow_ensembling,
        'all_results': {k: v['result'] for k, v in all_results.items()},
        'best_model_or_ensemble': {
            'result_on_crossval_pre_pp': all_results[best_key]['result'],
            'result_on_crossval_post_pp': load_json(os.path.join(source, 'postprocessed', 'summary.json'))[
                'foreground_mean']['Dice'],
            'postprocessing_file': os.path.join(source, 'postprocessing.pkl'),
            'some_plans_file': os.path.join(source, 'plans.json'),
            'selected_model_or_models': selected,
        },
    }
    save_json(result, os.path.join(nnUNet_results, dataset_name, 'inference_information.json'))
    print_inference_instructions(result, os.path.join(nnUNet_results, dataset_name, 'inference_instructions.txt'))
    return result


def _instruction_lines(inference_info_dict: dict) -> List[str]:
    selected = inference_info_dict['best_model_or_ensemble']['selected_model_or_models']
    dataset = inference_info_dict['dataset_name_or_id']
    folds = inference_info_dict['folds']
    is_ensemble = len(selected) > 1
    lines = ['***Run inference like this:***\n']
    if is_ensemble:
        lines.append('An ensemble won! What a surprise! Run the following commands to run predictions with the '
                     'ensemble members:\n')
    outputs = []
    for k, model in enumerate(selected):
        output = f'OUTPUT_FOLDER_MODEL_{k + 1}' if is_ensemble else 'OUTPUT_FOLDER'
        outputs.append(output)
        lines.append(generate_inference_command(dataset, model['configuration'], model['plans_identifier'],
                                                model['trainer'], folds, save_npz=is_ensemble, output_folder=output))
    if is_ensemble:
        lines.append('\nThe run ensembling with:\n')  # sic, as in the reference
        lines.append(f"nnUNetv2_ensemble -i {' '.join(outputs)} -o OUTPUT_FOLDER -np {default_num_processes}")
    best = inference_info_dict['best_model_or_ensemble']
    lines.append('\n***Once inference is completed, run postprocessing like this:***\n')
    lines.append(f"nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file "
                 f"{best['postprocessing_file']} -np {default_num_processes} -plans_json {best['some_plans_file']}")
    return lines


def print_inference_instructions(inference_info_dict: dict, instructions_file: Optional[str] = None) -> None:
    """Print how to run inference with the selected model(s); also write it to ``instructions_file``."""
    lines = _instruction_lines(inference_info_dict)
    print()
    for line in lines:
        print(line)
    if instructions_file is not None:
        with atomic_path(instructions_file) as tmp:
            with open(tmp, 'w') as f:
                f.writelines(f'{line}\n' for line in lines)


def dumb_trainer_config_plans_to_trained_models_dict(trainers: List[str], configs: List[str], plans: List[str]):
    """All combinations, trainers outermost, then configurations, then plans; a tuple, as the reference returns."""
    return tuple({'plans': p, 'configuration': c, 'trainer': t} for t in trainers for c in configs for p in plans)


# ---------------------------------------------------------------------------------------------------------------
def find_best_configuration_entry_point_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Pick the best of the trained models (and of the ensembles of two of them) by their '
                    'cross-validation Dice, determine its postprocessing, and write the inference commands to '
                    '$nnUNet_results/<dataset>/inference_instructions.txt (and inference_information.json). '
                    'Configurations that the plans lack are skipped; the others must be trained (all folds of -f, '
                    'with --npz for ensembling).')
    parser.add_argument('dataset_name_or_id', type=str, help='Dataset name or id')
    parser.add_argument('-p', nargs='+', required=False, default=['nnUNetPlans'],
                        help='Plans identifiers. Default: nnUNetPlans')
    parser.add_argument('-c', nargs='+', required=False, default=['2d', '3d_fullres', '3d_lowres', '3d_cascade_fullres'],
                        help="Configurations. Default: 2d 3d_fullres 3d_lowres 3d_cascade_fullres")
    parser.add_argument('-tr', nargs='+', required=False, default=['nnUNetTrainer'],
                        help='Trainer classes. Default: nnUNetTrainer')
    parser.add_argument('-np', required=False, default=default_num_processes, type=int,
                        help=f'Number of processes for ensembling, postprocessing etc. '
                             f'Default: {default_num_processes}')
    parser.add_argument('-f', nargs='+', type=int, default=(0, 1, 2, 3, 4),
                        help='Folds to use. Default: 0 1 2 3 4')
    parser.add_argument('--disable_ensembling', action='store_true', required=False,
                        help='Do not try ensembles of two models.')
    parser.add_argument('--no_overwrite', action='store_true',
                        help='Reuse the ensembles and accumulated cross-validation results of an earlier run instead '
                             'of recomputing them (faster, but they may be outdated).')
    return parser


@exit_on_user_error
def find_best_configuration_entry_point():
    args = find_best_configuration_entry_point_parser().parse_args()
    models = dumb_trainer_config_plans_to_trained_models_dict(args.tr, args.c, args.p)
    dataset_name = maybe_convert_to_dataset_name(args.dataset_name_or_id)
    find_best_configuration(dataset_name, models, allow_ensembling=not args.disable_ensembling,
                            num_processes=args.np, overwrite=not args.no_overwrite, folds=args.f, strict=False)


def accumulate_crossval_results_entry_point_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Copy the validation predictions of the individual folds into one '
                                                 'joint folder and evaluate them (summary.json).')
    parser.add_argument('dataset_name_or_id', type=str, help='Dataset name or id')
    parser.add_argument('-c', type=str, required=True, default='3d_fullres', help='Configuration, e.g. 3d_fullres')
    parser.add_argument('-o', type=str, required=False, default=None,
                        help='Output folder. If not specified, the output folder will be located in the trained '
                             'model directory (named crossval_results_folds_XXX).')
    parser.add_argument('-f', nargs='+', type=int, default=(0, 1, 2, 3, 4),
                        help='Folds to use. Default: 0 1 2 3 4')
    parser.add_argument('-p', type=str, required=False, default='nnUNetPlans',
                        help='Plan identifier in which to search for the specified configuration. Default: nnUNetPlans')
    parser.add_argument('-tr', type=str, required=False, default='nnUNetTrainer',
                        help='Trainer class. Default: nnUNetTrainer')
    return parser


_ACCUMULATE_COMMAND = 'nnUNetv2_accumulate_crossval_results'


@exit_on_user_error
def accumulate_crossval_results_entry_point():
    args = accumulate_crossval_results_entry_point_parser().parse_args()
    trained_model_folder = get_output_folder(args.dataset_name_or_id, args.tr, args.p, args.c)
    if args.o is None:
        merged_output_folder = os.path.join(trained_model_folder,
                                            f'crossval_results_folds_{folds_tuple_to_string(args.f)}')
    else:
        merged_output_folder = args.o
        # a folder this command wrote (also one it was interrupted in) may be replaced: that is how a run is repeated
        written_here = os.path.isfile(os.path.join(merged_output_folder, marker_name(_ACCUMULATE_COMMAND)))
        if os.path.isdir(merged_output_folder) and len(os.listdir(merged_output_folder)) > 0 and not written_here:
            raise UserError(f"Output folder {merged_output_folder} exists and is not empty.",
                            "Choose an empty or new folder with -o (everything in it would be replaced).")
    accumulate_cv_results(trained_model_folder, merged_output_folder, args.f,
                          marker_command=_ACCUMULATE_COMMAND if args.o is not None else None)


# the console scripts (pyproject.toml): the entry points in a command's process (utilities.console_command)
find_best_configuration_entry_point_command = as_command(find_best_configuration_entry_point, quick_exit=False)
accumulate_crossval_results_entry_point_command = as_command(accumulate_crossval_results_entry_point, quick_exit=False)
