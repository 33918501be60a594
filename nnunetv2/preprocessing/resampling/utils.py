"""Look up a resampling function by the name written in the plans."""
from __future__ import annotations

import os
from typing import Callable

import nnunetv2


def recursive_find_resampling_fn_by_name(resampling_fn: str) -> Callable:
    """The function called ``resampling_fn`` found in a module of ``nnunetv2.preprocessing.resampling``
    (modules first, then sub-packages, alphabetically); RuntimeError if there is none."""
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    folder = os.path.join(nnunetv2.__path__[0], "preprocessing", "resampling")
    ret = recursive_find_python_class(folder, resampling_fn, 'nnunetv2.preprocessing.resampling')
    if ret is None:
        from nnunetv2.errors import UserError
        raise UserError(f"Unable to find resampling function named '{resampling_fn}' (named in the plans).",
                        hint="Put a module defining it inside nnunetv2/preprocessing/resampling, or fix the "
                             "resampling_fn_* entries of the plans file.")
    return ret
