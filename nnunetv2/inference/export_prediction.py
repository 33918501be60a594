"""Bring predicted logits back to the geometry of the input image and write segmentation / probabilities.

Memory: the full-resolution float32 probabilities exist only once. The nonlinearity is applied slab by
slab (along the first spatial axis) straight into the un-cropped output array, so no second (C, X, Y, Z) float32
copy is ever made. TotalSegmentator replaces the two public functions of this module at run time; the predictor
therefore looks them up through the module when it calls them.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from nnunetv2.configuration import default_num_processes
from nnunetv2.file_io import atomic_path_named_by_writer, load_json, save_npz_compressed, save_pickle
from nnunetv2.imageio.base_reader_writer import check_write_properties

# ~64 MiB of float32 per slab keeps the temporary of the nonlinearity small whatever the image size
_SLAB_BYTES = 64 * 2 ** 20


def _current_spacing(configuration_manager, properties_dict: dict, plans_manager) -> Tuple[list, list]:
    """(spacing the logits have now, original spacing) both in the transposed axis order."""
    spacing_transposed = [properties_dict['spacing'][i] for i in plans_manager.transpose_forward]
    n_axes = len(properties_dict['shape_after_cropping_and_before_resampling'])
    if len(configuration_manager.spacing) == n_axes:
        current = configuration_manager.spacing
    else:  # 2D configuration: the slice axis keeps its original spacing
        current = [spacing_transposed[0], *configuration_manager.spacing]
    return current, spacing_transposed


def _seg_dtype(label_manager):
    return np.uint8 if len(label_manager.foreground_labels) < 255 else np.uint16


def _to_numpy(x: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else x


def _slabs(shape: Sequence[int], channels: int) -> List[slice]:
    """Slices of the first spatial axis such that one float32 slab has about ``_SLAB_BYTES``."""
    per_index = max(1, channels * int(np.prod(shape[1:])) * 4)
    step = max(1, _SLAB_BYTES // per_index)
    return [slice(i, min(i + step, shape[0])) for i in range(0, shape[0], step)]


def _segment_slabwise(logits: np.ndarray, label_manager, probabilities_out: Optional[np.ndarray]) -> np.ndarray:
    """Segmentation of cropped logits; if ``probabilities_out`` (a view of the cropped region of the output
    probabilities) is given, the nonlinearity's result is written there and the segmentation derived from it."""
    seg = None
    for sl in _slabs(logits.shape[1:], logits.shape[0]):
        part = logits[:, sl]
        if probabilities_out is not None:
            probs = label_manager.apply_inference_nonlin(part)
            probs = _to_numpy(probs)
            probabilities_out[:, sl] = probs
            seg_part = label_manager.convert_probabilities_to_segmentation(probs)
        else:
            seg_part = label_manager.convert_logits_to_segmentation(part)
        seg_part = _to_numpy(seg_part)
        if seg is None:
            seg = np.empty(logits.shape[1:], dtype=seg_part.dtype)
        seg[sl] = seg_part
    return seg


