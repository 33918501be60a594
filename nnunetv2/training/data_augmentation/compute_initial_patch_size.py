"""Size of the larger patch the data loader crops before rotation/scaling."""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np

Angle = Union[float, Sequence[float]]


def _max_abs_angle(rot: Angle) -> float:
    # A range (lo, hi) counts with its largest magnitude; a scalar is used as given. Beyond 90° the rotated
    # corner vector only shrinks again, so the angle is capped there.
    if isinstance(rot, (tuple, list, np.ndarray)):
        rot = max(abs(float(r)) for r in rot)
    return min(np.pi / 2, float(rot))


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rot_2d(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])


def get_patch_size(final_patch_size: Sequence[int], rot_x: Angle, rot_y: Angle, rot_z: Angle,
                   scale_range: Tuple[float, float]) -> np.ndarray:
    """Patch size (int64 array) large enough that rotating by up to the given angles (radians) and scaling by
    ``min(scale_range)`` mostly stays inside real data.

    Only the single corner vector ``final_patch_size`` is rotated (about each axis separately), as the reference
    does; the result is the element-wise maximum of the rotated extents and the patch itself.
    """
    dim = len(final_patch_size)
    if dim not in (2, 3):
        raise ValueError(f"get_patch_size: patch size must be 2D or 3D, got {final_patch_size}")
    rot_x, rot_y, rot_z = _max_abs_angle(rot_x), _max_abs_angle(rot_y), _max_abs_angle(rot_z)
    coords = np.array(final_patch_size, dtype=float)
    final_shape = np.copy(coords)
    if dim == 3:
        for rotated in (coords @ _rot_x(rot_x), coords @ _rot_y(rot_y), coords @ _rot_z(rot_z)):
            final_shape = np.max(np.vstack((np.abs(rotated), final_shape)), 0)
    else:
        final_shape = np.max(np.vstack((np.abs(coords @ _rot_2d(rot_x)), final_shape)), 0)
    final_shape /= min(scale_range)
    return final_shape.astype(np.int64)
