"""Pure planning rules used by ExperimentPlanner; typed inputs/outputs so tests call them directly.

Float operations are written in the reference's order on purpose: plans must match it to the last bit (rounding
of patch and batch sizes depends on it).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np


def fullres_target_spacing(spacings: Sequence[Sequence[float]], shapes_after_crop: Sequence[Sequence[int]],
                           anisotropy_threshold: float = 3) -> np.ndarray:
    """Per-axis median spacing; for strongly anisotropic data the coarse axis gets its 10th percentile instead.

    The exception applies only when both spacing *and* voxel counts are anisotropic (coarse axis > threshold x the
    others, and fewer than 1/threshold as many voxels along it): then resampling to the median would create far
    too many slices, so a finer target is used -- but never finer than the other axes (+1e-5).
    """
    spacings_arr = np.vstack(spacings)
    target = np.percentile(spacings_arr, 50, 0)
    target_size = np.percentile(np.vstack(shapes_after_crop), 50, 0)
    worst_axis = int(np.argmax(target))
    other_axes = [i for i in range(len(target)) if i != worst_axis]
    other_spacings = [target[i] for i in other_axes]
    other_sizes = [target_size[i] for i in other_axes]
    has_aniso_spacing = target[worst_axis] > (anisotropy_threshold * max(other_spacings))
    has_aniso_voxels = target_size[worst_axis] * anisotropy_threshold < min(other_sizes)
    if has_aniso_spacing and has_aniso_voxels:
        t = np.percentile(spacings_arr[:, worst_axis], 10)
        if t < max(other_spacings):
            t = max(max(other_spacings), t) + 1e-5
        target[worst_axis] = t
    return target


def transpose_from_spacing(target_spacing: Sequence[float]) -> Tuple[List[int], List[int]]:
    """Move the coarsest axis first (others keep their order); returns (forward, backward) permutations."""
    dim = len(target_spacing)
    max_axis = int(np.argmax(target_spacing))
    forward = [max_axis] + [i for i in range(dim) if i != max_axis]
    backward = [forward.index(i) for i in range(dim)]
    return forward, backward


def compute_new_shape(old_shape: Sequence[int], old_spacing: Sequence[float],
                      new_spacing: Sequence[float]) -> np.ndarray:
    """Shape after resampling from ``old_spacing`` to ``new_spacing`` (round half to even, like the reference)."""
    assert len(old_spacing) == len(old_shape) and len(old_shape) == len(new_spacing)
    return np.array([int(round(i / j * k)) for i, j, k in zip(old_spacing, new_spacing, old_shape)])


def initial_patch_size(spacing: Sequence[float], median_shape: Sequence[float]) -> np.ndarray:
    """Patch of 256^3 (3D) or 2048^2 (2D) voxels shaped by 1/spacing, clipped to the median image shape."""
    tmp = 1 / np.array(spacing)
    if len(spacing) == 3:
        initial = [round(i) for i in tmp * (256 ** 3 / np.prod(tmp)) ** (1 / 3)]
    elif len(spacing) == 2:
        initial = [round(i) for i in tmp * (2048 ** 2 / np.prod(tmp)) ** (1 / 2)]
    else:
        raise RuntimeError(f"Only 2D and 3D configurations can be planned, got spacing {list(spacing)}.")
    return np.minimum(initial, median_shape[:len(spacing)])


def axis_to_shrink(patch_size: Sequence[int], median_shape: Sequence[float]) -> int:
    """Axis whose patch is largest relative to the median image; ties go to the later axis."""
    ratios = [i / j for i, j in zip(patch_size, median_shape)]
    return int(np.argsort(ratios, kind='stable')[-1])


def batch_size_from_estimate(reference: float, estimate: float, ref_bs: int, n_voxels_dataset: float,
                             max_dataset_covered: float, patch_size: Sequence[int], min_batch_size: int) -> int:
    """Batch size that fills the VRAM reference, capped so one batch covers at most a fraction of the dataset."""
    bs = round((reference / estimate) * ref_bs)
    bs_cap = round(n_voxels_dataset * max_dataset_covered / np.prod(patch_size, dtype=np.float64))
    return int(max(min(bs, bs_cap), min_batch_size))


def next_lowres_spacing(lowres_spacing: np.ndarray, factor: float = 1.03) -> np.ndarray:
    """One step of the 3d_lowres search: grow the fine axes (> 2x finer than the coarsest) only, else all axes."""
    lowres_spacing = np.array(lowres_spacing, dtype=np.float64)
    max_spacing = max(lowres_spacing)
    fine = (max_spacing / lowres_spacing) > 2
    if np.any(fine):
        lowres_spacing[fine] *= factor
    else:
        lowres_spacing *= factor
    return lowres_spacing


def merge_with_old_configurations(new_plans: dict, old_plans: Optional[dict]) -> dict:
    """Keep configurations of an existing plans file that this run did not produce (user-added ones), after ours."""
    if old_plans is None or 'configurations' not in old_plans:
        return new_plans
    for name, cfg in old_plans['configurations'].items():
        if name not in new_plans['configurations']:
            new_plans['configurations'][name] = cfg
    return new_plans
