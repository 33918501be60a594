"""The contract every image reader/writer fulfils (users subclass this for custom formats).

Arrays are returned as ``(c, x, y, z)`` float32 (2-D images as ``(c, 1, X, Y)``) together with a properties
dict holding at least ``'spacing'`` (three numbers in array axis order). ``write_seg`` receives that same dict
back, so a reader can stash whatever it needs to restore geometry on writing.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Optional, Tuple, Union

import numpy as np


class BaseReaderWriter(ABC):
    # lower-case endings including the leading dot, e.g. ['.nii.gz', '.nrrd']
    supported_file_endings: List[str] = []
    # where in the properties write_seg finds the geometry read_images stored (e.g. ('sitk_stuff',)): checked
    # before a prediction is written (write_properties_problem); () for writers that need only 'spacing' or nothing
    geometry_keys: Tuple[str, ...] = ()

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


# the geometry entry each of our readers stores, to say where a caller's properties came from
_GEOMETRY_SOURCES = (('sitk_stuff', 'SimpleITKIO'), ('nibabel_stuff', 'NibabelIO / NibabelIOWithReorient'))


def _defining_class(cls, name: str):
    return next((c for c in getattr(cls, '__mro__', ()) if name in vars(c)), None)


def write_properties_problem(writer_class, properties, output_fname: str) -> Optional[str]:
    """Why ``writer_class`` cannot write ``output_fname`` with these image properties (they lack the geometry its
    read_images would have stored), or None. Properties from another reader than the model's, or made by hand
    ({'spacing': ...}), otherwise fail as a bare KeyError once the prediction is done."""
    keys = tuple(getattr(writer_class, 'geometry_keys', ()) or ())
    if not keys or _defining_class(writer_class, 'write_seg') is not _defining_class(writer_class, 'geometry_keys'):
        return None  # a subclass with its own write_seg may keep its geometry elsewhere
    entry = properties
    for depth, key in enumerate(keys):
        if not isinstance(entry, dict) or key not in entry:
            break
        entry = entry[key]
    else:
        return None
    name = getattr(writer_class, '__name__', str(writer_class))
    found = [src for k, src in _GEOMETRY_SOURCES if isinstance(properties, dict) and k in properties]
    if found:
        origin = f"these properties come from {found[0]}"
    elif isinstance(properties, dict):
        origin = f"these properties have none (keys: {', '.join(map(str, properties))})"
    else:
        origin = f"the properties are {properties!r}"
    return (f"Cannot write {output_fname} with {name}: it needs the image properties "
            f"{''.join(f'[{k!r}]' for k in keys[:depth + 1])} that {name}.read_images stores, but {origin}.")


def write_properties_hint(writer_class) -> str:
    name = getattr(writer_class, '__name__', str(writer_class))
    return (f"Read the image with {name}().read_images([...]) (a model's reader/writer is its plans.json "
            f"'image_reader_writer') and pass the properties it returns; or predict without an output file name and "
            f"write the returned segmentation yourself.")


def check_write_properties(writer_class, properties, output_fname: str) -> None:
    from nnunetv2.errors import UserError
    problem = write_properties_problem(writer_class, properties, output_fname)
    if problem is not None:
        raise UserError(problem, write_properties_hint(writer_class))
