"""Commands that write into a folder the user names never replace files they did not write themselves.

A folder written by a command carries a marker file of that command. A later run of the same command may replace
what is there (that is how a run is repeated); any other existing file under one of the output names (ground-truth
labels, another command's predictions, the inputs themselves) makes the command stop before it writes anything.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Optional, Sequence

from nnunetv2.errors import UserError
from nnunetv2.file_io import atomic_path, maybe_mkdir_p


def marker_name(command: str) -> str:
    """File name of the marker ``command`` leaves in its output folders (hidden, never matches a file ending)."""
    return f".{command}.json"


def _same_folder(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.abspath(a) == os.path.abspath(b)


def refuse_input_as_output(output_folder: str, input_folders: Sequence[str], command: str) -> None:
    """The output folder must not be one of the input folders (outputs would replace the inputs they come from)."""
    for folder in input_folders:
        if _same_folder(output_folder, folder):
            raise UserError(f"{command}: the output folder {output_folder} is also an input folder; its files would be "
                            f"replaced.", "Pass a new or empty folder with -o.")


def check_output_files(output_folder: str, output_names: Iterable[str], command: str, marker: str = None,
                       written_by_reference: Optional[Callable[[str], bool]] = None) -> None:
    """Raise if one of ``output_names`` exists in ``output_folder`` and the folder was not written by ``command``.
    ``marker``: the file that shows it was (default ``marker_name(command)``; the predictor's is the reference's
    ``predict_from_raw_data_args.json``). ``written_by_reference``: tells a folder the reference's run of the same
    command left (it leaves no marker), so that a user who switched implementations can repeat the run."""
    marker = marker or marker_name(command)
    if not os.path.isdir(output_folder):
        if os.path.lexists(output_folder):
            raise UserError(f"{command}: the output path {output_folder} exists and is not a folder.",
                            "Pass a folder (new or empty) with -o.")
        return
    if os.path.isfile(os.path.join(output_folder, marker)):
        return  # an earlier run of this command wrote the folder: repeating the run may replace its outputs
    if written_by_reference is not None and written_by_reference(output_folder):
        return
    for name in output_names:
        path = os.path.join(output_folder, name)
        if os.path.lexists(path):
            raise UserError(f"{command} would overwrite {path}, which it did not write ({output_folder} has no "
                            f"{marker}).",
                            "Pass a new or empty output folder with -o, or move the existing files away.")


def claim_output_folder(output_folder: str, command: str, details: dict = None) -> None:
    """Create ``output_folder`` if needed and mark it as written by ``command`` (call after ``check_output_files``)."""
    maybe_mkdir_p(output_folder)
    with atomic_path(os.path.join(output_folder, marker_name(command))) as tmp:
        with open(tmp, "w") as f:
            json.dump({"written_by": command, **(details or {})}, f, indent=4, default=str)
