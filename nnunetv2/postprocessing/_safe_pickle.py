"""Load ``postprocessing.pkl`` without letting it run arbitrary code.

A pickle can name any importable callable and call it while loading, so a postprocessing file from an untrusted
source could execute anything. The file only ever needs: the known postprocessing functions (pickled by reference),
builtin containers/scalars, and NumPy scalars (the reference stores labels as ``np.int64``). Everything else is
refused with a one-line error before it is imported.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Callable, List, Tuple

from nnunetv2.errors import UserError

_PP_MODULE = 'nnunetv2.postprocessing.remove_connected_components'
# functions a postprocessing file may reference (module, name)
ALLOWED_FUNCTIONS = {(_PP_MODULE, 'remove_all_but_largest_component_from_segmentation')}
# what NumPy needs to rebuild scalars / small arrays (numpy 1.x and 2.x module names)
_NUMPY_GLOBALS = {
    ('numpy', 'dtype'), ('numpy', 'ndarray'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
}
_BUILTINS = {('builtins', n) for n in ('tuple', 'list', 'dict', 'set', 'frozenset', 'int', 'float', 'bool', 'str',
                                       'complex', 'bytes')}
_ALLOWED = ALLOWED_FUNCTIONS | _NUMPY_GLOBALS | _BUILTINS


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise UserError(f"{self._source} references {module}.{name}, which is not a known postprocessing "
                            f"function; refusing to load it (a pickle file can run arbitrary code).",
                            "Use a postprocessing.pkl written by nnUNetv2_determine_postprocessing / "
                            "nnUNetv2_find_best_configuration.")
        return super().find_class(module, name)


def load_postprocessing_pickle(filename: str) -> Tuple[List[Callable], List[dict]]:
    """``(pp_fns, pp_fn_kwargs)`` from a postprocessing.pkl, validated; UserError for anything else."""
    if os.path.isdir(filename):
        raise UserError(f"The postprocessing file {filename} is a folder.",
                        "Pass the postprocessing.pkl file inside it with -pp_pkl_file.")
    if not os.path.isfile(filename):
        raise UserError(f"The postprocessing file {filename} does not exist.", "Check the -pp_pkl_file path.")
    with open(filename, 'rb') as f:
        data = f.read()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), filename).load()
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{filename} is not a postprocessing file (cannot unpickle it: {type(e).__name__}: {e}).",
                        "Pass the postprocessing.pkl written by nnUNetv2_determine_postprocessing.") from None
    not_pp = UserError(f"{filename} is not a postprocessing file: expected a pickled pair (list of functions, list "
                       f"of keyword dicts), got {type(obj).__name__}.",
                       "Pass the postprocessing.pkl written by nnUNetv2_determine_postprocessing.")
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise not_pp
    fns, kwargs = obj
    if not (isinstance(fns, (list, tuple)) and isinstance(kwargs, (list, tuple)) and len(fns) == len(kwargs)
            and all(callable(f) for f in fns) and all(isinstance(k, dict) for k in kwargs)):
        raise not_pp
    return list(fns), list(kwargs)
