"""Forward passes on the CPU, several at once in threads, bit-identical to the reference's passes one at a time.

Why: one pass of a tile keeps the cores busy only in part. Between layers the OpenMP threads wait for each other at
barriers, and when other processes share the cores (our own preprocessing and export workers, or anyone else's
jobs) a thread waits for one that is not running at all. Passes in parallel threads with fewer torch threads each
have fewer barriers to wait at. They do the same arithmetic wherever no kernel's result depends on the thread count:

* torch chooses the algorithm of a convolution with an all-ones kernel (the segmentation heads) by the thread count:
  its own im2col kernel on one thread, oneDNN on several, and the two sum in different orders. Such modules are
  pinned: they run with the reference's thread count in whichever thread calls them (:func:`pinned_thread_count`).
* anything else is checked, not assumed: one pass with a worker's thread count must equal one pass as the
  reference runs it, bit for bit, before the predictor uses the configuration. Which kernels depend on the count is
  a property of the CPU: on a Zen 4 none but the pinned ones, and that plain check says yes. On an Intel Xeon with
  AVX-512 FP16 3x3x3 convolutions of small inputs too (in the default 3d_fullres network the last encoder
  convolution, 320 channels on 8x7x7), and it says no. Only then are the modules whose output depends on the count
  on this CPU looked for (``cpu_thread_probe``), pinned as well, and the whole pass checked again
  (:func:`worker_pins`). CPUs where the plain check says yes pay nothing for that search.

Passes are the unit of work: the mirrored passes of one tile run concurrently too, and are summed in the reference's
order (:func:`mirrored_predictions`), so the fp16 accumulation rounds exactly as in the reference.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import torch
from torch import nn

from nnunetv2.inference.cpu_thread_probe import thread_dependent_modules

_T = TypeVar('_T')
_R = TypeVar('_R')

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def thread_sensitive_modules(network: Callable) -> List[nn.Module]:
    """Modules of ``network`` whose algorithm torch chooses by the thread count: convolutions with an all-ones kernel,
    stride 1 and no dilation (the case where torch prefers its own kernel on one thread)."""
    if not isinstance(network, nn.Module):
        return []
    return [m for m in network.modules() if isinstance(m, _CONVOLUTIONS) and all(k == 1 for k in m.kernel_size)
            and all(s == 1 for s in m.stride) and all(d == 1 for d in m.dilation)]


@contextmanager
def pinned_thread_count(modules: Sequence[nn.Module], threads: int) -> Iterator[None]:
    """While active, each of ``modules`` runs with ``threads`` torch threads, in whichever thread calls it (the torch
    thread count is a per-thread setting); the caller's count is restored after the call, also when it fails."""
    saved = threading.local()

    def before(module, args):
        stack = saved.__dict__.setdefault('stack', [])
        stack.append(torch.get_num_threads())
        if stack[-1] != threads:
            torch.set_num_threads(threads)

    def after(module, args, output):
        previous = saved.stack.pop()
        if previous != threads:
            torch.set_num_threads(previous)

    handles = []
    try:
        for m in modules:
            handles.append(m.register_forward_pre_hook(before))
            handles.append(m.register_forward_hook(after, always_call=True))
        yield
    finally:
        for h in handles:
            h.remove()


def _without_grad(fn: Callable[[_T], _R]) -> Callable[[_T], _R]:
    """``fn`` run under no_grad: grad mode is per thread, so pool threads do not inherit the caller's."""
    def wrapped(item: _T) -> _R:
        with torch.no_grad():
            return fn(item)
    return wrapped


