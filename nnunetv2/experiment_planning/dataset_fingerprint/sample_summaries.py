"""Fingerprint intensity statistics without moving the samples between processes.

The reference draws ``num_samples`` foreground intensities per case and channel (``RandomState(1234).choice`` with
replacement, one generator continued from channel to channel) and takes numpy's mean, std and percentiles of their
concatenation over all cases: ~1e8 values per channel. Returned by worker processes that is 400 MB per channel to
pickle, send and unpickle (most of the fingerprint's time on a small dataset). Here a worker returns instead, per
case and channel:

* what the samples are drawn from: the foreground values and the generator state before the draws (a few KB to MB);
* how often each value was drawn: the percentiles, minimum and maximum need nothing else;
* numpy's pairwise partial sums of the samples for the leaves of the summation tree that lie within the case, plus
  the samples of the (at most two) leaves it shares with its neighbours.

The main process completes the tree exactly as numpy's pairwise summation would; the squared deviations, which need
the mean, take a second round of the same kind (the worker draws the samples again from the state). Bit for bit the
reference's numbers (``intensity_statistics`` explains the summation tree).

The leaves a worker computes assume every case contributes ``num_samples`` values of the images' dtype; where a case
has no foreground in a channel (the reference then promotes the concatenation to float64) the main process asks for
the partial sums again with the actual layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2.experiment_planning.dataset_fingerprint import intensity_statistics as _stats

Leaf = Tuple[int, int]


@dataclass
class Layout:
    """Where each case's samples of one channel sit in the concatenation, and its dtype."""
    offsets: List[Optional[int]]  # per case; None where the case has no foreground in this channel
    total: int
    dtype: np.dtype

    @staticmethod
    def expected(num_cases: int, num_samples: int, dtype) -> 'Layout':
        """Every case contributes ``num_samples`` values (the usual case)."""
        return Layout([k * num_samples for k in range(num_cases)], num_cases * num_samples, np.dtype(dtype))


@dataclass
class PartialSums:
    """One case's share of a pairwise sum: leaves within the case, and its pieces of the leaves at its borders."""
    leaves: Dict[Leaf, np.generic] = field(default_factory=dict)
    pieces: Dict[Leaf, np.ndarray] = field(default_factory=dict)


@dataclass
class ChannelDraws:
    """One case's draws for one channel: enough to draw the same samples again."""
    values: np.ndarray
    state: tuple
    num_samples: int
    counts: Optional[np.ndarray] = None  # draws per value (filled in the first round)


def summation_leaves(start: int, stop: int, out: Optional[List[Leaf]] = None) -> List[Leaf]:
    """The leaves, in order, of numpy's pairwise summation tree over ``[start, stop)`` (see ``_stats.pairwise_tree``)."""
    out = [] if out is None else out
    _stats.pairwise_tree(lambda s, e: out.append((s, e)) or 0, start, stop)
    return out


def draw_and_sum(segmentation: np.ndarray, images: np.ndarray, seed: int, num_samples: int, case_index: int,
                 num_cases: int) -> Tuple[List[Optional[ChannelDraws]], List[Optional[PartialSums]]]:
    """The first round for one case. Per channel: the draws ``sample_foreground_intensities`` makes, described
    (None where the channel has no foreground; one generator continued from channel to channel, as there), with the
    draws per value counted and the leaves summed assuming the expected layout (every case contributes, in the
    case's dtype)."""
    foreground = segmentation[0] > 0
    rs = np.random.RandomState(seed)
    draws: List[Optional[ChannelDraws]] = []
    parts: List[Optional[PartialSums]] = []
    for c in range(len(images)):
        values = np.ascontiguousarray(images[c][foreground])
        if len(values) == 0:
            draws.append(None)
            parts.append(None)
            continue
        d = ChannelDraws(values, rs.get_state(), num_samples)
        layout = Layout.expected(num_cases, num_samples, values.dtype)
        parts.append(partial_sums(d, case_index * num_samples, layout, _identity, with_counts=True, generator=rs))
        draws.append(d)
    return draws, parts


