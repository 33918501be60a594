"""``nnUNetPredictor``: predict images with a trained model folder.

The class keeps every public and ``_internal_`` method of the reference (users subclass it); the work is done by
small modules: ``model_loading`` (folder, checkpoints, network), ``input_handling`` (case lists and input checks),
``sliding_window_prediction`` (tiles, Gaussian, TTA, accumulation), ``data_iterators`` (background preprocessing)
and ``export_prediction``. Clients (TotalSegmentator) replace functions and use the reference's module-level names
here at run time: see ``reference_names``. The console entry points live in ``predict_cli`` and are re-exported here.
"""
from __future__ import annotations

import functools
import multiprocessing  # noqa: F401 - module-level names clients use (reference_names)
import os
from time import sleep  # noqa: F401
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import nnunetv2.inference.export_prediction as _export
from nnunetv2.configuration import default_num_processes, int_from_env
from nnunetv2.errors import UserError
from nnunetv2.file_io import maybe_mkdir_p, save_json  # noqa: F401 - module-level names clients use
from nnunetv2.inference import data_iterators, forked_export_workers, input_handling, model_loading, reference_names
from nnunetv2.inference.export_prediction import (convert_predicted_logits_to_segmentation_with_correct_shape,
                                                  export_prediction_from_logits)
from nnunetv2.inference.out_of_memory import on_device_else_results_on_cpu
from nnunetv2.inference.cpu_concurrent_passes import PassVerdicts, choose_pass_workers
from nnunetv2.inference.cpu_fast_mode import fast_mode_requested
from nnunetv2.inference.cpu_pass_plan import planned_passes
from nnunetv2.inference.sliding_window_prediction import (accumulate_tiles, compute_gaussian,
                                                          get_sliding_window_slicers, maybe_mirror_and_predict,
                                                          pad_to_patch_size, sliding_window_summary)
from nnunetv2.utilities import find_objects as _find_objects
from nnunetv2.utilities.device_checks import require_available
from nnunetv2.utilities.file_path_utilities import check_workers_alive_and_busy  # noqa: F401
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.utilities.freed_memory import KEPT_FOR_NEXT_CASE_BYTES, release_freed_memory
from nnunetv2.utilities.helpers import dummy_context, empty_cache
from nnunetv2.utilities.watched_pool import WatchedPool
from nnunetv2.utilities.worker_processes import requested_processes, worker_count

# looked up when called: a client's replacement here or in the home module takes effect
_replaceable = reference_names.ClientReplaceable(globals(), {
    'export_prediction_from_logits': _export, 'convert_predicted_logits_to_segmentation_with_correct_shape': _export,
    'recursive_find_trainer_class_by_name': _find_objects})


_OUR_EXPORT = _export.export_prediction_from_logits


