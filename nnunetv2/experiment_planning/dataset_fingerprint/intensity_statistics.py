"""Foreground intensity statistics of the dataset fingerprint.

The aggregated numbers must equal the reference's bit for bit, i.e. numpy's ``mean``/``std``/``percentile`` of
the concatenation of ~1e8 per-case samples. That concatenation is never built here (it costs 400 MB per channel
plus as much again inside ``np.std``, and ``np.percentile`` partitions it for seconds):

* numpy sums a contiguous float array by pairwise summation: the range is halved (the first half rounded down to a
  multiple of 8) until it is short. Any node of that tree summed on its own gives the same bits, so
  ``_pairwise_sum`` walks the top of the tree in Python and lets ``np.add.reduce`` sum cache-sized leaves, fetched
  from the per-case pieces (a leaf spanning two cases is concatenated locally). ``mean`` and ``std`` then repeat
  numpy's own scalar arithmetic.
* percentiles: the needed order statistics are found by a windowed exact selection, then numpy's 'linear'
  interpolation is applied operation by operation.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np

FINGERPRINT_PERCENTILES = (0.5, 50.0, 99.5)
_SMALL = 2_000_000          # below this many values a plain np.partition is cheap enough
_CHUNK = 1 << 20            # values per chunk in the windowing pass (cache-friendly)


def sample_foreground_intensities(segmentation: np.ndarray, images: np.ndarray, seed: int = 1234,
                                  num_samples: int = 10000) -> List[Union[np.ndarray, list]]:
    """Per channel: ``num_samples`` values drawn with replacement from the voxels where ``segmentation[0] > 0``.

    One ``RandomState(seed)`` continues from channel to channel (reference behaviour); a channel without
    foreground contributes an empty Python list (which later promotes the concatenation to float64).
    """
    foreground = segmentation[0] > 0
    rs = np.random.RandomState(seed)
    samples: List[Union[np.ndarray, list]] = []
    for c in range(len(images)):
        values = images[c][foreground]
        samples.append(rs.choice(values, num_samples, replace=True) if len(values) > 0 else [])
    return samples


def per_case_statistics(segmentation: np.ndarray, images: np.ndarray) -> List[Dict[str, float]]:
    """The per-case statistics the reference computes (and later throws away); kept for the public API."""
    foreground = segmentation[0] > 0
    stats = []
    for c in range(len(images)):
        values = images[c][foreground]
        if len(values) > 0:
            p_low, p_high = np.percentile(values, (0.5, 99.5))
            stats.append({'mean': np.mean(values), 'median': np.median(values), 'min': np.min(values),
                          'max': np.max(values), 'percentile_99_5': p_high, 'percentile_00_5': p_low})
        else:
            stats.append({k: np.nan for k in ('mean', 'median', 'min', 'max', 'percentile_99_5',
                                              'percentile_00_5')})
    return stats


class Pieces:
    """The virtual concatenation ``np.concatenate(pieces)`` (same dtype promotion), read range by range."""

    def __init__(self, pieces: Sequence[Union[np.ndarray, list]]):
        arrays = [np.asarray(p) for p in pieces]
        self.dtype = np.result_type(*arrays)
        self.arrays = [a.ravel() for a in arrays if a.size > 0]
        self.offsets = np.cumsum([0] + [a.size for a in self.arrays])
        self.size = int(self.offsets[-1])

    def range(self, start: int, stop: int) -> np.ndarray:
        i = int(np.searchsorted(self.offsets, start, side='right')) - 1
        parts = []
        while start < stop:
            a = self.arrays[i]
            take = a[start - self.offsets[i]:min(stop, self.offsets[i + 1]) - self.offsets[i]]
            parts.append(take)
            start += take.size
            i += 1
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return out.astype(self.dtype, copy=False)

    def chunks(self, size: int = _CHUNK):
        for start in range(0, self.size, size):
            yield self.range(start, min(start + size, self.size))

    def subsample(self, step: int) -> np.ndarray:
        return np.concatenate([a[::step] for a in self.arrays]).astype(self.dtype, copy=False)

    def concatenate(self) -> np.ndarray:
        return np.concatenate(self.arrays).astype(self.dtype, copy=False)


_LEAF = 1 << 16
# How the installed numpy sums a long float array: older releases (NumPy 2.2, the newest for Python 3.10, and 1.26)
# go buffer by buffer, ``np.getbufsize()`` values at a time, each block summed pairwise and the block sums added one
# after the other; NumPy 2.4 sums one pairwise tree over the whole array. None: not known yet (``_sums_blockwise``).
_BLOCKWISE_SUMS: Optional[bool] = None
_PROBE_SIZE, _PROBE_LEAF = 200_001, 1 << 16  # the probe's own sizes: tests change _LEAF


def _sums_blockwise() -> bool:
    """Whether ``np.add.reduce`` sums in buffer-sized blocks (see ``_BLOCKWISE_SUMS``), found once by summing an
    array for which the two orders give different float32 results, rather than from a version number."""
    global _BLOCKWISE_SUMS
    if _BLOCKWISE_SUMS is None:
        probe = (np.random.RandomState(3).randn(_PROBE_SIZE) * 50 + 60).astype(np.float32)

        def leaf(s, e):
            return np.add.reduce(probe[s:e])
        total = np.add.reduce(probe)
        _BLOCKWISE_SUMS = bool(_blocks(leaf, 0, probe.size) == total
                               and _tree(leaf, 0, probe.size, _PROBE_LEAF) != total)
    return _BLOCKWISE_SUMS


def _blocks(leaf, start: int, stop: int):
    total = None
    for s in range(start, stop, np.getbufsize()):
        part = leaf(s, min(s + np.getbufsize(), stop))
        total = part if total is None else total + part
    return total


def _tree(leaf, start: int, stop: int, leaf_size: Optional[int] = None):
    n = stop - start
    if n <= (leaf_size or _LEAF):
        return leaf(start, stop)
    half = n // 2
    half -= half % 8
    return _tree(leaf, start, start + half, leaf_size) + _tree(leaf, start + half, stop, leaf_size)


def pairwise_tree(leaf, start: int, stop: int):
    """The top of numpy's pairwise summation tree over ``[start, stop)``: ``leaf(s, e)`` gives the sum of a short
    range (any subtree summed on its own has the same bits), halves are added as numpy adds them. Where numpy sums
    in blocks (``_sums_blockwise``) the leaves are its buffer blocks of the whole array (``start`` 0), added in
    order."""
    return _blocks(leaf, start, stop) if _sums_blockwise() else _tree(leaf, start, stop)


def _pairwise_sum(v: Pieces, leaf_fn, start: int = 0, stop: Optional[int] = None):
    """``np.add.reduce(leaf_fn(concatenation))`` for an elementwise ``leaf_fn``, bit for bit (module docstring)."""
    return pairwise_tree(lambda s, e: np.add.reduce(leaf_fn(v.range(s, e))), start, v.size if stop is None else stop)


def squared_deviation(arrmean: np.ndarray):
    """numpy _var's per-element step: ``(a - arrmean) ** 2`` in ``a``'s promoted dtype, in place."""
    def leaf_fn(a):
        x = np.asanyarray(a - arrmean)
        return np.multiply(x, x, out=x)
    return leaf_fn


def mean_and_std_like_numpy(v: Pieces):
    """``(np.mean(x), np.std(x))`` of the concatenation ``x``, repeating numpy's scalar arithmetic."""
    count = np.intp(v.size)
    total = _pairwise_sum(v, lambda a: a)
    mean = total.dtype.type(total / count)                      # numpy _mean
    arrmean = np.array([total], dtype=total.dtype)              # numpy _var: keepdims sum, divided in place
    arrmean = np.true_divide(arrmean, count, out=arrmean, casting='unsafe', subok=False)
    ssq = _pairwise_sum(v, squared_deviation(arrmean))
    var = ssq.dtype.type(ssq / np.maximum(count - 0, 0))
    return mean, var.dtype.type(np.sqrt(var))


