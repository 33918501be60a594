"""Learning-rate schedules (spec 03 §6)."""
import math

import pytest
import torch

from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.lr_scheduler.warmup import (CosineAnnealingLR_offset, Lin_incr_LRScheduler,
                                                  Lin_incr_offset_LRScheduler, PolyLRScheduler_offset)


def _opt(lr=0.01):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.99, nesterov=True,
                           weight_decay=3e-5)


def test_poly_lr_values():
    opt = _opt()
    sched = PolyLRScheduler(opt, 0.01, 1000)
    assert opt.param_groups[0]['lr'] == pytest.approx(0.01)
    assert opt.param_groups[0]['initial_lr'] == 0.01
    sched.step(1)
    assert opt.param_groups[0]['lr'] == pytest.approx(0.0099910, abs=1e-7)
    sched.step(999)
    assert opt.param_groups[0]['lr'] == pytest.approx(1.995262e-05, rel=1e-5)
    assert sched.get_last_lr() == [opt.param_groups[0]['lr']]
    for e in (0, 250, 500, 750):
        sched.step(e)
        assert opt.param_groups[0]['lr'] == pytest.approx(0.01 * (1 - e / 1000) ** 0.9)


def test_poly_lr_internal_counter():
    opt = _opt()
    sched = PolyLRScheduler(opt, 0.01, 10, exponent=2)
    # construction performed step 0 already; the next plain step() continues with 1
    sched.step()
    assert opt.param_groups[0]['lr'] == pytest.approx(0.01 * (1 - 1 / 10) ** 2)
    sched.step()
    assert opt.param_groups[0]['lr'] == pytest.approx(0.01 * (1 - 2 / 10) ** 2)


def test_warmup_schedules():
    opt = _opt()
    s = Lin_incr_LRScheduler(opt, 0.01, 50)
    s.step(9)
    assert opt.param_groups[0]['lr'] == pytest.approx(0.01 / 50 * 10)
    s = Lin_incr_offset_LRScheduler(opt, 0.01, 100, 10)
    s.step(55)
    assert opt.param_groups[0]['lr'] == pytest.approx(0.01 / 100 * 46)
    s = PolyLRScheduler_offset(opt, 0.01, 100, 10)
    s.step(5)
    assert opt.param_groups[0]['lr'] == pytest.approx(0.01)
    s.step(55)
    assert opt.param_groups[0]['lr'] == pytest.approx(0.01 * (1 - 45 / 90) ** 0.9)


def test_cosine_offset_closed_form():
    opt = _opt()
    s = CosineAnnealingLR_offset(opt, 100, 1e-5, offset=10)
    s.step(55)
    expected = 1e-5 + (0.01 - 1e-5) * (1 + math.cos(math.pi * 45 / 90)) / 2
    assert opt.param_groups[0]['lr'] == pytest.approx(expected)