class nnUNetPredictor(object):
    def __init__(self, tile_step_size: float = 0.5, use_gaussian: bool = True, use_mirroring: bool = True,
                 perform_everything_on_device: bool = True, device: torch.device = torch.device('cuda'),
                 verbose: bool = False, verbose_preprocessing: bool = False, allow_tqdm: bool = True,
                 perform_everything_on_gpu: Optional[bool] = None):
        if perform_everything_on_gpu is not None:  # keyword of releases before 2.2
            perform_everything_on_device = perform_everything_on_gpu
        if isinstance(device, str):
            device = torch.device(device)
        if not 0 < tile_step_size <= 1:
            raise UserError(f"tile_step_size must be in (0, 1], got {tile_step_size}.",
                            "Use e.g. -step_size 0.5 (default).")
        self.verbose = verbose
        self.verbose_preprocessing = verbose_preprocessing
        self.allow_tqdm = allow_tqdm

        self.plans_manager, self.configuration_manager, self.list_of_parameters, self.network, self.dataset_json, \
            self.trainer_name, self.allowed_mirroring_axes, self.label_manager = None, None, None, None, None, None, \
            None, None

        self.tile_step_size = tile_step_size
        self.use_gaussian = use_gaussian
        self.use_mirroring = use_mirroring
        if device.type == 'cuda':
            torch.backends.cudnn.benchmark = True
        else:
            print('perform_everything_on_device=True is only supported for cuda devices! Setting this to False')
            perform_everything_on_device = False
        self.device = device
        self.perform_everything_on_device = perform_everything_on_device
        # mirrored TTA copies per forward pass. 1 (default) reproduces the reference bit for bit. Larger values
        # (env nnUNet_tta_batch, e.g. 8) are several times faster on CPU (batched convolutions take a faster
        # kernel) but change the last bits of the logits (fp16 accumulators then differ by ~1 ulp at a few voxels).
        self.tta_passes_per_batch = max(1, int_from_env('nnUNet_tta_batch', 1))
        # CPU only: forward passes of different tiles run this many at a time in threads, torch's threads split
        # between them (faster when one pass cannot use all cores). 0 = choose (default: at most 4, and only where
        # a probe shows bit-identical logits), 1 = off, N = N.
        self.cpu_concurrent_passes = max(0, int_from_env('nnUNet_cpu_concurrent_passes', 0))
        # CPU only, opt-in (env nnUNet_cpu_fast=1): the network in bfloat16 where the CPU computes it natively;
        # not bit-identical to the reference (see cpu_fast_mode)
        self.cpu_fast = fast_mode_requested()

    # ----- initialisation --------------------------------------------------------------------------------------
    def initialize_from_trained_model_folder(self, model_training_output_dir: str,
                                             use_folds: Union[Tuple[Union[int, str]], None],
                                             checkpoint_name: str = 'checkpoint_final.pth', trainer_class=None):
        """Load plans, dataset.json and one checkpoint per fold. ``trainer_class`` overrides the checkpoint's
        ``trainer_name`` lookup (extension used by e.g. Spinal Cord Toolbox)."""
        lookup = _replaceable('recursive_find_trainer_class_by_name')
        m = model_loading.load_trained_model(model_training_output_dir, use_folds, checkpoint_name, trainer_class,
                                             trainer_lookup=lookup, device=self.device)
        self.plans_manager, self.configuration_manager, self.list_of_parameters = \
            m.plans_manager, m.configuration_manager, m.parameters
        self.network, self.dataset_json, self.trainer_name = m.network, m.dataset_json, m.trainer_name
        self.allowed_mirroring_axes, self.label_manager = m.inference_allowed_mirroring_axes, m.label_manager
        self._training_spacings = model_loading.training_spacings(model_training_output_dir)  # to name odd inputs

    def manual_initialization(self, network: nn.Module, plans_manager, configuration_manager,
                              parameters: Optional[List[dict]], dataset_json: dict, trainer_name: str,
                              inference_allowed_mirroring_axes: Optional[Tuple[int, ...]]):
        """Use objects already in memory (the trainer's final validation). ``parameters`` may be None; then only
        ``predict_sliding_window_return_logits`` works (with the network's current weights)."""
        self.plans_manager = plans_manager
        self.configuration_manager = configuration_manager
        self.list_of_parameters = parameters
        self.network = network
        self.dataset_json = dataset_json
        self.trainer_name = trainer_name
        self.allowed_mirroring_axes = inference_allowed_mirroring_axes
        self.label_manager = plans_manager.get_label_manager(dataset_json)
        self.network = model_loading.maybe_compile(network)

    @staticmethod
    def auto_detect_available_folds(model_training_output_dir, checkpoint_name):
        return model_loading.auto_detect_available_folds(model_training_output_dir, checkpoint_name)

    # ----- inputs -----------------------------------------------------------------------------------------------
    def _num_image_channels(self) -> int:
        return input_handling.num_image_channels(self.dataset_json)

    def _manage_input_and_output_lists(self, list_of_lists_or_source_folder: Union[str, List[List[str]]],
                                       output_folder_or_list_of_truncated_output_files: Union[None, str, List[str]],
                                       folder_with_segs_from_prev_stage: str = None, overwrite: bool = True,
                                       part_id: int = 0, num_parts: int = 1, save_probabilities: bool = False):
        return input_handling.manage_input_and_output_lists(
            list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files, self.dataset_json,
            self._num_image_channels(), folder_with_segs_from_prev_stage, overwrite, part_id, num_parts,
            save_probabilities)

    def _write_bookkeeping_files(self, output_folder: str, arguments: dict) -> None:
        input_handling.write_bookkeeping_files(output_folder, arguments, self.dataset_json, self.plans_manager.plans)

    def _prepare_prediction(self, arguments: dict, list_of_lists_or_source_folder,
                            output_folder_or_list_of_truncated_output_files, folder_with_segs_from_prev_stage,
                            overwrite: bool, part_id: int, num_parts: int, save_probabilities: bool):
        """Checks and bookkeeping shared by the parallel and the sequential path; returns the cases to predict."""
        self._check_cascade_input(folder_with_segs_from_prev_stage)
        cases = self._manage_input_and_output_lists(  # checks first: nothing is written for a refused run
            list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
            folder_with_segs_from_prev_stage, overwrite, part_id, num_parts, save_probabilities)
        output_folder = input_handling.output_folder_of(output_folder_or_list_of_truncated_output_files)
        if output_folder is not None:
            input_handling.check_no_overwrite(
                [os.path.join(output_folder, f) for f in input_handling.BOOKKEEPING_FILES], [])
            self._write_bookkeeping_files(output_folder, arguments)
        return cases

    def _check_cascade_input(self, folder_with_segs_from_prev_stage) -> None:
        input_handling.check_cascade_input(self.configuration_manager.previous_stage_name,
                                           folder_with_segs_from_prev_stage)

    def predict_from_files(self, list_of_lists_or_source_folder: Union[str, List[List[str]]],
                           output_folder_or_list_of_truncated_output_files: Union[str, None, List[str]],
                           save_probabilities: bool = False, overwrite: bool = True,
                           num_processes_preprocessing: int = default_num_processes,
                           num_processes_segmentation_export: int = default_num_processes,
                           folder_with_segs_from_prev_stage: str = None, num_parts: int = 1, part_id: int = 0):
        """Predict files (a folder or lists of channel files) with background preprocessing and export."""
        list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files, \
            folder_with_segs_from_prev_stage = input_handling.path_arguments(
                list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
                folder_with_segs_from_prev_stage)
        if not 0 <= part_id < num_parts:
            raise UserError(f"part_id must be in [0, num_parts - 1]; got part_id={part_id}, num_parts={num_parts}.",
                            "Counting starts at 0: with -num_parts 3 use -part_id 0, 1 and 2.")
        arguments = {'list_of_lists_or_source_folder': list_of_lists_or_source_folder,
                     'output_folder_or_list_of_truncated_output_files':
                         output_folder_or_list_of_truncated_output_files,
                     'save_probabilities': save_probabilities, 'overwrite': overwrite,
                     'num_processes_preprocessing': num_processes_preprocessing,
                     'num_processes_segmentation_export': num_processes_segmentation_export,
                     'folder_with_segs_from_prev_stage': folder_with_segs_from_prev_stage,
                     'num_parts': num_parts, 'part_id': part_id}
        list_of_lists, output_filenames_truncated, seg_files = self._prepare_prediction(
            arguments, list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
            folder_with_segs_from_prev_stage, overwrite, part_id, num_parts, save_probabilities)
        if len(list_of_lists) == 0:
            return
        # cases with unusable input (e.g. a 0-slice image) are reported and left out; the run fails at the end
        self._skipped_cases = skipped = []
        try:
            data_iterator = self._internal_get_data_iterator_from_lists_of_filenames(
                list_of_lists, seg_files, output_filenames_truncated, num_processes_preprocessing)
            ret = self.predict_from_data_iterator(data_iterator, save_probabilities,
                                                  min(num_processes_segmentation_export, len(list_of_lists)))
        finally:
            self._skipped_cases = None
        if skipped:
            raise UserError(f"{len(skipped)} of {len(list_of_lists)} case(s) could not be predicted (listed above); "
                            f"the others were. First: {skipped[0].message}", "Fix or remove those inputs.")
        return ret

    def _internal_get_data_iterator_from_lists_of_filenames(self, input_list_of_lists: List[List[str]],
                                                            seg_from_prev_stage_files: Union[List[str], None],
                                                            output_filenames_truncated: Union[List[str], None],
                                                            num_processes: int):
        if num_processes == 0:  # no worker processes: preprocess in this process (the reference crashes here)
            preprocessor = self.configuration_manager.preprocessor_class(verbose=self.verbose_preprocessing)
            return data_iterators.PreprocessAdapter(input_list_of_lists, seg_from_prev_stage_files, preprocessor,
                                                    output_filenames_truncated, self.plans_manager,
                                                    self.dataset_json, self.configuration_manager,
                                                    skipped=getattr(self, '_skipped_cases', None))
        return data_iterators.preprocessing_iterator_fromfiles(
            input_list_of_lists, seg_from_prev_stage_files, output_filenames_truncated, self.plans_manager,
            self.dataset_json, self.configuration_manager, num_processes, self.device.type == 'cuda',
            self.verbose_preprocessing, skipped=getattr(self, '_skipped_cases', None))

    def get_data_iterator_from_raw_npy_data(self, image_or_list_of_images, segs_from_prev_stage_or_list_of_segs_from_prev_stage,
                                            properties_or_list_of_properties, truncated_ofname, num_processes: int = 3):
        images = image_or_list_of_images if isinstance(image_or_list_of_images, list) else [image_or_list_of_images]
        segs = segs_from_prev_stage_or_list_of_segs_from_prev_stage
        if isinstance(segs, np.ndarray):
            segs = [segs]
        if isinstance(truncated_ofname, str):
            truncated_ofname = [truncated_ofname]
        props = properties_or_list_of_properties
        if isinstance(props, dict):
            props = [props]
        if truncated_ofname is not None:  # before any work: each can be written (and its folder exists)
            export_function = self._segmentation_export_function()
            truncated_ofname = [o if o is None else self._prepare_output_file(o, p, export_function)
                                for o, p in zip(truncated_ofname, props)] + list(truncated_ofname[len(props):])
        num_processes = min(num_processes, len(images))
        return data_iterators.preprocessing_iterator_fromnpy(images, segs, props, truncated_ofname,
                                                             self.plans_manager, self.dataset_json,
                                                             self.configuration_manager, num_processes,
                                                             self.device.type == 'cuda', self.verbose_preprocessing)

    def predict_from_list_of_npy_arrays(self, image_or_list_of_images, segs_from_prev_stage_or_list_of_segs_from_prev_stage,
                                        properties_or_list_of_properties, truncated_ofname, num_processes: int = 3,
                                        save_probabilities: bool = False,
                                        num_processes_segmentation_export: int = default_num_processes):
        iterator = self.get_data_iterator_from_raw_npy_data(image_or_list_of_images,
                                                            segs_from_prev_stage_or_list_of_segs_from_prev_stage,
                                                            properties_or_list_of_properties, truncated_ofname,
                                                            num_processes)
        n_images = len(image_or_list_of_images) if isinstance(image_or_list_of_images, list) else 1
        return self.predict_from_data_iterator(iterator, save_probabilities,
                                               min(num_processes_segmentation_export, n_images))

    def _prepare_output_file(self, output_file_truncated, properties, export_function):
        """Checked (and its folder made) up front when our export will write it; a client's own export function
        may write other files from other properties, so its outputs are left as given."""
        if export_function is not _OUR_EXPORT:
            return output_file_truncated
        return _export.prepare_output_file(output_file_truncated, self.plans_manager, properties, self.dataset_json)

    # ----- the prediction loop ----------------------------------------------------------------------------------
    def _check_input_channels(self, data, name: str) -> None:
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        expected = determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json)
        input_handling.check_num_channels(int(data.shape[0]) - (expected - self._num_image_channels()),
                                          self._num_image_channels(), name)

    def _segmentation_export_function(self):
        """What writes one case's files from its logits (a subclass may write another layout, e.g. JHUPredictor).
        Looked up at call time: clients replace the export functions at run time."""
        return _replaceable('export_prediction_from_logits')

    def predict_from_data_iterator(self, data_iterator, save_probabilities: bool = False,
                                   num_processes_segmentation_export: int = default_num_processes):
        """Predict every item of the iterator; export in background processes (in-process when 0 processes)."""
        return self._predict_items(data_iterator, save_probabilities, num_processes_segmentation_export)

    def _predict_items(self, data_iterator, save_probabilities: bool, num_processes_segmentation_export,
                       announce_cases: bool = True):
        """The loop behind predict_from_data_iterator. predict_from_files_sequential calls it directly: clients
        override predict_from_data_iterator (other signatures, their own worker pools, other return values) and
        expect the sequential path not to go through their override; that path does not announce each case."""
        self._require_device()  # before the iterator pins the first case's memory for it
        pool = None
        if requested_processes(num_processes_segmentation_export) > 0:  # None: one per CPU
            n_workers = worker_count(num_processes_segmentation_export, None)
            pool = forked_export_workers.take(n_workers)  # forked by the command, if it did
            if pool is None:
                pool = WatchedPool(n_workers, 'export worker', '-nps')
        try:
            results = []
            for preprocessed in data_iterator:
                data = preprocessed['data']
                if isinstance(data, str):
                    delfile = data
                    data = torch.from_numpy(np.load(data))
                    os.remove(delfile)
                ofile = preprocessed['ofile']
                name = os.path.basename(ofile) if ofile is not None else f'image of shape {data.shape}'
                if announce_cases:
                    print(f'\nPredicting {name}:')
                print(f'perform_everything_on_device: {self.perform_everything_on_device}')
                properties = preprocessed['data_properties']
                self._check_input_channels(data, name)
                input_handling.warn_if_spacing_far_from_training(
                    properties, getattr(self, '_training_spacings', None), name,
                    self.plans_manager.transpose_forward[:1] if len(self.configuration_manager.patch_size) == 2 else ())
                if pool is not None:
                    pool.wait_for_capacity(results, allowed_queued=2)
                prediction = self.predict_logits_from_preprocessed_data(data).cpu().numpy()
                del data
                if ofile is not None:
                    fn = self._segmentation_export_function()
                    args = (prediction, properties, self.configuration_manager, self.plans_manager,
                            self.dataset_json, ofile, save_probabilities)
                else:
                    fn = _replaceable('convert_predicted_logits_to_segmentation_with_correct_shape')
                    args = (prediction, self.plans_manager, self.configuration_manager, self.label_manager,
                            properties, save_probabilities)
                if pool is not None:
                    # the reference's wording: "and export" only where the worker writes files
                    print('sending off prediction to background worker for resampling' +
                          (' and export' if ofile is not None else ''))
                    results.append(pool.submit(fn, args, name=name))
                else:
                    results.append(fn(*args))
                del prediction
                release_freed_memory(keep_up_to=KEPT_FOR_NEXT_CASE_BYTES)
                if announce_cases:
                    print(f'done with {name}' if ofile is not None else f'\nDone with {name}:')
            if pool is not None:
                print("GPU prediction completed. Waiting for remaining segmentation exports to finish...")
                ret = []
                for r in tqdm(results, desc='Collecting results', disable=not self.allow_tqdm):
                    ret.append(pool.result(r))
                results = ret
                print("Segmentation export complete.")
        finally:
            if pool is not None:
                pool.terminate()
        compute_gaussian.cache_clear()
        empty_cache(self.device)
        return results

    def predict_single_npy_array(self, input_image: np.ndarray, image_properties: dict,
                                 segmentation_previous_stage: np.ndarray = None,
                                 output_file_truncated: str = None, save_or_return_probabilities: bool = False):
        """One image in memory, no worker processes. Writes files if ``output_file_truncated`` else returns the
        segmentation (and probabilities). ``image_properties`` is completed in place by the preprocessor."""
        if output_file_truncated is not None:
            output_file_truncated = self._prepare_output_file(output_file_truncated, image_properties,
                                                              _replaceable('export_prediction_from_logits'))
        adapter = data_iterators.PreprocessAdapterFromNpy(
            [input_image], [segmentation_previous_stage], [image_properties], [output_file_truncated],
            self.plans_manager, self.dataset_json, self.configuration_manager, num_threads_in_multithreaded=1,
            verbose=self.verbose)
        item = next(adapter)
        self._check_input_channels(item['data'], 'the input image')
        if self.verbose:
            print('predicting')
        logits = self.predict_logits_from_preprocessed_data(item['data']).cpu()
        if output_file_truncated is not None:
            _replaceable('export_prediction_from_logits')(
                logits, item['data_properties'], self.configuration_manager, self.plans_manager, self.dataset_json,
                output_file_truncated, save_or_return_probabilities)
            return None
        ret = _replaceable('convert_predicted_logits_to_segmentation_with_correct_shape')(
            logits, self.plans_manager, self.configuration_manager, self.label_manager, item['data_properties'],
            return_probabilities=save_or_return_probabilities)
        if save_or_return_probabilities:
            return ret[0], ret[1]
        return ret

    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        """Fold ensemble: the average (fp16, CPU) of the folds' sliding-window logits."""
        n_threads = torch.get_num_threads()
        torch.set_num_threads(min(default_num_processes, n_threads))
        try:
            prediction = model_loading.average_over_folds(self.network, self.list_of_parameters,
                                                          lambda: self.predict_sliding_window_return_logits(data))
            if self.verbose:
                print('Prediction done')
            return prediction
        finally:
            torch.set_num_threads(n_threads)

    # ----- sliding window ----------------------------------------------------------------------------------------
    def _internal_get_sliding_window_slicers(self, image_size: Tuple[int, ...]):
        slicers = get_sliding_window_slicers(tuple(image_size), self.configuration_manager.patch_size,
                                             self.tile_step_size)
        if self.verbose:
            print(sliding_window_summary(image_size, self.configuration_manager.patch_size, self.tile_step_size,
                                         len(slicers)))
        return slicers

    def _internal_maybe_mirror_and_predict(self, x: torch.Tensor) -> torch.Tensor:
        mirror_axes = self.allowed_mirroring_axes if self.use_mirroring else None
        # batched mirrored passes are a CPU speed option: on an accelerator they multiply the activation memory and
        # change the logits for nothing
        passes_per_batch = getattr(self, 'tta_passes_per_batch', 1) if self.device.type == 'cpu' else 1
        return maybe_mirror_and_predict(self.network, x, mirror_axes, passes_per_batch)

    def _concurrent_pass_workers(self, tile_shape: Tuple[int, ...], n_passes: int, check_later: bool = False) -> int:
        """How many forward passes may run at once: CPU and eager (not compiled) networks only. Chosen
        automatically (0), it is used only where it pays and leaves the logits bit-identical (checked once per
        network and tile shape); a number set by the user is taken as is."""
        if self.device.type != 'cpu' or hasattr(self.network, '_orig_mod'):
            return 1
        return choose_pass_workers(self.network, tile_shape, n_passes, getattr(self, 'cpu_concurrent_passes', 1),
                                   self._pass_verdicts(), check_later)

    def _pass_verdicts(self) -> PassVerdicts:
        return self.__dict__.setdefault('_concurrency_verdicts', PassVerdicts())

    def _internal_predict_sliding_window_return_logits(self, data: torch.Tensor, slicers,
                                                       do_on_device: bool = True):
        results_device = self.device if do_on_device else torch.device('cpu')
        if self.verbose:
            print(f'move image to device {results_device}')
            print(f'preallocating results arrays on device {results_device}')
            if not self.allow_tqdm:
                print(f'running prediction: {len(slicers)} steps')
        gaussian = compute_gaussian(tuple(self.configuration_manager.patch_size), sigma_scale=1. / 8,
                                    value_scaling_factor=10, device=results_device) if self.use_gaussian else 1
        progress = (lambda s: tqdm(s, disable=not self.allow_tqdm))
        tile_shape = (1, data.shape[0], *self.configuration_manager.patch_size)
        with planned_passes(self, tile_shape, len(slicers)) as (pool, predict_tiles):
            return accumulate_tiles(data, slicers, self._internal_maybe_mirror_and_predict,
                                    self.label_manager.num_segmentation_heads, gaussian, self.device,
                                    results_device, progress, pool, predict_tiles=predict_tiles)

    def _require_device(self) -> None:
        """The predictor's device exists here (the default is cuda; clients may set ``self.device`` after init)."""
        require_available(self.device, f"nnUNetPredictor(device={self.device.type!r})",
                          "Pass device=torch.device('cpu')")

    @torch.no_grad()  # not inference_mode: the trainer's validation may reuse the returned tensor
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> Union[np.ndarray, torch.Tensor]:
        if not isinstance(input_image, torch.Tensor) or input_image.ndim != 4:
            raise ValueError('input_image must be a 4D torch tensor (c, x, y, z); 2D images use a singleton x')
        self._require_device()
        self.network = self.network.to(self.device)
        self.network.eval()
        empty_cache(self.device)
        autocast = torch.autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context()
        with autocast:
            if self.verbose:
                print(f'Input shape: {input_image.shape}\nstep_size: {self.tile_step_size}\n'
                      f'mirror_axes: {self.allowed_mirroring_axes if self.use_mirroring else None}')
            data, revert_padding = pad_to_patch_size(input_image, self.configuration_manager.patch_size)
            slicers = self._internal_get_sliding_window_slicers(data.shape[1:])
            if self.perform_everything_on_device:  # only ever True on CUDA unless set by hand
                # out of memory with the results on the device: free that attempt, then keep them on the CPU
                predicted_logits = on_device_else_results_on_cpu(
                    lambda: self._internal_predict_sliding_window_return_logits(data, slicers, True),
                    lambda: self._internal_predict_sliding_window_return_logits(data, slicers, False), self.device)
            else:
                predicted_logits = self._internal_predict_sliding_window_return_logits(data, slicers, False)
            empty_cache(self.device)
            predicted_logits = predicted_logits[revert_padding]
        return predicted_logits

    def predict_from_files_sequential(self, list_of_lists_or_source_folder: Union[str, List[List[str]]],
                                      output_folder_or_list_of_truncated_output_files: Union[str, None, List[str]],
                                      save_probabilities: bool = False, overwrite: bool = True,
                                      folder_with_segs_from_prev_stage: str = None):
        """Preprocess, predict and export case by case in this process (no multiprocessing at all)."""
        list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files, \
            folder_with_segs_from_prev_stage = input_handling.path_arguments(
                list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
                folder_with_segs_from_prev_stage)
        arguments = {'list_of_lists_or_source_folder': list_of_lists_or_source_folder,
                     'output_folder_or_list_of_truncated_output_files':
                         output_folder_or_list_of_truncated_output_files,
                     'save_probabilities': save_probabilities, 'overwrite': overwrite,
                     'folder_with_segs_from_prev_stage': folder_with_segs_from_prev_stage}
        list_of_lists, output_filenames_truncated, seg_files = self._prepare_prediction(
            arguments, list_of_lists_or_source_folder, output_folder_or_list_of_truncated_output_files,
            folder_with_segs_from_prev_stage, overwrite, 0, 1, save_probabilities)
        if len(list_of_lists) == 0:
            return None  # nothing left to predict (all outputs exist): None, like predict_from_files
        if output_filenames_truncated is None:
            output_filenames_truncated = [None] * len(list_of_lists)
        preprocessor = self.configuration_manager.preprocessor_class(verbose=self.verbose_preprocessing)
        adapter = data_iterators.PreprocessAdapter(list_of_lists, seg_files, preprocessor,
                                                   output_filenames_truncated, self.plans_manager,
                                                   self.dataset_json, self.configuration_manager)
        results = self._predict_items(adapter, save_probabilities, 0, announce_cases=False)
        return [r for r, o in zip(results, output_filenames_truncated) if o is None]


from nnunetv2.inference.predict_cli import predict_entry_point, predict_entry_point_modelfolder  # noqa: E402,F401

__getattr__ = functools.partial(reference_names.lazy_attribute, __name__)  # the reference's other names, on use
__all__ = reference_names.star_names(__name__, globals())
