"""The one error type for user mistakes, the wrapper that turns it into a one-line message at the CLI, and
``plain_numbers`` for the numbers such messages show.

A ``UserError`` is raised where the input (an environment variable, a dataset, a flag) is wrong and the user can
fix it. Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from typing import Callable, Optional, TypeVar

F = TypeVar("F", bound=Callable)


class UserError(RuntimeError):
    """A mistake in the user's input: ``message`` says what is wrong (and where), ``hint`` how to fix it."""

    def __init__(self, message: str, hint: Optional[str] = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} {hint}")

    def one_line(self) -> str:
        return " ".join(str(self).split())


def plain_numbers(values) -> list:
    """``values`` (a numpy array, or a sequence of numpy or Python numbers) as a list of Python numbers, for messages:
    numpy 2 shows its scalars inside a list as ``np.float64(0.8)``, a Python list shows ``0.8``."""
    if hasattr(values, "tolist"):
        return values.tolist()
    return [v.item() if hasattr(v, "item") else v for v in values]


# errnos that describe the user's file system or the paths they gave, not a mistake in our code: a read-only or
# full disk, missing permission, a file where a folder must be (or the other way round), a name too long, a link loop
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.EFBIG, errno.ENOTEMPTY}
_HINTS = {
    errno.ENOSPC: "Free disk space (or point the output to another disk) and run again.",
    errno.EDQUOT: "Free space within your disk quota (or point the output to another disk) and run again.",
    errno.EROFS: "Write to a folder on a writable disk.",
    errno.EACCES: "Check the permissions of the path, or write somewhere you may write.",
    errno.EPERM: "Check the permissions of the path, or write somewhere you may write.",
    errno.ENOTDIR: "A part of the path is a file where a folder is needed; check the path (and the nnUNet_* "
                   "environment variables).",
    errno.EISDIR: "The path is a folder where a file is needed; check the path.",
    errno.EEXIST: "Move the existing file away or choose another path.",
}


def os_error_line(e: BaseException) -> Optional[str]:
    """One line (path and the errno's meaning, plus a hint) for an ``OSError`` caused by the user's paths or disk,
    or None where the error more likely comes from a bug (it then keeps its traceback)."""
    if not isinstance(e, OSError) or e.errno not in _USER_ERRNOS:
        return None
    meaning = f"{os.strerror(e.errno)} [{errno.errorcode.get(e.errno, e.errno)}]"
    if e.filename is None:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):  # a full disk is never a bug, even without a path
            return None
        return f"{meaning}. {_HINTS[e.errno]}"
    where = f"{e.filename} -> {e.filename2}" if getattr(e, "filename2", None) else f"{e.filename}"
    hint = _HINTS.get(e.errno, 'Check the path.')
    if e.errno == errno.EEXIST and os.path.isfile(e.filename):  # os.makedirs on a path that is a file
        return f"{e.filename} is a file where a folder is needed. Pass a folder (e.g. with -o), or move the file away."
    return f"{where}: {meaning}. {hint}"


def setup_cli_logging(level: int = logging.INFO) -> None:
    """Plain console logging for the commands (messages only), unless the application configured logging itself."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(message)s")
        # numexpr (installed with older blosc2) announces its thread count at INFO when pandas imports it
        logging.getLogger("numexpr").setLevel(max(level, logging.WARNING))


_ctrl_c_ignored_at_exit = False


def _ignore_ctrl_c_at_exit() -> None:
    """Once the command's work is over, a Ctrl-C has nothing left to interrupt; arriving while the interpreter shuts
    down it would only print "Exception ignored in atexit callback ... KeyboardInterrupt" from some library's
    clean-up. Registered after the command ran, so that it runs before the clean-ups registered earlier (atexit
    goes last-in first-out); until the interpreter exits (the command called from Python), nothing changes."""
    global _ctrl_c_ignored_at_exit
    if _ctrl_c_ignored_at_exit:
        return
    _ctrl_c_ignored_at_exit = True
    import atexit
    import signal
    import threading

    def ignore() -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    atexit.register(ignore)


def exit_on_user_error(func: F) -> F:
    """Decorate a console entry point: a ``UserError`` (or an ``OSError`` from the user's paths or disk, see
    ``os_error_line``) prints one line on stderr and exits with status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            setup_cli_logging()  # inside: a Ctrl-C this early is an interruption like any other
            return func(*args, **kwargs)
        except UserError as e:
            print(f"nnU-Net error: {e.one_line()}", file=sys.stderr)
            sys.exit(1)
        except OSError as e:
            line = os_error_line(e)
            if line is None:
                raise
            print(f"nnU-Net error: {line}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("nnU-Net: interrupted.", file=sys.stderr)
            sys.exit(130)
        finally:
            _ignore_ctrl_c_at_exit()

    return wrapper  # type: ignore[return-value]
