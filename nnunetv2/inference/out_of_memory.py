"""Falling back to results on the CPU when the accelerator runs out of memory during a sliding-window prediction.

The fallback only works if the failed attempt is gone before the retry starts: its fp16 accumulators and the device
copy of the image are referenced by the exception's traceback for as long as the exception lives. The retry therefore
runs after the ``except`` block has ended (and a garbage collection has broken any cycles), never inside it.
"""
from __future__ import annotations

import gc
from typing import Callable, Optional, Tuple, Type, TypeVar

import torch

from nnunetv2.utilities.helpers import empty_cache

_R = TypeVar('_R')

# out-of-memory conditions that libraries report as a plain RuntimeError (cuBLAS/cuDNN handles, the MPS allocator,
# allocations outside torch's caching allocator)
_OUT_OF_MEMORY_MESSAGES = ('out of memory', 'CUBLAS_STATUS_ALLOC_FAILED', 'CUDNN_STATUS_NOT_ENOUGH_MEMORY',
                           'CUDNN_STATUS_ALLOC_FAILED')


def out_of_memory_error_types() -> Tuple[Type[BaseException], ...]:
    """``torch.OutOfMemoryError`` (torch >= 2.5); older releases name it ``torch.cuda.OutOfMemoryError``."""
    for owner in (torch, torch.cuda):
        error_type = getattr(owner, 'OutOfMemoryError', None)
        if isinstance(error_type, type):
            return (error_type,)
    return ()


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, out_of_memory_error_types()):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _OUT_OF_MEMORY_MESSAGES)


def _unless_out_of_memory(attempt: Callable[[], _R]) -> Tuple[bool, Optional[_R]]:
    try:
        return True, attempt()
    except Exception as error:
        if not is_out_of_memory(error):
            raise
    # leaving the except block dropped the exception, its traceback and with them the failed attempt's tensors
    return False, None


def on_device_else_results_on_cpu(on_device: Callable[[], _R], results_on_cpu: Callable[[], _R],
                                  device: torch.device) -> _R:
    """``on_device()``; if that runs out of memory, free what it allocated and return ``results_on_cpu()``."""
    succeeded, result = _unless_out_of_memory(on_device)
    if succeeded:
        return result
    # the console line users know from the reference
    print('Prediction on device was unsuccessful, probably due to a lack of memory. Moving results arrays to CPU')
    gc.collect()  # frames of the failed attempt can sit in reference cycles
    empty_cache(device)
    return results_on_cpu()
