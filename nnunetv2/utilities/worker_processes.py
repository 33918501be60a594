"""How nnU-Net's worker processes start, fail and are reported: one home for every pool.

Fingerprint extraction, preprocessing, the predictor's preprocessing and export workers, evaluation, ensembling,
postprocessing and the training's augmentation workers all run work in child processes. Whatever the pool, a child

* is started by ``start_worker`` (or ``WatchedPool``): what it is handed stays referenced by its ``Process`` object
  for the child's whole life (``Process.start`` drops its own references at once, while a spawned child unpickles
  its arguments later; a synchronisation object freed in between is gone when the child looks for it);
* runs ``worker_setup`` first: Ctrl-C is the parent's business (the terminal sends SIGINT to the whole process
  group; a child that took it would print a KeyboardInterrupt traceback), and a child whose parent vanished (kill -9,
  the out-of-memory killer) exits instead of living on as an orphan;
* that raises packs the exception in a ``WorkerFailure``; the parent re-raises the original exception, chained from
  the child's traceback (a ``UserError`` or a full disk stays one line at the command line);
* that dies without a word is reported by ``WorkerDiedError``: which worker, what it was doing, and for a SIGKILL
  "probably out of memory: lower <the command's flag>";
* shares no lock with its parent that it could die holding: stop and done signals are ``SharedFlag``s, not
  ``multiprocessing.Event``s (a child killed inside an Event's method leaves the parent waiting forever).
"""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import traceback
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

from nnunetv2.errors import UserError
from nnunetv2.utilities.unguarded_main import refuse_workers_from_unguarded_main

# how often a child checks that its parent is still there
_PARENT_POLL_S = 1.0


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_process_count(value: Optional[int], flag: str, minimum: int = 1, hint: str = "") -> None:
    """UserError when a command's worker count ``flag`` is below ``minimum`` (None: one per CPU, fine). A pool of
    no or a negative number of workers cannot run anything; some pools would hang, others silently run in-process."""
    if value is not None and value < minimum:
        least = "at least 1" if minimum == 1 else f"{minimum} or more"
        raise UserError(f"{flag} must be {least} (a number of worker processes), got {value}.",
                        hint or f"E.g. {flag} 4.")


def requested_processes(requested: Optional[int]) -> int:
    """A process count as callers pass it: ``None`` means one per CPU (what ``multiprocessing.Pool(None)`` starts,
    and what clients such as MONAI's runner pass when they leave the choice to nnU-Net); anything else as an int."""
    return usable_cpus() if requested is None else int(requested)


def worker_count(requested: Optional[int], n_tasks: Optional[int], cap_by_cpus: bool = True) -> int:
    """How many workers to start for ``n_tasks`` independent tasks when ``requested`` were asked for: never more
    than there are tasks (None: tasks not known yet, a pool that serves whatever comes), and (``cap_by_cpus``) never
    more than CPUs: further processes cannot run at the same time, they only add start-up time and memory. At least 1
    (0 tasks: 1, the callers run nothing then)."""
    n = requested_processes(requested)
    if n_tasks is not None:
        n = min(n, max(int(n_tasks), 1))
    if cap_by_cpus:
        n = min(n, usable_cpus())
    return max(1, n)


