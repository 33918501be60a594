"""Run ``run_case_save`` for many cases in spawned worker processes, with a progress bar and no hangs.

A ``multiprocessing.Pool`` silently replaces a worker that was killed (e.g. by the kernel's out-of-memory killer)
and then waits forever for its task. Here each worker reports which case it starts and finishes over its own pipe
(synchronous sends: a queue's feeder thread could lose the last messages of a killed process), the parent polls the
workers' exit codes, and a worker that dies stops the whole run with a message that names the case and the likely
cause. An exception inside a worker is re-raised in the parent with the worker's traceback. Starting, failing and
reporting work as for every other pool (nnunetv2.utilities.worker_processes).
"""
from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import pickle
from multiprocessing.connection import wait
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from nnunetv2.utilities.input_checks import label_key
from nnunetv2.utilities.worker_processes import WorkerFailure, raise_worker_died, start_worker, worker_count

POLL_SECONDS = 0.1
Task = Tuple[str, Tuple[str, List[str], Optional[str]]]  # (case, (output_filename_truncated, image_files, seg_file))


def _worker_main(worker_id: int, task_queue, connection) -> None:
    """Process tasks until a ``None`` arrives. A task names its run; the run's setup (preprocessor, plans,
    configuration, dataset.json; pickled once by the parent) is unpacked when the run changes, so one preprocessor
    instance serves all cases of a run, as before, and a worker can serve several runs (configurations)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    current_run = None
    while True:
        item = task_queue.get()
        if item is None:
            return
        run_id, setup, case, (output_filename_truncated, image_files, seg_file) = item
        _report(connection, ('start', worker_id, case, None))
        try:
            if run_id != current_run:
                preprocessor, plans, configuration_name, dataset_json = pickle.loads(setup)
                plans_manager = PlansManager(plans)
                configuration_manager = plans_manager.get_configuration(configuration_name)
                current_run = run_id
            preprocessor._labels_found = None  # set by our run_case_save (not by an override that skips it)
            preprocessor.run_case_save(output_filename_truncated, image_files, seg_file, plans_manager,
                                       configuration_manager, dataset_json)
            found = getattr(preprocessor, '_labels_found', None)
            found = None if found is None else [label_key(key) for key in found]
        except BaseException as e:  # report everything, including SystemExit in the worker
            _report(connection, ('error', worker_id, case, WorkerFailure(e)))
            return
        _report(connection, ('done', worker_id, case, found))


def _report(connection, message) -> None:
    try:
        connection.send(message)
    except (BrokenPipeError, ConnectionResetError):
        os._exit(1)  # the parent is gone (killed): nobody to report to, and no traceback to print


class _Workers:
    """``n`` spawned worker processes sharing one task queue, each reporting on its own pipe."""

    def __init__(self, n: int):
        ctx = multiprocessing.get_context('spawn')
        self.n = n
        self.task_queue = ctx.Queue()
        pipes = [ctx.Pipe(duplex=False) for _ in range(n)]
        self.processes = []
        self.connections = [reader for reader, _ in pipes]
        try:
            for i in range(n):
                self.processes.append(start_worker(ctx, _worker_main, (i, self.task_queue, pipes[i][1])))
        finally:
            for _, writer in pipes:
                writer.close()  # the parent keeps only the reading ends, so a dead worker's pipe reports EOF

    def close(self, graceful: bool) -> None:
        """Let the workers finish (``graceful``) or stop them now; always waits for them to exit."""
        if graceful:
            for _ in self.processes:
                self.task_queue.put(None)
            for w in self.processes:
                if w.pid is not None:
                    w.join(timeout=60)
        for w in self.processes:
            if w.is_alive():
                w.terminate()
        for w in self.processes:
            if w.pid is not None:
                w.join(timeout=5)
        if graceful and all(w.exitcode == 0 for w in self.processes):
            self.task_queue.close()  # everything was consumed: flush and stop the feeder thread
            self.task_queue.join_thread()
        else:
            self.task_queue.cancel_join_thread()


class _Session:
    """The workers kept alive between runs of one ``worker_session`` block."""

    def __init__(self):
        self.workers: Optional[_Workers] = None

    def workers_for(self, n: int) -> _Workers:
        if self.workers is None or self.workers.n != n:
            self.drop(graceful=True)
            self.workers = _Workers(n)
        return self.workers

    def drop(self, graceful: bool) -> None:
        if self.workers is not None:
            self.workers.close(graceful)
            self.workers = None


_session: Optional[_Session] = None  # set while a worker_session block is open
_run_counter = itertools.count()


@contextlib.contextmanager
def worker_session():
    """Keep the worker processes alive between ``run_cases_in_workers`` calls made inside this block (e.g. the
    configurations of one dataset), so each configuration does not pay for starting processes and importing
    numpy/scipy/SimpleITK/blosc2 again. Outside a session every call starts and stops its own workers."""
    global _session
    if _session is not None:  # nested: the outer session owns the workers
        yield
        return
    _session = _Session()
    try:
        yield
    finally:
        session, _session = _session, None
        session.drop(graceful=True)


class _RunState:
    """What the parent knows: which case each worker is on, and how many cases are done."""

    def __init__(self, n_workers: int, bar):
        self.current: Dict[int, Optional[str]] = {i: None for i in range(n_workers)}
        self.finished = 0
        self.bar = bar
        self.labels_found: Optional[set] = set()  # None once a case did not say (a run_case_save of a subclass)

    def handle(self, message) -> None:
        kind, worker_id, case, payload = message
        if kind == 'start':
            self.current[worker_id] = case
        elif kind == 'done':
            self.current[worker_id] = None
            self.finished += 1
            self.bar.update()
            if payload is None or self.labels_found is None:
                self.labels_found = None
            else:
                self.labels_found.update(payload)
        else:
            payload.reraise(f"preprocessing worker (case {case})")

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
                         dataset_json: dict, num_processes: int, show_progress_bar: bool = True) -> Optional[set]:
    """Process ``tasks`` with ``num_processes`` spawned workers; returns when all are done, raises on failure. Returns
    the labels and regions (class_locations keys) that at least one case holds, or None where a case did not say."""
    if not tasks:
        return None
    n_workers = worker_count(num_processes, len(tasks))
    setup = pickle.dumps((preprocessor, plans, configuration_name, dataset_json))
    run_id = next(_run_counter)
    session = _session
    workers = session.workers_for(n_workers) if session is not None else _Workers(n_workers)
    succeeded = False
    try:
        for case, task in tasks:
            workers.task_queue.put((run_id, setup, case, task))
        connections = list(workers.connections)
        with tqdm(total=len(tasks), desc="Preprocessing cases", disable=not show_progress_bar) as bar:
            state = _RunState(n_workers, bar)
            while state.finished < len(tasks):
                state.receive(connections, POLL_SECONDS)
                _check_workers_alive(workers.processes, state, connections)
        succeeded = True
        return state.labels_found
    finally:
        if session is None:
            workers.close(graceful=succeeded)
        elif not succeeded:
            session.drop(graceful=False)  # a failed run leaves tasks or a broken worker behind: never reuse them


def _check_workers_alive(workers, state: _RunState, connections) -> None:
    """Raise if a worker died without reporting (a crash or a kill; exceptions are reported, not detected here)."""
    for worker_id, w in enumerate(workers):
        if w.exitcode is None:
            continue
        state.receive(connections, 0)  # whatever it sent before exiting
        if w.exitcode == 0 and state.current[worker_id] is None:
            continue  # finished its share normally
        case = state.current[worker_id]
        raise_worker_died("preprocessing worker", w, "-np",
                          f"preprocessing case {case}" if case is not None else "between two cases")
