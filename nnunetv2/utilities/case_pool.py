"""Run one task per case in ``spawn`` worker processes, noticing dead workers instead of hanging
(used by fingerprint extraction and the dataset integrity check).

``multiprocessing.Pool`` silently replaces a worker that was killed (e.g. by the out-of-memory killer) and the
task it was running never finishes. Every worker therefore reports ``(pid, task index)`` on a synchronous queue
when it starts a task; the main process polls every 0.1 s and, when any worker process has exited, names the
case that worker was processing and stops.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from tqdm import tqdm

from nnunetv2.errors import UserError

_started_queue = None  # set in each worker by _init_worker


def _init_worker(queue) -> None:
    global _started_queue
    _started_queue = queue


def _run_task(index: int, func: Callable, args: tuple) -> Any:
    if _started_queue is not None:
        _started_queue.put((os.getpid(), index))
    return func(*args)


def _drain(queue, running: Dict[int, int]) -> None:
    while not queue.empty():
        pid, index = queue.get()
        running[pid] = index


def run_cases(func: Callable, tasks: Sequence[tuple], case_names: Sequence[str], num_processes: int,
              desc: str, show_progress_bar: bool = True) -> List[Any]:
    """``[func(*t) for t in tasks]``, computed by ``num_processes`` spawned workers (in-process if <= 1).

    Results keep the order of ``tasks``. An exception in a worker is re-raised here. A worker that dies raises a
    ``UserError`` naming the case it was working on.
    """
    n = len(tasks)
    with tqdm(total=n, desc=desc, disable=not show_progress_bar) as bar:
        if num_processes <= 1 or n <= 1:
            results = []
            for t in tasks:
                results.append(func(*t))
                bar.update()
            return results
        ctx = multiprocessing.get_context('spawn')
        queue = ctx.SimpleQueue()
        with ctx.Pool(min(num_processes, n), initializer=_init_worker, initargs=(queue,)) as pool:
            asyncs = [pool.apply_async(_run_task, (i, func, tuple(t))) for i, t in enumerate(tasks)]
            seen = {}      # pid -> Process: every worker process ever observed in the pool
            running: Dict[int, int] = {}
            remaining = list(range(n))
            while remaining:
                still = []
                for i in remaining:
                    if asyncs[i].ready():
                        asyncs[i].get()  # re-raises a worker's exception right away
                        bar.update()
                    else:
                        still.append(i)
                remaining = still
                if not remaining:
                    break
                for p in list(pool._pool):  # noqa: SLF001 - the pool offers no public view of its workers
                    seen.setdefault(p.pid, p)
                dead = [p for p in seen.values() if p.exitcode is not None]
                if dead:
                    _drain(queue, running)
                    _raise_worker_died(dead, running, remaining, case_names)
                asyncs[remaining[0]].wait(0.1)
            return [a.get() for a in asyncs]


def _raise_worker_died(dead: list, running: Dict[int, int], remaining: List[int],
                       case_names: Sequence[str]) -> None:
    cases: List[str] = []
    for p in dead:
        index: Optional[int] = running.get(p.pid)
        if index is not None and index in remaining:
            cases.append(case_names[index])
    codes = ', '.join(str(p.exitcode) for p in dead)
    if not cases:  # it died before taking a task: usually it could not start (its error is printed above)
        raise UserError(f"A worker process exited (exit code {codes}) before it started on any case; see the error "
                        f"printed above.", "Run with num_processes=1 to see the problem in the main process.")
    raise UserError(f"A worker process died (exit code {codes}) while processing case {', '.join(cases)}; most "
                    f"likely it ran out of memory (killed by the operating system).",
                    "Use fewer processes (-np / -npfp / num_processes) or free memory, then run again.")
