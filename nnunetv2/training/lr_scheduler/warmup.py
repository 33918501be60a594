"""Warm-up and offset schedules used by the warm-up / Primus trainer variants."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, _LRScheduler


class _ExplicitStepScheduler(_LRScheduler):
    """Base for schedules with a closed form ``lr(step)``; ``step(None)`` advances an internal counter."""

    def __init__(self, optimizer, current_step: Optional[int] = None):
        self.optimizer = optimizer
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def _lr_at(self, step: int) -> float:
        raise NotImplementedError

    def step(self, current_step=None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        new_lr = self._lr_at(current_step)
        for param_group in self.optimizer.param_groups:
            param_group['lr'] = new_lr
        self._last_lr = [group['lr'] for group in self.optimizer.param_groups]


class Lin_incr_LRScheduler(_ExplicitStepScheduler):
    """Linear warm-up: ``lr = max_lr / max_steps * (1 + step)``."""

    def __init__(self, optimizer, max_lr: float, max_steps: int, current_step: int = None):
        self.max_lr = max_lr
        self.max_steps = max_steps
        super().__init__(optimizer, current_step)

    def _lr_at(self, step: int) -> float:
        return self.max_lr / self.max_steps * (step + 1)


class Lin_incr_offset_LRScheduler(_ExplicitStepScheduler):
    """Linear warm-up starting at ``start_step``: ``lr = max_lr / max_steps * (1 + step - start_step)``."""

    def __init__(self, optimizer, max_lr: float, max_steps: int, start_step: int, current_step: int = None):
        self.max_lr = max_lr
        self.max_steps = max_steps
        self.start_step = start_step
        super().__init__(optimizer, current_step)

    def _lr_at(self, step: int) -> float:
        return self.max_lr / self.max_steps * (step - self.start_step + 1)


class PolyLRScheduler_offset(_ExplicitStepScheduler):
    """Poly decay that starts at ``start_step`` (constant ``initial_lr`` before it)."""

    def __init__(self, optimizer, initial_lr: float, max_steps: int, start_step: int, exponent: float = 0.9,
                 current_step: int = None):
        self.initial_lr = initial_lr
        self.max_steps = max_steps - start_step
        self.start_step = start_step
        self.exponent = exponent
        super().__init__(optimizer, current_step)

    def _lr_at(self, step: int) -> float:
        t = max(step - self.start_step, 0)
        return self.initial_lr * (1 - t / self.max_steps) ** self.exponent


class CosineAnnealingLR_offset(CosineAnnealingLR):
    """Cosine annealing whose cycle starts at epoch ``offset`` (closed form only)."""

    def __init__(self, optimizer: torch.optim.Optimizer, T_max: int, eta_min=0, last_epoch=-1,
                 verbose="deprecated", offset: int = 0):
        self.offset = offset
        # torch removed the ``verbose`` argument in recent versions; only pass it if the user set it.
        if verbose == "deprecated":
            super().__init__(optimizer, T_max, eta_min, last_epoch)
        else:
            super().__init__(optimizer, T_max, eta_min, last_epoch, verbose)

    def _get_closed_form_lr(self):
        return [self.eta_min + (base_lr - self.eta_min)
                * (1 + math.cos(math.pi * (self.last_epoch - self.offset) / (self.T_max - self.offset))) / 2
                for base_lr in self.base_lrs]

    def step(self, epoch: Optional[int] = None):
        if epoch is None:
            self.last_epoch += 1
        else:
            self.last_epoch = epoch
        values = self._get_closed_form_lr()
        for param_group, lr in zip(self.optimizer.param_groups, values):
            param_group['lr'] = lr
        self._last_lr = [group['lr'] for group in self.optimizer.param_groups]