@contextmanager
def concurrent_cpu_passes(workers: int, pinned: Sequence[nn.Module] = ()) -> Iterator[Optional[Executor]]:
    """A thread pool running ``workers`` CPU forward passes at once, torch's threads split between them; the modules
    in ``pinned`` keep the caller's thread count. Yields None when ``workers`` <= 1."""
    if workers <= 1:
        yield None
        return
    total_threads = torch.get_num_threads()
    per_worker = max(1, total_threads // workers)
    torch.set_num_threads(per_worker)
    try:
        with pinned_thread_count(pinned, total_threads), \
                ThreadPoolExecutor(workers, thread_name_prefix='nnunet_pass', initializer=torch.set_num_threads,
                                   initargs=(per_worker,)) as pool:
            yield pool
    finally:
        torch.set_num_threads(total_threads)


def _first_output(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def thread_count_changes_result(network: Callable[[torch.Tensor], torch.Tensor], tile_shape: Tuple[int, ...],
                                threads_a: int, threads_b: int) -> bool:
    """Whether one CPU pass over a (random) tile of ``tile_shape`` differs in any bit between two torch thread counts.

    The order of a kernel's sums depends only on shapes and threads, so a random tile reveals a difference with near
    certainty.
    """
    x = torch.randn(tile_shape, generator=torch.Generator().manual_seed(1234))
    previous = torch.get_num_threads()
    outputs = []
    try:
        with torch.no_grad():
            for threads in (threads_a, threads_b):
                torch.set_num_threads(threads)
                outputs.append(_first_output(network(x)))
    finally:
        torch.set_num_threads(previous)
    return not torch.equal(outputs[0], outputs[1])


def _pass_with_fewer_threads(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, total_threads: int,
                             per_worker: int, pinned: Sequence[nn.Module]):
    """One pass over ``x`` in this thread with a worker's ``per_worker`` threads, the modules in ``pinned`` with
    ``total_threads`` (as in a pool thread of :func:`concurrent_cpu_passes`). The thread count is restored after.

    In this thread and one pass after the other, not in a pool thread at the same time as the reference pass: torch
    drops its cached oneDNN convolutions whenever any thread changes its thread count, and a pass running meanwhile
    in another thread may then sum like one with the other count. Where the result depends on the count, a check
    overlapping the two passes said yes or no at random (seen on an Intel Xeon); this one says no every time."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(per_worker)
        with pinned_thread_count(pinned, total_threads), torch.no_grad():
            return _first_output(network(x))
    finally:
        torch.set_num_threads(previous)


# Where the plain check says no, finding and checking the modules to pin costs about four passes more (an Intel Xeon
# with AVX-512 FP16, the default 3d_fullres network), and running two passes at a time gains about a fifth of a
# pass each. With TTA, a one-tile image took 24 s before and 28 s with the search; three such images in one run
# 63 s and 58 s. So the search is made only where at least this many passes stand to gain from it (see
# PassVerdicts.may_search).
PROBE_MIN_PASSES = 64


def worker_pins(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, reference: torch.Tensor,
                total_threads: int, per_worker: int, may_search: bool = True) -> Optional[List[nn.Module]]:
    """The modules a worker (``per_worker`` threads) must run with ``total_threads`` besides
    :func:`thread_sensitive_modules` for its pass over ``x`` to equal ``reference`` (the first output of the pass with
    ``total_threads`` threads) in every bit; None where no such set was found.

    First the plain check: a worker's pass with the pointwise convolutions pinned. Where it agrees (on a Zen 4, say)
    the answer is no further modules, for one pass. Only where it does not are the modules that depend on the thread
    count on this CPU searched for (:func:`thread_dependent_modules`, about two passes) and, if there are any, the
    worker's pass is checked again with them pinned too (one pass more): the whole pass stays the gate, not the
    module-by-module probe. Without ``may_search`` a no of the plain check is the answer. All passes run in this thread
    one after the other (see :func:`_pass_with_fewer_threads`).
    """
    structural = thread_sensitive_modules(network)
    if torch.equal(_pass_with_fewer_threads(network, x, total_threads, per_worker, structural), reference):
        return []
    if not may_search:
        return None
    found = thread_dependent_modules(network, x, total_threads, per_worker, skip=structural)
    if found and torch.equal(_pass_with_fewer_threads(network, x, total_threads, per_worker, structural + found),
                             reference):
        return found
    return None


def concurrent_pass_pins(network: Callable[[torch.Tensor], torch.Tensor], tile_shape: Tuple[int, ...],
                         total_threads: int, workers: int, may_search: bool = True) -> Optional[List[nn.Module]]:
    """:func:`worker_pins` for the workers of ``concurrent_cpu_passes(workers, ...)`` (``total_threads // workers``
    threads each), on a random tile of ``tile_shape``: the pass with ``total_threads`` threads, then the check (one
    pass where the plain check agrees, about four where it does not)."""
    x = torch.randn(tile_shape, generator=torch.Generator().manual_seed(1234))
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(total_threads)
        with torch.no_grad():
            reference = _first_output(network(x))
    finally:
        torch.set_num_threads(previous)
    return worker_pins(network, x, reference, total_threads, max(1, total_threads // workers), may_search)


def ordered_map(pool: Optional[Executor], fn: Callable[[_T], _R], items: Iterable[_T], lookahead: int) -> Iterator[_R]:
    """``map(fn, items)`` computed on ``pool`` (None: in this thread), in order, at most ``lookahead`` items ahead."""
    if pool is None:
        yield from map(fn, items)
        return
    fn = _without_grad(fn)
    items = iter(items)
    pending = deque(pool.submit(fn, item) for item in itertools.islice(items, max(1, lookahead)))
    try:
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(items, 1):
                pending.append(pool.submit(fn, item))
            yield result
    finally:
        for future in pending:
            future.cancel()


def _averaged_groups(outputs: Iterator[torch.Tensor], group: int) -> Iterator[torch.Tensor]:
    """Consecutive ``group`` outputs summed in order into the first and divided once (where ``group`` > 1)."""
    while True:
        prediction = next(outputs, None)
        if prediction is None:
            return
        for _ in range(group - 1):
            prediction += next(outputs)
        if group > 1:
            prediction /= group
        yield prediction


def _pass_function(network: Callable[[torch.Tensor], torch.Tensor]) \
        -> Callable[[Tuple[torch.Tensor, Tuple[int, ...]]], torch.Tensor]:
    def one_pass(job: Tuple[torch.Tensor, Tuple[int, ...]]) -> torch.Tensor:
        x, axes = job
        if not axes:
            return network(x)
        return torch.flip(network(torch.flip(x, axes)), axes)
    return one_pass


def mirrored_predictions(pool: Optional[Executor], network: Callable[[torch.Tensor], torch.Tensor],
                         tiles: Iterable[torch.Tensor], variants: List[Tuple[int, ...]],
                         lookahead: int) -> Iterator[torch.Tensor]:
    """For every tile, the average of the network's outputs over the mirror ``variants`` (``()`` first: no flip),
    each pass a separate job on ``pool``. Summed and divided exactly as one tile at a time: the first output, plus
    the others in order, divided once (only where there is more than one variant)."""
    jobs = ((x, axes) for x in tiles for axes in variants)
    return _averaged_groups(ordered_map(pool, _pass_function(network), jobs, lookahead), len(variants))


def checked_mirrored_predictions(pool: Executor, network: Callable[[torch.Tensor], torch.Tensor],
                                 tiles: Iterable[torch.Tensor], variants: List[Tuple[int, ...]], lookahead: int,
                                 total_threads: int, on_verdict: Callable[[bool], None],
                                 on_pinned: Optional[Callable[[List[nn.Module]], None]] = None,
                                 may_search: bool = True) -> Iterator[torch.Tensor]:
    """:func:`mirrored_predictions` that first checks the concurrent configuration on the first real pass.

    That pass runs with ``total_threads`` threads, as the reference runs it (this result is used), then is checked
    against passes as a worker runs it (:func:`worker_pins`), one after the other in this thread. Where one agrees bit
    for bit the other passes run on ``pool``, the modules the check found to pin run with ``total_threads`` (on top of
    ``pool``'s own pins, given when it was made), else one at a time in this thread with ``total_threads`` threads.
    ``on_pinned`` gets those modules (none where the plain check agreed), then ``on_verdict`` the outcome. The check
    costs one pass where the plain check agrees, about four where it does not and ``may_search``, once.
    """
    one_pass = _pass_function(network)
    tiles = iter(tiles)
    first = next(tiles, None)
    if first is None:
        return
    per_worker = torch.get_num_threads()
    torch.set_num_threads(total_threads)
    try:
        reference = network(first)
        pins = worker_pins(network, first, _first_output(reference), total_threads, per_worker, may_search)
    except BaseException:
        torch.set_num_threads(per_worker)
        raise
    same = pins is not None
    if same and on_pinned is not None:
        on_pinned(pins)
    on_verdict(same)
    if same:
        torch.set_num_threads(per_worker)
    rest = itertools.chain(((first, axes) for axes in variants[1:]), ((x, axes) for x in tiles for axes in variants))
    with pinned_thread_count(pins or (), total_threads):
        outputs = itertools.chain([reference], ordered_map(pool if same else None, one_pass, rest, lookahead))
        yield from _averaged_groups(outputs, len(variants))


@dataclass
class _Verdict:
    concurrent: bool
    pinned: Tuple[nn.Module, ...]
    searched: bool  # a yes, or a no after the search for modules to pin (not only the plain check's no)
    passes_since: int  # passes run one at a time under a no without the search


class PassVerdicts:
    """Outcomes of the concurrency check per network, tile shape, thread count and workers, with the modules found to
    need pinning where it said yes. A no of the plain check without the search for modules to pin (``searched=False``,
    see :meth:`may_search`) holds until an image may search; the passes run one at a time under it are counted.
    Networks are held weakly where they allow it, so a new network that happens to get a freed one's address is not
    taken for it."""

    def __init__(self):
        self._weak: 'weakref.WeakKeyDictionary' = weakref.WeakKeyDictionary()
        self._by_id: dict = {}

    def _table(self, network) -> dict:
        try:
            return self._weak.setdefault(network, {})
        except TypeError:  # not weakly referenceable
            return self._by_id.setdefault(id(network), {})

    def get(self, network, key: tuple, may_search: bool = False) -> Optional[bool]:
        """The verdict; None where there is none yet, or only a no without the search that ``may_search`` allows."""
        entry = self._table(network).get(key)
        return None if entry is None or (may_search and not entry.searched) else entry.concurrent

    def may_search(self, network, key: tuple, n_passes: int) -> bool:
        """Whether an image of ``n_passes`` passes may search for modules to pin where the plain check says no: where
        ``PROBE_MIN_PASSES`` passes stand to gain, counting this image's and as many again as ran one at a time under
        an earlier no (a run that has predicted many images is likely to predict as many more; a one-image run of
        a small image never searches)."""
        entry = self._table(network).get(key)
        earlier = entry.passes_since if entry is not None and not entry.searched else 0
        return n_passes + earlier >= PROBE_MIN_PASSES

    def count_passes(self, network, key: tuple, n_passes: int) -> None:
        """``n_passes`` more ran one at a time under a no without the search."""
        entry = self._table(network).get(key)
        if entry is not None and not entry.searched:
            entry.passes_since += n_passes

    def pinned(self, network, key: tuple) -> List[nn.Module]:
        """The modules to pin besides :func:`thread_sensitive_modules` (none where the verdict is no or unknown)."""
        entry = self._table(network).get(key)
        return list(entry.pinned) if entry is not None and entry.concurrent else []

    def set(self, network, key: tuple, verdict: bool, pinned: Sequence[nn.Module] = (), searched: bool = True,
            passes: int = 0) -> None:
        """The check's outcome; ``passes``: those of the image that ran under a no without the search."""
        self._table(network)[key] = _Verdict(verdict, tuple(pinned), verdict or searched, passes)

    def all(self) -> List[bool]:
        return [e.concurrent for table in list(self._weak.values()) + list(self._by_id.values())
                for e in table.values()]


# where the predictor's networks come from: their modules keep no state between calls and may run in several threads
_STATELESS_MODULE_PACKAGES = ("torch.nn.", "dynamic_network_architectures.")


def may_run_in_threads(network: Callable) -> bool:
    """Whether ``network`` may run several passes at once in other threads without anyone noticing: a torch module
    made only of torch's and dynamic_network_architectures' layers, with no forward hook on any of them (nor a global
    one). Anything else is called as the reference calls it, one pass at a time in the caller's thread: a client's
    wrapper put into ``predictor.network`` (another runtime's model with a single infer request, a TensorRT context,
    a module that keeps state between calls), or hooks that collect features or statistics pass by pass."""
    if not isinstance(network, nn.Module) or isinstance(network, torch.jit.ScriptModule):
        return False
    return (all(type(m).__module__.startswith(_STATELESS_MODULE_PACKAGES) for m in network.modules())
            and not has_forward_hooks(network))


def has_forward_hooks(network: nn.Module) -> bool:
    """Whether a forward (pre-)hook is registered on any module of ``network``, or for all modules."""
    from torch.nn.modules import module as module_hooks
    if module_hooks._global_forward_hooks or module_hooks._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in network.modules())


def choose_pass_workers(network: Callable[[torch.Tensor], torch.Tensor], tile_shape: Tuple[int, ...], n_passes: int,
                        requested: int, verdicts: PassVerdicts, check_later: bool = False) -> int:
    """How many CPU forward passes run at once. ``requested`` > 0 (set by the user) is taken as is. Chosen
    automatically (0): at most 4, only for networks that :func:`may_run_in_threads`, and only where the passes stay
    bit-identical to the reference's. That is checked once per network, tile shape and thread count (kept in
    ``verdicts``, key ``(tile_shape, threads, workers)``):
    here with :func:`concurrent_pass_pins` (the modules it found to pin are kept with a yes), or, with
    ``check_later``, by the caller on the first real pass (see :func:`checked_mirrored_predictions`; the verdict is
    then left unset). The check costs about one pass (about four where the plain check says no and modules are
    looked for, where :meth:`PassVerdicts.may_search`), so it is done only for at least two passes per worker; a
    known verdict applies from one pass per worker on."""
    if requested > 0:
        return requested
    if not may_run_in_threads(network):
        return 1  # called as the reference calls it: one pass at a time, in the caller's thread
    total = torch.get_num_threads()
    workers = min(4, total)
    if workers <= 1 or n_passes < workers:
        return 1
    key = (tuple(tile_shape), total, workers)
    may_search = verdicts.may_search(network, key, n_passes)
    verdict = verdicts.get(network, key, may_search)
    if verdict is None:
        if n_passes < 2 * workers:
            return 1
        if check_later:
            return workers
        pins = concurrent_pass_pins(network, tuple(tile_shape), total, workers, may_search)
        verdicts.set(network, key, pins is not None, pins or (), searched=may_search, passes=n_passes)
        return 1 if pins is None else workers
    if not verdict:
        verdicts.count_passes(network, key, n_passes)
    return workers if verdict else 1
