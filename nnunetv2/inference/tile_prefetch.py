"""Gathering sliding-window tiles for the network, optionally in a background thread.

With the results (and so the image) on the CPU and the network on a GPU, every tile is a strided gather on the host
followed by a host-to-device copy. Done in the prediction loop, the GPU idles meanwhile; a producer thread a few tiles
ahead overlaps that work with the forward passes. The thread must never outlive the loop: if a forward pass fails
(out of memory, say), the prefetcher is closed and nothing of the failed attempt stays referenced by it.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, Tuple, TypeVar, Union

import torch

_T = TypeVar('_T')
Slicer = Tuple[Union[slice, int], ...]

_ITEM, _END, _ERROR = range(3)


def gather_tile(data: torch.Tensor, slicer: Slicer, device: torch.device) -> torch.Tensor:
    """The (1, C, *patch) tile at ``slicer`` as a contiguous tensor of its own on ``device``.

    Contiguous because a view into the image has the image's strides: a compiled network specialises on strides and
    would recompile for every new image shape. Its own memory because a tile spanning the image's full in-plane extent
    is a contiguous slice, which ``contiguous()`` would hand over as a view: a network that changes its input in place
    would then change the image under the overlapping tiles still to come, and the caller's tensor.
    """
    return data[slicer][None].clone(memory_format=torch.contiguous_format).to(device)


def concrete_device(device: torch.device) -> torch.device:
    """``cuda`` without an index means the calling thread's current GPU; a helper thread has its own current GPU
    (device 0 unless set), so pin the index down before handing the device to another thread."""
    device = torch.device(device)
    if device.type == 'cuda' and device.index is None:
        return torch.device('cuda', torch.cuda.current_device())
    return device


class TilePrefetcher:
    """Iterate over ``items`` computed by a daemon thread, at most ``depth`` items ahead of the consumer.

    Use as a context manager (or call :meth:`close`): closing stops the thread, drops what it had queued and waits for
    it, so the items and whatever the source generator holds are released. An exception in the source is re-raised
    in the consumer.
    """

    def __init__(self, items: Iterable[_T], depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(items),), name='nnunet_tile_prefetch',
                                        daemon=True)
        self._thread.start()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterator[_T]) -> None:
        try:
            for item in items:
                if not self._put((_ITEM, item)):
                    return
                del item
            self._put((_END, None))
        except BaseException as error:  # handed to the consumer, which raises it with its traceback
            self._put((_ERROR, error))

    def __iter__(self) -> Iterator[_T]:
        while True:
            kind, value = self._queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
            del value

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(0.05)
        self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def __enter__(self) -> 'TilePrefetcher':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
