"""Ensembling of different models: average their exported probabilities (``.npz``) and re-segment.

Unlike fold ensembling inside the predictor (logits), this works on the probabilities in original image space that
``nnUNetv2_predict --save_probabilities`` (or the trainer's validation with ``--npz``) wrote.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import zipfile
import zlib
from typing import List, Sequence, Tuple, Union

import numpy as np

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.evaluation._parallel import starmap
from nnunetv2.file_io import atomic_path, atomic_path_named_by_writer, load_json, load_pickle, maybe_mkdir_p, \
    save_json, save_npz_compressed, save_pickle
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from nnunetv2.utilities.console_command import as_command
from nnunetv2.utilities.dataset_json import check_dataset_json_for_use
from nnunetv2.utilities.output_guard import check_output_files, claim_output_folder, refuse_input_as_output
from nnunetv2.utilities.utils import sorted_files_with_ending

_COMMAND = 'nnUNetv2_ensemble'


def _load_probabilities(npz_file: str) -> np.ndarray:
    try:
        with np.load(npz_file) as f:
            return f['probabilities']
    except KeyError:
        raise UserError(f"{npz_file} has no 'probabilities' array.",
                        "Use the .npz files written by nnUNetv2_predict --save_probabilities.") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        if isinstance(e, OSError) and e.filename is not None:
            raise  # the file could not be opened at all: the central one-line report names it and the reason
        raise UserError(f"Could not read the probabilities in {npz_file}: it is truncated or corrupt "
                        f"({type(e).__name__}: {' '.join(str(e).split())}).",
                        "Predict that case again with --save_probabilities.") from None


def average_probabilities(list_of_files: List[str]) -> np.ndarray:
    """Mean of the ``probabilities`` arrays, accumulated in float32 in the given order."""
    if len(list_of_files) == 0:
        raise UserError("No probability files were given to average.", "Pass at least one .npz file.")
    avg = _load_probabilities(list_of_files[0])
    if avg.dtype != np.float32:
        avg = avg.astype(np.float32)
    for f in list_of_files[1:]:
        other = _load_probabilities(f)
        if other.shape != avg.shape:
            raise UserError(f"Cannot average {f} (shape {other.shape}) with {list_of_files[0]} (shape {avg.shape}).",
                            "Ensemble only predictions of the same images made with the same labels.")
        avg += other
    avg /= len(list_of_files)
    return avg


def _load_properties(npz_file: str) -> dict:
    pkl = npz_file[:-4] + '.pkl'
    if not os.path.isfile(pkl):
        raise UserError(f"{pkl} (the properties belonging to {npz_file}) does not exist.",
                        "Predict with --save_probabilities, which writes .npz and .pkl together.")
    try:
        return load_pickle(pkl)
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError) as e:
        raise UserError(f"Could not read {pkl}: it is truncated or corrupt ({type(e).__name__}).",
                        "Predict that case again with --save_probabilities.") from None


def merge_files(list_of_files, output_filename_truncated: str, output_file_ending: str,
                image_reader_writer: BaseReaderWriter, label_manager, save_probabilities: bool = False) -> None:
    """Average one case over models and write its segmentation (and optionally the averaged .npz/.pkl)."""
    properties = _load_properties(list_of_files[0])  # geometry is that of the first member
    probabilities = average_probabilities(list_of_files)
    segmentation = label_manager.convert_probabilities_to_segmentation(probabilities)
    # the writer names its files after the path it is given (the TIFF writer adds CASE.json): it writes into a
    # private folder under the final name, and everything it wrote is moved out
    with atomic_path_named_by_writer(output_filename_truncated + output_file_ending) as tmp:
        image_reader_writer.write_seg(segmentation, tmp, properties)
    if save_probabilities:
        save_npz_compressed(output_filename_truncated + '.npz', probabilities=probabilities)
        save_pickle(properties, output_filename_truncated + '.pkl')


# A folder written by nnUNetv2_predict holds dataset.json and plans.json; a trained model's fold_X/validation folder
# (a natural thing to ensemble) holds neither, and the command line has no option to name them.
_MISSING_JSON_HINT = ("nnUNetv2_predict writes it into its output folder; for another folder (e.g. fold_X/validation "
                      "of a trained model) copy dataset.json and plans.json from the model folder into the first "
                      "input folder.")


def _json_arg(value: Union[str, dict, None], default_file: str, what: str, hint: str = _MISSING_JSON_HINT) -> dict:
    if isinstance(value, dict):
        return value
    path = default_file if value is None else value
    if not os.path.isfile(path):
        raise UserError(f"The {what} file {path} does not exist.", hint if value is None else "Check the path.")
    return load_json(path)


def _dataset_json_arg(value: Union[str, dict, None], default_file: str, hint: str = _MISSING_JSON_HINT) -> dict:
    source = value if isinstance(value, str) else default_file if value is None else 'the dataset.json given'
    return check_dataset_json_for_use(_json_arg(value, default_file, 'dataset.json', hint), source)


def _managers(plans: dict, dataset_json: dict):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # torch-heavy; import when used
    plans_manager = PlansManager(plans)
    return plans_manager.image_reader_writer_class(), plans_manager.get_label_manager(dataset_json)


def _few(names, n: int = 5) -> str:
    names = sorted(names)
    return ', '.join(names[:n]) + (f' and {len(names) - n} more' if len(names) > n else '')


def ensemble_folders(list_of_input_folders: List[str], output_folder: str, save_merged_probabilities: bool = False,
                     num_processes: int = default_num_processes, dataset_json_file_or_dict: Union[str, dict] = None,
                     plans_json_file_or_dict: Union[str, dict] = None) -> None:
    """Merge the same-named ``.npz`` of every input folder into ``output_folder``."""
    if len(list_of_input_folders) == 0:
        raise UserError("No input folders were given to ensemble.", "Pass at least one folder with -i.")
    for folder in list_of_input_folders:
        if not os.path.isdir(folder):
            raise UserError(f"The input folder {folder} does not exist.", "Check the -i paths.")
    first = list_of_input_folders[0]
    dataset_json = _dataset_json_arg(dataset_json_file_or_dict, os.path.join(first, 'dataset.json'))
    plans = _json_arg(plans_json_file_or_dict, os.path.join(first, 'plans.json'), 'plans.json')

    files_per_folder = [set(sorted_files_with_ending(f, '.npz')) for f in list_of_input_folders]
    all_files = set().union(*files_per_folder)
    if not all_files:
        raise UserError(f"None of the input folders contains .npz probability files ({_few(list_of_input_folders)}).",
                        "Predict with nnUNetv2_predict --save_probabilities first.")
    for folder, files in zip(list_of_input_folders, files_per_folder):
        if files != all_files:
            raise UserError(f"The input folders do not contain the same cases: {folder} lacks "
                            f"{_few(all_files - files)}.",
                            "Every folder must hold the probabilities (.npz) of the same cases.")
    _warn_if_labels_differ(list_of_input_folders, dataset_json)
    rw, label_manager = _managers(plans, dataset_json)
    cases = sorted(all_files)
    _guard_output_folder(output_folder, list_of_input_folders, cases, dataset_json, save_merged_probabilities)
    save_json(dataset_json, os.path.join(output_folder, 'dataset.json'), sort_keys=False)
    starmap(merge_files,
            [([os.path.join(folder, c) for folder in list_of_input_folders], os.path.join(output_folder, c[:-4]),
              dataset_json['file_ending'], rw, label_manager, save_merged_probabilities) for c in cases],
            num_processes, desc='Ensembling')


def _warn_if_labels_differ(input_folders: Sequence[str], dataset_json: dict) -> None:
    """Warn (stderr) for each input folder whose dataset.json declares other labels (names or values) or another
    regions_class_order than the dataset.json the ensemble uses: its probabilities are averaged channel by channel all
    the same, which means nothing where channel k is another structure in another model (the reference averaged them
    without a word). Folders without a readable dataset.json are not judged."""
    used = (dataset_json.get('labels'), dataset_json.get('regions_class_order'))
    for folder in input_folders:
        path = os.path.join(folder, 'dataset.json')
        try:
            other = load_json(path)
        except Exception:  # missing or unreadable: the folder's probabilities are all there is to go by
            continue
        if not isinstance(other, dict) or (other.get('labels'), other.get('regions_class_order')) == used:
            continue
        print(f"WARNING: {path} declares other labels than the dataset.json this ensemble uses "
              f"({other.get('labels')} vs {used[0]}"
              f"{'' if other.get('regions_class_order') == used[1] else ', or another regions_class_order'}); its "
              f"probabilities are averaged channel by channel all the same. Ensemble only models of the same labels.",
              file=sys.stderr, flush=True)


def _guard_output_folder(output_folder: str, input_folders: List[str], cases: List[str], dataset_json: dict,
                         save_probabilities: bool) -> None:
    """Stop before writing if an output would replace an input or a file an earlier ensemble did not write."""
    refuse_input_as_output(output_folder, input_folders, _COMMAND)
    segmentations = [c[:-4] + dataset_json['file_ending'] for c in cases]
    probabilities = cases + [c[:-4] + '.pkl' for c in cases]
    names = ['dataset.json'] + segmentations + (probabilities if save_probabilities else [])

    def reference_ensemble(folder: str) -> bool:
        # the reference's nnUNetv2_ensemble of the same inputs leaves exactly their dataset.json and the cases'
        # outputs, nothing else (no marker, no plans.json: a prediction folder or labelsTr does not look like that)
        visible = [f for f in os.listdir(folder) if not f.startswith('.')]
        if 'dataset.json' not in visible or not set(visible) <= set(['dataset.json'] + segmentations + probabilities):
            return False
        try:
            return load_json(os.path.join(folder, 'dataset.json')) == dataset_json
        except (OSError, UserError):  # unreadable or not JSON: not what the reference writes
            return False

    check_output_files(output_folder, names, _COMMAND, written_by_reference=reference_ensemble)
    claim_output_folder(output_folder, _COMMAND, {'input_folders': [os.path.abspath(f) for f in input_folders]})


def _validation_files(model_folder: str, folds: Sequence[int]) -> dict:
    """{case.npz: fold} over the folds of one trained model, with the errors the user can act on."""
    owner = {}
    for fold in folds:
        validation = os.path.join(model_folder, f'fold_{fold}', 'validation')
        if not os.path.isdir(validation):
            raise UserError(f"Expected {validation} to exist: fold {fold} of {model_folder} has not been trained "
                            f"(or validated).", "Train all folds before ensembling cross-validation results.")
        files = sorted_files_with_ending(validation, '.npz')
        if not files:
            raise UserError(f"No .npz files in {validation}.",
                            "Rerun the validation with the --npz flag (nnUNetv2_train ... --val --npz).")
        for f in files:
            if f in owner:
                raise UserError(f"Case {f[:-4]} was predicted by folds {owner[f]} and {fold} of {model_folder}.",
                                "Each case must be in exactly one validation fold (check splits_final.json).")
            owner[f] = fold
    return owner


def _atomic_copy(src: str, dst: str) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def ensemble_crossvalidations(list_of_trained_model_folders: List[str], output_folder: str,
                              folds: Union[Tuple[int, ...], List[int]] = (0, 1, 2, 3, 4),
                              num_processes: int = default_num_processes, overwrite: bool = True) -> None:
    """Ensemble the cross-validation predictions of several trained models."""
    first = list_of_trained_model_folders[0]
    model_hint = "Pass trained model folders ($nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIGURATION): training " \
                 "writes it there."
    dataset_json = _dataset_json_arg(None, os.path.join(first, 'dataset.json'), model_hint)
    plans = _json_arg(None, os.path.join(first, 'plans.json'), 'plans.json', model_hint)
    rw, label_manager = _managers(plans, dataset_json)

    owners = [_validation_files(m, folds) for m in list_of_trained_model_folders]
    all_cases = set().union(*[set(o) for o in owners])
    for model, owner in zip(list_of_trained_model_folders, owners):
        missing = all_cases - set(owner)
        if missing:
            raise UserError(f"{model} has no validation prediction for {len(missing)} case(s) that other models have "
                            f"({_few(c[:-4] for c in missing)}).",
                            "All models must be trained on all folds of the same cases.")

    maybe_mkdir_p(output_folder)
    ending = dataset_json['file_ending']
    jobs = []
    for case in sorted(all_cases):
        out = os.path.join(output_folder, case[:-4])
        if not overwrite and os.path.isfile(out + ending):
            continue
        members = [os.path.join(m, f'fold_{o[case]}', 'validation', case)
                   for m, o in zip(list_of_trained_model_folders, owners)]
        jobs.append((members, out, ending, rw, label_manager, False))
    starmap(merge_files, jobs, num_processes, desc='Ensembling')
    _atomic_copy(os.path.join(first, 'plans.json'), os.path.join(output_folder, 'plans.json'))
    _atomic_copy(os.path.join(first, 'dataset.json'), os.path.join(output_folder, 'dataset.json'))


def entry_point_ensemble_folders_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Ensemble predictions: average the class probabilities of the cases found in all input '
                    'folders and write the resulting segmentations. The input folders come from nnUNetv2_predict '
                    '--save_probabilities (they hold CASE.npz and CASE.pkl).')
    parser.add_argument('-i', nargs='+', type=str, required=True,
                        help='Input folders (predictions with .npz and .pkl files), two or more.')
    parser.add_argument('-o', type=str, required=True, help='Output folder')
    parser.add_argument('-np', type=int, required=False, default=default_num_processes,
                        help=f'Number of processes used for ensembling. Default: {default_num_processes}')
    parser.add_argument('--save_npz', action='store_true', required=False,
                        help='Also write the averaged probabilities (CASE.npz and CASE.pkl).')
    return parser


@exit_on_user_error
def entry_point_ensemble_folders():
    args = entry_point_ensemble_folders_parser().parse_args()
    distinct = {os.path.realpath(f) for f in args.i}
    if len(distinct) < 2:
        # accepted (as by the reference), but the result is that one model's prediction: usually a folder was lost
        # on the way (an unquoted glob, a missing second -i path)
        print(f"WARNING: nnUNetv2_ensemble got only one distinct input folder ({args.i[0]}): the output is that "
              f"model's own prediction, not an ensemble. Pass two or more folders with -i.", file=sys.stderr)
    ensemble_folders(args.i, args.o, args.save_npz, args.np)


# the console scripts (pyproject.toml): the entry points in a command's process (utilities.console_command)
entry_point_ensemble_folders_command = as_command(entry_point_ensemble_folders, quick_exit=False)
