"""Checks of values in (possibly hand-edited) plans that would otherwise fail late and obscurely: a patch size the
U-Net cannot divide (a tensor-size error at the first iteration) and a target spacing that resamples an image to
more voxels than the machine can hold (an allocation of terabytes, e.g. a spacing in metres instead of mm)."""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import numpy as np

from nnunetv2.errors import UserError
from nnunetv2.utilities.input_checks import is_whole_number

logger = logging.getLogger(__name__)


def patch_size_problem(patch_size: Sequence[int], strides: Sequence[Sequence[int]]) -> Optional[str]:
    """Why ``patch_size`` does not fit a U-Net with these per-stage ``strides`` (each axis must be divisible by
    the product of the strides along it, or encoder and decoder sizes disagree), or None."""
    if not strides:
        return None
    per_stage = [[s] * len(patch_size) if np.isscalar(s) else list(s) for s in strides]
    if any(len(s) != len(patch_size) for s in per_stage):
        return (f"patch_size {list(patch_size)} has {len(patch_size)} axes but the network's strides "
                f"{[list(s) for s in per_stage]} have {len(per_stage[0])}")
    divisors = [int(np.prod([s[axis] for s in per_stage])) for axis in range(len(patch_size))]
    bad = [axis for axis, (p, d) in enumerate(zip(patch_size, divisors)) if int(p) % d != 0]
    if not bad:
        return None
    suggestion = [int(max(d, round(p / d) * d)) for p, d in zip(patch_size, divisors)]
    return (f"patch_size {list(patch_size)} is not divisible by {divisors} (the product of the network's strides "
            f"per axis; axis {', '.join(map(str, bad))}); e.g. {suggestion} would be")


def check_patch_size(configuration_manager) -> None:
    """UserError if the configuration's patch size does not fit its U-Net (nothing to check for networks that
    have no 'strides' in their arch_kwargs)."""
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
    if not isinstance(configuration_manager, ConfigurationManager):
        return  # a stand-in object (tests, third-party code) need not carry plans at all
    arch_kwargs = configuration_manager.network_arch_init_kwargs
    strides = arch_kwargs.get('strides') if isinstance(arch_kwargs, dict) else None
    problem = patch_size_problem(configuration_manager.patch_size, strides or [])
    if problem is not None:
        where = getattr(configuration_manager, '_where', 'plans configuration')
        raise UserError(f"The {where}: {problem}.", "Fix patch_size in the plans file (or replan).")


def physical_memory_bytes() -> Optional[int]:
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):  # not available on this platform
        return None


# resampling that multiplies the voxel count by more than this gets a warning: an image far coarser than the
# configuration's spacing (a wrong unit in the header, a 2-D image's huge slice spacing) becomes a huge array, slow to
# preprocess and predict. Ordinary datasets mix slice thicknesses: a 5 mm CT with 1.1 mm pixels in a dataset planned
# at 1 x 0.77 x 0.77 mm is resampled to about 10 times its voxels (and to the size of the dataset's other cases), so
# the limit stays well above that (4 times per axis)
UPSAMPLING_WARNING_FACTOR = 64
# where the resampled image cannot fit in memory, an image more than this many times its voxels is blamed (its
# spacing) rather than the plans' spacing
_IMAGE_BLAMED_FACTOR = 8


def _voxel_factor(new_shape: Sequence[int], old_shape: Sequence[int]) -> float:
    return float(np.prod([float(s) for s in new_shape])) / max(1.0, float(np.prod([float(s) for s in old_shape])))


def warn_if_much_upsampled(new_shape: Sequence[int], old_shape: Sequence[int], spacing: Sequence[float],
                           target_spacing: Sequence[float], case: str) -> None:
    """Log one warning if resampling ``case`` from ``spacing`` to ``target_spacing`` makes it more than
    UPSAMPLING_WARNING_FACTOR times as many voxels (costs a product of a few numbers)."""
    factor = _voxel_factor(new_shape, old_shape)
    if factor <= UPSAMPLING_WARNING_FACTOR:
        return
    logger.warning("%s: resampling from spacing %s to the configuration's spacing %s gives %s times as many voxels "
                   "(> %d), shape %s -> %s: preprocessing and prediction will take long and need much memory. Is the "
                   "image's spacing right (nnU-Net spacings are in mm)?", case, [float(s) for s in spacing],
                   [float(s) for s in target_spacing], f"{factor:.0f}" if factor >= 100 else f"{factor:.1f}",
                   UPSAMPLING_WARNING_FACTOR,
                   [int(s) for s in old_shape], [int(s) for s in new_shape])


