"""Losses against values computed by hand (spec 03 §5)."""
import math

import numpy as np
import pytest
import torch

from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss, DC_and_topk_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss, SoftDiceLoss, get_tp_fp_fn_tn
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss, TopKLoss


def _probs_and_target():
    # b=1, 2 classes, 4 voxels (1x4 spatial); class-1 probabilities p, labels y
    p1 = torch.tensor([0.9, 0.2, 0.6, 0.1])
    probs = torch.stack([1 - p1, p1])[None, :, None, :]  # (1, 2, 1, 4)
    y = torch.tensor([1, 0, 1, 1])[None, None, None, :]  # (1, 1, 1, 4)
    return probs, y, p1


def test_get_tp_fp_fn_tn_by_hand():
    probs, y, p1 = _probs_and_target()
    tp, fp, fn, tn = get_tp_fp_fn_tn(probs, y)
    g1 = torch.tensor([1., 0, 1, 1])
    assert torch.allclose(tp[0, 1], (p1 * g1).sum())
    assert torch.allclose(fp[0, 1], (p1 * (1 - g1)).sum())
    assert torch.allclose(fn[0, 1], ((1 - p1) * g1).sum())
    assert torch.allclose(tn[0, 1], ((1 - p1) * (1 - g1)).sum())
    # mask out voxel 3; square
    mask = torch.tensor([1, 1, 1, 0], dtype=torch.bool)[None, None, None, :]
    tp, fp, fn, tn = get_tp_fp_fn_tn(probs, y, mask=mask, square=True)
    assert math.isclose(tp[0, 1].item(), 0.9 ** 2 + 0.6 ** 2, rel_tol=1e-6)
    assert math.isclose(fn[0, 1].item(), 0.1 ** 2 + 0.4 ** 2, rel_tol=1e-6)
    # empty axes: no reduction
    tp, *_ = get_tp_fp_fn_tn(probs, y, axes=())
    assert tp.shape == probs.shape


@pytest.mark.parametrize('cls', [SoftDiceLoss, MemoryEfficientSoftDiceLoss])
def test_soft_dice_by_hand(cls):
    probs, y, p1 = _probs_and_target()
    smooth = 1.0
    # class 1: tp = 0.9+0.6+0.1 = 1.6, sum_p = 1.8, sum_g = 3
    dc1 = (2 * 1.6 + smooth) / (1.8 + 3 + smooth)
    # class 0: p0 = [0.1, 0.8, 0.4, 0.9], g0 = [0, 1, 0, 0] -> tp = 0.8, sum_p = 2.2, sum_g = 1
    dc0 = (2 * 0.8 + smooth) / (2.2 + 1 + smooth)
    loss = cls(batch_dice=False, do_bg=True, smooth=smooth, ddp=False)(probs, y)
    assert math.isclose(loss.item(), -(dc0 + dc1) / 2, rel_tol=1e-6)
    loss = cls(batch_dice=False, do_bg=False, smooth=smooth, ddp=False)(probs, y)
    assert math.isclose(loss.item(), -dc1, rel_tol=1e-6)


@pytest.mark.parametrize('cls', [SoftDiceLoss, MemoryEfficientSoftDiceLoss])
def test_batch_dice_pools_over_batch(cls):
    probs, y, _ = _probs_and_target()
    probs2 = torch.cat([probs, probs.flip(-1)])
    y2 = torch.cat([y, torch.zeros_like(y)])
    loss = cls(batch_dice=True, do_bg=False, smooth=0., ddp=False)(probs2, y2)
    # pooled class 1: tp = 1.6 + 0, sum_p = 1.8 + 1.8, sum_g = 3 + 0
    assert math.isclose(loss.item(), -(2 * 1.6) / (3.6 + 3), rel_tol=1e-6)
    per_sample = cls(batch_dice=False, do_bg=False, smooth=0., ddp=False)(probs2, y2)
    assert math.isclose(per_sample.item(), -((2 * 1.6) / (1.8 + 3) + 0) / 2, rel_tol=1e-6)


def test_both_dice_implementations_agree_with_mask_and_nonlin():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, 7)
    y = torch.randint(0, 3, (2, 1, 5, 6, 7))
    mask = torch.rand(2, 1, 5, 6, 7) > 0.3
    for bd in (False, True):
        for bg in (False, True):
            a = SoftDiceLoss(lambda t: torch.softmax(t, 1), bd, bg, 1e-5, False)(x, y, mask)
            b = MemoryEfficientSoftDiceLoss(lambda t: torch.softmax(t, 1), bd, bg, 1e-5, False)(x, y, mask)
            assert torch.allclose(a, b, atol=1e-6)


def test_robust_ce_accepts_channel_axis_and_int16():
    x = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]]).permute(0, 2, 1)  # (1, 2 classes, 2 voxels)
    y = torch.tensor([[[0, 1]]], dtype=torch.int16)  # (1, 1, 2)
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.e / (1 + math.e))) / 2
    assert math.isclose(RobustCrossEntropyLoss()(x, y).item(), expected, rel_tol=1e-6)
    assert math.isclose(RobustCrossEntropyLoss()(x, y[:, 0]).item(), expected, rel_tol=1e-6)


