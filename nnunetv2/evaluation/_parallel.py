"""Run one function over many argument tuples, in a ``spawn`` process pool or in-process.

Shared by evaluation, postprocessing and ensembling. ``spawn`` (not fork) because callers often have torch threads
running, and forking a multi-threaded process can deadlock. With one process or one task the work is done in the
calling process: the results are identical and the pool start-up (seconds) is saved.
"""
from __future__ import annotations

import multiprocessing
from typing import Any, Callable, List, Sequence


def starmap(fn: Callable, list_of_args: Sequence[tuple], num_processes: int) -> List[Any]:
    """``[fn(*a) for a in list_of_args]`` in order; parallel when ``num_processes > 1`` and there are several tasks.

    ``fn`` must be a module-level function (it is pickled by name for the workers).
    """
    list_of_args = list(list_of_args)
    n = min(max(int(num_processes), 1), len(list_of_args))
    if n <= 1:
        return [fn(*a) for a in list_of_args]
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        return pool.starmap(fn, list_of_args)
