"""Pseudo-2D augmentation of 3D batchgenerators (v1) batches: fold the first spatial axis into the channels."""
from __future__ import annotations

from typing import List, Tuple, Union

from batchgenerators.transforms.abstract_transforms import AbstractTransform


class Convert3DTo2DTransform(AbstractTransform):
    """(b, c, x, y, z) -> (b, c*x, y, z); the original shape is kept under ``orig_shape_<key>``."""

    def __init__(self, apply_to_keys: Union[List[str], Tuple[str]] = ('data', 'seg')):
        self.apply_to_keys = apply_to_keys

    def __call__(self, **data_dict):
        for k in self.apply_to_keys:
            shp = data_dict[k].shape
            if len(shp) != 5:
                raise ValueError(f'Convert3DTo2DTransform expects (b, c, x, y, z) arrays, got {shp} for {k!r}')
            data_dict[k] = data_dict[k].reshape((shp[0], shp[1] * shp[2], shp[3], shp[4]))
            data_dict[f'orig_shape_{k}'] = shp
        return data_dict


class Convert2DTo3DTransform(AbstractTransform):
    """Inverse of :class:`Convert3DTo2DTransform` (the in-plane size may have changed in between)."""

    def __init__(self, apply_to_keys: Union[List[str], Tuple[str]] = ('data', 'seg')):
        self.apply_to_keys = apply_to_keys

    def __call__(self, **data_dict):
        for k in self.apply_to_keys:
            shp = data_dict[f'orig_shape_{k}']
            current = data_dict[k].shape
            data_dict[k] = data_dict[k].reshape((shp[0], shp[1], shp[2], current[-2], current[-1]))
        return data_dict