def test_topk_keeps_largest_k_percent():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 10, 10)
    y = torch.randint(0, 3, (2, 1, 10, 10))
    per_voxel = torch.nn.functional.cross_entropy(x, y[:, 0].long(), reduction='none').flatten()
    expected = per_voxel.sort(descending=True).values[:int(200 * 10 / 100)].mean()
    assert torch.allclose(TopKLoss(k=10)(x, y), expected)


def test_dc_and_ce_is_sum_of_parts():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 4, 4, 4)
    y = torch.randint(0, 3, (2, 1, 4, 4, 4)).to(torch.int16)
    dice_kwargs = {'batch_dice': False, 'smooth': 1e-5, 'do_bg': False, 'ddp': False}
    loss = DC_and_CE_loss(dice_kwargs, {}, weight_ce=1, weight_dice=1, ignore_label=None,
                          dice_class=MemoryEfficientSoftDiceLoss)(x, y)
    ce = torch.nn.functional.cross_entropy(x, y[:, 0].long())
    dc = MemoryEfficientSoftDiceLoss(lambda t: torch.softmax(t, 1), **dice_kwargs)(x, y)
    assert torch.allclose(loss, ce + dc)
    weighted = DC_and_CE_loss(dice_kwargs, {}, weight_ce=0.5, weight_dice=2, dice_class=MemoryEfficientSoftDiceLoss)(x, y)
    assert torch.allclose(weighted, 0.5 * ce + 2 * dc)


def test_dc_and_ce_ignore_label_excludes_voxels():
    torch.manual_seed(3)
    x = torch.randn(1, 2, 6, 6)
    y = torch.randint(0, 2, (1, 1, 6, 6))
    y_ign = y.clone()
    y_ign[..., :3] = 2  # ignore label 2 on the left half
    dice_kwargs = {'batch_dice': False, 'smooth': 1e-5, 'do_bg': False, 'ddp': False}
    loss = DC_and_CE_loss(dice_kwargs, {}, 1, 1, ignore_label=2, dice_class=MemoryEfficientSoftDiceLoss)(x, y_ign)
    # same as computing both terms only on the right half
    xr, yr = x[..., 3:], y[..., 3:]
    expected = torch.nn.functional.cross_entropy(xr, yr[:, 0]) + \
        MemoryEfficientSoftDiceLoss(lambda t: torch.softmax(t, 1), **dice_kwargs)(xr, yr)
    assert torch.allclose(loss, expected, atol=1e-6)
    # everything ignored: CE is skipped (not nan)
    all_ign = torch.full_like(y, 2)
    out = DC_and_CE_loss(dice_kwargs, {}, 1, 1, ignore_label=2, dice_class=MemoryEfficientSoftDiceLoss)(x, all_ign)
    assert torch.isfinite(out)


def test_dc_and_bce_masked_bce_scales_with_region_count():
    torch.manual_seed(4)
    x = torch.randn(1, 2, 4, 4)
    regions = torch.rand(1, 2, 4, 4) > 0.5
    ignore = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    target = torch.cat([regions, ignore], 1)
    dice_kwargs = {'batch_dice': False, 'do_bg': True, 'smooth': 1e-5, 'ddp': False}
    with_ignore = DC_and_BCE_loss({}, dice_kwargs, 1, 0, use_ignore_label=True)(x, target)
    plain = DC_and_BCE_loss({}, dice_kwargs, 1, 0, use_ignore_label=False)(x, regions)
    # nothing ignored: the masked BCE sums over 2 region channels but divides by the voxel count only
    assert torch.allclose(with_ignore, 2 * plain, atol=1e-6)
    dc_only = DC_and_BCE_loss({}, dice_kwargs, 0, 1)(x, regions)
    expected_dc = MemoryEfficientSoftDiceLoss(torch.sigmoid, **dice_kwargs)(x, regions)
    assert torch.allclose(dc_only, expected_dc)


def test_dc_and_topk_ignore_label_runs_and_is_finite():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 4, 4, 4)
    y = torch.randint(0, 4, (2, 1, 4, 4, 4))  # label 3 = ignore
    loss = DC_and_topk_loss({'batch_dice': False, 'smooth': 1e-5, 'do_bg': False, 'ddp': False}, {'k': 10},
                            ignore_label=3)(x, y)
    assert torch.isfinite(loss)


def test_deep_supervision_weights_and_skipping():
    calls = []

    def fake_loss(a, b):
        calls.append((a, b))
        return torch.tensor(float(a * 10 + b))

    weights = np.array([4 / 7, 2 / 7, 1 / 7, 0])
    ds = DeepSupervisionWrapper(fake_loss, weights)
    out = ds([1, 2, 3, 4], [0, 0, 1, 1])
    assert math.isclose(out.item(), 4 / 7 * 10 + 2 / 7 * 20 + 1 / 7 * 31, rel_tol=1e-6)
    assert len(calls) == 3  # zero-weight entry not evaluated
    with pytest.raises(ValueError):
        DeepSupervisionWrapper(fake_loss, [0, 0])
    with pytest.raises(TypeError):
        DeepSupervisionWrapper(fake_loss, None)
    with pytest.raises(TypeError):
        ds(torch.zeros(1), [1])
