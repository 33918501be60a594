"""Label map -> region channels for batchgenerators (v1) batches."""
from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform


class ConvertSegmentationToRegionsTransform(AbstractTransform):
    """Channel ``k`` of the output is 1 where ``seg[:, seg_channel]`` is one of region ``k``'s labels."""

    def __init__(self, regions: Union[List, Tuple], seg_key: str = "seg", output_key: str = "seg",
                 seg_channel: int = 0):
        self.seg_channel = seg_channel
        self.output_key = output_key
        self.seg_key = seg_key
        self.regions = regions

    def __call__(self, **data_dict):
        seg = data_dict.get(self.seg_key)
        if seg is not None:
            out = np.zeros((seg.shape[0], len(self.regions), *seg.shape[2:]), dtype=seg.dtype)
            for r, labels in enumerate(self.regions):
                labels = [labels] if np.isscalar(labels) else list(labels)
                out[:, r] = np.isin(seg[:, self.seg_channel], labels)
            data_dict[self.output_key] = out
        return data_dict
