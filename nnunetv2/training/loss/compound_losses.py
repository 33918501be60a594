"""Dice + cross-entropy style compound losses."""
from __future__ import annotations

import torch
from torch import nn

from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss, SoftDiceLoss
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss, TopKLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1


def _ignore_mask_and_dice_target(target: torch.Tensor, ignore_label: int):
    """Mask of annotated voxels, the target with ignored voxels set to 0 (for Dice), and the count of valid ones."""
    if target.shape[1] != 1:
        raise ValueError("an ignore label is only supported for single-channel (label map) targets, got "
                         f"target shape {tuple(target.shape)}")
    mask = target != ignore_label
    # torch.where keeps the original target intact (the CE term still needs the ignore label to skip voxels).
    target_dice = torch.where(mask, target, 0)
    return mask, target_dice, mask.sum()


class DC_and_CE_loss(nn.Module):
    """``weight_ce * CE + weight_dice * (-soft Dice)`` with softmax; supports an ignore label."""

    def __init__(self, soft_dice_kwargs, ce_kwargs, weight_ce=1, weight_dice=1, ignore_label=None,
                 dice_class=SoftDiceLoss):
        super().__init__()
        if ignore_label is not None:
            ce_kwargs['ignore_index'] = ignore_label

        self.weight_dice = weight_dice
        self.weight_ce = weight_ce
        self.ignore_label = ignore_label

        self.ce = RobustCrossEntropyLoss(**ce_kwargs)
        self.dc = dice_class(apply_nonlin=softmax_helper_dim1, **soft_dice_kwargs)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.ignore_label is not None:
            mask, target_dice, num_fg = _ignore_mask_and_dice_target(target, self.ignore_label)
        else:
            target_dice, mask, num_fg = target, None, None

        dc_loss = self.dc(net_output, target_dice, loss_mask=mask) if self.weight_dice != 0 else 0
        # With every voxel ignored CE would be 0/0 = nan; skip it then.
        ce_loss = self.ce(net_output, target[:, 0]) \
            if self.weight_ce != 0 and (self.ignore_label is None or num_fg > 0) else 0

        return self.weight_ce * ce_loss + self.weight_dice * dc_loss


class DC_and_BCE_loss(nn.Module):
    """Region-based: ``weight_ce * BCE + weight_dice * (-soft Dice)`` with sigmoid.

    With ``use_ignore_label`` the last target channel marks ignored voxels. The masked BCE divides the sum over
    all region channels by the number of valid *voxels* (not elements), exactly as the reference does.
    """

    def __init__(self, bce_kwargs, soft_dice_kwargs, weight_ce=1, weight_dice=1, use_ignore_label: bool = False,
                 dice_class=MemoryEfficientSoftDiceLoss):
        super().__init__()
        if use_ignore_label:
            bce_kwargs['reduction'] = 'none'

        self.weight_dice = weight_dice
        self.weight_ce = weight_ce
        self.use_ignore_label = use_ignore_label

        self.ce = nn.BCEWithLogitsLoss(**bce_kwargs)
        self.dc = dice_class(apply_nonlin=torch.sigmoid, **soft_dice_kwargs)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.use_ignore_label:
            if target.dtype == torch.bool:
                mask = ~target[:, -1:]
            else:
                mask = (1 - target[:, -1:]).bool()
            target_regions = target[:, :-1]
        else:
            target_regions, mask = target, None

        dc_loss = self.dc(net_output, target_regions, loss_mask=mask)
        target_regions = target_regions.float()
        if mask is not None:
            ce_loss = (self.ce(net_output, target_regions) * mask).sum() / torch.clip(mask.sum(), min=1e-8)
        else:
            ce_loss = self.ce(net_output, target_regions)
        return self.weight_ce * ce_loss + self.weight_dice * dc_loss


class DC_and_topk_loss(nn.Module):
    """``weight_ce * TopK-CE + weight_dice * (-soft Dice)`` with softmax; supports an ignore label."""

    def __init__(self, soft_dice_kwargs, ce_kwargs, weight_ce=1, weight_dice=1, ignore_label=None):
        super().__init__()
        if ignore_label is not None:
            ce_kwargs['ignore_index'] = ignore_label

        self.weight_dice = weight_dice
        self.weight_ce = weight_ce
        self.ignore_label = ignore_label

        self.ce = TopKLoss(**ce_kwargs)
        self.dc = SoftDiceLoss(apply_nonlin=softmax_helper_dim1, **soft_dice_kwargs)

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.ignore_label is not None:
            mask, target_dice, num_fg = _ignore_mask_and_dice_target(target, self.ignore_label)
        else:
            target_dice, mask, num_fg = target, None, None

        dc_loss = self.dc(net_output, target_dice, loss_mask=mask) if self.weight_dice != 0 else 0
        ce_loss = self.ce(net_output, target) \
            if self.weight_ce != 0 and (self.ignore_label is None or num_fg > 0) else 0
        return self.weight_ce * ce_loss + self.weight_dice * dc_loss
