"""Waits and votes between DDP ranks that no collective timeout may cut short.

Under NCCL every collective has a timeout (10 minutes by default) after which a watchdog aborts the process. Some
waits are legitimately longer: the other ranks wait while rank 0 unpacks the dataset or computes the validation
metrics. Those waits go through a gloo group opened next to the default one, whose timeout is long enough never to
fire in practice; the watchdog only watches NCCL work, and a rank waiting on gloo has none pending.

A process group created by someone else (a user's own launcher) has no side group: then the default group is used,
with its own timeout.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Optional

import torch
from torch import distributed as dist

# long enough for any unpacking or metric computation; gloo counts milliseconds in 32 bits (at most ~24 days)
LONG_WAIT = timedelta(days=7)
# how long the ranks may take to connect to each other over gloo (they all ask right after joining the default group)
SETUP_WAIT = timedelta(minutes=10)

_side_group: Optional[object] = None


def open_side_group(timeout: timedelta = LONG_WAIT) -> None:
    """Create the gloo side group; every rank must call this right after ``init_process_group``.

    Creating a gloo group connects every rank to every other over TCP, on the address gloo finds for the hostname
    (or GLOO_SOCKET_IFNAME). Where that does not connect the nodes of a multi-node run (the hostname resolves to a
    loopback address, or to a network other than the one NCCL uses), the creation waits for the group's timeout: with
    LONG_WAIT, days. So a first group with a SETUP_WAIT timeout finds that out; the side group, created once that one
    connected, gets the long timeout."""
    global _side_group
    if not dist.is_gloo_available():  # the waits use the default group, with its timeout
        return
    try:
        dist.new_group(backend="gloo", timeout=SETUP_WAIT)
    except RuntimeError as e:
        from nnunetv2.errors import UserError
        dist.destroy_process_group()  # leave the default group too: this process stops here
        raise UserError(f"The training processes could not connect to each other over gloo (TCP) within "
                        f"{SETUP_WAIT} ({' '.join(str(e).split())[:300]}).",
                        "On a multi-node run set GLOO_SOCKET_IFNAME to the network interface that connects the nodes "
                        "(gloo uses the address the hostname resolves to), and start every node.") from None
    _side_group = dist.new_group(backend="gloo", timeout=timeout)


def destroy_process_groups() -> None:
    """Destroy the default group and the side group (after which this process is no longer in a DDP run)."""
    global _side_group
    _side_group = None
    dist.destroy_process_group()


def wait_for_all_ranks() -> None:
    """A barrier of all ranks that no NCCL watchdog aborts, however long one rank takes."""
    if _side_group is not None:
        dist.barrier(group=_side_group)
    else:
        dist.barrier()


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest ``value`` of all ranks (all ranks must call this at the same point); ``device`` is this rank's
    training device (NCCL reduces on the GPU). On the default group: a rank that hangs instead of reaching this
    point still ends the run after the default timeout."""
    if dist.get_backend() != "nccl":
        device = torch.device("cpu")
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def gather_objects(obj) -> list:
    """``obj`` of every rank, in rank order (all ranks must call this at the same point); through the gloo side
    group where there is one, so that no GPU is involved."""
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj, group=_side_group)
    return gathered
