"""A resampling function that does nothing (used by the nnUNetPlannerResEncL_noResampling planner)."""
from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
import torch


def no_resampling_hack(data: Union[torch.Tensor, np.ndarray], new_shape: Union[Tuple[int, ...], List[int], np.ndarray],
                       current_spacing: Union[Tuple[float, ...], List[float], np.ndarray],
                       new_spacing: Union[Tuple[float, ...], List[float], np.ndarray]):
    """Return ``data`` unchanged: the images keep their cropped shape whatever the plans' spacing says."""
    return data
