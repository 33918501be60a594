"""Run one task per case in ``spawn`` worker processes (fingerprint extraction, the dataset integrity check).

A thin layer over ``WatchedPool``: results in case order, a progress bar, a worker's exception re-raised with its
traceback, and a worker that dies (e.g. killed by the out-of-memory killer) stops the run naming its case.
"""
from __future__ import annotations

from typing import Any, Callable, List, Sequence

from tqdm import tqdm

from nnunetv2.utilities.watched_pool import WatchedPool
from nnunetv2.utilities.worker_processes import requested_processes, worker_count

# fingerprint extraction and the integrity check run with nnUNetv2_plan_and_preprocess's -npfp, or with the -np of
# nnUNetv2_extract_fingerprint
FINGERPRINT_FLAG = "-npfp (-np of nnUNetv2_extract_fingerprint)"


def run_cases(func: Callable, tasks: Sequence[tuple], case_names: Sequence[str], num_processes: int,
              desc: str, show_progress_bar: bool = True, flag: str = FINGERPRINT_FLAG) -> List[Any]:
    """``[func(*t) for t in tasks]``, computed by up to ``num_processes`` spawned workers (in-process if <= 1).

    Results keep the order of ``tasks``. ``flag`` is the setting named when a worker dies of memory exhaustion.
    """
    n = len(tasks)
    with tqdm(total=n, desc=desc, disable=not show_progress_bar) as bar:
        if requested_processes(num_processes) <= 1 or n <= 1:
            results = []
            for t in tasks:
                results.append(func(*t))
                bar.update()
            return results
        with WatchedPool(worker_count(num_processes, n), "worker process", flag) as pool:
            return pool.starmap(func, tasks, names=[f"case {c}" for c in case_names], chunksize=1,
                                on_done=bar.update)