def check_resampled_size(new_shape: Sequence[int], num_channels: int, target_spacing: Sequence[float],
                         where: str, memory_bytes: Optional[int] = None, spacing: Optional[Sequence[float]] = None,
                         old_shape: Optional[Sequence[int]] = None, case: Optional[str] = None) -> None:
    """UserError before resampling to ``new_shape`` if the float32 result alone would exceed the machine's memory.

    With the image's ``spacing`` and ``old_shape``: where the image is much coarser than the target (more than
    _IMAGE_BLAMED_FACTOR times the voxels), the error names ``case`` and its spacing rather than the plans."""
    memory_bytes = physical_memory_bytes() if memory_bytes is None else memory_bytes
    if memory_bytes is None:
        return
    needed = float(np.prod([float(s) for s in new_shape])) * max(1, num_channels) * 4
    if needed <= memory_bytes:
        return
    size = (f"an image of shape {[int(s) for s in new_shape]} ({needed / 2 ** 30:.3g} GiB), more than this machine's "
            f"memory ({memory_bytes / 2 ** 30:.3g} GiB)")
    # a target spacing below 0.05 mm is no spacing of a real model: the plans' unit is wrong, whatever the image
    metres = " Is it in metres instead of millimetres?" if min(target_spacing) < 0.05 else ""
    if not metres and spacing is not None and old_shape is not None and \
            _voxel_factor(new_shape, old_shape) > _IMAGE_BLAMED_FACTOR:
        raise UserError(f"{case or 'An image'}: resampling its shape {[int(s) for s in old_shape]} from spacing "
                        f"{[float(s) for s in spacing]} to the configuration's spacing "
                        f"{[float(s) for s in target_spacing]} would give {size}.",
                        "Check the spacing in the image's header (nnU-Net spacings are in mm), or resample the "
                        "image closer to the model's spacing first.")
    raise UserError(f"Resampling to the target spacing {[float(s) for s in target_spacing]} of the {where} would "
                    f"give {size}.{metres}",
                    "Fix 'spacing' in the plans file (nnU-Net spacings are in mm).")


class EmptyResamplingError(UserError):
    """Resampling a case to the target spacing would leave an axis without voxels (``check_resampled_not_empty``)."""


def check_resampled_not_empty(new_shape: Sequence[int], old_shape: Sequence[int], spacing: Sequence[float],
                              target_spacing: Sequence[float]) -> None:
    """EmptyResamplingError if resampling an image of ``old_shape`` at ``spacing`` to ``target_spacing`` gives an axis
    of size 0: the image's spacing is far finer than the target's (typically a header in metres or with a spacing
    of almost 0, or an image of one slice), and the resampler would fail with a traceback."""
    if all(int(s) > 0 for s in new_shape) or not all(int(s) > 0 for s in old_shape):
        return
    raise EmptyResamplingError(
        f"resampling its shape {[int(s) for s in old_shape]} (after cropping) from spacing "
        f"{[float(s) for s in spacing]} to the target spacing {[float(s) for s in target_spacing]} leaves "
        f"{[int(s) for s in new_shape]}, an axis without voxels: the image is too small along that axis, or its "
        f"spacing far too fine.",
        "Check the spacing in the file's header (nnU-Net spacings are in mm; all cases of a dataset should use "
        "the same unit).")


def check_plans_for_inference(plans_manager, configuration_manager) -> None:
    """UserError naming the plans when the values prediction relies on have the wrong form: the transposes must be
    permutations of the three spatial axes and the patch size 2 or 3 positive integers (a model folder's plans come
    from whoever shared the model; else a traceback from deep inside preprocessing or the sliding window)."""
    where = getattr(plans_manager, '_where', 'plans')
    for key in ('transpose_forward', 'transpose_backward'):
        value = getattr(plans_manager, key)
        if not isinstance(value, (list, tuple)) or not all(is_whole_number(v) for v in value) \
                or sorted(value) != [0, 1, 2]:
            raise UserError(f"The {where}: '{key}' is {value!r}, not a permutation of the axes [0, 1, 2].",
                            "Use the plans.json the model was trained with.")
    patch_size = configuration_manager.patch_size
    if not isinstance(patch_size, (list, tuple)) or len(patch_size) not in (2, 3) \
            or not all(is_whole_number(p) and p > 0 for p in patch_size):
        raise UserError(f"The {getattr(configuration_manager, '_where', where)}: 'patch_size' is {patch_size!r}, "
                        f"not 2 or 3 positive whole numbers.", "Use the plans.json the model was trained with.")
