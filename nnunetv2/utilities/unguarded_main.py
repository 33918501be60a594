"""Refuse to spawn workers from a script that would start them again in every worker.

A spawned (or forkserver) worker imports the main script before it runs its task. If the script calls nnU-Net at
its top level, outside ``if __name__ == '__main__':``, every worker runs that call again; multiprocessing stops
each such worker with a long RuntimeError, and the parent waits: ``multiprocessing.Pool`` replaces the dead
workers forever, and a process handed a large argument (``predict_from_list_of_npy_arrays``) blocks its parent
for good in the write of that argument. Users see a hang behind a stream of identical tracebacks; MONAI's nnU-Net
bundle wrapper, which always asks for two workers, does exactly this from an unguarded script.

So before starting such workers we look at the statement of the main script that led to the call: when it is
not inside any ``if`` (the guard, or any other condition the author may use), the workers would repeat it, and we
say so in one line instead. Interactive sessions, ``python -c`` and notebooks have no main file and are not
affected; neither is anything run from a guarded block or a function it calls.
"""
from __future__ import annotations

import ast
import functools
import os
import sys
import warnings
from typing import Optional, Tuple

from nnunetv2.errors import UserError


def unguarded_main_statement() -> Optional[Tuple[str, int]]:
    """``(file, line)`` of the main script's top-level statement that is running now, if that statement is not
    inside an ``if``; None where there is no main file, the main script is not on the call stack, or it is
    guarded."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return None
    frame = sys._getframe(1)  # noqa: SLF001 - the running statement of the main script is only known here
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals is main.__dict__):
        frame = frame.f_back
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    parsed = _lines_inside_an_if(os.path.abspath(path), stamp)
    if parsed is None:
        return None
    guarded, module_code = parsed
    if not _same_code(module_code, frame.f_code):
        return None  # the file was changed since the script started: its line numbers say nothing about the run
    if line in guarded:
        return None
    return path, line


def _same_code(a, b) -> bool:
    """Whether two module code objects come from the same source (same bytecode on the same lines)."""
    return a.co_code == b.co_code and list(a.co_lines()) == list(b.co_lines())


@functools.lru_cache(maxsize=8)
def _lines_inside_an_if(path: str, stamp: int) -> Optional[Tuple[frozenset, object]]:
    """Every line of the file that lies inside an ``if`` statement, and the file compiled (to check that it is still
    the source of the running script); None if the file cannot be read as Python."""
    try:
        with open(path, "rb") as f:
            source = f.read()
        with warnings.catch_warnings():  # the script's own warnings (invalid escapes...) were shown when it started
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=path)
            module_code = compile(tree, path, "exec", dont_inherit=True)  # not this module's __future__ flags
    except (OSError, SyntaxError, ValueError):
        return None
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return frozenset(lines), module_code


def refuse_workers_from_unguarded_main(start_method: str) -> None:
    """Raise a one-line UserError where workers started with ``start_method`` would re-run the running statement
    of the main script (see the module docstring). Forked workers do not import the script and are always fine."""
    if start_method == "fork":
        return
    where = unguarded_main_statement()
    if where is None:
        return
    path, line = where
    raise UserError(f"{path}, line {line}, runs at the script's top level and starts nnU-Net's worker processes; "
                    f"each worker imports the script again and would run it too. Put the script's code under "
                    f"`if __name__ == '__main__':`.")
