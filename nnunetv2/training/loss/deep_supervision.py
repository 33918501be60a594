"""Weighted sum of a loss over the deep-supervision outputs."""
from __future__ import annotations

from torch import nn


class DeepSupervisionWrapper(nn.Module):
    """``forward(outputs, targets, ...)`` = ``sum_i w_i * loss(outputs[i], targets[i], ...)`` over ``w_i != 0``.

    Outputs and targets are ordered from the highest resolution to the lowest. Entries with weight 0 are not
    evaluated at all (saves the work for the dropped lowest-resolution output).
    """

    def __init__(self, loss, weight_factors=None):
        super().__init__()
        if not any(x != 0 for x in weight_factors):
            raise ValueError(f"DeepSupervisionWrapper: at least one weight factor must be non-zero, got "
                             f"{weight_factors}")
        self.weight_factors = tuple(weight_factors)
        self.loss = loss

    def forward(self, *args):
        for i, a in enumerate(args):
            if not isinstance(a, (tuple, list)):
                raise TypeError(f"DeepSupervisionWrapper: all arguments must be lists or tuples, argument {i} is "
                                f"{type(a).__name__}")
        weights = self.weight_factors if self.weight_factors is not None else (1,) * len(args[0])
        n_outputs = min(len(a) for a in args) if args else 0
        # zip would quietly drop the outputs beyond the last weight; name the mismatch instead
        if n_outputs > len(weights):
            raise ValueError(f"DeepSupervisionWrapper: {n_outputs} outputs but only {len(weights)} weight factors "
                             f"{list(weights)}; give one weight per deep-supervision output")
        return sum(w * self.loss(*inputs) for *inputs, w in zip(*args, weights) if w != 0.0)
