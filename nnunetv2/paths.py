"""The three data folders (and the external trainer search path), read from the environment at every use.

Each name is an ``os.PathLike`` whose value is looked up in ``os.environ`` each time it is used, so setting a
variable after import takes effect and importing never fails. Using an unset one (``os.path.join``, ``str``,
``open``) raises a ``UserError`` (a ``RuntimeError``) that names the variable and says how to set it.
"""
from __future__ import annotations

import os
from typing import Optional

from nnunetv2.errors import UserError

# nnU-Net v1 names, so that a user coming from v1 is told what changed.
_V1_VARIABLES = ("nnUNet_raw_data_base", "nnUNet_preprocessed", "RESULTS_FOLDER")


def _v1_hint() -> str:
    v1_set = [v for v in ("nnUNet_raw_data_base", "RESULTS_FOLDER") if v in os.environ]
    if not v1_set:
        return ""
    return (f" Found the nnU-Net v1 variable(s) {', '.join(v1_set)}: nnU-Net v2 uses nnUNet_raw, "
            f"nnUNet_preprocessed and nnUNet_results instead.")


def _expanded(value: str) -> str:
    """``value`` with a leading ``~`` and ``$VARIABLE``s expanded, where it does not already name an existing path.

    Shells leave both alone inside quotes (``export nnUNet_results="~/results"``), and so do ``os.environ[...] =
    "~/..."`` in notebooks and .env files; taken literally, the data would go to a folder named ``~`` below the
    working directory, and an ``rm -rf ~`` meant to clean it up would delete the home folder. An existing folder of
    that literal name is still used as it is."""
    if "~" not in value[:1] and "$" not in value:
        return value
    expanded = os.path.expandvars(os.path.expanduser(value))
    return value if expanded == value or os.path.exists(value) else expanded


class _EnvPath(os.PathLike):
    """A path taken from environment variable ``env_var_name`` whenever it is used."""

    def __init__(self, env_var_name: str, missing_message: str, is_folder: bool = True):
        self.env_var_name = env_var_name
        self.missing_message = missing_message
        self.is_folder = is_folder

    def get(self) -> Optional[str]:
        # set to nothing (`export nnUNet_raw=` in a script whose variable was empty) counts as unset: as a path, ""
        # would quietly mean the current folder
        value = os.environ.get(self.env_var_name) or None
        return None if value is None else _expanded(value)

    def is_set(self) -> bool:
        return self.get() is not None

    def require(self) -> str:
        value = self.get()
        if value is None:
            raise UserError(
                f"{self.env_var_name} is not defined{' (it is empty)' if self.env_var_name in os.environ else ''}. "
                f"{self.missing_message}{_v1_hint()}",
                "Set it with 'source setup_paths.sh [BASE_DIR]' or export it yourself; "
                "see documentation/setting_up_paths.md.",
            )
        if self.is_folder and os.path.exists(value) and not os.path.isdir(value):
            # else every command fails later with a 'Not a directory' or 'File exists' about some path below it
            raise UserError(f"{self.env_var_name}={value} is a file, not a folder.",
                            f"Point {self.env_var_name} to a folder (see documentation/setting_up_paths.md).")
        return value

    def __fspath__(self) -> str:
        return self.require()

    def __str__(self) -> str:
        return self.require()

    def __repr__(self) -> str:
        value = self.get()
        return repr(value) if value is not None else f"<unset {self.env_var_name}>"

    def __bool__(self) -> bool:
        return self.is_set()

    def __eq__(self, other) -> bool:
        if other is None:
            return not self.is_set()
        if isinstance(other, _EnvPath):
            return self.get() == other.get()
        return self.get() == other

    __hash__ = None  # mutable value: like the reference, these objects are unhashable


nnUNet_raw = _EnvPath(
    "nnUNet_raw",
    "nnU-Net can only be used on data for which preprocessed files already exist: planning and "
    "preprocessing are impossible.")
nnUNet_preprocessed = _EnvPath(
    "nnUNet_preprocessed",
    "nnU-Net cannot be used for preprocessing or training.")
nnUNet_results = _EnvPath(
    "nnUNet_results",
    "nnU-Net cannot be used for training or inference.")
nnUNet_extTrainer = _EnvPath(
    "nnUNet_extTrainer",
    "nnU-Net cannot locate custom trainer classes from external directories.", is_folder=False)
