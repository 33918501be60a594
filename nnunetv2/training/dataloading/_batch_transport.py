"""Moving batches from augmentation workers to the main process through reusable shared memory.

A ``torch.Tensor`` put on a ``multiprocessing.Queue`` as is travels by torch's shared-memory reduction: per tensor
the worker creates a shared-memory file and copies the tensor into it, the receiver connects to the worker's
resource-sharer thread (an authenticated socket handshake) to obtain the file descriptor, and both sides map and
later unmap it. For a Dataset902 batch (image + three deep-supervision targets) that costs ~8 ms of CPU per batch
across both processes, and the receiving side runs in the main process, next to the training loop.

Here each worker owns a ring of slots in one shared-memory buffer, sent to the main process once. A batch's tensors
and numeric numpy arrays are copied into the worker's next free slot and only a small message (slot number, dtypes,
shapes, offsets and the rest of the batch) goes through the queue; the main process copies them out into fresh
arrays (pinned ones when pinning is on) and hands the slot back through a per-worker semaphore. Batches are consumed
in the order each worker sends them, so slot ``k`` is simply the worker's ``k``-th batch modulo the ring size.
The values that arrive are byte-for-byte those the worker produced.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

_ALIGN = 64  # byte alignment of every array inside a slot


class _InSlot:
    """Placeholder for the ``index``-th array of a slot in the message's copy of the batch."""
    __slots__ = ('index',)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return _InSlot, (self.index,)


class SlotMessage:
    """What goes through the queue instead of the batch."""
    __slots__ = ('worker', 'generation', 'ring', 'slot', 'skeleton', 'specs')

    def __init__(self, worker: int, generation: int, ring: Optional[torch.Tensor], slot: int, skeleton: Any,
                 specs: List[Tuple[str, Any, Tuple[int, ...], int, int]]):
        self.worker, self.generation, self.ring, self.slot = worker, generation, ring, slot
        self.skeleton, self.specs = skeleton, specs

    def __reduce__(self):
        return SlotMessage, (self.worker, self.generation, self.ring, self.slot, self.skeleton, self.specs)


def _as_bytes(x) -> Optional[np.ndarray]:
    """A flat uint8 view of a plain CPU tensor / numeric numpy array, or None if it must travel by pickle."""
    if type(x) is torch.Tensor:
        if x.device.type != 'cpu' or x.requires_grad or x.layout != torch.strided or not x.is_contiguous() \
                or x.is_quantized or x.is_conj() or x.is_neg():
            return None
        try:
            return x.detach().reshape(-1).view(torch.uint8).numpy()
        except (RuntimeError, TypeError):  # dtypes that cannot be reinterpreted as bytes
            return None
    if type(x) is np.ndarray and x.dtype.kind in 'biuf' and x.flags.c_contiguous and x.dtype.isnative:
        return x.reshape(-1).view(np.uint8)
    return None


