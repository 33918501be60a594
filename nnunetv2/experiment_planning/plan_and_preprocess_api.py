"""Python API of fingerprint extraction, experiment planning and preprocessing (what the commands call)."""
from __future__ import annotations

import logging
import os
import shutil
from typing import List, Optional, Sequence, Tuple, Type, Union

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

logger = logging.getLogger(__name__)

DEFAULT_NUM_PROCESSES_PER_CONFIGURATION = {"2d": 8, "3d_fullres": 4, "3d_lowres": 8}


def _fingerprint_extractor_class(name: str) -> Type:
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.utilities.class_lookup import find_class_or_explain
    return find_class_or_explain("nnunetv2.experiment_planning", name, DatasetFingerprintExtractor,
                                 "fingerprint extractor", "-fpe", required_method="run")


def _planner_class(name: str) -> Type:
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.utilities.class_lookup import find_class_or_explain
    return find_class_or_explain("nnunetv2.experiment_planning", name, ExperimentPlanner, "experiment planner", "-pl",
                                 required_method="plan_experiment")


def preprocessor_class(name: str) -> Type:
    """The preprocessor class called ``name`` (a UserError listing the available ones if there is none)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.class_lookup import find_class_or_explain
    return find_class_or_explain("nnunetv2.preprocessing", name, DefaultPreprocessor, "preprocessor",
                                 "-preprocessor_name", required_method="run_case")


def extract_fingerprint_dataset(dataset_id: int, fingerprint_extractor_class: Optional[Type] = None,
                                num_processes: int = default_num_processes, check_dataset_integrity: bool = False,
                                clean: bool = True, verbose: bool = True, show_progress_bar: bool = True) -> dict:
    if fingerprint_extractor_class is None:
        fingerprint_extractor_class = _fingerprint_extractor_class("DatasetFingerprintExtractor")
    dataset_name = convert_id_to_dataset_name(dataset_id)
    print(dataset_name)
    if check_dataset_integrity:
        from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
        verify_dataset_integrity(os.path.join(nnUNet_raw, dataset_name), num_processes)
    extractor = fingerprint_extractor_class(dataset_id, num_processes, verbose=verbose)
    if hasattr(extractor, "show_progress_bar"):
        extractor.show_progress_bar = show_progress_bar
    return extractor.run(overwrite_existing=clean)


def extract_fingerprints(dataset_ids: Sequence[int], fingerprint_extractor_class_name: str = "DatasetFingerprintExtractor",
                         num_processes: int = default_num_processes, check_dataset_integrity: bool = False,
                         clean: bool = True, verbose: bool = True, show_progress_bar: bool = True) -> None:
    cls = _fingerprint_extractor_class(fingerprint_extractor_class_name)
    for d in dataset_ids:
        extract_fingerprint_dataset(d, cls, num_processes, check_dataset_integrity, clean, verbose, show_progress_bar)


def plan_experiment_dataset(dataset_id: int, experiment_planner_class: Optional[Type] = None,
                            gpu_memory_target_in_gb: Optional[float] = None,
                            preprocess_class_name: str = "DefaultPreprocessor",
                            overwrite_target_spacing: Optional[Sequence[float]] = None,
                            overwrite_plans_name: Optional[str] = None) -> Tuple[dict, str]:
    if experiment_planner_class is None:
        experiment_planner_class = _planner_class("ExperimentPlanner")
    # the plans only store the name, but a name no preprocessor has would fail only when preprocessing: refuse it
    # before any plans are written
    preprocessor_class(preprocess_class_name)
    kwargs = {}
    if overwrite_plans_name is not None:
        from nnunetv2.utilities.plans_handling.plans_handler import check_plans_identifier
        check_plans_identifier(overwrite_plans_name, "-overwrite_plans_name")
        kwargs["plans_name"] = overwrite_plans_name
    if gpu_memory_target_in_gb is not None:
        if not 0 < gpu_memory_target_in_gb < float("inf"):  # 0 or less: ZeroDivisionError deep in the planner
            raise UserError(f"-gpu_memory_target must be a positive number of GB, got {gpu_memory_target_in_gb}.",
                            "E.g. -gpu_memory_target 8, or leave it out for the planner's default.")
        kwargs["gpu_memory_target_in_gb"] = gpu_memory_target_in_gb
    if overwrite_target_spacing is not None:
        overwrite_target_spacing = [float(s) for s in overwrite_target_spacing]
    planner = experiment_planner_class(dataset_id, preprocessor_name=preprocess_class_name,
                                       overwrite_target_spacing=overwrite_target_spacing,
                                       suppress_transpose=False, **kwargs)
    plans = planner.plan_experiment()
    return plans, planner.plans_identifier


def plan_experiments(dataset_ids: Sequence[int], experiment_planner_class_name: str = "ExperimentPlanner",
                     gpu_memory_target_in_gb: Optional[float] = None, preprocess_class_name: str = "DefaultPreprocessor",
                     overwrite_target_spacing: Optional[Sequence[float]] = None,
                     overwrite_plans_name: Optional[str] = None) -> str:
    if experiment_planner_class_name == "ExperimentPlanner":
        print("INFO: You are using the old nnU-Net default planner. We have updated our recommendations. Please "
              "consider using those instead! Read more here: "
              "https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/resenc_presets.md")
    cls = _planner_class(experiment_planner_class_name)
    plans_identifier = None
    for d in dataset_ids:
        _, plans_identifier = plan_experiment_dataset(d, cls, gpu_memory_target_in_gb, preprocess_class_name,
                                                      overwrite_target_spacing, overwrite_plans_name)
    return plans_identifier


def _num_processes_per_configuration(configurations: Sequence[str],
                                     num_processes: Union[int, Sequence[int], None]) -> List[int]:
    from nnunetv2.utilities.worker_processes import check_process_count
    if num_processes is None:
        return [DEFAULT_NUM_PROCESSES_PER_CONFIGURATION.get(c, 4) for c in configurations]
    if isinstance(num_processes, int):
        num_processes = [num_processes]
    num_processes = list(num_processes)
    for n in num_processes:
        check_process_count(n, "-np")
    if len(num_processes) == 1:
        return num_processes * len(configurations)
    if len(num_processes) != len(configurations):
        raise UserError(f"-np has {len(num_processes)} values but {len(configurations)} configurations were "
                        f"requested ({', '.join(configurations)}).",
                        "Give one value for all configurations or one per configuration.")
    return num_processes


def preprocess_dataset(dataset_id: int, plans_identifier: str = "nnUNetPlans",
                       configurations: Sequence[str] = ("2d", "3d_fullres", "3d_lowres"),
                       num_processes: Union[int, Sequence[int], None] = (8, 4, 8), verbose: bool = False,
                       show_progress_bar: bool = True) -> None:
    from nnunetv2.file_io import load_json
    from nnunetv2.preprocessing.preprocessors.worker_pool import worker_session
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    num_processes = _num_processes_per_configuration(configurations, num_processes)
    dataset_name = convert_id_to_dataset_name(dataset_id)
    print(f"Preprocessing dataset {dataset_name}")
    plans_file = os.path.join(nnUNet_preprocessed, dataset_name, plans_identifier + ".json")
    if not os.path.isfile(plans_file):
        raise UserError(f"Plans file {plans_file} not found.",
                        f"Run nnUNetv2_plan_experiment -d {dataset_id} first (or check -plans_name).")
    plans_manager = PlansManager(plans_file)
    available = plans_manager.available_configurations
    if not any(c in available for c in configurations):
        raise UserError(f"None of the requested configurations ({', '.join(configurations)}) is in {plans_file}.",
                        f"Available: {', '.join(available)}.")
    # the configurations share their worker processes (started once: imports cost ~2 s of CPU per process)
    with worker_session():
        for n, c in zip(num_processes, configurations):
            print(f"Configuration: {c}...")
            if c not in available:
                print(f"INFO: Configuration {c} not found in plans file {plans_identifier}.json of dataset "
                      f"{dataset_name} (available: {', '.join(available)}). Skipping.")
                continue
            preprocessor = plans_manager.get_configuration(c).preprocessor_class(verbose=verbose)
            if hasattr(preprocessor, "show_progress_bar"):
                preprocessor.show_progress_bar = show_progress_bar
            preprocessor.run(dataset_id, c, plans_identifier, num_processes=n)
    _copy_gt_segmentations(dataset_name, load_json(os.path.join(nnUNet_preprocessed, dataset_name, "dataset.json")))


def _copy_gt_segmentations(dataset_name: str, dataset_json: dict) -> None:
    """Copy each training label to gt_segmentations/<case><ending> unless an up-to-date copy exists."""
    from nnunetv2.file_io import atomic_path
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    target = os.path.join(nnUNet_preprocessed, dataset_name, "gt_segmentations")
    os.makedirs(target, exist_ok=True)
    dataset = get_filenames_of_train_images_and_targets(os.path.join(nnUNet_raw, dataset_name), dataset_json)
    for identifier, entry in dataset.items():
        dst = os.path.join(target, identifier + dataset_json["file_ending"])
        if not os.path.isfile(dst) or os.path.getmtime(entry["label"]) > os.path.getmtime(dst):
            with atomic_path(dst) as tmp:
                shutil.copy(entry["label"], tmp)


def preprocess(dataset_ids: Sequence[int], plans_identifier: str = "nnUNetPlans",
               configurations: Sequence[str] = ("2d", "3d_fullres", "3d_lowres"),
               num_processes: Union[int, Sequence[int], None] = (8, 4, 8), verbose: bool = False,
               show_progress_bar: bool = True) -> None:
    for d in dataset_ids:
        preprocess_dataset(d, plans_identifier, configurations, num_processes, verbose, show_progress_bar)
