"""A process pool (``spawn`` unless asked otherwise) that reports its workers' deaths instead of waiting forever.

``multiprocessing.Pool`` quietly replaces a worker that was killed (e.g. by the out-of-memory killer), and the task
that worker was running never finishes. Here every worker notes which task it starts in a small shared array (no
pipe that could fill up, nothing lost when it is killed right after), the parent checks the workers every 0.1 s
while it waits, and a worker that died stops the pool with ``WorkerDiedError`` naming the task. Exceptions come back
as ``WorkerFailure`` (see worker_processes) and are re-raised with the worker's traceback. Workers ignore Ctrl-C and
exit when the parent is gone (worker_setup).

``starmap`` sends tasks in chunks, as ``Pool.starmap`` does, so many small tasks cost what they cost before.
"""
from __future__ import annotations

import bisect
import multiprocessing
import multiprocessing.pool
import os
import signal
from typing import Any, Callable, Dict, List, Optional, Sequence

from nnunetv2.utilities.freed_memory import release_freed_memory
from nnunetv2.utilities.unguarded_main import refuse_workers_from_unguarded_main
from nnunetv2.utilities.worker_processes import WorkerFailure, raise_worker_died, sigint_blocked, worker_setup

POLL_S = 0.1

_board = None  # in a worker: (shared array, this worker's row); the row holds (pid, index of its current task)
_parent_pid = None  # in a worker: the main process


def _init_worker(parent_pid: int, board, next_row, initializer: Optional[Callable], initargs: tuple) -> None:
    global _board, _parent_pid
    worker_setup(parent_pid)
    _parent_pid = parent_pid
    if hasattr(signal, "SIGPIPE"):
        # the pool's pipes lead only to the parent: when they break, the parent is gone, and a worker blocked in
        # sending a result should end quietly (the Unix default) instead of printing a BrokenPipeError
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    with next_row.get_lock():
        row = next_row.value
        next_row.value += 1
    if 2 * row + 1 < len(board):  # rows run out only after several replacement workers (we stop at the first)
        board[2 * row], board[2 * row + 1] = os.getpid(), -1
        _board = (board, row)
    if initializer is not None:
        initializer(*initargs)


def _run_chunk(first_index: int, fn: Callable, list_of_args: Sequence[tuple]) -> List[Any]:
    """Run tasks ``first_index, first_index + 1, ...``; stops at the first exception, returned as a failure."""
    results = []
    for i, args in enumerate(list_of_args):
        if _board is not None:
            _board[0][2 * _board[1] + 1] = first_index + i
        try:
            results.append(fn(*args))
        except BaseException as e:  # noqa: B902 - everything is reported to the parent, which re-raises it
            return results + [WorkerFailure(e)]
        finally:
            release_freed_memory()
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(1)  # orphaned (the parent was killed): sending the result would only print a BrokenPipeError
    return results


class Task:
    """One submitted task: ``WatchedPool.result(task)`` waits for its value."""

    def __init__(self, async_result, first_index: int, n: int):
        self.async_result, self.first_index, self.n = async_result, first_index, n

    def ready(self) -> bool:
        return self.async_result.ready()


