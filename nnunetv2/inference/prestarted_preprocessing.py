"""Preprocessing workers started by a prediction command before it imports torch and loads the model.

A spawned preprocessing worker spends its first second starting Python and importing numpy, SimpleITK, scipy and
the preprocessors; only then does it read the first case. Started when the model is loaded, as a library call starts
them, the command waits for all of that (1.5 s on two cores, of 11 s for three CT volumes without TTA). Started
first, they import while the command does, and wait for their cases: ``prestart`` starts them, and the data
iterator (data_iterators) hands them their cases instead of starting its own (``take``). Workers the iterator does
not take (fewer cases than guessed, or a run that fails before predicting) read the end of their pipe and exit.

This module imports no torch: the command calls it before importing torch.
"""
from __future__ import annotations

import multiprocessing
from typing import Callable, List, Sequence

from nnunetv2.utilities.worker_processes import start_worker

# the modules a preprocessing worker needs: imported while the task has not come yet
WARM_IMPORTS = ('nnunetv2.inference.preprocessing_workers',
                'nnunetv2.preprocessing.preprocessors.default_preprocessor',
                'nnunetv2.imageio.simpleitk_reader_writer')


class PrestartedWorker:
    """A started worker process, its queue and done-event (handed to it when it started, as spawned processes need),
    and the sending end of the pipe its task comes through."""

    def __init__(self, context, abort_event):
        receiver, self._sender = context.Pipe(duplex=False)
        self.queue = context.Queue(maxsize=1)
        self.done_event = context.Event()
        self.abort_event = abort_event
        self.process = start_worker(context, _wait_for_task, (receiver, self.queue, self.done_event, abort_event))
        receiver.close()  # the worker has its own copy; with ours closed, its read ends when we close the sender

    def hand_over(self, worker_fn: Callable, args: Sequence, verbose: bool) -> None:
        """Run ``worker_fn(*args, queue, done_event, abort_event, verbose)`` in the worker."""
        try:
            self._sender.send((worker_fn, tuple(args), verbose))
        except OSError:
            pass  # the worker is gone (killed): the iterator finds it dead and says so
        finally:
            self._sender.close()

    def release(self) -> None:
        """Not needed: the worker reads the end of the pipe and exits."""
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


def prestart(num_workers: int) -> None:
    """Start ``num_workers`` preprocessing workers (spawn) that wait for their cases."""
    if num_workers < 1:
        return
    context = multiprocessing.get_context('spawn')
    abort_event = context.Event()
    _waiting.extend(PrestartedWorker(context, abort_event) for _ in range(num_workers))


def take(num_workers: int) -> List[PrestartedWorker]:
    """Up to ``num_workers`` prestarted workers (all sharing one abort event); the others are released. Empty where
    none were started (library calls)."""
    taken = _waiting[:num_workers]
    for worker in _waiting[num_workers:]:
        worker.release()
    _waiting.clear()
    return taken


def forget_in_child() -> None:
    """In a process forked from the command: close the copies of the pipes' sending ends the fork made (a released
    worker sees the end of its pipe only once every copy is closed) and forget the workers."""
    for worker in _waiting:
        worker.release()
    _waiting.clear()


def release_unused() -> None:
    """Let every prestarted worker nobody took exit (the end of a command's entry point, whichever way it ends)."""
    take(0)
