"""Cross-entropy variants that accept nnU-Net's ``(b, 1, *spatial)`` integer targets."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RobustCrossEntropyLoss(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` that also takes targets with a singleton channel axis and any integer/float dtype.

    nnU-Net keeps segmentations as ``(b, 1, *spatial)`` int16 tensors; torch wants ``(b, *spatial)`` long.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == input.ndim:
            if target.shape[1] != 1:
                raise ValueError(f"RobustCrossEntropyLoss: target has {target.shape[1]} channels, expected 1 "
                                 f"(target shape {tuple(target.shape)}, input shape {tuple(input.shape)})")
            target = target[:, 0]
        return super().forward(input, target.long())


class TopKLoss(RobustCrossEntropyLoss):
    """Mean of the ``k`` percent largest voxel-wise cross-entropy values of the batch.

    Ignored voxels take part in the ranking with loss 0 (they are not removed), as in the reference.
    """

    def __init__(self, weight=None, ignore_index: int = -100, k: float = 10, label_smoothing: float = 0):
        self.k = k
        super().__init__(weight, ignore_index=ignore_index, reduction='none', label_smoothing=label_smoothing)

    def forward(self, inp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target[:, 0].long()
        res = super().forward(inp, target)  # reduction 'none' -> per-voxel loss
        num_voxels = int(np.prod(res.shape, dtype=np.int64))
        res, _ = torch.topk(res.view((-1,)), int(num_voxels * self.k / 100), sorted=False)
        return res.mean()
