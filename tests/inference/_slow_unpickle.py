"""An object that takes a while to unpickle in any process but the one that made it.

Spawned workers unpickle their arguments in order; putting one of these before the synchronisation objects makes a
worker reach them only after its parent has moved on, which is when a parent that dropped them would have freed them.
Kept in its own small module so that spawned children can import it cheaply.
"""
import os
import time


def _rebuild(delay_s: float, creator_pid: int) -> "SlowToUnpickle":
    if os.getpid() != creator_pid:
        time.sleep(delay_s)
    return SlowToUnpickle(delay_s, creator_pid)


class SlowToUnpickle:
    def __init__(self, delay_s: float, creator_pid: int = None):
        self.delay_s = delay_s
        self.creator_pid = os.getpid() if creator_pid is None else creator_pid

    def __reduce__(self):
        return _rebuild, (self.delay_s, self.creator_pid)
