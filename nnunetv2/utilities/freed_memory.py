"""Freed memory: kept for reuse while a command works on a case, handed back to the system between cases.

By default glibc serves every block above a few MB with a fresh ``mmap`` and unmaps it at ``free``; each new block's
pages are then zeroed and faulted in one by one on first touch. A forward pass of the default 3d_fullres network
allocates and frees about a GB that way: on two Zen 4 cores one pass took 1.61 s, 0.6 s of it system time, and 1.25 s
once freed blocks were reused; plan_and_preprocess of four 280^3 volumes went 18.0 -> 14.5 s.

``keep_freed_memory_for_reuse`` (console commands only, see utilities.console_command) turns ``mmap`` off for large
blocks, trims the top of the heap only past 2 GiB and lets all threads share one heap (what one thread frees, the
next reuses: the two concurrent single-threaded passes of TTA took 1.43 s per pass with a heap per thread and 1.26 s
with one), in this process by ``mallopt`` and in the processes it starts through ``GLIBC_TUNABLES`` (read when a
process starts). Where the setting is on, ``release_freed_memory`` hands the free pages back (``malloc_trim``); every
worker calls it after each case, so the memory a case left free does not stay resident for a long run over cases of
different sizes. The prediction loop (one process) keeps up to 1 GiB of them for the next case: handing back and
faulting in again the ~600 MB a case of the default 3d_fullres network leaves free cost ~0.3 s of system time per
case. Off glibc, and where the user set ``glibc.malloc.*`` tunables of their own (those then apply, untouched), both
do nothing. No result changes.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from typing import Optional

GLIBC_TUNABLES = 'GLIBC_TUNABLES'
# mallopt's parameter numbers (malloc.h) and the largest trim threshold it takes (an int)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
KEEP_FREED_BELOW_BYTES = 2 ** 31 - 1
KEPT_FOR_NEXT_CASE_BYTES = 2 ** 30  # what the prediction loop keeps free for its next case (module docstring)
MALLOC_REUSE_TUNABLES = f'glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={KEEP_FREED_BELOW_BYTES}' \
                        ':glibc.malloc.arena_max=1'


@functools.lru_cache(maxsize=None)  # release_freed_memory runs after every task of every pool
def _glibc_function(name: str) -> Optional[ctypes._CFuncPtr]:
    if not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc':
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory_for_reuse() -> bool:
    """Reuse freed memory in this process and in the processes it starts (see the module docstring). Returns whether
    the setting is in effect here."""
    user_tunables = os.environ.get(GLIBC_TUNABLES, '')
    mallopt = _glibc_function('mallopt')
    if mallopt is None or 'glibc.malloc.' in user_tunables:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BELOW_BYTES) and mallopt(_M_MMAP_MAX, 0)
            and mallopt(_M_ARENA_MAX, 1)):
        return False
    os.environ[GLIBC_TUNABLES] = f'{user_tunables}:{MALLOC_REUSE_TUNABLES}' if user_tunables \
        else MALLOC_REUSE_TUNABLES
    return True


class _MallInfo2(ctypes.Structure):  # struct mallinfo2 (glibc >= 2.33): every field a size_t
    _fields_ = [(name, ctypes.c_size_t) for name in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
                                                     'fsmblks', 'uordblks', 'fordblks', 'keepcost')]


def free_heap_bytes() -> Optional[int]:
    """Bytes the heap holds free for reuse (None where glibc cannot tell: not glibc, or older than 2.33)."""
    mallinfo2 = _glibc_function('mallinfo2')
    if mallinfo2 is None:
        return None
    mallinfo2.argtypes = []
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().fordblks)


def release_freed_memory(keep_up_to: int = 0) -> None:
    """Hand the free pages of this process back to the system, where freed memory is kept for reuse (a case is done);
    elsewhere glibc already does so at every ``free``. With ``keep_up_to`` the pages stay while the heap holds no more
    than that many bytes free: the next case of a run reuses them instead of faulting them in again."""
    if MALLOC_REUSE_TUNABLES not in os.environ.get(GLIBC_TUNABLES, ''):
        return
    if keep_up_to > 0:
        free = free_heap_bytes()
        if free is not None and free <= keep_up_to:
            return
    malloc_trim = _glibc_function('malloc_trim')
    if malloc_trim is not None:
        malloc_trim.argtypes = [ctypes.c_size_t]
        malloc_trim(0)
