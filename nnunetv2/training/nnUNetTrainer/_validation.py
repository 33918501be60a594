"""The final validation of nnUNetTrainer: predict every validation case with the sliding window,
export segmentations (and probabilities) in a process pool, hand over to next stages, compute summary.json.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import distributed as dist

from nnunetv2 import configuration as _configuration
from nnunetv2.file_io import maybe_mkdir_p
from nnunetv2.training.nnUNetTrainer import _ddp_sync
from nnunetv2.utilities.watched_pool import WatchedPool
from nnunetv2.utilities.worker_processes import worker_count


def _append_previous_stage(data: np.ndarray, seg_prev, label_manager) -> np.ndarray:
    from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot
    seg_onehot = convert_labelmap_to_one_hot(np.asarray(seg_prev), label_manager.foreground_labels,
                                             output_dtype=data.dtype)
    return np.vstack((data, seg_onehot))


def _next_stage_target_shape(trainer, next_stage: str, key: str):
    """Spatial shape of case ``key`` in the next stage's preprocessed data, or None if it was not preprocessed."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    next_cm = trainer.plans_manager.get_configuration(next_stage)
    folder = os.path.join(trainer.preprocessed_dataset_folder_base, next_cm.data_identifier)
    try:
        dataset_class = infer_dataset_class(folder)
        tmp = dataset_class(folder, [key])
        d, _, _, _ = tmp.load_case(key)
    except (FileNotFoundError, AssertionError, RuntimeError):
        trainer.print_to_log_file(f"Predicting next stage {next_stage} failed for case {key} because the "
                                  f"preprocessed file is missing! Run the preprocessing for this configuration "
                                  f"first!")
        return None, None
    return d.shape[1:], dataset_class


