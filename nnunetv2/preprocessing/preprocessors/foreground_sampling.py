"""Foreground voxel locations stored with each training case.

The data loader oversamples foreground by drawing patch centres from these locations, so they must be the very
voxels the reference samples: one ``RandomState(seed)`` per case shared by all classes in list order,
``choice(T, n, replace=False)`` over the C-ordered voxel list of each class.

Speed: the coordinate list of a class is only materialised for the chosen voxels. Flat indices are gathered per
label once (and reused when several regions share a label), ``choice`` picks positions in that list, and only those
are converted to (channel, x, y, z).
"""
from __future__ import annotations

import logging
from typing import Dict, Sequence, Tuple, Union

import numpy as np

logger = logging.getLogger(__name__)

ClassOrRegion = Union[int, Sequence[int]]


def number_of_samples(num_voxels: int, min_num_samples: int = 10000, min_percent_coverage: float = 0.01) -> int:
    """``max(min(min_num_samples, T), ceil(min_percent_coverage * T))``."""
    return max(min(min_num_samples, num_voxels), int(np.ceil(num_voxels * min_percent_coverage)))


def sample_foreground_locations(seg: np.ndarray, classes_or_regions: Sequence[ClassOrRegion], seed: int = 1234,
                                verbose: bool = False, min_num_samples: int = 10000,
                                min_percent_coverage: float = 0.01) -> Dict[Union[int, Tuple[int, ...]], object]:
    """``{class: int64 array (n, 4) of (channel, x, y, z)}`` (``[]`` for absent classes) for ``seg`` (1, x, y, z).

    Keys: an int for a class, a tuple for a region (lists become tuples).
    """
    rs = np.random.RandomState(seed)
    flat_seg = seg.reshape(-1)
    per_label: Dict[float, np.ndarray] = {}

    def indices_of(label) -> np.ndarray:
        if label not in per_label:
            per_label[label] = np.flatnonzero(flat_seg == label)
        return per_label[label]

    result: Dict[Union[int, Tuple[int, ...]], object] = {}
    for c in classes_or_regions:
        key = tuple(c) if isinstance(c, (list, tuple)) else c
        labels = list(key) if isinstance(key, tuple) else [key]
        parts = [indices_of(label) for label in labels]
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if flat.size == 0:
            result[key] = []
            if verbose:
                logger.info("class %s: no voxels", key)
            continue
        n = number_of_samples(flat.size, min_num_samples, min_percent_coverage)
        chosen = flat[rs.choice(flat.size, n, replace=False)]
        result[key] = np.stack(np.unravel_index(chosen, seg.shape), axis=1).astype(np.int64, copy=False)
        if verbose:
            logger.info("class %s: %d voxels, %d sampled", key, flat.size, n)
    return result
