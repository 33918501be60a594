"""All-gather with gradients for distributed (DDP) training, and rank-0-only printing."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import distributed


def print_if_rank0(*args: Any) -> None:
    """Print on the first process only (or always when not running distributed)."""
    if not (distributed.is_available() and distributed.is_initialized()) or distributed.get_rank() == 0:
        print(*args)


class AllGatherGrad(torch.autograd.Function):
    """``torch.distributed.all_gather`` that lets gradients flow back to every process's input.

    Forward stacks the tensors of all ranks on a new first axis; backward sums the incoming gradients over all
    ranks and hands each rank the slice that belongs to its own input.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: Optional[Any] = None) -> torch.Tensor:
        ctx.group = group
        gathered = [torch.zeros_like(tensor) for _ in range(distributed.get_world_size(group))]
        distributed.all_gather(gathered, tensor, group=group)
        return torch.stack(gathered, dim=0)

    @staticmethod
    def backward(ctx, *grad_output: torch.Tensor):
        grad = torch.cat(grad_output)
        distributed.all_reduce(grad, op=distributed.ReduceOp.SUM, async_op=False, group=ctx.group)
        return grad[distributed.get_rank(ctx.group)], None