def _split(item, arrays: List[np.ndarray], specs: list, offset: List[int]):
    """``item`` with every slot-able array replaced by a placeholder (dicts, lists and tuples are walked)."""
    raw = _as_bytes(item)
    if raw is not None:
        kind = 'torch' if isinstance(item, torch.Tensor) else 'numpy'
        specs.append((kind, item.dtype, tuple(item.shape), offset[0], raw.nbytes))
        arrays.append(raw)
        offset[0] += -(-raw.nbytes // _ALIGN) * _ALIGN
        return _InSlot(len(specs) - 1)
    if type(item) is dict:
        return {k: _split(v, arrays, specs, offset) for k, v in item.items()}
    if type(item) is list:
        return [_split(v, arrays, specs, offset) for v in item]
    if type(item) is tuple:
        return tuple(_split(v, arrays, specs, offset) for v in item)
    return item


def _join(skeleton, arrays: list):
    if type(skeleton) is _InSlot:
        return arrays[skeleton.index]
    if type(skeleton) is dict:
        return {k: _join(v, arrays) for k, v in skeleton.items()}
    if type(skeleton) is list:
        return [_join(v, arrays) for v in skeleton]
    if type(skeleton) is tuple:
        return tuple(_join(v, arrays) for v in skeleton)
    return skeleton


class SlotWriter:
    """Worker side: copies a batch into the next free slot of this worker's ring."""

    def __init__(self, worker: int, free_slots, n_slots: int):
        self.worker = worker
        self.free_slots = free_slots  # multiprocessing.Semaphore(n_slots), released by the main process
        self.n_slots = n_slots
        self.ring: Optional[torch.Tensor] = None
        self.ring_bytes: Optional[np.ndarray] = None
        self.slot_bytes = 0
        self.generation = -1
        self.sent = 0  # batches sent in this generation
        self.announce = False

    def _new_ring(self, needed: int) -> None:
        # room to grow a little: batches of varying size would otherwise re-announce a ring again and again
        self.slot_bytes = max(needed, int(self.slot_bytes * 1.25))
        self.slot_bytes = -(-self.slot_bytes // _ALIGN) * _ALIGN
        self.ring = torch.empty(self.n_slots * self.slot_bytes, dtype=torch.uint8).share_memory_()
        self.ring_bytes = self.ring.numpy()
        self.generation += 1
        self.sent = 0
        self.announce = True

    def wrap(self, item, stop) -> Any:
        """The message to put on the queue for ``item`` (``item`` itself if it holds nothing to share), or None if
        ``stop()`` turned true while waiting for a free slot."""
        arrays: List[np.ndarray] = []
        specs: list = []
        offset = [0]
        skeleton = _split(item, arrays, specs, offset)
        if not specs:
            return item
        while not self.free_slots.acquire(timeout=0.05):
            if stop():
                return None
        if offset[0] > self.slot_bytes:
            # all slots of the old ring may still be waiting in the queue; they are read from the old ring (the
            # main process keeps it until this generation's first message arrives), so a new ring is safe now
            self._new_ring(offset[0])
        slot = self.sent % self.n_slots
        base = slot * self.slot_bytes
        for (_, _, _, off, nbytes), raw in zip(specs, arrays):
            self.ring_bytes[base + off:base + off + nbytes] = raw
        self.sent += 1
        ring = self.ring if self.announce else None
        self.announce = False
        return SlotMessage(self.worker, self.generation, ring, slot, skeleton, specs)


class SlotReader:
    """Main-process side: turns messages back into batches and frees their slots."""

    def __init__(self, free_slots: List[Any], n_slots: int):
        self.free_slots = free_slots
        self.n_slots = n_slots
        self.rings: Dict[int, Tuple[int, torch.Tensor, np.ndarray, int]] = {}

    def unwrap(self, message, pin_memory: bool = False):
        if type(message) is not SlotMessage:
            return message
        if message.ring is not None:  # a worker's (new) ring: older generations will not be referenced again
            ring = message.ring
            slot_bytes = ring.numel() // self.n_slots
            self.rings[message.worker] = (message.generation, ring, ring.numpy(), slot_bytes)
        generation, _, ring_bytes, slot_bytes = self.rings[message.worker]
        if generation != message.generation:
            raise RuntimeError(f"augmentation worker {message.worker}: batch from ring generation "
                               f"{message.generation} but generation {generation} is mapped")
        base = message.slot * slot_bytes
        arrays = []
        try:
            for kind, dtype, shape, off, nbytes in message.specs:
                src = ring_bytes[base + off:base + off + nbytes]
                if kind == 'torch':
                    out = torch.empty(shape, dtype=dtype, pin_memory=pin_memory)
                    out.reshape(-1).view(torch.uint8).numpy()[:] = src
                else:
                    out = np.empty(shape, dtype=dtype)
                    out.reshape(-1).view(np.uint8)[:] = src
                arrays.append(out)
        finally:
            self.free_slots[message.worker].release()
        return _join(message.skeleton, arrays)


def make_slot_semaphores(ctx_semaphore, n_workers: int, n_slots: int) -> List[Any]:
    """One ``Semaphore(n_slots)`` per worker (``ctx_semaphore``: ``multiprocessing.Semaphore`` or a context's)."""
    return [ctx_semaphore(n_slots) for _ in range(n_workers)]


def slots_per_worker(num_cached: int, num_processes: int) -> int:
    """Enough slots that a worker waits for one only when the queue is (nearly) full anyway: each worker's share
    of the queue plus the batch it is writing. Memory: about ``num_cached + num_processes`` batches in all, what
    the queue plus the batches in the workers' hands held before."""
    return max(2, -(-num_cached // max(num_processes, 1)) + 1)
