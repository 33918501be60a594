"""nnU-Net's default preprocessing of one case and of a whole dataset.

Per case: transpose -> crop to the nonzero region -> normalise (on the cropped, not yet resampled data) ->
resample to the configuration's spacing -> sample foreground locations (training cases only). The hooks users
override (``run_case_npy``, ``_normalize``, ``modify_seg_fn``, ...) keep the reference's signatures.
"""
from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING, List, Tuple, Union

import numpy as np

from nnunetv2.errors import UserError, plain_numbers
from nnunetv2.file_io import load_json, replace_folder, temporary_sibling
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
from nnunetv2.preprocessing.preprocessors.foreground_sampling import sample_foreground_locations
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
from nnunetv2.utilities.plans_handling.plans_checks import (EmptyResamplingError, check_resampled_not_empty,
                                                         check_resampled_size, warn_if_much_upsampled)
from nnunetv2.utilities.input_checks import (check_case_array, check_channel_count, check_integer_labels,
                                             check_label_range, check_labels_are_channels,
                                             check_labels_fit_int16, check_single_channel_label, highest_label,
                                             non_integer_label_values, warn_labels_in_no_case)

if TYPE_CHECKING:
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

logger = logging.getLogger(__name__)


def _find_normalization_class(name: str):
    """The normalisation class called ``name`` inside ``nnunetv2.preprocessing.normalization``."""
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as defaults
    cls = getattr(defaults, name, None)  # fast path for the built-in schemes
    if cls is None:
        import nnunetv2
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
        cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "preprocessing", "normalization"),
                                          name, 'nnunetv2.preprocessing.normalization')
    if cls is None:
        raise UserError(f"Unable to locate normalization scheme '{name}' (named in the plans' "
                        f"normalization_schemes).",
                        hint="Put a module defining it inside nnunetv2/preprocessing/normalization, or fix the plans.")
    return cls


def _check_same_geometry(data: np.ndarray, seg: np.ndarray, data_properties: dict, seg_properties: dict,
                         image_files: List[str], seg_file: str) -> None:
    """Image and label must have the same shape; a spacing difference is only reported (the reference accepts it)."""
    if tuple(data.shape[1:]) != tuple(seg.shape[1:]):
        raise UserError(f"Image and segmentation of a case have different shapes: {image_files} has "
                        f"{tuple(data.shape[1:])}, {seg_file} has {tuple(seg.shape[1:])}.",
                        hint="Fix the label file (it must be on the image's voxel grid); "
                             "nnUNetv2_plan_and_preprocess --verify_dataset_integrity lists all such cases.")
    sp_i, sp_s = data_properties.get('spacing'), seg_properties.get('spacing')
    if sp_i is not None and sp_s is not None and not np.allclose(sp_i, sp_s, rtol=1e-3, atol=1e-5):
        logger.warning("Image and segmentation spacings differ for %s: %s vs %s (the image's is used).",
                       seg_file, plain_numbers(sp_i), plain_numbers(sp_s))


