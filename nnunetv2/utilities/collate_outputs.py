"""Merge the per-batch output dicts of training/validation steps into one dict."""
from __future__ import annotations

from typing import List

import numpy as np


def collate_outputs(outputs: List[dict]) -> dict:
    """Per key of the first dict: scalars → list, numpy arrays → stacked on a new first axis, lists → concatenated."""
    collated = {}
    for k, first in outputs[0].items():
        if np.isscalar(first):
            collated[k] = [o[k] for o in outputs]
        elif isinstance(first, np.ndarray):
            collated[k] = np.stack([o[k] for o in outputs])
        elif isinstance(first, list):
            collated[k] = [item for o in outputs for item in o[k]]
        else:
            raise ValueError(f"Cannot collate input of type {type(first)} (key {k!r}). "
                             f"Modify collate_outputs to add this functionality")
    return collated