def _select_windowed(v: "Pieces", ranks: np.ndarray) -> np.ndarray:
    """Exact order statistics ``sorted(v)[ranks]`` without partitioning all of ``v``.

    A sorted strided subsample predicts each rank's value ``x``. One chunked counting pass gives
    ``#(v < x)`` and ``#(v <= x)``; if the rank falls between them the answer is ``x`` (the usual case for
    integer-valued images, where values repeat a lot). Remaining ranks get a value window around the prediction:
    a second pass counts the values below it and collects those inside, and the rank is selected there. A window
    that misses its rank (an unlucky subsample) falls back to a full partition.
    """
    n = v.size
    sub = np.sort(v.subsample(max(1, n // 500_000)))
    m = sub.size
    wanted = [int(r) for r in np.unique(ranks)]
    pos = {r: r / max(n - 1, 1) * (m - 1) for r in wanted}
    guess = {r: sub[int(round(pos[r]))] for r in wanted}
    thresholds = sorted(set(guess.values()))
    lt = dict.fromkeys(thresholds, 0)
    le = dict.fromkeys(thresholds, 0)
    for chunk in v.chunks():
        for t in thresholds:
            lt[t] += int(np.count_nonzero(chunk < t))
            le[t] += int(np.count_nonzero(chunk <= t))
    found = {r: guess[r] for r in wanted if lt[guess[r]] <= r < le[guess[r]]}
    windows = []  # (lo, hi, [ranks]); overlapping windows are merged
    for r in (r for r in wanted if r not in found):
        q = r / max(n - 1, 1)
        margin = int(6 * np.sqrt(q * (1 - q) * m)) + 16  # ~6 standard deviations of the subsample rank
        lo_i, hi_i = int(np.floor(pos[r])) - margin, int(np.ceil(pos[r])) + margin
        lo = sub[lo_i] if lo_i > 0 else -np.inf
        hi = sub[hi_i] if hi_i < m - 1 else np.inf
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]), windows[-1][2] + [r])
        else:
            windows.append((lo, hi, [r]))
    below = [0] * len(windows)
    inside: List[List[np.ndarray]] = [[] for _ in windows]
    if windows:
        for chunk in v.chunks():
            for w, (lo, hi, _) in enumerate(windows):
                lower = chunk < lo
                below[w] += int(np.count_nonzero(lower))
                inside[w].append(chunk[~lower & (chunk <= hi)])
    for w, (_, _, rs) in enumerate(windows):
        vals = np.concatenate(inside[w])
        local = [r - below[w] for r in rs]
        if all(0 <= k < vals.size for k in local):
            part = np.partition(vals, local)
            found.update({r: part[k] for r, k in zip(rs, local)})
        else:  # pragma: no cover - only with a pathological subsample
            part = np.partition(v.concatenate(), rs)
            found.update({r: part[r] for r in rs})
    return np.array([found[int(r)] for r in ranks], dtype=v.dtype)


