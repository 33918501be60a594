"""Console entry points nnUNetv2_extract_fingerprint, _plan_experiment, _preprocess and _plan_and_preprocess."""
from __future__ import annotations

import argparse

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import exit_on_user_error
from nnunetv2.experiment_planning import plan_and_preprocess_api as api
from nnunetv2.utilities.console_command import as_command
from nnunetv2.utilities.worker_processes import check_process_count


def _add_fingerprint_args(parser: argparse.ArgumentParser, np_flag: str, np_default: int) -> None:
    parser.add_argument("-fpe", type=str, default="DatasetFingerprintExtractor",
                        help="Fingerprint extractor class (inside nnunetv2.experiment_planning). "
                             "Default: DatasetFingerprintExtractor")
    parser.add_argument(np_flag, type=int, default=np_default,
                        help=f"Processes for fingerprint extraction. Default: {np_default}")
    parser.add_argument("--verify_dataset_integrity", action="store_true",
                        help="Check the dataset for errors first (recommended the first time).")
    parser.add_argument("--clean", action="store_true",
                        help="Recompute the fingerprint even if dataset_fingerprint.json exists.")


def _add_planning_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-pl", type=str, default="ExperimentPlanner",
                        help="Experiment planner class (inside nnunetv2.experiment_planning). Default: ExperimentPlanner")
    parser.add_argument("-gpu_memory_target", type=float, default=None,
                        help="GPU memory target in GB (each planner has its own default).")
    parser.add_argument("-preprocessor_name", type=str, default="DefaultPreprocessor",
                        help="Preprocessor class written into the plans. Default: DefaultPreprocessor")
    parser.add_argument("-overwrite_target_spacing", type=str, nargs="+", default=None,
                        help="Custom target spacing for 3d_fullres (and cascade), one value per axis.")
    parser.add_argument("-overwrite_plans_name", type=str, default=None,
                        help="Custom plans identifier (file name without .json).")


def _add_preprocessing_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", type=str, nargs="+", default=["2d", "3d_fullres", "3d_lowres"],
                        help="Configurations to preprocess. Default: 2d 3d_fullres 3d_lowres")
    parser.add_argument("-np", type=int, nargs="+", default=None,
                        help="Processes per configuration (one value for all or one per configuration). "
                             "Default: 2d 8, 3d_fullres 4, 3d_lowres 8, others 4.")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", nargs="+", type=int, required=True, help="Dataset id(s)")
    parser.add_argument("--verbose", action="store_true", help="Print more.")
    parser.add_argument("--no_pbar", action="store_true", help="No progress bars (for cluster logs).")


def _float_spacing(values):
    if values is None:
        return None
    from nnunetv2.errors import UserError
    try:
        return [float(v) for v in values]
    except ValueError:
        raise UserError(f"-overwrite_target_spacing must be numbers, got {' '.join(values)}.",
                        "Example: -overwrite_target_spacing 3 0.8 0.8") from None


def extract_fingerprint_entry_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Extract the dataset fingerprint (nnUNet_preprocessed/<ds>/"
                                                 "dataset_fingerprint.json).")
    _add_common(parser)
    _add_fingerprint_args(parser, "-np", default_num_processes)
    return parser


@exit_on_user_error
def extract_fingerprint_entry() -> None:
    args, _ = extract_fingerprint_entry_parser().parse_known_args()
    check_process_count(args.np, "-np", hint="E.g. -np 4 (its default is nnUNet_def_n_proc's value, or 8).")
    api.extract_fingerprints(args.d, args.fpe, args.np, args.verify_dataset_integrity, args.clean, args.verbose,
                             not args.no_pbar)


def plan_experiment_entry_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Plan the experiment (writes the plans file).")
    parser.add_argument("-d", nargs="+", type=int, required=True, help="Dataset id(s)")
    _add_planning_args(parser)
    return parser


@exit_on_user_error
def plan_experiment_entry() -> None:
    args, _ = plan_experiment_entry_parser().parse_known_args()
    api.plan_experiments(args.d, args.pl, args.gpu_memory_target, args.preprocessor_name,
                         _float_spacing(args.overwrite_target_spacing), args.overwrite_plans_name)


def preprocess_entry_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Preprocess the dataset(s) for the given configurations.")
    _add_common(parser)
    parser.add_argument("-plans_name", default="nnUNetPlans", required=False,
                        help="Plans identifier. Default: nnUNetPlans")
    _add_preprocessing_args(parser)
    return parser


@exit_on_user_error
def preprocess_entry() -> None:
    args, _ = preprocess_entry_parser().parse_known_args()
    api.preprocess(args.d, args.plans_name, args.c, args.np, args.verbose, not args.no_pbar)


def plan_and_preprocess_entry_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Fingerprint extraction, experiment planning and preprocessing.")
    _add_common(parser)
    _add_fingerprint_args(parser, "-npfp", 8)
    parser.add_argument("--no_pp", action="store_true", help="Only fingerprint and planning, no preprocessing.")
    _add_planning_args(parser)
    _add_preprocessing_args(parser)
    return parser


@exit_on_user_error
def plan_and_preprocess_entry() -> None:
    args = plan_and_preprocess_entry_parser().parse_args()
    # planning refuses an unknown -preprocessor_name, preprocessing a worker count below 1: check them before the
    # fingerprint is written
    api.preprocessor_class(args.preprocessor_name)
    check_process_count(args.npfp, "-npfp")
    for n in ([] if args.no_pp else args.np or []):
        check_process_count(n, "-np")
    print("Fingerprint extraction...")
    api.extract_fingerprints(args.d, args.fpe, args.npfp, args.verify_dataset_integrity, args.clean, args.verbose,
                             not args.no_pbar)
    print("Experiment planning...")
    plans_identifier = api.plan_experiments(args.d, args.pl, args.gpu_memory_target, args.preprocessor_name,
                                            _float_spacing(args.overwrite_target_spacing), args.overwrite_plans_name)
    if not args.no_pp:
        print("Preprocessing...")
        api.preprocess(args.d, plans_identifier, args.c, args.np, args.verbose, not args.no_pbar)


if __name__ == "__main__":  # pragma: no cover
    plan_and_preprocess_entry()


# the console scripts (pyproject.toml): the entry points in a command's process (utilities.console_command)
extract_fingerprint_entry_command = as_command(extract_fingerprint_entry, quick_exit=False)
plan_experiment_entry_command = as_command(plan_experiment_entry, quick_exit=False)
preprocess_entry_command = as_command(preprocess_entry, quick_exit=False)
plan_and_preprocess_entry_command = as_command(plan_and_preprocess_entry, quick_exit=False)
