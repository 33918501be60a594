"""Make dicts holding numpy/torch values JSON-serialisable (plans, fingerprints, summaries)."""
from __future__ import annotations

from typing import Any, Iterable, Type

import numpy as np
import torch


def _fix_value(v: Any) -> Any:
    """A JSON-friendly version of one value (dicts are fixed in place and returned as they are)."""
    if isinstance(v, dict):
        recursive_fix_for_json_export(v)
        return v
    if isinstance(v, np.ndarray):
        return fix_types_iterable(v.tolist(), list)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, torch.device):
        return str(v)
    if isinstance(v, (list, tuple)):
        return fix_types_iterable(v, type(v))
    return v


def recursive_fix_for_json_export(my_dict: dict) -> None:
    """In place: numpy integer keys → int; numpy scalars → Python scalars; arrays → lists; lists/tuples converted
    element-wise keeping their type; ``torch.device`` → str. A converted key is re-inserted, so it moves behind the
    keys that stay (as in the reference: the JSON files written list keys in the same order)."""
    for k in list(my_dict):
        if isinstance(k, np.integer):
            value = my_dict.pop(k)
            my_dict[int(k)] = _fix_value(value)
        else:
            my_dict[k] = _fix_value(my_dict[k])


def fix_types_iterable(iterable: Iterable, output_type: Type) -> Any:
    """``output_type`` of the converted elements (nested lists/tuples/arrays are converted recursively)."""
    out = []
    for i in iterable:
        if isinstance(i, str):
            out.append(i)
        elif isinstance(i, (dict, np.ndarray, np.generic, torch.device, list, tuple)):
            out.append(_fix_value(i))
        else:
            out.append(i)
    return output_type(out)
