"""Deep-supervision targets for batchgenerators (v1) batches (the misspelled module name is the public one)."""
from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform
from skimage.transform import resize


class DownsampleSegForDSTransform2(AbstractTransform):
    """Replace ``seg`` by a list with one (resized, order ``order``) copy per scale in ``ds_scales``."""

    def __init__(self, ds_scales: Union[List, Tuple], order: int = 0, input_key: str = "seg",
                 output_key: str = "seg", axes: Tuple[int] = None):
        self.axes = axes
        self.output_key = output_key
        self.input_key = input_key
        self.order = order
        self.ds_scales = ds_scales

    def __call__(self, **data_dict):
        seg = data_dict[self.input_key]
        axes = self.axes if self.axes is not None else list(range(2, seg.ndim))
        output = []
        for s in self.ds_scales:
            if not isinstance(s, (tuple, list)):
                s = [s] * len(axes)
            if all(i == 1 for i in s):
                output.append(seg)
                continue
            new_shape = np.array(seg.shape).astype(float)
            for i, a in enumerate(axes):
                new_shape[a] *= s[i]
            new_shape = np.round(new_shape).astype(int)
            out = np.zeros(new_shape, dtype=seg.dtype)
            for b in range(seg.shape[0]):
                for c in range(seg.shape[1]):
                    out[b, c] = resize(seg[b, c].astype(float), new_shape[2:], order=self.order, mode='edge',
                                       clip=True, anti_aliasing=False, preserve_range=True)
            output.append(out)
        data_dict[self.output_key] = output
        return data_dict
