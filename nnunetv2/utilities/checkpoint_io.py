"""Load nnU-Net checkpoints without executing code from them.

``torch.load(weights_only=True)`` only rebuilds tensors and plain containers. Checkpoints written by the reference
also hold a few NumPy objects (the float32 ``_best_ema``, float32 logging values, hence NumPy scalars and dtypes);
those are allow-listed here. Anything else is refused with a one-line ``UserError``; a user who trusts a legacy file
can opt in to full unpickling with ``allow_unsafe=True`` or ``nnUNet_allow_unsafe_checkpoints=1``.
"""
from __future__ import annotations

import contextlib
import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from nnunetv2.configuration import flag_from_env
from nnunetv2.errors import UserError

UNSAFE_ENV_VAR = "nnUNet_allow_unsafe_checkpoints"
_PREFIXES = ("module.", "_orig_mod.")


def _numpy_safe_globals() -> List[Union[Any, Tuple[Any, str]]]:
    """NumPy objects that unpickle to plain data (no code runs), under both NumPy 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray as mu
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray as mu
    entries: List[Union[Any, Tuple[Any, str]]] = [np.dtype, np.ndarray]
    # (object, name) pairs came with torch 2.6, as did get_unsafe_globals_in_checkpoint (a feature test: tests fake
    # torch.__version__)
    takes_pairs = hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint")
    for module_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        for func in (mu.scalar, mu._reconstruct):
            if takes_pairs:
                entries.append((func, f"{module_name}.{func.__name__}"))
            else:
                entries.append(_under_module_name(func, module_name))
    dtypes_module = getattr(np, "dtypes", None)  # NumPy >= 1.25 pickles dtypes via their DType classes
    if dtypes_module is not None:
        for name in dir(dtypes_module):
            obj = getattr(dtypes_module, name)
            if isinstance(obj, type) and name.endswith("DType") and issubclass(obj, np.dtype):
                entries.append(obj)
    return entries


def _under_module_name(func: Any, module_name: str) -> Any:
    """``func`` allow-listed as ``module_name.<its name>`` on torch 2.5, whose safe_globals takes no ``(object, name)``
    pairs (torch >= 2.6) and keys every entry by its ``__module__``."""
    if func.__module__ == module_name:
        return func

    def alias(*args):
        return func(*args)
    alias.__module__, alias.__name__ = module_name, func.__name__
    return alias


def _unsafe_allowed(allow_unsafe: bool) -> bool:
    return allow_unsafe or flag_from_env(UNSAFE_ENV_VAR)


def load_checkpoint(filename: str, map_location: Union[str, torch.device] = "cpu",
                    allow_unsafe: bool = False) -> Dict[str, Any]:
    """The checkpoint dict in ``filename``, loaded safely (see module docstring)."""
    if not os.path.isfile(filename):
        raise UserError(f"Checkpoint file not found: {filename}.")
    if _unsafe_allowed(allow_unsafe):
        try:
            checkpoint = torch.load(filename, map_location=map_location, weights_only=False)
        except Exception as e:
            raise UserError(f"{filename} is not a readable PyTorch checkpoint ({_short(e)}).") from e
    else:
        try:
            safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
            # (torch 2.4: its fixed allow-list only, so checkpoints holding NumPy objects are refused below)
            with safe_globals(_numpy_safe_globals()) if safe_globals is not None else contextlib.nullcontext():
                checkpoint = torch.load(filename, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            offending = _offending_global(str(e))
            if offending is not None:  # (other weights-only failures, e.g. 'Unsupported operand', mean garbage)
                raise UserError(f"Checkpoint {filename} contains objects that are not on nnU-Net's safe "
                                f"list ({offending}): refused for safety, since unpickling them could run code.",
                                f"Only if you trust this file, load it with allow_unsafe=True or set "
                                f"{UNSAFE_ENV_VAR}=1.") from e
            raise UserError(f"{filename} is not a readable PyTorch checkpoint (corrupt, or not written by "
                            f"torch.save).") from e
        except Exception as e:  # legacy (non-zip) loader raises KeyError/EOFError/... on non-checkpoints
            raise UserError(f"{filename} is not a readable PyTorch checkpoint ({_short(e)}).") from e
    if not isinstance(checkpoint, dict):
        raise UserError(f"{filename} is not an nnU-Net checkpoint: expected a dict, found "
                        f"{type(checkpoint).__name__}.")
    return checkpoint


def require_keys(checkpoint: Dict[str, Any], filename: str, keys=("network_weights",)) -> None:
    """UserError naming ``filename`` when the checkpoint lacks one of ``keys``."""
    missing = [k for k in keys if k not in checkpoint]
    if missing:
        raise UserError(f"{filename} is not an nnU-Net checkpoint: key(s) {missing} missing (found "
                        f"{sorted(map(str, checkpoint.keys()))[:8]}).")


def strip_state_dict_prefixes(state_dict: Dict[str, Any]) -> "OrderedDict[str, Any]":
    """Keys without the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes, in any nesting order."""
    out: "OrderedDict[str, Any]" = OrderedDict()
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if key.startswith(p):
                    key = key[len(p):]
                    changed = True
        out[key] = value
    return out


def _offending_global(message: str) -> Optional[str]:
    """The type name the weights-only unpickler refused, or None when the file is simply not a pickle."""
    for marker in ("but got <class '", "Unsupported global: GLOBAL ", "Unsupported global: ", "unsupported GLOBAL "):
        i = message.find(marker)
        if i >= 0:
            rest = message[i + len(marker):]
            return rest.split("'")[0].split(" ")[0].split("\n")[0].strip()
    return None


def _short(e: BaseException, limit: int = 160) -> str:
    text = f"{type(e).__name__}: " + " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."