def _sample_chunks(draws: ChannelDraws, dtype, bounds: Sequence[Tuple[int, int]],
                   counts: Optional[np.ndarray] = None, generator: Optional[np.random.RandomState] = None):
    """Yield the samples of consecutive ranges ``bounds`` (case-local, covering 0..num_samples in order) as
    ``dtype``; the draws per value are added to ``counts`` where given. ``generator``: the generator to draw with,
    already in ``draws.state`` (it is left after the draws); else a new one is put in that state."""
    rs = generator
    if rs is None:
        rs = np.random.RandomState()
        rs.set_state(draws.state)
    population = len(draws.values)
    for lo, hi in bounds:
        # the same draws as one choice() call: consecutive randint calls continue the same sequence
        idx = rs.randint(0, population, size=hi - lo)
        if counts is not None:
            counts += np.bincount(idx, minlength=population)
        yield draws.values[idx].astype(dtype, copy=False)


def partial_sums(draws: ChannelDraws, offset: int, layout: Layout, leaf_fn: Callable[[np.ndarray], np.ndarray],
                 with_counts: bool = False, generator: Optional[np.random.RandomState] = None) -> PartialSums:
    """This case's share of ``sum(leaf_fn(concatenation))`` as numpy's pairwise summation computes it; with
    ``with_counts`` the draws per value are stored in ``draws.counts`` on the way."""
    n = draws.num_samples
    leaves = [leaf for leaf in summation_leaves(0, layout.total) if leaf[1] > offset and leaf[0] < offset + n]
    bounds = [(max(s, offset) - offset, min(e, offset + n) - offset) for s, e in leaves]
    counts = np.zeros(len(draws.values), dtype=np.int64) if with_counts else None
    result = PartialSums()
    for (s, e), x in zip(leaves, _sample_chunks(draws, layout.dtype, bounds, counts, generator)):
        if s >= offset and e <= offset + n:
            result.leaves[(s, e)] = np.add.reduce(leaf_fn(x))
        else:
            result.pieces[(s, e)] = x
    if counts is not None:
        draws.counts = counts
    return result


def complete_sum(parts: Sequence[PartialSums], layout: Layout, leaf_fn: Callable[[np.ndarray], np.ndarray]):
    """numpy's pairwise sum of ``leaf_fn`` over the whole concatenation, from every case's partial sums (in case
    order): leaves shared by cases are summed from their concatenated pieces."""
    leaves: Dict[Leaf, np.generic] = {}
    pieces: Dict[Leaf, List[np.ndarray]] = {}
    for p in parts:
        leaves.update(p.leaves)
        for leaf, x in p.pieces.items():
            pieces.setdefault(leaf, []).append(x)
    for leaf, xs in pieces.items():
        leaves[leaf] = np.add.reduce(leaf_fn(np.concatenate(xs)))
    return _stats.pairwise_tree(lambda s, e: leaves[(s, e)], 0, layout.total)


def order_statistics_from_counts(draws: Sequence[ChannelDraws], dtype, ranks: np.ndarray) -> np.ndarray:
    """``sorted(samples)[ranks]`` from the values and how often each was drawn."""
    values = np.concatenate([d.values.astype(dtype, copy=False) for d in draws])
    counts = np.concatenate([d.counts for d in draws])
    order = np.argsort(values, kind='stable')
    cumulative = np.cumsum(counts[order])
    return values[order][np.searchsorted(cumulative, np.asarray(ranks), side='right')]


def layout_of(per_case: Sequence[Optional[ChannelDraws]], num_samples: int) -> Layout:
    """The actual layout of one channel: cases without foreground are left out and promote the dtype to float64,
    as the empty lists do in the reference's concatenation."""
    offsets, position, dtypes = [], 0, []
    for d in per_case:
        if d is None:
            offsets.append(None)
            dtypes.append(np.float64)
        else:
            offsets.append(position)
            position += num_samples
            dtypes.append(d.values.dtype)
    return Layout(offsets, position, np.result_type(*dtypes))


def channel_sum(parts: Sequence[Optional[PartialSums]], layout: Layout):
    """(numpy's sum of the channel's samples, numpy _var's ``arrmean``: that sum as a 1-element array / count)."""
    total = complete_sum([p for p in parts if p is not None], layout, _identity)
    arrmean = np.array([total], dtype=total.dtype)
    arrmean = np.true_divide(arrmean, np.intp(layout.total), out=arrmean, casting='unsafe', subok=False)
    return total, arrmean


