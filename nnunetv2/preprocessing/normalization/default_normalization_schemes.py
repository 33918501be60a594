"""Intensity normalisation schemes.

Each scheme normalises one channel of the cropped (not yet resampled) image. Arithmetic is float32 numpy with
numpy >= 2 promotion rules (Python floats from the plans do not up-cast), and happens in place where the input is
already float32, so no extra full-size copies are made.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional, Type

import numpy as np

from nnunetv2.errors import UserError


class ImageNormalization(ABC):
    """Base class. Subclasses implement ``run(image, seg)``; ``image`` is one channel, ``seg`` the matching
    segmentation channel (``-1`` outside the nonzero mask)."""

    # whether voxels outside the nonzero mask stay untouched (i.e. remain 0) when use_mask_for_norm is True;
    # the planner reads this to decide use_mask_for_norm
    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true: Optional[bool] = None

    def __init__(self, use_mask_for_norm: bool = None, intensityproperties: dict = None,
                 target_dtype: Type[np.number] = np.float32):
        if use_mask_for_norm is not None and not isinstance(use_mask_for_norm, (bool, np.bool_)):
            raise UserError(f"use_mask_for_norm must be True, False or None, not {use_mask_for_norm!r}.",
                            hint="Check 'use_mask_for_norm' in the plans file.")
        if intensityproperties is not None and not isinstance(intensityproperties, dict):
            raise UserError(f"intensityproperties must be a dict, not {type(intensityproperties).__name__}.",
                            hint="Check 'foreground_intensity_properties_per_channel' in the plans file.")
        self.use_mask_for_norm = use_mask_for_norm
        self.intensityproperties = intensityproperties
        self.target_dtype = target_dtype

    @property
    def _eps(self) -> float:
        # float16 cannot represent 1e-8 (it would become 0 and allow division by zero)
        return 1e-4 if np.dtype(self.target_dtype) == np.float16 else 1e-8

    @abstractmethod
    def run(self, image: np.ndarray, seg: np.ndarray = None) -> np.ndarray:
        """Return the normalised image (may be the same array, modified in place)."""


class ZScoreNormalization(ImageNormalization):
    """Subtract the mean, divide by the standard deviation; with the mask flag, statistics and changes are
    restricted to voxels with ``seg >= 0`` (inside the nonzero mask)."""
    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = True

    def run(self, image: np.ndarray, seg: np.ndarray = None) -> np.ndarray:
        image = image.astype(self.target_dtype, copy=False)
        if self.use_mask_for_norm is not None and self.use_mask_for_norm:
            if seg is None:
                raise ValueError("ZScoreNormalization with use_mask_for_norm=True needs the segmentation (seg >= 0 "
                                 "marks the nonzero region).")
            mask = seg >= 0
            values = image[mask]
            mean = values.mean()
            std = values.std()
            image[mask] = (values - mean) / max(std, self._eps)
        else:
            mean = image.mean()
            std = image.std()
            image -= mean
            image /= max(std, self._eps)
        return image


class CTNormalization(ImageNormalization):
    """Clip to the dataset-wide foreground 0.5/99.5 percentiles, then z-score with the foreground mean/std."""
    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = False

    def run(self, image: np.ndarray, seg: np.ndarray = None) -> np.ndarray:
        if self.intensityproperties is None:
            raise UserError("CTNormalization needs the dataset's foreground intensity properties, but none were "
                            "given.", hint="Check 'foreground_intensity_properties_per_channel' in the plans file.")
        props = self.intensityproperties
        try:
            mean, std = props['mean'], props['std']
            lower, upper = props['percentile_00_5'], props['percentile_99_5']
        except KeyError as e:
            raise UserError(f"CTNormalization: the intensity properties lack the key {e.args[0]!r}.",
                            hint="Re-run fingerprint extraction and planning for this dataset.") from None
        image = image.astype(self.target_dtype, copy=False)
        np.clip(image, lower, upper, out=image)
        image -= mean
        image /= max(std, self._eps)
        return image


class NoNormalization(ImageNormalization):
    """Only casts to the target dtype."""
    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = False

    def run(self, image: np.ndarray, seg: np.ndarray = None) -> np.ndarray:
        return image.astype(self.target_dtype, copy=False)


class RescaleTo01Normalization(ImageNormalization):
    """Per-image min-max scaling to [0, 1]."""
    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = False

    def run(self, image: np.ndarray, seg: np.ndarray = None) -> np.ndarray:
        # not in place: the caller's array stays untouched (as in the reference)
        image = image.astype(self.target_dtype, copy=False)
        image = image - image.min()
        image /= np.clip(image.max(), a_min=self._eps, a_max=None)
        return image


class RGBTo01Normalization(ImageNormalization):
    """8-bit RGB intensities (0..255) divided by 255."""
    leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true = False

    def run(self, image: np.ndarray, seg: np.ndarray = None) -> np.ndarray:
        lo, hi = image.min(), image.max()
        if lo < 0 or hi > 255:
            raise UserError(f"RGBTo01Normalization expects intensities in [0, 255], got [{lo}, {hi}].",
                            hint="Use this scheme only for 8-bit RGB images (channel name 'rgb_to_0_1').")
        # cast first, then divide in the target type (as the reference does): dividing in float64 and casting
        # afterwards rounds some values differently; not in place, so the caller's image stays as it was
        return image.astype(self.target_dtype, copy=False) / 255.
