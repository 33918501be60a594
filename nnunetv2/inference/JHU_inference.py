"""Prediction in the output layout of the JHU abdominal benchmark (AbdomenAtlas).

``JHUPredictor`` predicts like ``nnUNetPredictor`` but writes, for every case, one binary uint8 mask per foreground
class, ``<output>/<case>/predictions/<label name><file_ending>``, instead of one label map; the "truncated output
file name" of a case is therefore its output *folder*. The benchmark stores every case as ``<input>/<case>/ct.nii.gz``,
which does not follow nnU-Net's ``CASE_XXXX`` naming, so explicit input lists are accepted as they are.

Script (not one of the standard commands): ``python -m nnunetv2.inference.JHU_inference INPUT OUTPUT -model FOLDER``.
"""
from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

import nnunetv2.inference.export_prediction as _export
from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.file_io import maybe_mkdir_p
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

JHU_IMAGE_NAME = 'ct.nii.gz'


def _label_masks(dataset_json: dict, label_manager) -> Dict[str, Sequence[int]]:
    """Foreground class name -> the label values of the final label map that belong to it.

    A label is one value; a region (region-based training) is the set of labels it unites, so its mask is
    ``isin(label map, region)``. The ignore label is never predicted and gets no file.
    """
    out = {}
    for name, value in dataset_json['labels'].items():
        values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
        if values == [0] or (label_manager.has_ignore_label and values == [label_manager.ignore_label]):
            continue
        out[name] = values
    return out


def export_prediction_from_logits_singleFiles(predicted_array_or_file: Union[np.ndarray, torch.Tensor],
                                              properties_dict: dict, configuration_manager, plans_manager,
                                              dataset_json_dict_or_file: Union[dict, str], output_file_truncated: str,
                                              save_probabilities: bool = False) -> None:
    """Export one case as ``<output_file_truncated>/predictions/<label name><file_ending>`` (binary uint8 each).

    With ``save_probabilities`` also ``<output_file_truncated>.npz`` / ``.pkl`` (next to the case folder, as for a
    normal export). Every file is written under a temporary name and renamed.
    """
    dataset_json, segmentation = _export.segmentation_writing_probabilities(
        predicted_array_or_file, properties_dict, configuration_manager, plans_manager, dataset_json_dict_or_file,
        output_file_truncated, save_probabilities)
    label_manager = plans_manager.get_label_manager(dataset_json)
    folder = os.path.join(output_file_truncated, 'predictions')
    maybe_mkdir_p(folder)
    writer = plans_manager.image_reader_writer_class()
    for name, values in _label_masks(dataset_json, label_manager).items():
        mask = (segmentation == values[0]) if len(values) == 1 else np.isin(segmentation, values)
        _export.write_segmentation_atomically(writer, mask.astype(np.uint8),
                                              os.path.join(folder, name + dataset_json['file_ending']),
                                              properties_dict)


class JHUPredictor(nnUNetPredictor):
    """``nnUNetPredictor`` writing one binary file per class (see the module docstring)."""

    def _segmentation_export_function(self):
        return export_prediction_from_logits_singleFiles

    def _manage_input_and_output_lists(self, list_of_lists_or_source_folder: Union[str, List[List[str]]],
                                       output_folder_or_list_of_truncated_output_files: Union[None, str, List[str]],
                                       folder_with_segs_from_prev_stage: str = None, overwrite: bool = True,
                                       part_id: int = 0, num_parts: int = 1, save_probabilities: bool = False):
        out = output_folder_or_list_of_truncated_output_files
        if isinstance(list_of_lists_or_source_folder, str) or folder_with_segs_from_prev_stage is not None or \
                isinstance(out, str):
            return super()._manage_input_and_output_lists(
                list_of_lists_or_source_folder, out, folder_with_segs_from_prev_stage, overwrite, part_id,
                num_parts, save_probabilities)
        # explicit lists (e.g. <case>/ct.nii.gz): any file names; the output names say where each case goes
        list_of_lists = [list(c) for c in list_of_lists_or_source_folder]
        for files in list_of_lists:
            for f in files:
                if not os.path.isfile(f):
                    raise UserError(f"Input file not found: {f}.")
        if out is not None and len(out) != len(list_of_lists):
            raise UserError(f"{len(list_of_lists)} input cases but {len(out)} output names were given.",
                            "Pass one output folder per case.")
        list_of_lists = list_of_lists[part_id::num_parts]
        outputs = None if out is None else list(out)[part_id::num_parts]
        print(f'There are {len(list_of_lists)} cases that I would like to predict')
        return list_of_lists, outputs, [None] * len(list_of_lists)


def jhu_case_lists(input_dir: str, output_dir: str, image_name: str = JHU_IMAGE_NAME):
    """(``[[<input>/<case>/ct.nii.gz], ...]``, ``[<output>/<case>, ...]``) for the case folders of ``input_dir``."""
    if not os.path.isdir(input_dir):
        raise UserError(f"Input folder not found: {input_dir}.")
    cases = sorted(d for d in os.listdir(input_dir) if os.path.isdir(os.path.join(input_dir, d)))
    if not cases:
        raise UserError(f"Input folder {input_dir} has no case subfolders.",
                        f"Expected <input>/<case>/{image_name}.")
    missing = [c for c in cases if not os.path.isfile(os.path.join(input_dir, c, image_name))]
    if missing:
        raise UserError(f"Case folder {os.path.join(input_dir, missing[0])} has no {image_name}"
                        f"{f' ({len(missing)} such folders)' if len(missing) > 1 else ''}.")
    return ([[os.path.join(input_dir, c, image_name)] for c in cases], [os.path.join(output_dir, c) for c in cases])


@exit_on_user_error
def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description='Predict <input>/<case>/ct.nii.gz into '
                                                 '<output>/<case>/predictions/<label name>.nii.gz (JHU benchmark).')
    parser.add_argument('input_dir', type=str)
    parser.add_argument('output_dir', type=str)
    parser.add_argument('-model', required=True, type=str, help='Trained model folder.')
    parser.add_argument('--disable_tqdm', required=False, action='store_true', default=False)
    parser.add_argument('-f', nargs='+', default=('all',), help="Folds to use. Default: all (the 'all' fold)")
    parser.add_argument('-chk', type=str, default='checkpoint_final.pth')
    parser.add_argument('-device', type=str, default='cuda', help="'cuda' (default), 'cpu' or 'mps'.")
    parser.add_argument('-npp', type=int, default=2, help='Preprocessing processes. Default: 2')
    parser.add_argument('-nps', type=int, default=3, help='Export processes. Default: 3')
    args = parser.parse_args(argv)

    from nnunetv2.inference.predict_cli import _parse_folds, _setup_device
    os.environ['nnUNet_compile'] = 'f'  # like the reference script: no torch.compile for a one-off run
    device = _setup_device(args.device)
    predictor = JHUPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                             perform_everything_on_device=True, device=device, verbose=False,
                             verbose_preprocessing=False, allow_tqdm=not args.disable_tqdm)
    predictor.initialize_from_trained_model_folder(args.model, _parse_folds(args.f), args.chk)
    input_files, output_folders = jhu_case_lists(args.input_dir, args.output_dir)
    predictor.predict_from_files(input_files, output_folders, save_probabilities=False, overwrite=True,
                                 num_processes_preprocessing=args.npp, num_processes_segmentation_export=args.nps,
                                 folder_with_segs_from_prev_stage=None, num_parts=1, part_id=0)


__all__ = ['JHUPredictor', 'export_prediction_from_logits_singleFiles', 'jhu_case_lists', 'main']

if __name__ == '__main__':  # pragma: no cover
    main()