def channel_statistics(per_case: Sequence[Optional[ChannelDraws]], total, arrmean: np.ndarray,
                       squared_parts: Sequence[Optional[PartialSums]], layout: Layout) -> Dict[str, float]:
    """The fingerprint's statistics of one channel (``aggregate_channel``'s numbers), from the sum of its samples,
    the partial sums of their squared deviations from ``arrmean`` and the draw counts."""
    drawn = [d for d in per_case if d is not None]
    count = np.intp(layout.total)
    mean = total.dtype.type(total / count)  # numpy's _mean and _var, operation by operation
    ssq = complete_sum([p for p in squared_parts if p is not None], layout, _stats.squared_deviation(arrmean))
    var = ssq.dtype.type(ssq / np.maximum(count - 0, 0))
    std = var.dtype.type(np.sqrt(var))
    p_low, median, p_high = _stats.percentiles_like_numpy(
        layout.total, _stats.FINGERPRINT_PERCENTILES,
        order_stats=lambda ranks: order_statistics_from_counts(drawn, layout.dtype, ranks))
    sampled = np.concatenate([d.values[d.counts > 0].astype(layout.dtype, copy=False) for d in drawn])
    return {'mean': float(mean), 'median': float(median), 'std': float(std), 'min': float(sampled.min()),
            'max': float(sampled.max()), 'percentile_99_5': float(p_high), 'percentile_00_5': float(p_low)}


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def later_round(draws: List[Optional[ChannelDraws]], offsets: List[Optional[int]], layouts: List[Optional[Layout]],
                arrmeans: List[Optional[np.ndarray]]) -> List[Optional[PartialSums]]:
    """Per channel where asked (a layout given): the case's partial sums of the squared deviations from
    ``arrmeans[c]``, or of the samples themselves where that is None (the layout was not the expected one)."""
    out: List[Optional[PartialSums]] = []
    for d, offset, layout, arrmean in zip(draws, offsets, layouts, arrmeans):
        if d is None or layout is None or offset is None:
            out.append(None)
            continue
        leaf_fn = _identity if arrmean is None else _stats.squared_deviation(arrmean)
        out.append(partial_sums(d, offset, layout, leaf_fn))
    return out


def without_counts(draws: List[Optional[ChannelDraws]]) -> List[Optional[ChannelDraws]]:
    """The draws as sent back to a worker (the counts stay with the main process)."""
    return [None if d is None else ChannelDraws(d.values, d.state, d.num_samples) for d in draws]


class NoForeground(ValueError):
    def __init__(self, channel: int):
        super().__init__(f"no foreground samples in channel {channel}")
        self.channel = channel


def summarised_statistics(draws: List[List[Optional[ChannelDraws]]], parts: List[List[Optional[PartialSums]]],
                          num_samples: int, num_channels: int, run_round) -> Dict[str, Dict[str, float]]:
    """Per channel (keys '0', '1', ...), the fingerprint's statistics from every case's first-round results.
    ``run_round(list of later_round argument tuples, one per case)`` runs later rounds (in the workers)."""
    n = len(draws)
    layouts = [layout_of([draws[k][c] for k in range(n)], num_samples) for c in range(num_channels)]
    for c, layout in enumerate(layouts):
        if layout.total == 0:
            raise NoForeground(c)
    sent = [without_counts(d) for d in draws]
    # the first round assumed every case contributes in its own dtype; where not, sum the samples again
    redo = [c for c, layout in enumerate(layouts)
            if layout.offsets != Layout.expected(n, num_samples, layout.dtype).offsets
            or any(d[c] is not None and d[c].values.dtype != layout.dtype for d in draws)]
    if redo:
        again = run_round([(sent[k], [layouts[c].offsets[k] if c in redo else None for c in range(num_channels)],
                            [layouts[c] if c in redo else None for c in range(num_channels)],
                            [None] * num_channels) for k in range(n)])
        for k in range(n):
            for c in redo:
                parts[k][c] = again[k][c]
    # the sums give the means; one more round sums the squared deviations of every channel
    sums = [channel_sum([p[c] for p in parts], layouts[c]) for c in range(num_channels)]
    squared = run_round([(sent[k], [layouts[c].offsets[k] for c in range(num_channels)], layouts,
                          [sums[c][1] for c in range(num_channels)]) for k in range(n)])
    return {str(c): channel_statistics([d[c] for d in draws], sums[c][0], sums[c][1], [q[c] for q in squared],
                                       layouts[c]) for c in range(num_channels)}
