"""Soft Dice losses and the tp/fp/fn/tn helper."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import nn

from nnunetv2.utilities.ddp_allgather import AllGatherGrad


def _spatial_axes(x: torch.Tensor) -> Tuple[int, ...]:
    return tuple(range(2, x.ndim))


def _as_one_hot(reference: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``gt`` as float32 one-hot with ``reference``'s shape (labels are scattered; one-hot input is used as is).

    Label maps may come without the channel axis; they are reshaped to ``(b, 1, *spatial)`` first.
    """
    if gt.ndim != reference.ndim:
        gt = gt.view((gt.shape[0], 1, *gt.shape[1:]))
    if gt.shape == reference.shape:
        return gt.to(torch.float32)
    one_hot = torch.zeros(reference.shape, device=reference.device, dtype=torch.float32)
    one_hot.scatter_(1, gt.long(), 1)
    return one_hot


def _all_gather_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all DDP ranks while keeping gradients flowing to this rank's share."""
    return AllGatherGrad.apply(t).sum(0)


def _ddp_active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def get_tp_fp_fn_tn(net_output: torch.Tensor, gt: torch.Tensor, axes: Optional[Sequence[int]] = None,
                    mask: Optional[torch.Tensor] = None, square: bool = False):
    """Soft true/false positives/negatives of ``net_output`` (probabilities, ``(b, c, *spatial)``) against ``gt``.

    ``gt`` is a label map (``(b, 1, *spatial)`` or ``(b, *spatial)``) or one-hot with ``net_output``'s shape.
    ``mask`` (``(b, 1, *spatial)``, 1 = valid) zeroes the contribution of excluded voxels. Sums over ``axes``
    (default: all spatial axes; an empty tuple sums nothing).
    """
    if axes is None:
        axes = _spatial_axes(net_output)
    with torch.no_grad():
        y_onehot = _as_one_hot(net_output, gt)

    tp = net_output * y_onehot
    fp = net_output * (1 - y_onehot)
    fn = (1 - net_output) * y_onehot
    tn = (1 - net_output) * (1 - y_onehot)

    if mask is not None:
        with torch.no_grad():
            mask_here = torch.tile(mask, (1, tp.shape[1], *[1] * (tp.ndim - 2)))
        tp, fp, fn, tn = tp * mask_here, fp * mask_here, fn * mask_here, tn * mask_here

    if square:
        tp, fp, fn, tn = tp ** 2, fp ** 2, fn ** 2, tn ** 2

    if len(axes) > 0:
        tp, fp, fn, tn = (t.sum(dim=tuple(axes), dtype=torch.float32) for t in (tp, fp, fn, tn))
    return tp, fp, fn, tn


class SoftDiceLoss(nn.Module):
    """Soft Dice via :func:`get_tp_fp_fn_tn`; returns ``-mean(dice)``."""

    def __init__(self, apply_nonlin: Callable = None, batch_dice: bool = False, do_bg: bool = True,
                 smooth: float = 1., ddp: bool = True, clip_tp: float = None):
        super().__init__()
        self.do_bg = do_bg
        self.batch_dice = batch_dice
        self.apply_nonlin = apply_nonlin
        self.smooth = smooth
        self.clip_tp = clip_tp
        self.ddp = ddp

    def forward(self, x: torch.Tensor, y: torch.Tensor, loss_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        axes = tuple(range(2, x.ndim))
        if self.batch_dice:
            axes = (0,) + axes
        if self.apply_nonlin is not None:
            x = self.apply_nonlin(x)

        tp, fp, fn, _ = get_tp_fp_fn_tn(x, y, axes, loss_mask, False)

        if self.ddp and self.batch_dice and _ddp_active():
            tp, fp, fn = _all_gather_sum(tp), _all_gather_sum(fp), _all_gather_sum(fn)

        if self.clip_tp is not None:
            tp = torch.clip(tp, min=self.clip_tp, max=None)

        dc = (2 * tp + self.smooth) / torch.clip(2 * tp + fp + fn + self.smooth, 1e-8)

        if not self.do_bg:
            dc = dc[1:] if self.batch_dice else dc[:, 1:]
        return -dc.mean()


class MemoryEfficientSoftDiceLoss(nn.Module):
    """Soft Dice computed from three spatial sums instead of four full-size tensors.

    Numerically the same as :class:`SoftDiceLoss`; this is the one the default trainer uses.
    """

    def __init__(self, apply_nonlin: Callable = None, batch_dice: bool = False, do_bg: bool = True,
                 smooth: float = 1., ddp: bool = True):
        super().__init__()
        self.do_bg = do_bg
        self.batch_dice = batch_dice
        self.apply_nonlin = apply_nonlin
        self.smooth = smooth
        self.ddp = ddp

    def forward(self, x: torch.Tensor, y: torch.Tensor, loss_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.apply_nonlin is not None:
            x = self.apply_nonlin(x)
        axes = _spatial_axes(x)

        # The target side needs no gradient: build the one-hot and its volume without autograd bookkeeping.
        with torch.no_grad():
            y_onehot = _as_one_hot(x, y)
            if not self.do_bg:
                y_onehot = y_onehot[:, 1:]
            sum_gt = y_onehot.sum(axes, dtype=torch.float32) if loss_mask is None \
                else (y_onehot * loss_mask).sum(axes, dtype=torch.float32)

        if not self.do_bg:
            x = x[:, 1:]

        if loss_mask is None:
            intersect = (x * y_onehot).sum(axes, dtype=torch.float32)
            sum_pred = x.sum(axes, dtype=torch.float32)
        else:
            intersect = (x * y_onehot * loss_mask).sum(axes, dtype=torch.float32)
            sum_pred = (x * loss_mask).sum(axes, dtype=torch.float32)

        if self.batch_dice:
            if self.ddp and _ddp_active():
                intersect, sum_pred, sum_gt = (_all_gather_sum(t) for t in (intersect, sum_pred, sum_gt))
            intersect, sum_pred, sum_gt = intersect.sum(0), sum_pred.sum(0), sum_gt.sum(0)

        dc = (2 * intersect + self.smooth) / torch.clip(sum_gt + sum_pred + self.smooth, 1e-8)
        return -dc.mean()
