"""What a console command does around its entry point, and a library call does not.

* Threads of torch's OpenMP pool sleep when they wait for each other instead of spinning (``OMP_WAIT_POLICY=PASSIVE``
  unless the user set it). On a machine that other jobs share, a spinning thread burns the time slice the thread it
  waits for needs: with two busy processes on two cores, the demo's training took 113 s spinning and 61 s
  sleeping, prediction 28-30 s and 25 s; on a quiet machine both are the same (and less CPU time is used). The
  setting is read when torch is imported, so it is set before the command imports torch; it changes no result.
* Memory freed by the command is kept for reuse instead of being handed back to the system at once (on Linux with
  glibc: no ``mmap`` for large blocks, and the top of the heap is trimmed only past 2 GiB). Every tensor or array of a
  few MB would otherwise be a fresh mapping whose pages the kernel zeroes and faults in one by one on first touch,
  and returns at ``free``; a forward pass of the default 3d_fullres network allocates and frees about a GB that way.
  On two Zen 4 cores one pass went 1.61 -> 1.25 s (0.6 s of system time per pass -> none), plan_and_preprocess of
  four 280^3 volumes 18.0 -> 14.2 s. The setting reaches the command's worker processes through ``GLIBC_TUNABLES``
  (read when a process starts); a user who set any ``glibc.malloc.*`` tunable there keeps exactly theirs. It changes
  no result; the process's peak memory stays what it was, but memory below 2 GiB is kept until the process ends.
* The prediction commands end without tearing the interpreter down: a process that imported torch spends about
  0.4 s at exit destroying modules and objects one by one, after the command's work is complete and its files are
  written. After a normal return, the exit handlers run (logging, multiprocessing's clean-up of its children and
  temporary folders), then ``os._exit``. Errors take the usual way out (``SystemExit`` from ``exit_on_user_error``,
  tracebacks).

The entry points themselves stay plain functions: called from Python they change nothing of the caller's process.
"""
from __future__ import annotations

import atexit
import ctypes
import functools
import os
import platform
import sys
from typing import Callable, NoReturn

OPENMP_WAIT_POLICY = 'OMP_WAIT_POLICY'
GLIBC_TUNABLES = 'GLIBC_TUNABLES'
# mallopt's parameter numbers (malloc.h) and the largest trim threshold it takes (an int)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
KEEP_FREED_BELOW_BYTES = 2 ** 31 - 1
MALLOC_REUSE_TUNABLES = f'glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={KEEP_FREED_BELOW_BYTES}'


def keep_freed_memory_for_reuse() -> bool:
    """Make this process and the processes it starts reuse freed memory (see the module docstring). Returns whether
    the setting is in effect here: False off glibc, where mallopt is missing, or where the user chose their own
    ``glibc.malloc.*`` tunables (theirs then apply, untouched)."""
    if not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc':
        return False
    user_tunables = os.environ.get(GLIBC_TUNABLES, '')
    if 'glibc.malloc.' in user_tunables:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BELOW_BYTES) and mallopt(_M_MMAP_MAX, 0)):
        return False
    os.environ[GLIBC_TUNABLES] = f'{user_tunables}:{MALLOC_REUSE_TUNABLES}' if user_tunables \
        else MALLOC_REUSE_TUNABLES
    return True


def prepare_command_process() -> None:
    """Process settings for a command, before it imports torch (see the module docstring)."""
    os.environ.setdefault(OPENMP_WAIT_POLICY, 'PASSIVE')
    keep_freed_memory_for_reuse()


def exit_now(status: int = 0) -> NoReturn:
    """Run the exit handlers, flush the standard streams and end the process."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say anyway
            pass
    os._exit(status)


def as_command(entry: Callable[[], object], quick_exit: bool = True) -> Callable[[], None]:
    """The console script for ``entry`` (which must not have imported torch at module level); keeps its name (the
    command documentation finds ``<name>_parser`` next to it)."""

    @functools.wraps(entry)
    def command():
        prepare_command_process()
        entry()
        if quick_exit:
            exit_now(0)

    return command