# ------------------------------------------------------------------------------------------------ the child's side
def worker_setup(parent_pid: int, direct_child: bool = True) -> None:
    """First thing in every worker process: ignore Ctrl-C (the parent stops its workers) and exit when the parent
    is gone. SIGINT was blocked while the parent started this process (``sigint_blocked``), so no Ctrl-C can have
    reached it before this; a pending one is discarded when it becomes ignored.

    ``direct_child``: started by ``parent_pid`` itself (spawn, fork), not by a forkserver (whose server process
    ends with the main process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if os.name == "posix":
        parent_now = os.getppid()
        if direct_child and parent_now != parent_pid:
            os._exit(1)  # the parent died while this process was starting (it was handed to init or a subreaper)
        threading.Thread(target=_exit_when_orphaned, args=(parent_now,), daemon=True,
                         name="nnunet_parent_watch").start()


def _exit_when_orphaned(parent_pid: int) -> None:
    import time
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_S)
    os._exit(1)  # no cleanup: files are written under temporary names, nothing final is half-written


def _child_main(parent_pid: int, direct_child: bool, target: Callable, args: tuple, kwargs: dict) -> None:
    worker_setup(parent_pid, direct_child)
    target(*args, **kwargs)


# ------------------------------------------------------------------------------------------------ the parent's side
@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while children are started: they inherit the mask (through fork and exec) and
    keep Ctrl-C out until ``worker_setup`` ignores it; a Ctrl-C meanwhile reaches this process when it ends.

    The mask alone does not hold Ctrl-C back from this process: the kernel hands a SIGINT for the process to any
    thread that does not block it (nnUNetv2_train has several by then), and Python then runs the handler in the main
    thread all the same, e.g. in the middle of ``multiprocessing.Pool()``, which cleans up only after an
    ``Exception``: its spawned workers outlived their semaphores and printed FileNotFoundError tracebacks. In the
    main thread the handler is therefore held back too: a Ctrl-C meanwhile is noted and handed to it at the end."""
    held: list = []
    handler = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    # None: not in the main thread, or installed outside Python (cannot be put back); ignored: nothing to hold back
    replaced = handler is not None and handler != signal.SIG_IGN
    if replaced:
        signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if hasattr(signal, "pthread_sigmask") \
        else None
    try:
        yield
    finally:
        if replaced:
            signal.signal(signal.SIGINT, handler)
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a SIGINT still pending goes to ``handler`` now
        if held:
            if callable(handler):
                handler(signal.SIGINT, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def start_worker(context, target: Callable, args: Sequence = (), kwargs: Optional[dict] = None,
                 daemon: bool = True, name: Optional[str] = None):
    """Start ``target(*args, **kwargs)`` in a ``context.Process`` (a multiprocessing context, or the module itself
    for the default start method) set up by ``worker_setup``; return the started process.

    The process object keeps ``args`` and ``kwargs`` referenced for as long as it exists: keep the process object
    (every pool does, to check on it) and what was handed to the child outlives the child's start-up."""
    kwargs = dict(kwargs or {})
    start_method = context.get_start_method()
    refuse_workers_from_unguarded_main(start_method)
    direct_child = start_method != "forkserver"
    p = context.Process(target=_child_main, args=(os.getpid(), direct_child, target, tuple(args), kwargs),
                        daemon=daemon, name=name)
    p._nnunet_handed_over = (tuple(args), kwargs)  # see the docstring: Process.start drops its own references
    with sigint_blocked():
        p.start()
    return p


class SharedFlag:
    """A flag that a parent and its workers set and read, with ``multiprocessing.Event``'s ``set``/``clear``/``is_set``
    but no lock (no ``wait``): one byte of shared memory.

    ``multiprocessing.Event`` takes a lock shared by all processes in each ``is_set()`` and ``set()``. A worker killed
    while it holds that lock (SIGKILL from the out-of-memory killer, SIGTERM to the whole process group from a
    scheduler) leaves it locked for good, and the parent's next ``set()`` or ``is_set()`` waits forever. Workers poll
    their stop flags many times a second, so a signal to the group can land inside ``is_set()``."""

    def __init__(self, context=None):
        import multiprocessing
        self._value = (context or multiprocessing).RawValue('b', 0)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return self._value.value != 0


# ------------------------------------------------------------------------------------------------ reporting
class WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker process (the ``__cause__`` of the re-raised exception)."""

    def __init__(self, where: str, formatted: str):
        super().__init__(f"in {where}:\n{formatted}")


class WorkerError(RuntimeError):
    """A worker's exception that could not travel to the parent as itself; the message carries its traceback."""


class WorkerDiedError(UserError):
    """A worker process ended without reporting an exception: killed (out of memory, by a user) or crashed."""


class WorkerFailure:
    """An exception raised in a worker process, in a form that always pickles; ``reraise`` in the parent."""

    def __init__(self, exc: BaseException):
        self.type_name = type(exc).__name__
        self.message = str(exc)
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            self.pickled: Optional[bytes] = pickle.dumps(exc)
            pickle.loads(self.pickled)
        except Exception:  # an exception that cannot travel as itself travels as text
            self.pickled = None

    def exception(self) -> Optional[BaseException]:
        if self.pickled is None:
            return None
        try:
            return pickle.loads(self.pickled)
        except Exception:
            return None

    def reraise(self, where: str, error_class: type = WorkerError) -> None:
        """Raise the worker's exception here, chained from its traceback in the worker (``where``: which worker,
        doing what); a ``UserError`` or an OSError about the user's disk stays one line at the command line. One
        that cannot be raised as itself (not picklable; SystemExit) is raised as ``error_class`` with the traceback
        in its text."""
        original = self.exception()
        if isinstance(original, Exception):
            raise original from WorkerTraceback(where, self.traceback)
        raise error_class(f"{self.type_name} in {where}: {self.message}\n"
                          f"Traceback in the worker process:\n{self.traceback}")


def describe_exit(exitcode: Optional[int], flag: str) -> Tuple[str, str]:
    """(how a worker ended, its likely cause and remedy or ''), e.g. ('was killed by signal 9 (SIGKILL)',
    'probably out of memory: lower -np (or free memory)'); ``flag`` names the setting that sets the worker count."""
    if exitcode is None:
        return "is still running", ""
    if exitcode >= 0:
        return f"exited with exit code {exitcode}", "its error, if any, is printed above"
    signum = -exitcode
    try:
        name = f"signal {signum} ({signal.Signals(signum).name})"
    except ValueError:
        name = f"signal {signum}"
    if signum == getattr(signal, "SIGKILL", 9):
        return f"was killed by {name}", f"probably out of memory: lower {flag} (or free memory)"
    if signum == getattr(signal, "SIGBUS", -1):
        return f"was killed by {name}", f"probably out of shared memory (/dev/shm): lower {flag} (or free it)"
    return f"was killed by {name}", ""


def death_message(what: str, process: Any, flag: str, doing: Optional[str] = None) -> str:
    """'A <what> (pid N) was killed by signal 9 (SIGKILL) while <doing>, probably out of memory: lower <flag> (or
    free memory).' for a worker that ended without reporting; ``process`` is the Process or its exit code."""
    pid = getattr(process, "pid", None)
    exitcode = getattr(process, "exitcode", process)
    ended, cause = describe_exit(exitcode, flag)
    article = "An" if what[:1].lower() in "aeiou" else "A"
    who = f"{article} {what} (pid {pid})" if pid is not None else f"{article} {what}"
    during = f" while {doing}" if doing else ""
    return f"{who} {ended}{during}" + (f", {cause}." if cause else ".")


def raise_worker_died(what: str, process: Any, flag: str, doing: Optional[str] = None) -> None:
    raise WorkerDiedError(death_message(what, process, flag, doing))
