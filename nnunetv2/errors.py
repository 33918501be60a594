"""The one error type for user mistakes, and the wrapper that turns it into a one-line message at the CLI.

A ``UserError`` is raised where the input (an environment variable, a dataset, a flag) is wrong and the user can
fix it. Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import functools
import logging
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


def setup_cli_logging(level: int = logging.INFO) -> None:
    """Plain console logging for the commands (messages only), unless the application configured logging itself."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(message)s")


def exit_on_user_error(func: F) -> F:
    """Decorate a console entry point: a ``UserError`` prints one line on stderr and exits with status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        setup_cli_logging()
        try:
            return func(*args, **kwargs)
        except UserError as e:
            print(f"nnU-Net error: {e.one_line()}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("nnU-Net: interrupted.", file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