def perform_actual_validation(trainer, save_probabilities: bool = False) -> None:
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.inference.export_prediction import export_prediction_from_logits, resample_and_save
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    n_proc = _configuration.default_num_processes
    trainer.set_deep_supervision_enabled(False)
    trainer.network.eval()

    if trainer.is_ddp and trainer.batch_size == 1 and trainer.enable_deep_supervision and trainer._do_i_compile():
        trainer.print_to_log_file("WARNING! batch size is 1 during training and torch.compile is enabled. If you "
                                  "encounter crashes in validation then this is because torch.compile forgets to "
                                  "trigger a recompilation of the model with deep supervision disabled. This causes "
                                  "torch.flip to complain about getting a tuple as input. Just rerun the validation "
                                  "with --val (exactly the same as before) and then it will work.")

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=True, device=trainer.device, verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.tta_passes_per_batch = 1  # nnUNet_tta_batch is for prediction; validation scores stay the reference's
    predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager, None,
                                    trainer.dataset_json, trainer.__class__.__name__,
                                    trainer.inference_allowed_mirroring_axes)

    validation_output_folder = os.path.join(trainer.output_folder, "validation")
    maybe_mkdir_p(validation_output_folder)
    label_manager = trainer.label_manager

    _, val_keys = trainer.do_split()
    all_val_keys = list(val_keys)
    last_barrier_at_idx = -1
    if trainer.is_ddp:
        last_barrier_at_idx = len(val_keys) // dist.get_world_size() - 1
        val_keys = val_keys[trainer.local_rank:: dist.get_world_size()]

    # exports run in the background; nnUNet_def_n_proc sets how many (at most one per case and per CPU)
    with WatchedPool(worker_count(max(1, n_proc), len(val_keys)), "export worker", "nnUNet_def_n_proc") \
            as export_pool:
        dataset_val = trainer.dataset_class(trainer.preprocessed_dataset_folder, val_keys,
                                            folder_with_segs_from_previous_stage=
                                            trainer.folder_with_segs_from_previous_stage)
        next_stages = trainer.configuration_manager.next_stage_names
        if next_stages is not None:
            for n in next_stages:
                maybe_mkdir_p(os.path.join(trainer.output_folder_base, "predicted_next_stage", n))

        results = []
        for i, k in enumerate(dataset_val.identifiers):
            export_pool.wait_for_capacity(results, allowed_queued=2)
            trainer.print_to_log_file(f"predicting {k}")
            data, _, seg_prev, properties = dataset_val.load_case(k)
            data = np.asarray(data[:])
            if trainer.is_cascaded:
                data = _append_previous_stage(data, seg_prev[:] if seg_prev is not None else None, label_manager)
            with warnings.catch_warnings():
                # ignore 'The given NumPy array is not writable' warning
                warnings.simplefilter("ignore")
                data = torch.from_numpy(data)
            trainer.print_to_log_file(f"{k}, shape {data.shape}, rank {trainer.local_rank}")
            output_filename_truncated = os.path.join(validation_output_folder, k)

            prediction = predictor.predict_sliding_window_return_logits(data)
            # a numpy array travels to the export workers inside the task (as in nnUNetv2_predict); a tensor would
            # hand them a file descriptor through this process's resource-sharer thread, which prints a traceback
            # when a worker is stopped halfway through fetching it (Ctrl-C during the validation)
            prediction = prediction.cpu().numpy()
            results.append(export_pool.submit(
                export_prediction_from_logits,
                (prediction, properties, trainer.configuration_manager, trainer.plans_manager,
                 trainer.dataset_json, output_filename_truncated, save_probabilities), name=k))

            if next_stages is not None:
                for n in next_stages:
                    target_shape, next_dataset_class = _next_stage_target_shape(trainer, n, k)
                    if target_shape is None:
                        continue
                    output_file_truncated = os.path.join(trainer.output_folder_base, "predicted_next_stage", n, k)
                    results.append(export_pool.submit(
                        resample_and_save,
                        (prediction, target_shape, output_file_truncated, trainer.plans_manager,
                         trainer.configuration_manager, properties, trainer.dataset_json, n_proc,
                         next_dataset_class), name=f"{k} (next stage {n})"))
            if trainer.is_ddp and i < last_barrier_at_idx and (i + 1) % 20 == 0:
                _ddp_sync.wait_for_all_ranks()

        _ = [export_pool.result(r) for r in results]

    if trainer.is_ddp:
        # rank 0 waits for the others' predictions (no NCCL timeout applies, see _ddp_sync)
        _ddp_sync.wait_for_all_ranks()

    if trainer.local_rank == 0:
        if trainer.is_ddp:
            _warn_about_missing_predictions(trainer, validation_output_folder, all_val_keys)
        metrics = compute_metrics_on_folder(
            os.path.join(trainer.preprocessed_dataset_folder_base, "gt_segmentations"), validation_output_folder,
            os.path.join(validation_output_folder, "summary.json"),
            trainer.plans_manager.image_reader_writer_class(), trainer.dataset_json["file_ending"],
            label_manager.foreground_regions if label_manager.has_regions else label_manager.foreground_labels,
            label_manager.ignore_label, chill=True,
            num_processes=n_proc * dist.get_world_size() if trainer.is_ddp else n_proc)
        trainer.print_to_log_file("Validation complete", also_print_to_console=True)
        trainer.print_to_log_file("Mean Validation Dice: ", metrics["foreground_mean"]["Dice"],
                                  also_print_to_console=True)
        _log_summary(trainer, metrics)

    trainer.set_deep_supervision_enabled(True)
    _clear_gaussian_cache()


def _warn_about_missing_predictions(trainer, validation_output_folder: str, val_keys) -> None:
    """Under DDP every rank writes its share of the validation cases; a case missing from rank 0's folder was
    written elsewhere: on another node whose nnUNet_results is not the same (shared) folder. The summary then
    silently leaves those cases out: say so, loudly."""
    ending = trainer.dataset_json["file_ending"]
    missing = [k for k in val_keys if not os.path.isfile(os.path.join(validation_output_folder, k + ending))]
    if missing:
        trainer.print_to_log_file(
            f"WARNING: {len(missing)} of {len(val_keys)} validation predictions are missing from "
            f"{validation_output_folder} ({', '.join(missing)}): the other ranks wrote them into their own "
            f"nnUNet_results, which is not the folder rank 0 writes to. summary.json leaves them out. All nodes of a "
            f"multi-node training must share one nnUNet_results folder; rerun the validation with --val there.",
            also_print_to_console=True)


def _log_summary(trainer, metrics: dict) -> None:
    """Final Dice per label and the foreground mean to the optional (W&B) loggers."""
    log_summary = getattr(trainer.logger, "log_summary", None)
    if log_summary is None:
        return
    for label, values in metrics.get("mean", {}).items():
        log_summary(f"final_val/class_{label}_dice", values.get("Dice"))
    log_summary("final_val/foreground_dice", metrics["foreground_mean"]["Dice"])


def _clear_gaussian_cache() -> None:
    """compute_gaussian may be lru-cached; free that memory after the validation."""
    from nnunetv2.inference import sliding_window_prediction
    cache_clear = getattr(sliding_window_prediction.compute_gaussian, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()
