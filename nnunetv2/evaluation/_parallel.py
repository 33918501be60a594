"""Run one function over many argument tuples, in a ``spawn`` process pool or in-process.

Shared by evaluation, postprocessing and ensembling. ``spawn`` (not fork) because callers often have torch threads
running, and forking a multi-threaded process can deadlock. With one process or one task the work is done in the
calling process: the results are identical and the pool start-up (seconds) is saved.

Multi-step jobs (determine_postprocessing evaluates and rewrites a folder several times) wrap their steps in
``shared_pool(n)`` so that every ``starmap`` inside reuses one pool instead of starting a new one each time.
"""
from __future__ import annotations

import contextlib
import multiprocessing
from typing import Any, Callable, Iterator, List, Optional, Sequence

_shared = None  # (pool, size) while a shared_pool context is active in this process


@contextlib.contextmanager
def shared_pool(num_processes: int) -> Iterator[None]:
    """Within this context, ``starmap`` calls use one pool of ``num_processes`` workers (none if <= 1)."""
    global _shared
    if _shared is not None or int(num_processes) <= 1:
        yield  # nested (reuse the outer pool) or sequential anyway
        return
    with multiprocessing.get_context("spawn").Pool(int(num_processes)) as pool:
        _shared = (pool, int(num_processes))
        try:
            yield
        finally:
            _shared = None


def starmap(fn: Callable, list_of_args: Sequence[tuple], num_processes: int) -> List[Any]:
    """``[fn(*a) for a in list_of_args]`` in order; parallel when ``num_processes > 1`` and there are several tasks.

    ``fn`` must be a module-level function (it is pickled by name for the workers).
    """
    list_of_args = list(list_of_args)
    n = min(max(int(num_processes), 1), len(list_of_args))
    if n <= 1:
        return [fn(*a) for a in list_of_args]
    pool: Optional[Any] = _shared[0] if _shared is not None else None
    if pool is not None:
        return pool.starmap(fn, list_of_args)
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        return pool.starmap(fn, list_of_args)
