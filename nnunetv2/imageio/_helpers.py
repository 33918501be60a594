"""Small shared pieces of the built-in readers/writers: casting, dtype choice and one-line error messages."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from nnunetv2.errors import UserError


def stack_channels_float32(arrays: Sequence[np.ndarray], fnames: Sequence[str] = ()) -> np.ndarray:
    """Concatenate per-file arrays (each already (c, ...)) along axis 0 as C-contiguous float32.

    A single file only needs a cast (no-op when it is already float32 and contiguous), not a vstack copy. An
    image with no voxels (a 0-slice volume) is a UserError naming the file: nothing downstream can use it.
    """
    for i, a in enumerate(arrays):
        if a.size == 0:
            name = fnames[i] if i < len(fnames) else "An image file"
            raise UserError(f"{name} holds no voxels (shape {tuple(a.shape[1:])}).",
                            "Re-export the image; a volume needs at least one slice.")
    if len(arrays) == 1:
        return np.ascontiguousarray(arrays[0], dtype=np.float32)
    return np.vstack(arrays, dtype=np.float32, casting='unsafe')


def seg_output_dtype(seg: np.ndarray) -> type:
    """Segmentations are stored as uint8 when every label fits (< 255), else uint16."""
    if seg.size == 0:
        return np.uint8
    return np.uint8 if np.max(seg) < 255 else np.uint16


def one_line(text: str, max_len: int = 300) -> str:
    """Collapse a (possibly multi-line, library-generated) message into one bounded line."""
    s = " ".join(str(text).split())
    return s if len(s) <= max_len else s[:max_len - 3] + "..."


def unreadable_file_error(fname: str, reason: BaseException) -> UserError:
    """UserError for a file that is missing or that the reading library rejects. The readers read label files
    through the same code as images, so the message names neither: the path says which it is."""
    if os.path.islink(fname) and not os.path.exists(fname):
        from nnunetv2.utilities.input_checks import broken_link_problem  # utilities sit above imageio
        return UserError(f"The file {broken_link_problem(fname)}.", "Point the link to the real file, or remove it.")
    if not os.path.exists(fname):
        return UserError(f"The file {fname} does not exist.",
                         "Check the path and the file naming (CASE_XXXX<ending> for images, CASE<ending> for labels).")
    if os.path.isdir(fname):
        return UserError(f"The path {fname} is a folder, not a file.", "Pass the image or label file itself.")
    return UserError(f"Could not read file {fname}: {one_line(reason)}",
                     "The file may be corrupt or truncated, or not in the format its ending says; re-export it.")


def files_str(fnames: Sequence[str]) -> str:
    return ", ".join(str(f) for f in fnames)
