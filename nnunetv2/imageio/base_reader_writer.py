"""The contract every image reader/writer fulfils (users subclass this for custom formats).

Arrays are returned as ``(c, x, y, z)`` float32 (2-D images as ``(c, 1, X, Y)``) together with a properties
dict holding at least ``'spacing'`` (three numbers in array axis order). ``write_seg`` receives that same dict
back, so a reader can stash whatever it needs to restore geometry on writing.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Tuple, Union

import numpy as np


class BaseReaderWriter(ABC):
    # lower-case endings including the leading dot, e.g. ['.nii.gz', '.nrrd']
    supported_file_endings: List[str] = []

    @staticmethod
    def _check_all_same(input_list) -> bool:
        """True if every entry is (numerically close to) the first one; a single entry is trivially consistent."""
        if len(input_list) == 1:
            return True
        # broadcasting compares the first entry against all the others at once
        return bool(np.allclose(input_list[0], input_list[1:]))

    @staticmethod
    def _check_all_same_array(input_list) -> bool:
        """True if every array has the shape of the first one and its values are close to it."""
        first = input_list[0]
        for other in input_list[1:]:
            if other.shape != first.shape or not np.allclose(other, first):
                return False
        return True

    @abstractmethod
    def read_images(self, image_fnames: Union[List[str], Tuple[str, ...]]) -> Tuple[np.ndarray, dict]:
        """Read the channel files of one case -> (float32 array (c, x, y, z), properties with 'spacing')."""

    @abstractmethod
    def read_seg(self, seg_fname: str) -> Tuple[np.ndarray, dict]:
        """Read one segmentation -> (float32 array (1, x, y, z), properties with 'spacing')."""

    @abstractmethod
    def write_seg(self, seg: np.ndarray, output_fname: str, properties: dict) -> None:
        """Write a 3-D segmentation (x, y, z) (2-D data: (1, X, Y)) using the properties read for that case."""
