"""How the predictor runs the forward passes of one image: which network, how many passes at once, in what units.

On an accelerator nothing changes: passes one at a time, as the reference. On the CPU:

* exact mode (default): passes run concurrently where that is bit-identical (``cpu_concurrent_passes``), the unit of
  work being a pass (mirrored ones too) unless a subclass predicts tiles its own way or mirrored passes are batched;
  transposed convolutions skip torch's slow output copy (``cpu_transposed_conv``).
* fast mode (``nnUNet_cpu_fast=1``): the network is replaced for the duration by its bfloat16 copy
  (``cpu_fast_mode``), and passes run concurrently without the bit-identity check (it is not exact anyway).
"""
from __future__ import annotations

from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Callable, Iterator, Optional, Tuple

import torch

from nnunetv2.inference.cpu_concurrent_passes import (checked_mirrored_predictions, concurrent_cpu_passes,
                                                      mirrored_predictions, thread_sensitive_modules)
from nnunetv2.inference.cpu_fast_mode import fast_network_for
from nnunetv2.inference.cpu_transposed_conv import fast_transposed_convolutions
from nnunetv2.inference.sliding_window_prediction import mirror_variants

LOOKAHEAD = 8  # passes in flight at most (each holds its tile and its logits)


def tile_prediction_overridden(predictor) -> bool:
    """Whether a subclass (or the instance) predicts a tile its own way (``_internal_maybe_mirror_and_predict``)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    return '_internal_maybe_mirror_and_predict' in predictor.__dict__ or \
        type(predictor)._internal_maybe_mirror_and_predict is not nnUNetPredictor._internal_maybe_mirror_and_predict


def passes_run_separately(predictor) -> bool:
    """Whether a tile's mirrored passes may run as separate jobs: not where a tile is predicted another way, nor where
    they are batched."""
    return not tile_prediction_overridden(predictor) and getattr(predictor, 'tta_passes_per_batch', 1) <= 1


def _fast_workers(requested: int, n_passes: int) -> int:
    if requested > 0:
        return requested
    workers = min(4, torch.get_num_threads())
    return workers if n_passes >= workers else 1


@contextmanager
def planned_passes(predictor, tile_shape: Tuple[int, ...], n_tiles: int) \
        -> Iterator[Tuple[Optional[Executor], Optional[Callable]]]:
    """``(pool, predict_tiles)`` for ``accumulate_tiles`` while the passes of one image run (see module docstring).
    In fast mode ``predictor.network`` is the bfloat16 copy until the block ends."""
    if predictor.device.type != 'cpu':
        yield None, None
        return
    variants = mirror_variants(predictor.allowed_mirroring_axes if predictor.use_mirroring else None,
                               len(tile_shape))
    separate = passes_run_separately(predictor)
    n_passes = n_tiles * len(variants)
    requested = getattr(predictor, 'cpu_concurrent_passes', 1)
    original = predictor.network
    total_threads = torch.get_num_threads()
    fast = fast_network_for(original, predictor.device) if getattr(predictor, 'cpu_fast', False) else None
    with ExitStack() as stack:
        if fast is not None:
            predictor.network = fast
            stack.callback(setattr, predictor, 'network', original)
            workers = _fast_workers(requested, n_passes) if separate or n_tiles > 1 else 1
        else:
            stack.enter_context(fast_transposed_convolutions(original))
            # a subclass predicting a tile its own way is called as by the reference (tile after tile, in the
            # caller's thread) unless the user asked for concurrent passes
            tiles_may_overlap = n_tiles > 1 and (requested > 0 or not tile_prediction_overridden(predictor))
            workers = predictor._concurrent_pass_workers(tile_shape, n_passes, check_later=separate) \
                if separate or tiles_may_overlap else 1
        key = (tuple(tile_shape), total_threads, workers)  # as choose_pass_workers files it
        verdicts = predictor._pass_verdicts()
        pinned = ()
        if fast is None and workers > 1:
            # the pointwise convolutions, and those found to depend on the thread count on this CPU (known once the
            # check has said yes for this tile shape; while the check runs, it pins them itself)
            pinned = thread_sensitive_modules(original) + verdicts.pinned(original, key)
        pool = stack.enter_context(concurrent_cpu_passes(workers, pinned))
        predict_tiles = None
        if pool is not None and separate:
            network = predictor.network
            found, may_search = [], verdicts.may_search(network, key, n_passes)
            if fast is None and requested <= 0 and verdicts.get(network, key, may_search) is None:
                predict_tiles = partial(checked_mirrored_predictions, pool, network, variants=variants,
                                        lookahead=LOOKAHEAD, total_threads=total_threads,
                                        on_verdict=lambda v: verdicts.set(network, key, v, found, may_search, n_passes),
                                        on_pinned=found.extend, may_search=may_search)
            else:
                predict_tiles = partial(mirrored_predictions, pool, network, variants=variants, lookahead=LOOKAHEAD)
        yield pool, predict_tiles
