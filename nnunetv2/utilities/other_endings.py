"""Files named like a case's image (``CASE_XXXX.<ending>``) whose ending is not the one nnU-Net lists cases by.

Cases are found by one file ending (dataset.json's, or the model's when predicting), so a case saved with another
(``.nii`` among ``.nii.gz``, a ``.mha`` among ``.nrrd``) is left out without a word: not trained on, not predicted.
These helpers name such files, once per folder and process (folders are listed several times per run).
"""
from __future__ import annotations

import os
import re
import sys
from typing import List, Sequence

# CASE_XXXX.<some ending>: named like an input image, whatever its ending
IMAGE_LIKE = re.compile(r"^.+_\d\d\d\d\.[A-Za-z][A-Za-z0-9.]*$")

_already_named: set = set()


def image_files_of_other_endings(folder: str, names: Sequence[str], file_ending: str) -> List[str]:
    """The names among ``names`` (files of ``folder``) that look like a case's image in a format nnU-Net reads, but
    do not end with ``file_ending`` (macOS's ``._`` metadata files are no images). Image formats only:
    ``CASE_XXXX.json`` is the spacing side-car of the .tif case ``CASE_XXXX`` (identifiers often end in 4 digits),
    ``.npz``/``.pkl`` are probabilities of an earlier prediction."""
    from nnunetv2.imageio.reader_writer_registry import LIST_OF_IO_CLASSES
    from nnunetv2.utilities.utils import is_appledouble
    image_endings = tuple({e.lower() for c in LIST_OF_IO_CLASSES for e in c.supported_file_endings})
    return [f for f in names if not f.endswith(file_ending) and IMAGE_LIKE.match(f)
            and f.lower().endswith(image_endings) and not is_appledouble(os.path.join(folder, f))]


def warn_other_endings(folder: str, names: Sequence[str], file_ending: str, whose_ending: str,
                       consequence: str) -> None:
    """Print one warning (stderr) naming the files of ``folder`` (``names``: its file names) that
    :func:`image_files_of_other_endings` finds. ``whose_ending``: e.g. "the model's file ending";
    ``consequence``: what happens to them, e.g. "are not predicted"."""
    other = image_files_of_other_endings(folder, names, file_ending)
    key = (os.path.abspath(folder), file_ending, tuple(other))
    if not other or key in _already_named:
        return
    _already_named.add(key)
    print(f"WARNING: {len(other)} file(s) in {folder} are named like images but do not end with {file_ending} "
          f"({whose_ending}) and {consequence}: {', '.join(other[:5])}{', ...' if len(other) > 5 else ''}. Convert "
          f"them to {file_ending} if they are meant to be used.", file=sys.stderr, flush=True)
