"""Run ``run_case_save`` for many cases in spawned worker processes, with a progress bar and no hangs.

A ``multiprocessing.Pool`` silently replaces a worker that was killed (e.g. by the kernel's out-of-memory killer)
and then waits forever for its task. Here each worker reports which case it starts and finishes, the parent polls
the workers' exit codes, and a worker that dies stops the whole run with a message that names the case and the
likely cause. An exception inside a worker is re-raised in the parent, naming the case.
"""
from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import traceback
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from nnunetv2.errors import UserError

POLL_SECONDS = 0.1
Task = Tuple[str, Tuple[str, List[str], Optional[str]]]  # (case, (output_filename_truncated, image_files, seg_file))


def _worker_main(worker_id: int, preprocessor, plans: dict, configuration_name: str, dataset_json: dict,
                 task_queue, result_queue) -> None:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration_name)
    while True:
        item = task_queue.get()
        if item is None:
            return
        case, (output_filename_truncated, image_files, seg_file) = item
        result_queue.put(('start', worker_id, case, None))
        try:
            preprocessor.run_case_save(output_filename_truncated, image_files, seg_file, plans_manager,
                                       configuration_manager, dataset_json)
        except BaseException as e:  # report everything, including KeyboardInterrupt/SystemExit in the worker
            result_queue.put(('error', worker_id, case, _pack_exception(e)))
            return
        result_queue.put(('done', worker_id, case, None))


def _pack_exception(e: BaseException) -> Dict[str, Any]:
    packed = {'type': type(e).__name__, 'message': str(e), 'traceback': traceback.format_exc()}
    try:
        packed['pickled'] = pickle.dumps(e)
        pickle.loads(packed['pickled'])
    except Exception:  # unpicklable exceptions travel as text only
        packed.pop('pickled', None)
    return packed


def _describe_exit(exitcode: int) -> str:
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if -exitcode == signal.SIGKILL:
            return (f"was killed by {name}, most likely by the operating system because it ran out of memory. "
                    f"Use fewer processes (-np) or free memory")
        return f"was killed by {name}"
    return f"exited unexpectedly with exit code {exitcode}"


def _raise_worker_error(case: str, packed: Dict[str, Any]) -> None:
    original = None
    if 'pickled' in packed:
        try:
            original = pickle.loads(packed['pickled'])
        except Exception:
            original = None
    if isinstance(original, UserError):
        raise original
    raise RuntimeError(f"Preprocessing case {case} failed with {packed['type']}: {packed['message']}\n"
                       f"Traceback in the worker process:\n{packed['traceback']}") from original


class _RunState:
    """What the parent knows: which case each worker is on, and how many cases are done."""

    def __init__(self, n_workers: int, bar):
        self.current: Dict[int, Optional[str]] = {i: None for i in range(n_workers)}
        self.finished = 0
        self.bar = bar

    def handle(self, message) -> None:
        kind, worker_id, case, payload = message
        if kind == 'start':
            self.current[worker_id] = case
        elif kind == 'done':
            self.current[worker_id] = None
            self.finished += 1
            self.bar.update()
        else:
            _raise_worker_error(case, payload)

    def drain(self, result_queue) -> None:
        try:
            while True:
                self.handle(result_queue.get_nowait())
        except queue.Empty:
            pass


def run_cases_in_workers(preprocessor, tasks: Sequence[Task], plans: dict, configuration_name: str,
                         dataset_json: dict, num_processes: int, show_progress_bar: bool = True) -> None:
    """Process ``tasks`` with ``num_processes`` spawned workers; returns when all are done, raises on failure."""
    if not tasks:
        return
    ctx = multiprocessing.get_context('spawn')
    task_queue, result_queue = ctx.Queue(), ctx.Queue()
    n_workers = max(1, min(int(num_processes), len(tasks)))
    for task in tasks:
        task_queue.put(task)
    for _ in range(n_workers):
        task_queue.put(None)
    workers = [ctx.Process(target=_worker_main, daemon=True,
                           args=(i, preprocessor, plans, configuration_name, dataset_json, task_queue, result_queue))
               for i in range(n_workers)]
    try:
        for w in workers:
            w.start()
        with tqdm(total=len(tasks), desc="Preprocessing cases", disable=not show_progress_bar) as bar:
            state = _RunState(n_workers, bar)
            while state.finished < len(tasks):
                try:
                    message = result_queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    _check_workers_alive(workers, state, result_queue)
                    continue
                state.handle(message)
        for w in workers:
            w.join()
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
        for w in workers:
            if w.pid is not None:
                w.join(timeout=5)
        task_queue.cancel_join_thread()


def _check_workers_alive(workers, state: _RunState, result_queue) -> None:
    """Raise if a worker died without reporting (a crash or a kill; exceptions are reported, not detected here)."""
    for worker_id, w in enumerate(workers):
        if w.exitcode is None:
            continue
        # messages sent just before it exited may still be in the queue (a 'done', or an error that explains more)
        state.drain(result_queue)
        if w.exitcode == 0 and state.current[worker_id] is None:
            continue  # finished its share normally
        case = state.current[worker_id]
        what = f"while preprocessing case {case}" if case is not None else "between cases"
        raise RuntimeError(f"A preprocessing worker process {_describe_exit(w.exitcode)} {what}. "
                           f"Preprocessing was stopped.")
