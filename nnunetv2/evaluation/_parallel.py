"""Run one function over many argument tuples, in a ``spawn`` process pool or in-process.

Shared by evaluation, postprocessing and ensembling (their ``-np``). ``spawn`` (not fork) because callers often have
torch threads running, and forking a multi-threaded process can deadlock. With one process or one task the work is
done in the calling process: the results are identical and the pool start-up (seconds) is saved. The pool is a
``WatchedPool``: a worker killed by the out-of-memory killer is reported instead of waited for forever.

Multi-step jobs (determine_postprocessing evaluates and rewrites a folder several times) wrap their steps in
``shared_pool(n)`` so that every ``starmap`` inside reuses one pool instead of starting a new one each time.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, List, Optional, Sequence

from nnunetv2.utilities.watched_pool import WatchedPool
from nnunetv2.utilities.worker_processes import requested_processes, worker_count

_shared: Optional[WatchedPool] = None  # while a shared_pool context is active in this process
_WHAT, _FLAG = "worker process", "-np"


@contextlib.contextmanager
def shared_pool(num_processes: Optional[int]) -> Iterator[None]:
    """Within this context, ``starmap`` calls use one pool of up to ``num_processes`` workers (none if <= 1)."""
    global _shared
    n = worker_count(num_processes, None)
    if _shared is not None or requested_processes(num_processes) <= 1 or n <= 1:
        yield  # nested (reuse the outer pool) or sequential anyway
        return
    with WatchedPool(n, _WHAT, _FLAG) as pool:
        _shared = pool
        try:
            yield
        finally:
            _shared = None


def _task_name(args: tuple) -> Optional[str]:
    """The file a task works on (its first text argument), for messages about a worker that died on it."""
    first = next((a for a in args if isinstance(a, str)), None)
    return None if first is None else os.path.basename(first)


def _progress_bar(total: int, desc: Optional[str]):
    """A progress bar on stderr where someone watches it (a terminal): evaluating, ensembling or postprocessing a
    large folder takes minutes, and the reference shows nothing meanwhile. Not in logs, notebooks or pipes (nor for a
    single task), where it would only add lines."""
    from tqdm import tqdm
    stderr_is_terminal = getattr(sys.stderr, "isatty", lambda: False)()
    return tqdm(total=total, desc=desc, unit="case", disable=desc is None or total < 2 or not stderr_is_terminal)


def starmap(fn: Callable, list_of_args: Sequence[tuple], num_processes: Optional[int],
            desc: Optional[str] = None) -> List[Any]:
    """``[fn(*a) for a in list_of_args]`` in order; parallel when ``num_processes > 1`` and there are several tasks.

    ``fn`` must be a module-level function (it is pickled by name for the workers). ``desc`` names the work in a
    progress bar (shown on a terminal only).
    """
    list_of_args = [tuple(a) for a in list_of_args]
    n = worker_count(num_processes, len(list_of_args))
    with _progress_bar(len(list_of_args), desc) as bar:
        if n <= 1 or requested_processes(num_processes) <= 1:
            results = []
            for a in list_of_args:
                results.append(fn(*a))
                bar.update()
            return results
        names = [_task_name(a) for a in list_of_args]
        if _shared is not None:
            return _shared.starmap(fn, list_of_args, names, on_done=bar.update)
        with WatchedPool(n, _WHAT, _FLAG) as pool:
            return pool.starmap(fn, list_of_args, names, on_done=bar.update)
