"""Console entry points ``nnUNetv2_predict`` and ``nnUNetv2_predict_from_modelfolder`` and their flags.

Re-exported by ``nnunetv2.inference.predict_from_raw_data`` (the registered module path). Thin: parse arguments,
set up the device, build the predictor and call one prediction method.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from nnunetv2.configuration import int_from_env
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.utilities.console_command import as_command, import_with_ctrl_c_deferred

CITATION = ("\n#######################################################################\n"
            "Please cite the following paper when using nnU-Net:\n"
            "Isensee, F., Jaeger, P. F., Kohl, S. A., Petersen, J., & Maier-Hein, K. H. (2021). nnU-Net: a "
            "self-configuring method for deep learning-based biomedical image segmentation. Nature methods, 18(2), "
            "203-211.\n"
            "#######################################################################\n")


def _add_common_arguments(parser: argparse.ArgumentParser, npp_default: int, nps_default: int,
                          continue_aliases: List[str]) -> None:
    parser.add_argument('-f', nargs='+', type=str, required=False, default=(0, 1, 2, 3, 4),
                        help='Folds of the trained model to use (ensembled), e.g. -f 0 1 2 or -f all. Default: 0 1 2 3 4')
    parser.add_argument('-step_size', type=float, required=False, default=0.5,
                        help='Sliding window step as a fraction of the patch size, in (0, 1]. Larger is faster but '
                             'less accurate. Default: 0.5')
    parser.add_argument('--disable_tta', action='store_true', required=False, default=False,
                        help='Disable test time augmentation (mirroring). Faster but a bit less accurate.')
    parser.add_argument('--verbose', action='store_true', help='Print more about what is happening.')
    parser.add_argument('--save_probabilities', action='store_true',
                        help='Also write CASE.npz (class probabilities) and CASE.pkl (image properties), needed for '
                             'ensembling. Needs a lot of disk space.')
    parser.add_argument('--continue_prediction', *continue_aliases, action='store_true',
                        help='Skip cases whose output already exists (resume an aborted run).')
    parser.add_argument('-chk', type=str, required=False, default='checkpoint_final.pth',
                        help='Checkpoint file name inside each fold folder. Default: checkpoint_final.pth')
    parser.add_argument('-npp', type=int, required=False, default=npp_default,
                        help=f'Number of preprocessing processes. Default: {npp_default}')
    parser.add_argument('-nps', type=int, required=False, default=nps_default,
                        help=f'Number of segmentation export processes. Default: {nps_default}')
    parser.add_argument('-prev_stage_predictions', type=str, required=False, default=None,
                        help='Folder with the predictions of the previous stage (required for cascade '
                             'configurations).')


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('-device', type=str, default='cuda', required=False,
                        help="Device to predict on: 'cuda' (GPU), 'cpu' or 'mps' (Apple). Use "
                             "CUDA_VISIBLE_DEVICES to pick a GPU. Default: cuda")
    parser.add_argument('--disable_progress_bar', action='store_true', required=False, default=False,
                        help='Disable the progress bar (recommended for non-interactive jobs).')
    parser.add_argument('--not_on_device', action='store_true', required=False, default=False,
                        help='Keep the result arrays on the CPU instead of the GPU (for very large images).')


def _setup_device(name: str):
    import torch

    from nnunetv2.utilities.device_checks import require_available
    if name not in ('cpu', 'cuda', 'mps'):
        raise UserError(f"-device must be 'cpu', 'cuda' or 'mps', got '{name}'.")
    if name == 'cpu':
        torch.set_num_threads(os.cpu_count() or 1)
        return torch.device('cpu')
    if name == 'cuda':
        from nnunetv2.utilities.torch_threads import one_cpu_thread_for_gpu_work
        require_available(torch.device('cuda'), "-device cuda", "Use -device cpu")
        one_cpu_thread_for_gpu_work()
        return torch.device('cuda')
    require_available(torch.device('mps'), "-device mps", "Use -device cpu")
    return torch.device('mps')


def _import_predictor() -> None:
    """The predictor's heavy imports (torch, numpy, scipy, SimpleITK), with a Ctrl-C during them handled right
    after (see console_command.import_with_ctrl_c_deferred)."""
    import_with_ctrl_c_deferred('nnunetv2.inference.predict_from_raw_data')


def _guess_case_count(input_folder: str, model_folder: str, num_parts: int) -> int:
    """How many cases this command will predict, judged from the input folder's first-channel files (0 where that
    cannot be told). Only a guess for starting workers early: whatever is wrong with the inputs or the model folder is
    found and reported by the prediction itself."""
    from nnunetv2.file_io import load_json
    try:
        first_channel_ending = '_0000' + load_json(os.path.join(model_folder, 'dataset.json'))['file_ending']
        n_cases = sum(1 for name in os.listdir(input_folder) if name.endswith(first_channel_ending))
    except (OSError, UserError, KeyError, TypeError):
        return 0
    return -(-n_cases // max(1, num_parts))


def _prestart_preprocessing(args, model_folder: str, configuration_name: Optional[str], num_parts: int,
                            part_id: int) -> int:
    """Start the preprocessing workers before torch is imported (inference.prestarted_preprocessing): at work on
    their cases at once where the predictor's tasks can be told already (``_cases_the_predictor_will_take``), else
    waiting for them, as many as -npp allows for the cases the input folder seems to hold. Returns the number of
    cases (0: not known)."""
    from nnunetv2.inference import prestarted_preprocessing
    from nnunetv2.inference.preprocessing_workers import preprocess_fromfiles_save_to_queue
    from nnunetv2.utilities.worker_processes import worker_count
    known = _cases_the_predictor_will_take(args, model_folder, configuration_name, num_parts, part_id)
    n_cases = _guess_case_count(args.i, model_folder, num_parts) if known is None else len(known[0][0])
    if args.npp >= 1 and n_cases >= 1:
        n_workers = worker_count(args.npp, n_cases)  # as the data iterator counts them
        tasks = None if known is None else prestarted_preprocessing.round_robin_tasks(
            preprocess_fromfiles_save_to_queue, *known, n_workers, args.verbose)
        prestarted_preprocessing.prestart(n_workers, tasks)
    return n_cases


def _cases_the_predictor_will_take(args, model_folder: str, configuration_name: Optional[str], num_parts: int,
                                   part_id: int):
    """(per-case lists, shared arguments) that predict_from_files will hand its preprocessing workers, told from
    the model folder's dataset.json and plans.json, the input folder and the flags; None where that cannot be told.
    Nothing is reported here: the predictor finds and reports whatever is wrong, and prints its own account of the
    cases; workers handed something else than it hands out are stopped then."""
    if configuration_name is None:
        return None
    import contextlib
    import io
    import warnings
    from nnunetv2.file_io import load_json
    from nnunetv2.inference import input_handling
    from nnunetv2.utilities.dataset_json import check_dataset_json_for_use
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            dataset_json_file = os.path.join(model_folder, 'dataset.json')
            dataset_json = check_dataset_json_for_use(load_json(dataset_json_file), dataset_json_file)
            plans_manager = PlansManager(os.path.join(model_folder, 'plans.json'))
            configuration_manager = plans_manager.get_configuration(configuration_name)
            if (configuration_manager.previous_stage_name is None) != (args.prev_stage_predictions is None):
                return None  # the predictor refuses this
            cases, outputs, segs = input_handling.manage_input_and_output_lists(
                args.i, args.o, dataset_json, input_handling.num_image_channels(dataset_json),
                args.prev_stage_predictions, not args.continue_prediction, part_id, num_parts,
                args.save_probabilities)
    except Exception:  # noqa: BLE001 - whatever it is, the predictor meets it again and reports it
        return None
    return [cases, segs, outputs], (plans_manager, dataset_json, configuration_manager)


def _import_predictor_and_fork_export_workers(n_cases: int, num_processes: int) -> None:
    """``_import_predictor``, then the export workers forked (inference.forked_export_workers), as many as the
    predictor will ask for, if this call imported torch: then nothing has computed with it yet."""
    torch_just_imported = 'torch' not in sys.modules
    _import_predictor()
    if num_processes < 1 or n_cases < 1:
        return
    from nnunetv2.inference import forked_export_workers
    from nnunetv2.utilities.worker_processes import worker_count
    forked_export_workers.fork_export_pool(worker_count(num_processes, n_cases), torch_just_imported)


def _release_unused_workers() -> None:
    from nnunetv2.inference import forked_export_workers, prestarted_preprocessing
    prestarted_preprocessing.release_unused()
    forked_export_workers.release_unused()


def _make_predictor(args, device):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    return nnUNetPredictor(tile_step_size=args.step_size, use_gaussian=True, use_mirroring=not args.disable_tta,
                           perform_everything_on_device=not args.not_on_device, device=device,
                           verbose=args.verbose, verbose_preprocessing=args.verbose,
                           allow_tqdm=not args.disable_progress_bar)


def _parse_folds(values) -> list:
    out = []
    for i in values:
        if i == 'all':
            out.append(i)
            continue
        try:
            out.append(int(i))
        except ValueError:
            raise UserError(f"Invalid fold '{i}' (-f): folds are integers or 'all'.") from None
    return out


def predict_entry_point_modelfolder_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Predict images with a trained model folder (-m). Input files '
                                                 'must be named CASE_XXXX<file_ending>.')
    parser.add_argument('-i', type=str, required=True, help='Input folder (channel files CASE_0000, CASE_0001, ...).')
    parser.add_argument('-o', type=str, required=True, help='Output folder; created if missing. May be the input '
                        'folder. Existing files are only replaced in a folder an earlier prediction wrote.')
    parser.add_argument('-m', type=str, required=True,
                        help='Trained model folder (with dataset.json, plans.json and fold_X subfolders).')
    _add_common_arguments(parser, 3, 3, ['--c'])
    _add_device_arguments(parser)
    return parser


def _check_process_flags(args) -> None:
    """-npp/-nps of 0 run that step in the main process; a negative count would silently do so too (-nps) or stop
    only after the output folder was set up (-npp)."""
    from nnunetv2.utilities.worker_processes import check_process_count
    for flag in ("-npp", "-nps"):
        check_process_count(getattr(args, flag[1:]), flag, minimum=0,
                            hint=f"E.g. {flag} 3 (0 runs this step in the main process).")


@exit_on_user_error
def predict_entry_point_modelfolder(argv: Optional[List[str]] = None):
    print(CITATION)
    args = predict_entry_point_modelfolder_parser().parse_args(argv)
    _check_process_flags(args)
    # the configuration is the checkpoint's; a folder named as nnU-Net names them tells it (checked when taken)
    configuration_name = os.path.basename(os.path.normpath(args.m)).split('__')[-1]
    n_cases = _prestart_preprocessing(args, args.m, configuration_name, 1, 0)
    try:
        _predict_with_model_folder(args, n_cases)
    finally:
        _release_unused_workers()


def _predict_with_model_folder(args, n_cases: int) -> None:
    _import_predictor_and_fork_export_workers(n_cases, args.nps)
    device = _setup_device(args.device)
    predictor = _make_predictor(args, device)
    predictor.initialize_from_trained_model_folder(args.m, _parse_folds(args.f), args.chk)
    predictor.predict_from_files(args.i, args.o, save_probabilities=args.save_probabilities,
                                 overwrite=not args.continue_prediction,
                                 num_processes_preprocessing=args.npp, num_processes_segmentation_export=args.nps,
                                 folder_with_segs_from_prev_stage=args.prev_stage_predictions,
                                 num_parts=1, part_id=0)


def predict_entry_point_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Predict images with a trained nnU-Net model from '
                                                 '$nnUNet_results. Input files must be named CASE_XXXX<file_ending>.')
    parser.add_argument('-i', type=str, required=True, help='Input folder (channel files CASE_0000, CASE_0001, ...).')
    parser.add_argument('-o', type=str, required=True, help='Output folder; created if missing. May be the input '
                        'folder. Existing files are only replaced in a folder an earlier prediction wrote.')
    parser.add_argument('-d', type=str, required=True, help='Dataset name or id.')
    parser.add_argument('-p', type=str, required=False, default='nnUNetPlans',
                        help='Plans identifier. Default: nnUNetPlans')
    parser.add_argument('-tr', type=str, required=False, default='nnUNetTrainer',
                        help='Trainer class used for training. Default: nnUNetTrainer')
    parser.add_argument('-c', type=str, required=True, help='Configuration, e.g. 3d_fullres.')
    _add_common_arguments(parser, int_from_env('nnUNet_npp', 3), int_from_env('nnUNet_nps', 3), [])
    parser.add_argument('-num_parts', type=int, required=False, default=1,
                        help='Number of nnUNetv2_predict calls sharing the input (e.g. one per GPU). Default: 1')
    parser.add_argument('-part_id', type=int, required=False, default=0,
                        help='Which of the -num_parts calls this is (0 .. num_parts-1). Default: 0')
    _add_device_arguments(parser)
    return parser


@exit_on_user_error
def predict_entry_point(argv: Optional[List[str]] = None):
    print(CITATION)
    args = predict_entry_point_parser().parse_args(argv)
    _check_process_flags(args)
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    model_folder = get_output_folder(args.d, args.tr, args.p, args.c)
    if not 0 <= args.part_id < args.num_parts:
        raise UserError(f"-part_id must be in [0, -num_parts - 1]; got -part_id {args.part_id} with -num_parts "
                        f"{args.num_parts}.", "Counting starts at 0.")
    n_cases = 0
    if args.npp > 0 or args.nps > 0:  # both 0: the sequential path, no workers
        n_cases = _prestart_preprocessing(args, model_folder, args.c, args.num_parts, args.part_id)
    try:
        _predict_with_dataset_model(args, model_folder, n_cases)
    finally:
        _release_unused_workers()


def _predict_with_dataset_model(args, model_folder: str, n_cases: int) -> None:
    _import_predictor_and_fork_export_workers(n_cases, args.nps)
    device = _setup_device(args.device)
    predictor = _make_predictor(args, device)
    predictor.initialize_from_trained_model_folder(model_folder, _parse_folds(args.f), checkpoint_name=args.chk)
    if args.npp == 0 and args.nps == 0:
        predictor.predict_from_files_sequential(args.i, args.o, save_probabilities=args.save_probabilities,
                                                overwrite=not args.continue_prediction,
                                                folder_with_segs_from_prev_stage=args.prev_stage_predictions)
    else:
        predictor.predict_from_files(args.i, args.o, save_probabilities=args.save_probabilities,
                                     overwrite=not args.continue_prediction,
                                     num_processes_preprocessing=args.npp,
                                     num_processes_segmentation_export=args.nps,
                                     folder_with_segs_from_prev_stage=args.prev_stage_predictions,
                                     num_parts=args.num_parts, part_id=args.part_id)


# the console scripts (pyproject.toml): the entry points above in a command's process (utilities.console_command)
predict_command = as_command(predict_entry_point)
predict_modelfolder_command = as_command(predict_entry_point_modelfolder)
