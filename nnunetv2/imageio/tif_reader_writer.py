"""3-D TIFF volumes (.tif, .tiff) with the spacing in a JSON side-car file.

TIFF has no reliable voxel spacing, so it lives next to the image: ``CASE.json`` for ``CASE_XXXX.tif`` images
and ``SEG.json`` for ``SEG.tif`` segmentations, as ``{"spacing": [a, b, c]}`` in array axis order.
"""
from __future__ import annotations

import json
import logging
import os
from typing import List, Tuple, Union

import numpy as np

from nnunetv2.errors import UserError
from nnunetv2.file_io import atomic_path, save_json
from nnunetv2.imageio._helpers import files_str, seg_output_dtype, stack_channels_float32, unreadable_file_error
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter

logger = logging.getLogger(__name__)


class Tiff3DIO(BaseReaderWriter):
    supported_file_endings = ['.tif', '.tiff']

    def _ending(self, fname: str) -> str:
        ending = fname.split('.')[-1]
        if f'.{ending.lower()}' not in self.supported_file_endings:
            raise UserError(f"{fname} does not end with one of {self.supported_file_endings}, so Tiff3DIO cannot "
                            f"read it.", "Rename the file or choose another reader.")
        return ending

    @staticmethod
    def _read_volume(fname: str) -> np.ndarray:
        import tifffile  # lazily: only needed for tif data
        try:
            img = tifffile.imread(fname)
        except Exception as e:
            raise unreadable_file_error(fname, e) from None
        if img.ndim != 3:
            raise UserError(f"{fname} has shape {img.shape}: Tiff3DIO supports only 3-D volumes.",
                            "Use NaturalImage2DIO (.png/.bmp/.tif) for 2-D images.")
        return img

    @staticmethod
    def _read_sidecar(json_file: str, what: str, must_be_positive: bool):
        if not os.path.isfile(json_file):
            logger.warning("WARNING no spacing file found for %s %s\nAssuming spacing (1, 1, 1).", what, json_file)
            return (1, 1, 1)
        try:
            with open(json_file, encoding="utf-8-sig") as f:  # with or without a byte-order mark
                spacing = json.load(f)['spacing']
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"Spacing file {json_file} is not valid JSON of the form {{\"spacing\": [a, b, c]}} "
                            f"({type(e).__name__}: {e}).", "Fix or delete the side-car file.") from None
        if not isinstance(spacing, (list, tuple)) or len(spacing) != 3:
            raise UserError(f"Spacing file {json_file} must hold exactly 3 spacing values, got {spacing!r}.",
                            "Write {\"spacing\": [a, b, c]} in array axis order.")
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in spacing):
            raise UserError(f"Spacing file {json_file} holds spacing values that are not numbers: {spacing!r}.",
                            "Write the numbers without quotes, e.g. {\"spacing\": [3.0, 0.8, 0.8]}.")
        if must_be_positive and not all(isinstance(s, (int, float)) and s > 0 for s in spacing):
            raise UserError(f"Spacing file {json_file} holds non-positive spacing values {spacing!r}.",
                            "All spacing values must be > 0.")
        return spacing

    def read_images(self, image_fnames: Union[List[str], Tuple[str, ...]]) -> Tuple[np.ndarray, dict]:
        image_fnames = [str(f) for f in image_fnames]
        ending = self._ending(image_fnames[0])
        # CASE_XXXX.tif -> CASE.json (the side-car is shared by all channels)
        json_file = image_fnames[0][:-len(ending) - 6] + '.json'
        arrays = [self._read_volume(f)[None] for f in image_fnames]
        shapes = [a.shape for a in arrays]
        if any(s != shapes[0] for s in shapes[1:]):
            raise UserError(f"The channel files of one case have different shapes ({shapes}): "
                            f"{files_str(image_fnames)}.", "All channels of a case must have the same size.")
        spacing = self._read_sidecar(json_file, 'image', must_be_positive=False)
        return stack_channels_float32(arrays, image_fnames), {'spacing': spacing}

    def read_seg(self, seg_fname: str) -> Tuple[np.ndarray, dict]:
        seg_fname = str(seg_fname)
        ending = self._ending(seg_fname)
        seg = self._read_volume(seg_fname)[None]
        json_file = seg_fname[:-len(ending) - 1] + '.json'
        spacing = self._read_sidecar(json_file, 'segmentation', must_be_positive=True)
        return stack_channels_float32([seg], [seg_fname]), {'spacing': spacing}

    def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
        import tifffile
        output_fname = str(output_fname)
        with atomic_path(output_fname) as tmp:
            tifffile.imwrite(tmp, data=seg.astype(seg_output_dtype(seg), copy=False), compression='zlib')
        ending = output_fname.split('.')[-1]
        spacing = properties['spacing']
        # numpy scalars (e.g. float32) are not JSON serialisable; plain Python numbers keep their int/float type
        save_json({'spacing': [s.item() if isinstance(s, np.generic) else s for s in spacing]},
                  output_fname[:-len(ending) - 1] + '.json')
