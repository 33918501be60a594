"""Run one task per case in ``spawn`` worker processes (fingerprint extraction, the dataset integrity check).

A thin layer over ``WatchedPool``: results in case order, a progress bar, a worker's exception re-raised with its
traceback, and a worker that dies (e.g. killed by the out-of-memory killer) stops the run naming its case.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

from tqdm import tqdm

from nnunetv2.utilities.freed_memory import release_freed_memory
from nnunetv2.utilities.watched_pool import WatchedPool
from nnunetv2.utilities.worker_processes import requested_processes, worker_count

# fingerprint extraction and the integrity check run with nnUNetv2_plan_and_preprocess's -npfp, or with the -np of
# nnUNetv2_extract_fingerprint
FINGERPRINT_FLAG = "-npfp (-np of nnUNetv2_extract_fingerprint)"


class CaseRunner:
    """Rounds of one task per case on one set of workers (spawned once, or none: in-process when ``num_processes``
    <= 1 or there is one case). Use as a context manager; leaving it stops the workers."""

    def __init__(self, case_names: Sequence[str], num_processes: int, flag: str = FINGERPRINT_FLAG):
        n = len(case_names)
        self.names = [f"case {c}" for c in case_names]
        self.pool = WatchedPool(worker_count(num_processes, n), "worker process", flag) \
            if requested_processes(num_processes) > 1 and n > 1 else None

    def map(self, func: Callable, tasks: Sequence[tuple], desc: Optional[str] = None,
            show_progress_bar: bool = True) -> List[Any]:
        """``[func(*t) for t in tasks]`` (one task per case, in case order); a progress bar where ``desc`` is given."""
        with tqdm(total=len(tasks), desc=desc, disable=desc is None or not show_progress_bar) as bar:
            if self.pool is None:
                results = []
                for t in tasks:
                    results.append(func(*t))
                    release_freed_memory()
                    bar.update()
                return results
            return self.pool.starmap(func, tasks, names=self.names, chunksize=1, on_done=bar.update)

    def __enter__(self) -> "CaseRunner":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()


def run_cases(func: Callable, tasks: Sequence[tuple], case_names: Sequence[str], num_processes: int,
              desc: str, show_progress_bar: bool = True, flag: str = FINGERPRINT_FLAG) -> List[Any]:
    """``[func(*t) for t in tasks]``, computed by up to ``num_processes`` spawned workers (in-process if <= 1).

    Results keep the order of ``tasks``. ``flag`` is the setting named when a worker dies of memory exhaustion.
    """
    with CaseRunner(case_names, num_processes, flag) as runner:
        return runner.map(func, tasks, desc, show_progress_bar)
