"""Process-count defaults and planning constants, from the environment (read once, at import)."""
from __future__ import annotations

import logging
import os
import socket
from typing import Optional

logger = logging.getLogger(__name__)

ANISO_THRESHOLD = 3  # a spacing ratio above this makes resampling treat the out-of-plane axis separately


_FLAG_ON = ("1", "true", "t", "yes", "y", "on")
_FLAG_OFF = ("", "0", "false", "f", "no", "n", "off")
_flags_warned_about: set = set()

_COMPILE_ON = ("true", "1", "t")


def compile_setting() -> Optional[bool]:
    """``nnUNet_compile``: None when unset (the trainer then compiles on CUDA, prediction does not), True for
    true/1/t (any case), False for anything else, as in the reference. A value that reads as off but looks meant as
    on or as nothing at all (``yes``, ``on``, ``maybe``) gets a warning once, so that nobody waits for a compiled
    network that never comes."""
    value = os.environ.get("nnUNet_compile")
    if value is None:
        return None
    if value.lower() in _COMPILE_ON:
        return True
    if value.strip().lower() not in _FLAG_OFF:
        _warn_once("nnUNet_compile", value, "Environment variable nnUNet_compile=%r is read as off: only true, 1 or "
                                            "t (any case) switch torch.compile on.")
    return False


def _warn_once(name: str, value: str, message: str) -> None:
    """Log ``message % value`` the first time ``name`` is seen with ``value`` (a switch is read again on every use)."""
    if (name, value) not in _flags_warned_about:
        _flags_warned_about.add((name, value))
        logger.warning(message, value)


def flag_from_env(name: str) -> bool:
    """On/off switches of our own (not the reference's variables, which keep their own spellings): 1/true/t/yes/on in
    any case and with surrounding blanks is on, unset or 0/false/f/no/off is off. Anything else is off too, with a
    warning (once per value): ``nnUNet_cpu_fast=2`` must not quietly mean off."""
    value = os.environ.get(name, "").strip().lower()
    if value in _FLAG_ON:
        return True
    if value not in _FLAG_OFF:
        _warn_once(name, os.environ.get(name), f"Environment variable {name}=%r is neither on (1, true, yes, on) nor "
                                               f"off (0, false, no, off); taken as off.")
    return False


def int_from_env(name: str, default: int) -> int:
    """Integer value of an environment variable; unset or empty -> ``default``, not an integer -> ``default`` with a
    warning."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        logger.warning("Environment variable %s=%r is not an integer; using %d.", name, value, default)
        return default


# Data-augmentation workers per GPU for known hosts of the original authors' clusters (first rule that matches
# wins), kept so that behaviour on those machines is unchanged. (kind, pattern, workers)
_HOST_RULES = (
    ("exact", "Fabian", 12), ("prefix", "isensee-", 12),
    ("exact", "hdf19-gpu16", 16), ("exact", "hdf19-gpu17", 16), ("exact", "hdf19-gpu18", 16),
    ("exact", "hdf19-gpu19", 16), ("exact", "e230-AMDworkstation", 16),
    ("prefix", "e230-dgx1", 10),
    ("prefix", "hdf18-gpu", 16), ("prefix", "e132-comp", 16),
    ("prefix", "e230-dgx2", 6),
    ("prefix", "e230-dgxa100-", 28),
    ("prefix", "e230-thinka100-", 20),
    ("prefix", "lsf22-gpu", 28),
    ("prefix", "hdf19-gpu", 12), ("prefix", "e071-gpu", 12),
    ("contains_ci", "superh200", 48),
    ("contains", "superl40s", 28),
)


def _workers_for_host(hostname: str) -> int:
    for kind, pattern, workers in _HOST_RULES:
        if ((kind == "exact" and hostname == pattern)
                or (kind == "prefix" and hostname.startswith(pattern))
                or (kind == "contains" and pattern in hostname)
                or (kind == "contains_ci" and pattern in hostname.lower())):
            return workers
    return 12


def get_allowed_n_proc_DA() -> int:
    """Number of data-augmentation worker processes: ``nnUNet_n_proc_DA`` or a per-host default, capped at the
    CPU count."""
    n = None
    if "nnUNet_n_proc_DA" in os.environ:
        n = int_from_env("nnUNet_n_proc_DA", 12)
        if n < 0:  # the augmenter would wait forever for batches from no worker at all
            logger.warning("Environment variable nnUNet_n_proc_DA=%d is negative; using the default number of data "
                           "augmentation workers instead (0 runs data augmentation in the main process).", n)
            n = None
    if n is None:
        n = _workers_for_host(socket.gethostname())
    return min(n, os.cpu_count() or 1)


default_num_processes = int_from_env("nnUNet_def_n_proc", 8)
default_n_proc_DA = get_allowed_n_proc_DA()
