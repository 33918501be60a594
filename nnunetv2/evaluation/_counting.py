"""Fast TP/FP/FN/TN counting for many labels/regions at once.

Instead of building two boolean masks per label or region (several passes over the volume each), we build the
confusion matrix ``C[reference value, predicted value]`` of the whole case in one ``bincount``. The counts of any
label or region (a set of label values) are then sums over blocks of that small matrix, so they are exactly the
integers the mask-based definition gives. Only label maps of small non-negative integers qualify; anything else
(negative or fractional values, huge label values) returns None and the caller falls back to masks.
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple, Union

import numpy as np

# Above this many distinct values the matrix (n*n entries) stops being cheap compared with the masks.
_MAX_LABEL_VALUE = 1023

LabelOrRegion = Union[int, Tuple[int, ...], list]


def _as_small_int(seg: np.ndarray) -> Optional[np.ndarray]:
    """``seg`` as an unsigned integer array (its own type if it is one, no copy) if all values are integers in
    [0, _MAX_LABEL_VALUE], else None."""
    if seg.size == 0:
        return seg.astype(np.uint16)
    if seg.dtype.kind == 'u' or seg.dtype == bool:
        return seg if seg.max() <= _MAX_LABEL_VALUE else None
    lo, hi = seg.min(), seg.max()
    if not (lo >= 0 and hi <= _MAX_LABEL_VALUE):  # also False for NaN
        return None
    if seg.dtype.kind == 'i':
        return seg.astype(np.uint16)
    as_int = seg.astype(np.uint16)
    if not np.array_equal(as_int, seg):
        return None  # fractional values: not a label map we can tabulate
    return as_int


def _code_dtype(n_codes: int) -> type:
    """The smallest unsigned type holding the codes 0 .. n_codes - 1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n_codes <= np.iinfo(dtype).max + 1:
            return dtype
    return np.intp


def confusion_matrix(ref: np.ndarray, pred: np.ndarray, ignore_label: Optional[int]) -> Optional[np.ndarray]:
    """``C[r, p]`` = number of voxels with reference value r and prediction value p (ignored voxels excluded).

    None if the label maps are not small non-negative integers.
    """
    r = _as_small_int(ref)
    if r is None:
        return None
    p = _as_small_int(pred)
    if p is None:
        return None
    n = int(max(r.max(initial=0), p.max(initial=0))) + 1
    # code = r * n + p in the smallest type that holds n * n codes (1 byte per voxel for up to 15 labels)
    code_dtype = _code_dtype(n * n)
    code = r.astype(code_dtype)  # always a copy: ``r`` may be the caller's array
    code *= code_dtype(n)
    code += p  # p <= n - 1 and p's type is no wider than needed: stays in code_dtype
    # most voxels are background in both (code 0): count the others only, code 0 is what is left
    nonzero = code != 0
    conf = np.bincount(code[nonzero], minlength=n * n)
    conf[0] = code.size - int(conf[1:].sum())
    conf = conf.reshape(n, n)
    if ignore_label is not None and 0 <= ignore_label < n and float(ignore_label).is_integer():
        conf[int(ignore_label), :] = 0  # the ignore mask is "reference == ignore label"
    return conf


def _values(label_or_region: LabelOrRegion) -> Iterable:
    return label_or_region if isinstance(label_or_region, (tuple, list)) else (label_or_region,)


def counts_from_confusion(conf: np.ndarray, label_or_region: LabelOrRegion) -> Tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of one label or region from the confusion matrix."""
    n = conf.shape[0]
    member = np.zeros(n, dtype=bool)
    for v in _values(label_or_region):
        # values that cannot occur in the maps (fractional, negative, beyond the matrix) select nothing
        if float(v).is_integer() and 0 <= v < n:
            member[int(v)] = True
    total = int(conf.sum())
    in_ref = conf[member, :]
    tp = int(in_ref[:, member].sum())
    n_ref = int(in_ref.sum())
    n_pred = int(conf[:, member].sum())
    fp = n_pred - tp
    fn = n_ref - tp
    tn = total - tp - fp - fn
    return tp, fp, fn, tn
