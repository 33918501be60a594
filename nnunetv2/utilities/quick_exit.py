"""Console commands that end their process without tearing the interpreter down.

A process that imported torch spends about 0.4 s at exit destroying modules and objects one by one, after the
command's work is complete and its files are written. ``as_command(entry)`` is what a console script runs: the
entry point, then, when it returned normally, the exit handlers (logging, multiprocessing's clean-up of its
children and temporary folders) and ``os._exit``. Errors take the usual way out (``SystemExit`` from ``exit_on_user_error``,
tracebacks). The entry points themselves stay plain functions: called from Python they return.
"""
from __future__ import annotations

import atexit
import functools
import os
import sys
from typing import Callable, NoReturn


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


def as_command(entry: Callable[[], object]) -> Callable[[], NoReturn]:
    """The console script for ``entry``; keeps its name (the command documentation finds ``<name>_parser``)."""

    @functools.wraps(entry)
    def command():
        entry()
        exit_now(0)

    return command
