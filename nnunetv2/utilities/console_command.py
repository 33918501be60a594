"""What a console command does around its entry point, and a library call does not.

* Threads of torch's OpenMP pool sleep when they wait for each other instead of spinning (``OMP_WAIT_POLICY=PASSIVE``
  unless the user set it). On a machine that other jobs share, a spinning thread burns the time slice the thread it
  waits for needs: with two busy processes on two cores, the demo's training took 113 s spinning and 61 s
  sleeping, prediction 28-30 s and 25 s; on a quiet machine both are the same (and less CPU time is used). The
  setting is read when torch is imported, so it is set before the command imports torch; it changes no result.
* Memory freed by the command is kept for reuse while it works on a case instead of being unmapped at once, in its
  process and its workers (utilities.freed_memory): one forward pass of the default 3d_fullres network went
  1.61 -> 1.25 s on two Zen 4 cores. It changes no result.
* The prediction commands end without tearing the interpreter down: a process that imported torch spends about
  0.4 s at exit destroying modules and objects one by one, after the command's work is complete and its files are
  written. After a normal return, the exit handlers run (logging, multiprocessing's clean-up of its children and
  temporary folders), then ``os._exit``. Errors take the usual way out (``SystemExit`` from ``exit_on_user_error``,
  tracebacks).

The entry points themselves stay plain functions: called from Python they change nothing of the caller's process.
"""
from __future__ import annotations

import atexit
import functools
import importlib
import os
import sys
from typing import Callable, NoReturn

from nnunetv2.utilities.freed_memory import keep_freed_memory_for_reuse

OPENMP_WAIT_POLICY = 'OMP_WAIT_POLICY'


def prepare_command_process() -> None:
    """Process settings for a command, before it imports torch (see the module docstring)."""
    os.environ.setdefault(OPENMP_WAIT_POLICY, 'PASSIVE')
    keep_freed_memory_for_reuse()


def import_with_ctrl_c_deferred(*modules: str) -> None:
    """Import ``modules`` (torch, numpy, ...) with Ctrl-C held back until they are complete. An extension module
    interrupted while it initialises stays half-imported and fails later with an unrelated error (an ImportError, or
    a RecursionError inside numpy) instead of a KeyboardInterrupt. Call it where a KeyboardInterrupt becomes
    'interrupted' (inside ``exit_on_user_error``): a Ctrl-C meanwhile arrives right after the imports."""
    from nnunetv2.utilities.worker_processes import sigint_blocked
    with sigint_blocked():
        for module in modules:
            importlib.import_module(module)


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