def convert_predicted_logits_to_segmentation_with_correct_shape(predicted_logits: Union[torch.Tensor, np.ndarray],
                                                                 plans_manager, configuration_manager,
                                                                 label_manager, properties_dict: dict,
                                                                 return_probabilities: bool = False,
                                                                 num_threads_torch: int = default_num_processes):
    """Segmentation (and probabilities) in the original image geometry: resample, un-crop, un-transpose."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads_torch)
    try:
        current_spacing, spacing_transposed = _current_spacing(configuration_manager, properties_dict, plans_manager)
        target_shape = properties_dict['shape_after_cropping_and_before_resampling']
        logits = configuration_manager.resampling_fn_probabilities(predicted_logits, target_shape, current_spacing,
                                                                    spacing_transposed)
        logits = _to_numpy(logits)
        del predicted_logits

        bbox = properties_dict['bbox_used_for_cropping']
        shape_before_cropping = properties_dict['shape_before_cropping']
        crop = tuple(slice(int(lo), int(hi)) for lo, hi in bbox)

        probabilities = None
        if return_probabilities:
            probabilities = np.zeros((logits.shape[0], *shape_before_cropping), dtype=np.float32)
            if not label_manager.has_regions:
                probabilities[0] = 1  # outside the crop everything is background
            cropped_view = probabilities[(slice(None), *crop)]
            seg_cropped = _segment_slabwise(logits, label_manager, cropped_view)
        else:
            seg_cropped = _segment_slabwise(logits, label_manager, None)
        del logits

        segmentation = np.zeros(shape_before_cropping, dtype=_seg_dtype(label_manager))
        segmentation[crop] = seg_cropped
        del seg_cropped
        segmentation = segmentation.transpose(plans_manager.transpose_backward)
        if return_probabilities:
            probabilities = probabilities.transpose([0] + [i + 1 for i in plans_manager.transpose_backward])
            return segmentation, probabilities
        return segmentation
    finally:
        torch.set_num_threads(old_threads)


def write_probabilities(probabilities: np.ndarray, properties_dict: dict, output_file_truncated: str) -> None:
    """``<output>.npz`` (key 'probabilities') and ``<output>.pkl`` (the properties), each written atomically."""
    save_npz_compressed(output_file_truncated + '.npz', probabilities=probabilities)
    save_pickle(properties_dict, output_file_truncated + '.pkl')


def export_prediction_from_logits(predicted_array_or_file: Union[np.ndarray, torch.Tensor], properties_dict: dict,
                                  configuration_manager, plans_manager, dataset_json_dict_or_file: Union[dict, str],
                                  output_file_truncated: str, save_probabilities: bool = False,
                                  num_threads_torch: int = default_num_processes) -> None:
    """Write ``<output_file_truncated><file_ending>`` (and ``.npz`` + ``.pkl`` with probabilities), atomically.

    The segmentation is written last, so an existing segmentation implies complete probability files. The folder
    of ``output_file_truncated`` (a str or a pathlib path) is created if missing.
    """
    dataset_json = load_json(dataset_json_dict_or_file) if isinstance(dataset_json_dict_or_file, str) \
        else dataset_json_dict_or_file
    output_file_truncated = prepare_output_file(output_file_truncated, plans_manager, properties_dict, dataset_json)
    _, segmentation = segmentation_writing_probabilities(
        predicted_array_or_file, properties_dict, configuration_manager, plans_manager, dataset_json,
        output_file_truncated, save_probabilities, num_threads_torch)
    writer = plans_manager.image_reader_writer_class()
    write_segmentation_atomically(writer, segmentation, output_file_truncated + dataset_json['file_ending'],
                                  properties_dict)


def segmentation_writing_probabilities(predicted_array_or_file: Union[np.ndarray, torch.Tensor, str],
                                       properties_dict: dict, configuration_manager, plans_manager,
                                       dataset_json_dict_or_file: Union[dict, str], output_file_truncated: str,
                                       save_probabilities: bool = False,
                                       num_threads_torch: int = default_num_processes) -> Tuple[dict, np.ndarray]:
    """(dataset.json dict, segmentation in the original geometry) of one case's logits; with
    ``save_probabilities`` the ``.npz`` + ``.pkl`` files are written first (shared by the export functions)."""
    dataset_json = load_json(dataset_json_dict_or_file) if isinstance(dataset_json_dict_or_file, str) \
        else dataset_json_dict_or_file
    label_manager = plans_manager.get_label_manager(dataset_json)
    if isinstance(predicted_array_or_file, str):
        predicted_array_or_file = np.load(predicted_array_or_file)
    result = convert_predicted_logits_to_segmentation_with_correct_shape(
        predicted_array_or_file, plans_manager, configuration_manager, label_manager, properties_dict,
        return_probabilities=save_probabilities, num_threads_torch=num_threads_torch)
    del predicted_array_or_file
    if not save_probabilities:
        return dataset_json, result
    segmentation, probabilities = result
    write_probabilities(probabilities, properties_dict, output_file_truncated)
    return dataset_json, segmentation


def prepare_output_file(output_file_truncated, plans_manager, properties_dict: dict, dataset_json: dict) -> str:
    """``output_file_truncated`` as a str, checked before any work is spent on it: the image properties hold the
    geometry the model's writer restores (UserError otherwise), and its folder exists (created if not; the
    reference creates only the folder of predict_from_files' first output and fails on any other)."""
    output_file_truncated = os.fspath(output_file_truncated)
    check_write_properties(plans_manager.image_reader_writer_class, properties_dict,
                           output_file_truncated + dataset_json['file_ending'])
    folder = os.path.dirname(output_file_truncated)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return output_file_truncated


def write_segmentation_atomically(writer, segmentation: np.ndarray, output_file: str, properties: dict) -> None:
    """``writer.write_seg`` into a temporary folder beside ``output_file`` (same file name, so the format is kept),
    then moved beside it under the name the writer chose (SimpleITK: ``x.nii.gz.nii.gz`` -> ``x.nii.gz``)."""
    check_write_properties(type(writer), properties, output_file)  # named as the user knows it, not the temporary
    with atomic_path_named_by_writer(output_file) as tmp:
        writer.write_seg(segmentation, tmp, properties)


def resample_and_save(predicted: Union[torch.Tensor, np.ndarray], target_shape: List[int], output_file: str,
                      plans_manager, configuration_manager, properties_dict: dict,
                      dataset_json_dict_or_file: Union[dict, str], num_threads_torch: int = default_num_processes,
                      dataset_class=None) -> None:
    """Low-resolution stage → segmentation at the next stage's preprocessed shape, saved with the dataset class."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads_torch)
    try:
        dataset_json = load_json(dataset_json_dict_or_file) if isinstance(dataset_json_dict_or_file, str) \
            else dataset_json_dict_or_file
        spacing_transposed = [properties_dict['spacing'][i] for i in plans_manager.transpose_forward]
        if len(configuration_manager.spacing) == len(properties_dict['shape_after_cropping_and_before_resampling']):
            current_spacing = configuration_manager.spacing
        else:
            current_spacing = [spacing_transposed[0], *configuration_manager.spacing]
        # the same spacing on both sides: anisotropy decisions depend on this stage's spacing only (reference)
        predicted = configuration_manager.resampling_fn_probabilities(predicted, target_shape, current_spacing,
                                                                      current_spacing)
        label_manager = plans_manager.get_label_manager(dataset_json)
        segmentation = _to_numpy(label_manager.convert_logits_to_segmentation(predicted))
        segmentation = segmentation.astype(_seg_dtype(label_manager))
        if dataset_class is None:
            from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
            dataset_class = nnUNetDatasetBlosc2
        if dataset_class.__name__ == 'nnUNetDatasetBlosc2':
            _save_seg_blosc2(segmentation, output_file, configuration_manager.patch_size, dataset_class)
        else:
            dataset_class.save_seg(segmentation, output_file)
    finally:
        torch.set_num_threads(old_threads)


def _save_seg_blosc2(segmentation: np.ndarray, output_file: str, patch_size, dataset_class) -> None:
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params
    block_size, chunk_size = comp_blosc2_params((1, *segmentation.shape), patch_size, segmentation.itemsize)
    dataset_class.save_seg(segmentation, output_file, chunks_seg=chunk_size[1:], blocks_seg=block_size[1:])


def __getattr__(name: str):  # the reference's other module-level names, imported on first use
    from nnunetv2.inference import reference_names
    return reference_names.lazy_attribute(__name__, name)
