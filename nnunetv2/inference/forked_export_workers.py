"""Export workers that a prediction command forks from itself right after importing torch.

A spawned export worker starts a new Python and imports torch before it can write its first case: about 1.3 s of
CPU, which on a small machine is taken from the forward passes of the next case (one pass of the default 3d_fullres
network on two cores: 1.26 s alone, 2.3 s beside that import). A worker forked once the command has imported torch
has it already, starts in milliseconds and shares the command's pages.

Forking is safe only where no other thread could hold something the child needs. Threads do not survive a fork:
a lock one of them held stays locked in the child, and OpenMP's thread pool in particular, once started, makes the
child wait forever at its first parallel region. So the command forks only if it imported torch itself just before
(nothing has computed with it: no OpenMP thread exists) and no other Python thread runs. Native threads of BLAS
libraries (numpy's and scipy's OpenBLAS start theirs when imported) are no obstacle: OpenBLAS stops them before a
fork and restarts them when needed. Elsewhere (other platforms, torch used before, library calls) the predictor
spawns its workers as before. The pool waits here until the predictor takes it (``take``); a command releases it
whichever way it ends.
"""
from __future__ import annotations

import gc
import logging
import sys
import threading
import warnings
from typing import Optional

from nnunetv2.inference import prestarted_preprocessing
from nnunetv2.utilities.watched_pool import WatchedPool

logger = logging.getLogger(__name__)

_waiting: Optional[WatchedPool] = None


def fork_export_pool(num_workers: int, torch_just_imported: bool) -> bool:
    """Fork ``num_workers`` export workers now, where that is safe (see module docstring): ``torch_just_imported``
    says that the caller imported torch itself and has not computed with it. Returns whether it was done."""
    global _waiting
    if num_workers < 1 or not torch_just_imported or not sys.platform.startswith('linux') \
            or threading.active_count() != 1:
        return False
    release_unused()
    # objects that exist now are never collected in the workers: their collector would otherwise write to every
    # page holding one and so copy the command's memory into each worker
    gc.freeze()
    try:
        with warnings.catch_warnings():
            # Python >= 3.12 warns about forking beside any native thread; OpenBLAS's are safe (see module docstring)
            warnings.simplefilter('ignore', DeprecationWarning)
            _waiting = WatchedPool(num_workers, 'export worker', '-nps', initializer=_in_forked_worker,
                                   start_method='fork')
    finally:
        gc.unfreeze()
    logger.debug('forked %d export worker(s)', num_workers)
    return True


def _in_forked_worker() -> None:
    # the fork copied the command's ends of the prestarted preprocessing workers' pipes: closed here, so that a worker
    # the command releases sees the end of its pipe at once, not when this process exits
    prestarted_preprocessing.forget_in_child()


def take(num_workers: int) -> Optional[WatchedPool]:
    """The forked pool if it has ``num_workers`` workers (the predictor's count); otherwise it is stopped and None
    returned, and the predictor starts its own."""
    global _waiting
    pool, _waiting = _waiting, None
    if pool is not None and pool.num_processes != num_workers:
        pool.terminate()
        return None
    return pool


def release_unused() -> None:
    """Stop a forked pool nobody took (the end of a command's entry point, whichever way it ends)."""
    global _waiting
    pool, _waiting = _waiting, None
    if pool is not None:
        pool.terminate()