class DefaultPreprocessor(object):
    def __init__(self, verbose: bool = True):
        self.verbose = verbose
        self.show_progress_bar = True  # set by the preprocessing API (--no_pbar)

    def run_case_npy(self, data: np.ndarray, seg: Union[np.ndarray, None], properties: dict,
                     plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                     dataset_json: Union[dict, str]):
        """Preprocess arrays as returned by a reader; returns ``(data, seg, properties)``.

        ``seg`` may be None (inference): the returned seg is then the 0 / -1 nonzero map and no class locations are
        computed. ``properties`` is updated in place.
        """
        if isinstance(dataset_json, str):
            dataset_json = load_json(dataset_json)
        check_case_array(data, properties)
        data = data.astype(np.float32)  # always a copy: everything below may work in place
        if seg is not None:
            if tuple(data.shape[1:]) != tuple(seg.shape[1:]):
                raise UserError(f"Image and segmentation have different shapes: {tuple(data.shape[1:])} vs "
                                f"{tuple(seg.shape[1:])}.", hint="The label must be on the image's voxel grid.")
            seg = np.copy(seg)
        has_seg = seg is not None

        transpose = [i + 1 for i in plans_manager.transpose_forward]
        data = data.transpose([0, *transpose])
        if seg is not None:
            seg = seg.transpose([0, *transpose])
        original_spacing = [properties['spacing'][i] for i in plans_manager.transpose_forward]

        properties['shape_before_cropping'] = data.shape[1:]
        if getattr(self, '_training_labels', False) and type(self).modify_seg_fn is DefaultPreprocessor.modify_seg_fn \
                and seg.min() < 0:
            # before cropping marks the voxels outside the image with -1: a label file's own negative values (other
            # frameworks' 'not annotated') would be trained as background without a word. A subclass's
            # modify_seg_fn may map them, so only without one; previous-stage segmentations are checked where used
            label_manager = plans_manager.get_label_manager(dataset_json)
            check_label_range(seg, getattr(self, '_label_file', None) or 'The segmentation',
                              highest_label(label_manager))
        data, seg, bbox = crop_to_nonzero(data, seg)
        properties['bbox_used_for_cropping'] = bbox
        properties['shape_after_cropping_and_before_resampling'] = data.shape[1:]

        target_spacing = list(configuration_manager.spacing)
        if len(target_spacing) < len(data.shape[1:]):
            # 2d configuration: the first (slice) axis is never resampled
            target_spacing = [original_spacing[0]] + target_spacing
        new_shape = compute_new_shape(data.shape[1:], original_spacing, target_spacing)
        check_resampled_not_empty(new_shape, data.shape[1:], original_spacing, target_spacing)
        # run_case names the case by its files; an image handed in as an array by its shape
        case = getattr(self, '_case_name', None) or f"The image of shape {list(properties['shape_before_cropping'])}"
        check_resampled_size(new_shape, data.shape[0], target_spacing,
                             getattr(configuration_manager, '_where', 'plans configuration'),
                             spacing=original_spacing, old_shape=data.shape[1:], case=case)
        warn_if_much_upsampled(new_shape, data.shape[1:], original_spacing, target_spacing, case)

        data = self._normalize(data, seg, configuration_manager,
                               plans_manager.foreground_intensity_properties_per_channel)

        old_shape = data.shape[1:]
        data = configuration_manager.resampling_fn_data(data, new_shape, original_spacing, target_spacing)
        seg = configuration_manager.resampling_fn_seg(seg, new_shape, original_spacing, target_spacing)
        if self.verbose:
            print(f'old shape: {old_shape}, new_shape: {new_shape}, old_spacing: {original_spacing}, '
                  f'new_spacing: {target_spacing}, fn_data: {configuration_manager.resampling_fn_data}')

        if has_seg:
            label_manager = plans_manager.get_label_manager(dataset_json)
            collect_for_this = label_manager.foreground_regions if label_manager.has_regions \
                else label_manager.foreground_labels
            if label_manager.has_ignore_label:
                # locations of every annotated voxel (and those outside the nonzero mask), for sampling patches
                # with annotations when most of the image is 'ignore'
                collect_for_this.append([-1] + label_manager.all_labels)
            properties['class_locations'] = self._sample_foreground_locations(seg, collect_for_this,
                                                                              verbose=self.verbose)
            seg = self.modify_seg_fn(seg, plans_manager, dataset_json, configuration_manager)
            # before the cast below, which would wrap such values (65535 to -1, 'outside the image') without a word
            check_labels_fit_int16(seg, getattr(self, '_label_file', None) or 'The segmentation',
                                   highest_label(label_manager))
        seg = seg.astype(np.int16 if np.max(seg) > 127 else np.int8, copy=False)
        return data, seg, properties

    def run_case(self, image_files: List[str], seg_file: Union[str, None], plans_manager: PlansManager,
                 configuration_manager: ConfigurationManager, dataset_json: Union[dict, str]):
        """Read the files with the plans' reader/writer and run ``run_case_npy``."""
        if isinstance(dataset_json, str):
            dataset_json = load_json(dataset_json)
        rw = plans_manager.image_reader_writer_class()
        data, data_properties = rw.read_images(image_files)
        check_channel_count(data.shape[0], image_files, len(configuration_manager.normalization_schemes),
                            "the plans (normalization_schemes)")
        if seg_file is not None:
            seg, seg_properties = rw.read_seg(seg_file)
            check_single_channel_label(seg, seg_file)
            non_integer = non_integer_label_values(seg)  # free for integer files
            if type(self).run_case_npy is DefaultPreprocessor.run_case_npy:
                check_integer_labels(seg, seg_file, non_integer)  # ours stores labels as integers: say so at once
            _check_same_geometry(data, seg, data_properties, seg_properties, image_files, seg_file)
        else:
            seg, non_integer = None, []
        self._case_name = ', '.join(map(str, image_files))  # for the messages of run_case_npy
        self._label_file = seg_file
        try:
            data, seg_out, properties = self.run_case_npy(data, seg, data_properties, plans_manager,
                                                          configuration_manager, dataset_json)
        except EmptyResamplingError as e:
            raise UserError(f"{', '.join(map(str, image_files))}: {e.message}", e.hint) from None
        finally:
            self._case_name = self._label_file = None
        if non_integer and seg_out is not None and np.asarray(seg_out).dtype.kind in 'iub':
            # the labels came out as integers (our run_case_npy, or a subclass's that calls it): 0.9999 became 0
            # without a word. A run_case_npy that keeps continuous maps (regression targets) passes
            check_integer_labels(seg, seg_file, non_integer)
        return data, seg_out, properties

    def run_case_save(self, output_filename_truncated: str, image_files: List[str], seg_file: str,
                      plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                      dataset_json: Union[dict, str]):
        """``run_case`` and write ``<out>.b2nd`` (float32), ``<out>_seg.b2nd`` (int16) and ``<out>.pkl``, chunked for
        the configuration's patch size, through ``nnUNetDatasetBlosc2.save_case`` (as the reference does: code that
        overrides or patches that method changes what preprocessing writes)."""
        from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
        from nnunetv2.utilities.blosc2_storage import comp_blosc2_params
        if isinstance(dataset_json, str):
            dataset_json = load_json(dataset_json)
        self._training_labels = seg_file is not None
        try:
            data, seg, properties = self.run_case(image_files, seg_file, plans_manager, configuration_manager,
                                                  dataset_json)
        finally:
            self._training_labels = False
        # the labels / regions this case holds (the worker pool collects them to name those no case holds)
        found = properties.get('class_locations')  # (a subclass's run_case_npy may not compute them)
        self._labels_found = None if found is None else [key for key, locations in found.items() if len(locations)]
        if seg_file is not None and type(self).run_case_npy is DefaultPreprocessor.run_case_npy:
            # what training will read, so after modify_seg_fn (which may map values); -1 marks outside the nonzero
            # region. Here and not in run_case: prediction reads previous-stage segmentations through run_case,
            # and those are checked against the model's labels where they are used
            label_manager = plans_manager.get_label_manager(dataset_json)
            check_label_range(seg, seg_file, highest_label(label_manager),
                              lowest_label=-1)
            if not label_manager.has_regions:
                check_labels_are_channels(seg, seg_file, label_manager.all_labels, label_manager.ignore_label)
        data, seg = data.astype(np.float32, copy=False), seg.astype(np.int16, copy=False)
        patch_size = tuple(configuration_manager.patch_size)
        blocks, chunks = comp_blosc2_params(data.shape, patch_size, data.itemsize)
        blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch_size, seg.itemsize)
        nnUNetDatasetBlosc2.save_case(data, seg, properties, output_filename_truncated, chunks=chunks, blocks=blocks,
                                      chunks_seg=chunks_seg, blocks_seg=blocks_seg)

    @staticmethod
    def _sample_foreground_locations(seg: np.ndarray, classes_or_regions: Union[List[int], List[Tuple[int, ...]]],
                                     seed: int = 1234, verbose: bool = False, min_num_samples: int = 10000,
                                     min_percent_coverage: float = 0.01):
        return sample_foreground_locations(seg, classes_or_regions, seed, verbose, min_num_samples,
                                           min_percent_coverage)

    def _normalize(self, data: np.ndarray, seg: np.ndarray, configuration_manager: ConfigurationManager,
                   foreground_intensity_properties_per_channel: dict) -> np.ndarray:
        schemes = configuration_manager.normalization_schemes
        if len(schemes) != data.shape[0]:
            raise UserError(f"The plans list {len(schemes)} normalization scheme(s) but the image has "
                            f"{data.shape[0]} channel(s).",
                            hint="The number of image files per case must match dataset.json's channel_names.")
        for c in range(data.shape[0]):
            normalizer_class = _find_normalization_class(schemes[c])
            normalizer = normalizer_class(use_mask_for_norm=configuration_manager.use_mask_for_norm[c],
                                          intensityproperties=foreground_intensity_properties_per_channel[str(c)])
            data[c] = normalizer.run(data[c], seg[0])
        return data

    def run(self, dataset_name_or_id: Union[int, str], configuration_name: str, plans_identifier: str,
            num_processes: int):
        """Preprocess every training case into ``nnUNet_preprocessed/<dataset>/<data_identifier>/`` (the folder is
        filled beside it and then replaces the old one whole) with ``num_processes`` worker processes."""
        from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
        from nnunetv2.preprocessing.preprocessors.worker_pool import run_cases_in_workers
        from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

        dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
        raw_folder = os.path.join(nnUNet_raw, dataset_name)
        if not os.path.isdir(raw_folder):
            raise UserError(f"The raw dataset folder {raw_folder} does not exist.",
                            hint="Preprocessing reads the raw images; check nnUNet_raw.")
        plans_file = os.path.join(nnUNet_preprocessed, dataset_name, plans_identifier + '.json')
        if not os.path.isfile(plans_file):
            raise UserError(f"Expected plans file ({plans_file}) not found.",
                            hint=f"Run nnUNetv2_plan_experiment -d {dataset_name} first (or check -plans_name).")
        plans_manager = PlansManager(plans_file)
        configuration_manager = plans_manager.get_configuration(configuration_name)
        if self.verbose:
            print(f'Preprocessing the following configuration: {configuration_name}')
            print(configuration_manager)
        dataset_json_file = os.path.join(nnUNet_preprocessed, dataset_name, 'dataset.json')
        if not os.path.isfile(dataset_json_file):
            raise UserError(f"{dataset_json_file} not found.", hint="Run nnUNetv2_plan_experiment first; it copies "
                                                                    "dataset.json there.")
        dataset_json = load_json(dataset_json_file)
        dataset = get_filenames_of_train_images_and_targets(raw_folder, dataset_json)

        output_directory = os.path.join(nnUNet_preprocessed, dataset_name, configuration_manager.data_identifier)
        # filled in a private folder beside it, then put in place whole: a trainer started meanwhile (another shell,
        # another GPU) sees the old complete folder or the new one, never a half-filled one (it would write
        # splits_final.json from the cases done so far), and a second run at once does not delete this one's files
        staging = temporary_sibling(output_directory)
        os.makedirs(staging)
        try:
            tasks = [(case, (os.path.join(staging, case), entry['images'], entry['label']))
                     for case, entry in dataset.items()]
            found = run_cases_in_workers(self, tasks, plans_manager.plans, configuration_name, dataset_json,
                                         num_processes, show_progress_bar=getattr(self, 'show_progress_bar', True))
            if found is not None:
                warn_labels_in_no_case(found, plans_manager.get_label_manager(dataset_json), dataset_json,
                                       len(tasks), f"{dataset_name} ({configuration_name})")
            replace_folder(staging, output_directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def modify_seg_fn(self, seg: np.ndarray, plans_manager: PlansManager, dataset_json: dict,
                      configuration_manager: ConfigurationManager) -> np.ndarray:
        """Hook for subclasses (e.g. to merge or remove labels); the default returns ``seg`` unchanged."""
        return seg
