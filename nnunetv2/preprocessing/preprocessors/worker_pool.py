"""Run ``run_case_save`` for many cases in spawned worker processes, with a progress bar and no hangs.

A ``multiprocessing.Pool`` silently replaces a worker that was killed (e.g. by the kernel's out-of-memory killer)
and then waits forever for its task. Here each worker reports which case it starts and finishes over its own pipe
(synchronous sends: a queue's feeder thread could lose the last messages of a killed process), the parent polls the
workers' exit codes, and a worker that dies stops the whole run with a message that names the case and the likely
cause. An exception inside a worker is re-raised in the parent, naming the case.
"""
from __future__ import annotations

import multiprocessing
import pickle
import signal
import traceback
from multiprocessing.connection import wait
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from nnunetv2.errors import UserError

POLL_SECONDS = 0.1
Task = Tuple[str, Tuple[str, List[str], Optional[str]]]  # (case, (output_filename_truncated, image_files, seg_file))


def _worker_main(worker_id: int, preprocessor, plans: dict, configuration_name: str, dataset_json: dict,
                 task_queue, connection) -> None:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration_name)
    while True:
        item = task_queue.get()
        if item is None:
            return
        case, (output_filename_truncated, image_files, seg_file) = item
        connection.send(('start', worker_id, case, None))
        try:
            preprocessor.run_case_save(output_filename_truncated, image_files, seg_file, plans_manager,
                                       configuration_manager, dataset_json)
        except BaseException as e:  # report everything, including KeyboardInterrupt/SystemExit in the worker
            connection.send(('error', worker_id, case, _pack_exception(e)))
            return
        connection.send(('done', worker_id, case, None))



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
            return (f"it was killed by {name}, most likely by the operating system because it ran out of memory. "
                    f"Use fewer processes (-np) or free memory")
        return f"it was killed by {name}"
    return f"it exited unexpectedly with exit code {exitcode}"


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

    def receive(self, connections, timeout: float) -> None:
        """Handle every message that arrives within ``timeout`` seconds (pipes of exited workers: until EOF)."""
        for conn in wait(connections, timeout=timeout):
            while conn.poll():
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    connections.remove(conn)
                    break
                self.handle(message)


def run_cases_in_workers(preprocessor, tasks: Sequence[Task], plans: dict, configuration_name: str,
                         dataset_json: dict, num_processes: int, show_progress_bar: bool = True) -> None:
    """Process ``tasks`` with ``num_processes`` spawned workers; returns when all are done, raises on failure."""
    if not tasks:
        return
    ctx = multiprocessing.get_context('spawn')
    task_queue = ctx.Queue()
    n_workers = max(1, min(int(num_processes), len(tasks)))
    for task in tasks:
        task_queue.put(task)
    for _ in range(n_workers):
        task_queue.put(None)
    pipes = [ctx.Pipe(duplex=False) for _ in range(n_workers)]
    workers = [ctx.Process(target=_worker_main, daemon=True,
                           args=(i, preprocessor, plans, configuration_name, dataset_json, task_queue, pipes[i][1]))
               for i in range(n_workers)]
    connections = [reader for reader, _ in pipes]
    try:
        for w in workers:
            w.start()
        for _, writer in pipes:
            writer.close()  # the parent keeps only the reading ends, so a dead worker's pipe reports EOF
        with tqdm(total=len(tasks), desc="Preprocessing cases", disable=not show_progress_bar) as bar:
            state = _RunState(n_workers, bar)
            while state.finished < len(tasks):
                state.receive(connections, POLL_SECONDS)
                _check_workers_alive(workers, state, connections)
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


def _check_workers_alive(workers, state: _RunState, connections) -> None:
    """Raise if a worker died without reporting (a crash or a kill; exceptions are reported, not detected here)."""
    for worker_id, w in enumerate(workers):
        if w.exitcode is None:
            continue
        state.receive(connections, 0)  # whatever it sent before exiting
        if w.exitcode == 0 and state.current[worker_id] is None:
            continue  # finished its share normally
        case = state.current[worker_id]
        what = f"while preprocessing case {case}" if case is not None else "between two cases"
        raise RuntimeError(f"A preprocessing worker process died {what}: {_describe_exit(w.exitcode)}. "
                           f"Preprocessing was stopped.")
