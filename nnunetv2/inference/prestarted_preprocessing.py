"""Preprocessing workers started by a prediction command before it imports torch and loads the model.

A spawned preprocessing worker spends its first second starting Python and importing numpy, SimpleITK, scipy and
the preprocessors; only then does it read the first case. Started when the model is loaded, as a library call starts
them, the command waits for all of that (1.5 s on two cores, of 11 s for three CT volumes without TTA). Started
first, they import while the command does: ``prestart`` starts them, and the data iterator (data_iterators) hands
them their cases instead of starting its own (``take``). Workers the iterator does not take (fewer cases than
guessed, or a run that fails before predicting) read the end of their pipe and exit.

Where the command can already tell which cases the predictor will hand out (the model folder's plans and
dataset.json, the input folder, the flags), it hands them over at once (``prestart`` with tasks), so the first cases
are preprocessed while torch is still being imported. The iterator then adopts such workers only if what it would
hand them is exactly what they got (``same_task``); otherwise they are stopped and the iterator starts its own.

This module imports no torch: the command calls it before importing torch.
"""
from __future__ import annotations

import multiprocessing
from typing import Any, Callable, List, Optional, Sequence, Tuple

from nnunetv2.utilities.worker_processes import SharedFlag, start_worker

# the modules a preprocessing worker needs: imported while the task has not come yet
WARM_IMPORTS = ('nnunetv2.inference.preprocessing_workers',
                'nnunetv2.preprocessing.preprocessors.default_preprocessor',
                'nnunetv2.imageio.simpleitk_reader_writer')


Task = Tuple[Callable, tuple, bool]  # (worker_fn, its arguments before the queue and events, verbose)


class PrestartedWorker:
    """A started worker process, its queue and done flag (handed to it when it started, as spawned processes need),
    and the sending end of the pipe its task comes through; ``task`` is what it was handed, if anything yet."""

    def __init__(self, context, abort_event):
        receiver, self._sender = context.Pipe(duplex=False)
        self.queue = context.Queue(maxsize=1)
        self.done_event = SharedFlag(context)
        self.abort_event = abort_event
        self.task: Optional[Task] = None
        self.process = start_worker(context, _wait_for_task, (receiver, self.queue, self.done_event, abort_event))
        receiver.close()  # the worker has its own copy; with ours closed, its read ends when we close the sender

    def hand_over(self, worker_fn: Callable, args: Sequence, verbose: bool) -> None:
        """Run ``worker_fn(*args, queue, done_event, abort_event, verbose)`` in the worker (nothing to do if it got
        its task early: ``take`` has checked that it is this one)."""
        if self.task is not None:
            return
        self.task = (worker_fn, tuple(args), verbose)
        try:
            self._sender.send(self.task)
        except OSError:
            pass  # the worker is gone (killed): the iterator finds it dead and says so
        finally:
            self._sender.close()

    def release(self) -> None:
        """Not needed: a worker still waiting reads the end of the pipe and exits; one at work is stopped."""
        self._sender.close()
        if self.task is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)

    def close_pipe_copy(self) -> None:
        """In a process forked from the command: close the fork's copy of the sending end."""
        self._sender.close()


_waiting: List[PrestartedWorker] = []


def _wait_for_task(receiver, queue, done_event, abort_event) -> None:
    import importlib
    for module in WARM_IMPORTS:
        importlib.import_module(module)
    try:
        worker_fn, args, verbose = receiver.recv()
    except (EOFError, OSError):
        return
    finally:
        receiver.close()
    worker_fn(*args, queue, done_event, abort_event, verbose)


def prestart(num_workers: int, tasks: Optional[Sequence[Task]] = None) -> None:
    """Start ``num_workers`` preprocessing workers (spawn) that wait for their cases, or with ``tasks`` (one per
    worker) that start on them at once."""
    if num_workers < 1:
        return
    context = multiprocessing.get_context('spawn')
    abort_event = SharedFlag(context)
    workers = [PrestartedWorker(context, abort_event) for _ in range(num_workers)]
    _waiting.extend(workers)
    for worker, task in zip(workers, tasks or ()):
        worker.hand_over(*task)


def take(num_workers: int, tasks: Optional[Sequence[Task]] = None) -> List[PrestartedWorker]:
    """Up to ``num_workers`` prestarted workers (all sharing one abort event); the others are released. Empty where
    none were started (library calls). Workers handed their tasks early are taken only if ``tasks`` (what the caller
    would hand them, one per worker) are those tasks; otherwise they are stopped and none is taken."""
    taken = _waiting[:num_workers]
    for worker in _waiting[num_workers:]:
        worker.release()
    _waiting.clear()
    if any(w.task is not None for w in taken):
        if tasks is None or len(taken) != len(tasks) or not all(
                w.task is not None and same_task(w.task, t) for w, t in zip(taken, tasks)):
            for worker in taken:
                worker.release()
            return []
    return taken


def round_robin_tasks(worker_fn: Callable, per_case_lists: Sequence[Optional[Sequence]], shared_args: tuple,
                      num_workers: int, verbose: bool) -> List[Task]:
    """The task of each of ``num_workers`` workers: worker i gets cases i, i + n, i + 2n, ... of every per-case list
    (None stays None), then ``shared_args``. The data iterator takes its items from the workers in the same order."""
    return [(worker_fn, (*[None if lst is None else list(lst[i::num_workers]) for lst in per_case_lists],
                         *shared_args), verbose) for i in range(num_workers)]


def same_task(a: Task, b: Task) -> bool:
    """Whether two tasks do the same: the same function, and arguments equal where plans and configuration managers
    count by their content (the command builds its own from the same files the predictor reads)."""
    return _comparable(a) == _comparable(b)


def _comparable(x: Any) -> Any:
    if callable(x) and hasattr(x, '__qualname__'):
        return ('callable', getattr(x, '__module__', None), x.__qualname__)
    if isinstance(getattr(x, 'plans', None), dict):
        return (type(x).__qualname__, _comparable(x.plans))
    if isinstance(getattr(x, 'configuration', None), dict):
        return (type(x).__qualname__, _comparable(x.configuration))
    if isinstance(x, dict):
        return ('dict', tuple(sorted((repr(k), _comparable(v)) for k, v in x.items())))
    if isinstance(x, (list, tuple)):
        return ('seq', tuple(_comparable(v) for v in x))
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return ('object', id(x))  # anything else: equal only to itself


def forget_in_child() -> None:
    """In a process forked from the command: close the copies of the pipes' sending ends the fork made (a released
    worker sees the end of its pipe only once every copy is closed) and forget the workers."""
    for worker in _waiting:
        worker.close_pipe_copy()
    _waiting.clear()


def release_unused() -> None:
    """Let every prestarted worker nobody took exit (the end of a command's entry point, whichever way it ends)."""
    take(0)