def order_statistics(v: Pieces, ranks: np.ndarray) -> np.ndarray:
    if v.size <= _SMALL:
        return np.partition(v.concatenate(), np.unique(ranks))[ranks]
    return _select_windowed(v, ranks)


def percentiles_like_numpy(v: Union[np.ndarray, Pieces, int],
                           q: Sequence[float] = FINGERPRINT_PERCENTILES, order_stats=None) -> np.ndarray:
    """Bitwise equal to ``np.percentile(x, q)`` (method 'linear') for an array ``x`` (or Pieces) without NaN.
    ``order_stats(ranks)`` (then ``v`` may be just the number of values) gives ``sorted(x)[ranks]`` another way."""
    if order_stats is None:
        if not isinstance(v, Pieces):
            v = Pieces([np.asarray(v)])
        n = v.size
        order_stats = lambda ranks: order_statistics(v, ranks)  # noqa: E731
    else:
        n = v if isinstance(v, (int, np.integer)) else (v.size if isinstance(v, Pieces) else np.asarray(v).size)
    if n == 0:
        raise ValueError("cannot compute percentiles of an empty array")
    quantiles = np.asanyarray(np.true_divide(list(q), 100))
    virtual = np.asanyarray((n - 1) * quantiles)
    previous = np.asanyarray(np.floor(virtual))
    nxt = np.asanyarray(previous + 1)
    above = virtual >= n - 1
    previous[above] = -1
    nxt[above] = -1
    below = virtual < 0
    previous[below] = 0
    nxt[below] = 0
    previous = previous.astype(np.intp)
    nxt = nxt.astype(np.intp)
    gamma = np.asanyarray(virtual - previous, dtype=virtual.dtype)
    stats = order_stats(np.concatenate((previous % n, nxt % n)))
    a, b = stats[:len(previous)], stats[len(previous):]
    # numpy's _lerp, operation by operation (float32 differences, float64 interpolation)
    diff_b_a = b - a
    result = np.add(a, diff_b_a * gamma)
    np.subtract(b, diff_b_a * (1 - gamma), out=result, where=gamma >= 0.5, casting='unsafe',
                dtype=type(result.dtype))
    return result


def aggregate_channel(samples: Sequence[Union[np.ndarray, list]]) -> Dict[str, float]:
    """Statistics of one channel over the concatenated per-case samples (empty lists included, as the reference)."""
    v = Pieces(samples)
    if v.size == 0:
        raise ValueError("no foreground samples")
    p_low, median, p_high = percentiles_like_numpy(v, FINGERPRINT_PERCENTILES)
    mean, std = mean_and_std_like_numpy(v)
    return {'mean': float(mean), 'median': float(median), 'std': float(std),
            'min': float(min(a.min() for a in v.arrays)), 'max': float(max(a.max() for a in v.arrays)),
            'percentile_99_5': float(p_high), 'percentile_00_5': float(p_low)}
