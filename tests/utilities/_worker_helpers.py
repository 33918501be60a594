"""Functions run in worker processes by test_worker_processes (a module of its own: spawned children import it by
name, cheaply)."""
import os
import signal
import time


def square(x):
    return x * x


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"cannot handle {x}")
    return x


def kill_self_on(x, bad):
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


class Unpicklable(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = __import__("threading").Lock()  # a lock cannot be pickled


def raise_unpicklable():
    raise Unpicklable("this exception cannot travel")


def raise_user_error(name):
    from nnunetv2.errors import UserError
    raise UserError(f"{name} is broken.", "Fix it.")


def set_event_after(event, delay_s):
    """Child of start_worker tests: reach the event only after ``delay_s``, then set it."""
    time.sleep(delay_s)
    event.set()


def sleep_forever(ready_file, *unused):
    open(ready_file, "w").close()
    while True:
        time.sleep(0.1)


def _rebuild_slowly(delay_s, creator_pid):
    if os.getpid() != creator_pid:
        time.sleep(delay_s)
    return SlowToUnpickle(delay_s, creator_pid)


class SlowToUnpickle:
    """Takes ``delay_s`` to unpickle in any process but its creator: a child handed one before a synchronisation
    object reaches that object only long after its parent's start() returned."""

    def __init__(self, delay_s, creator_pid=None):
        self.delay_s = delay_s
        self.creator_pid = os.getpid() if creator_pid is None else creator_pid

    def __reduce__(self):
        return _rebuild_slowly, (self.delay_s, self.creator_pid)


def touch_event(slow, event):
    event.set()


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def mark_and_sleep(marker_folder, index, seconds):
    """A task that says it has started (a file in ``marker_folder``), then takes ``seconds``."""
    open(os.path.join(marker_folder, f"started_{index}"), "w").close()
    time.sleep(seconds)
    return index


def die_while_sending_a_result(x):
    """Die as a worker killed in the middle of sending its result: the result pipe's write lock taken (nothing
    frees it) and half a message in the pipe (the parent's result thread waits for the rest forever)."""
    import gc
    import struct
    from multiprocessing.queues import SimpleQueue
    queues = [q for q in gc.get_objects() if isinstance(q, SimpleQueue)]
    # the results' queue: the only one whose writing end is open in a worker
    outqueue = next(q for q in queues if not q._writer.closed)
    if outqueue._wlock is not None:
        outqueue._wlock.acquire()
    os.write(outqueue._writer.fileno(), struct.pack("!i", 1000) + b"only ten b")
    os.kill(os.getpid(), signal.SIGKILL)