class WatchedPool:
    """``num_processes`` workers, spawned unless ``start_method`` says otherwise. ``what`` names a worker in messages
    ('export worker'), ``flag`` the setting that sets their number ('-nps'). Use as a context manager; leaving it
    stops the workers, as leaving ``Pool``'s does (collect every result inside)."""

    def __init__(self, num_processes: int, what: str, flag: str, initializer: Optional[Callable] = None,
                 initargs: tuple = (), start_method: str = "spawn"):
        # "fork" only where the caller knows this process has a single thread (see forked_export_workers)
        refuse_workers_from_unguarded_main(start_method)
        context = multiprocessing.get_context(start_method)
        self.what, self.flag = what, flag
        self.num_processes = int(num_processes)
        self._board = context.RawArray("q", 2 * (2 * self.num_processes + 4))  # rows of (pid, task index)
        self._next_row = context.Value("i", 0)
        self._names: Dict[int, str] = {}
        self._next_index = 0
        self._tasks: List[Task] = []  # every chunk submitted, in order of their first task's index
        self._seen: Dict[int, Any] = {}  # pid -> Process: every worker ever in the pool
        self._closed = False  # close() was called: its workers exited on their own
        self._dismantled = False  # _dismantle_after_death() took the pool apart
        with sigint_blocked():  # also blocks it in the pool's helper threads, which start replacement workers
            self.pool = context.Pool(self.num_processes, initializer=_init_worker,
                                     initargs=(os.getpid(), self._board, self._next_row, initializer,
                                               tuple(initargs)))
        # known from the start: a worker that dies is replaced (and dropped from Pool's list) within 0.1 s, and a
        # death nobody looked at still has to be found when the pool is left (see terminate)
        self._every_worker()

    # ------------------------------------------------------------------------------------ submitting and waiting
    def submit(self, fn: Callable, args: tuple = (), name: Optional[str] = None) -> Task:
        """Run ``fn(*args)`` in a worker (``fn`` must be importable by name); ``name`` says what it works on."""
        return self._submit_chunk(fn, [tuple(args)], [name])

    def _submit_chunk(self, fn: Callable, list_of_args: List[tuple], names: Sequence[Optional[str]]) -> Task:
        first = self._next_index
        self._next_index += len(list_of_args)
        for i, name in enumerate(names):
            if name is not None:
                self._names[first + i] = name
        task = Task(self.pool.apply_async(_run_chunk, (first, fn, list_of_args)), first, len(list_of_args))
        self._tasks.append(task)
        return task

    def results(self, task: Task) -> List[Any]:
        """The values of a task's chunk, in order; re-raises a worker's exception; raises if a worker died."""
        while not task.async_result.ready():
            self.check_workers()
            task.async_result.wait(POLL_S)
        values = task.async_result.get()
        if values and isinstance(values[-1], WorkerFailure):
            index = task.first_index + len(values) - 1
            values[-1].reraise(f"{self.what} ({self._describe_task(index)})")
        return values

    def result(self, task: Task) -> Any:
        return self.results(task)[0]

    def starmap(self, fn: Callable, list_of_args: Sequence[tuple], names: Optional[Sequence[str]] = None,
                chunksize: Optional[int] = None, on_done: Optional[Callable[[int], None]] = None) -> List[Any]:
        """``[fn(*a) for a in list_of_args]`` computed by the workers, in order; ``on_done(k)`` is called as
        chunks of ``k`` tasks finish (a progress bar); ``names`` name the tasks in error messages."""
        list_of_args = [tuple(a) for a in list_of_args]
        n = len(list_of_args)
        if chunksize is None:  # Pool.starmap's choice: about four chunks per worker
            chunksize = max(1, -(-n // (4 * self.num_processes)))
        names = list(names) if names is not None else [None] * n
        tasks = [self._submit_chunk(fn, list_of_args[i:i + chunksize], names[i:i + chunksize])
                 for i in range(0, n, chunksize)]
        return self.collect(tasks, on_done)

    def collect(self, tasks: Sequence[Task], on_done: Optional[Callable[[int], None]] = None) -> List[Any]:
        """The values of all ``tasks`` (chunks flattened, in order). The first failure found is raised at once,
        whichever task it is in."""
        remaining = list(range(len(tasks)))
        while remaining:
            still = []
            for i in remaining:
                if tasks[i].ready():
                    self.results(tasks[i])  # raises a worker's exception now
                    if on_done is not None:
                        on_done(tasks[i].n)
                else:
                    still.append(i)
            remaining = still
            if remaining:
                self.check_workers()
                tasks[remaining[0]].async_result.wait(POLL_S)
        return [value for t in tasks for value in self.results(t)]

    def unfinished(self, tasks: Sequence[Task]) -> int:
        """How many of ``tasks`` are not done yet (raises if a worker died)."""
        self.check_workers()
        return sum(not t.ready() for t in tasks)

    def wait_for_capacity(self, tasks: Sequence[Task], allowed_queued: int) -> None:
        """Back-pressure: wait while every worker is busy and ``allowed_queued`` more tasks wait for one."""
        while self.unfinished(tasks) >= self.num_processes + allowed_queued:
            pending = next(t for t in tasks if not t.ready())
            pending.async_result.wait(POLL_S)

    # ------------------------------------------------------------------------------------ dead workers
    def check_workers(self) -> None:
        """Raise ``WorkerDiedError`` if a worker of this pool has exited (they only exit when the pool closes)."""
        dead = [p for p in self._every_worker() if p.exitcode is not None]
        if not dead:
            return
        p = dead[0]
        self._dismantle_after_death()
        rows = list(self._board)
        index = next((rows[i + 1] for i in range(0, len(rows), 2) if rows[i] == p.pid and rows[i + 1] >= 0), None)
        doing = None if index is None or self._delivered(index) else self._describe_task(index)
        raise_worker_died(self.what, p, self.flag, doing)

    def _delivered(self, index: int) -> bool:
        """Whether the chunk holding task ``index`` came back: its worker died idle, after that task."""
        chunk = bisect.bisect_right([t.first_index for t in self._tasks], index) - 1
        return chunk >= 0 and self._tasks[chunk].ready()

    def _describe_task(self, index: int) -> str:
        name = self._names.get(index)
        return f"processing {name}" if name is not None else f"processing task {index + 1}"

    # ------------------------------------------------------------------------------------ shutting down
    def close(self) -> None:
        """Let the workers finish their tasks and exit."""
        self._closed = True
        self.pool.close()
        self.pool.join()

    def terminate(self) -> None:
        """Stop the workers now (SIGTERM) and wait for them; where a worker died, kill them all (SIGKILL)."""
        if self._dismantled:
            return
        if not self._closed and any(p.exitcode is not None for p in self._every_worker()):
            self._dismantle_after_death()
            return
        self.pool.terminate()
        self.pool.join()

    def _every_worker(self) -> List[Any]:
        """Every worker process the pool has had (each one seen so far and the current ones), once each."""
        for p in list(self.pool._pool):  # noqa: SLF001 - the pool offers no public view of its workers
            self._seen.setdefault(p.pid, p)
        return list(self._seen.values())

    def _dismantle_after_death(self) -> None:
        """Take the pool apart without ``Pool.terminate``, which can wait forever once a worker died.

        A worker killed while it waited for work dies holding the lock on the task pipe's reading end (the lock has
        no owner: nothing frees it), and ``Pool.terminate`` takes that lock without a time limit; one killed while
        sending a result may leave the result pipe's write lock taken or half a message in it, and the pool's result
        thread then never ends. So: stop the thread that replaces dead workers, kill every worker, wait for them a
        little, and cancel the pool's own clean-up (also run at interpreter exit). The pool's helper threads may stay
        blocked on the pipes; they are daemon threads, and they end with the process."""
        if self._dismantled:
            return
        self._dismantled = True
        pool = self.pool
        # no replacement workers from here on: the worker handler leaves its loop when it sees TERMINATE
        pool._state = multiprocessing.pool.TERMINATE  # noqa: SLF001 - Pool has no public way to do this
        pool._worker_handler._state = multiprocessing.pool.TERMINATE  # noqa: SLF001
        pool._change_notifier.put(None)  # noqa: SLF001 - wakes the worker handler at once
        pool._worker_handler.join(timeout=5)  # noqa: SLF001
        workers = self._every_worker()
        for p in workers:
            if p.exitcode is None:
                try:
                    p.kill()
                except (OSError, ValueError):  # gone meanwhile, or a closed Process
                    pass
        for p in workers:
            p.join(timeout=5)
        pool._terminate.cancel()  # noqa: SLF001 - the Finalize that would run Pool's blocking clean-up at exit

    def __enter__(self) -> "WatchedPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # as Pool's own context manager: every result wanted has been collected by now (or an error ends the work)
        self.terminate()
