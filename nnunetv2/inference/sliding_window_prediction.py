"""Sliding-window building blocks: tile positions, the Gaussian importance map, padding, TTA, accumulation.

Everything here is a plain function so the predictor (and tests) can call it directly. The numeric
recipe matters: accumulators are fp16 even on CPU, network outputs stay fp32 on CPU, and every
operation happens in the reference's order so CPU results are bit-identical.
"""
from __future__ import annotations

import itertools
from concurrent.futures import Executor
from functools import lru_cache
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

# the concurrency helpers lived here first; their names stay importable from this module
from nnunetv2.inference.cpu_concurrent_passes import (concurrent_cpu_passes, ordered_map,  # noqa: F401
                                                      thread_count_changes_result)
from nnunetv2.inference.tile_prefetch import TilePrefetcher, concrete_device, gather_tile

Slicer = Tuple[slice, ...]


@lru_cache(maxsize=2)
def compute_gaussian(tile_size: Union[Tuple[int, ...], List[int]], sigma_scale: float = 1. / 8,
                     value_scaling_factor: float = 1, dtype=torch.float16, device=torch.device('cuda', 0)) \
        -> torch.Tensor:
    """Strictly positive Gaussian weight map of shape ``tile_size`` whose centre value is ``value_scaling_factor``.

    Cached (2 entries) because the predictor asks for the same map for every case; call ``cache_clear()`` to free.
    """
    tile_size = tuple(int(i) for i in tile_size)
    impulse = np.zeros(tile_size, dtype=np.float64)
    impulse[tuple(i // 2 for i in tile_size)] = 1
    sigmas = [i * sigma_scale for i in tile_size]
    # SciPy's filter (not a closed form) so the float64 values match the reference to the last bit
    gaussian = gaussian_filter(impulse, sigmas, 0, mode='constant', cval=0)
    gaussian = gaussian / (np.max(gaussian) / value_scaling_factor)
    gaussian = torch.from_numpy(gaussian).to(device=device, dtype=dtype)
    # zeros (outside the kernel support, or underflow in fp16) would let a voxel's weight sum be 0 -> NaN
    zero = gaussian == 0
    if torch.any(zero):
        gaussian[zero] = torch.min(gaussian[~zero])
    return gaussian


def compute_steps_for_sliding_window(image_size: Tuple[int, ...], tile_size: Tuple[int, ...],
                                     tile_step_size: float) -> List[List[int]]:
    """Start positions per axis: evenly spread tiles, first at 0, last ending at the image border.

    The step is at most ``tile_size * tile_step_size``; positions are rounded half-to-even like ``np.round``.
    """
    if not 0 < tile_step_size <= 1:
        raise ValueError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
    steps = []
    for image_len, tile_len in zip(image_size, tile_size):
        target_step = tile_len * tile_step_size
        num_steps = int(np.ceil((image_len - tile_len) / target_step)) + 1
        if num_steps > 1:
            actual_step = (image_len - tile_len) / (num_steps - 1)
            steps.append([int(np.round(actual_step * k)) for k in range(num_steps)])
        else:
            steps.append([0])
    return steps


def sliding_window_summary(image_size: Tuple[int, ...], patch_size: Sequence[int], tile_step_size: float,
                           n_tiles: int) -> str:
    """What the verbose predictor prints about an image's sliding window (the reference's wording)."""
    steps = compute_steps_for_sliding_window(tuple(image_size)[len(image_size) - len(patch_size):],
                                             tuple(patch_size), tile_step_size)
    return (f'n_steps {n_tiles}, image size is {image_size}, tile_size {patch_size}, tile_step_size '
            f'{tile_step_size}\nsteps:\n{steps}')


def pad_to_patch_size(data: torch.Tensor, patch_size: Sequence[int]) -> Tuple[torch.Tensor, Slicer]:
    """Zero-pad the last ``len(patch_size)`` axes to at least the patch size (centred; extra voxel after).

    Returns the padded tensor (the input itself when nothing is padded) and the slicer that removes the padding.
    """
    n = len(patch_size)
    spatial = data.shape[-n:]
    before = [max(0, p - s) // 2 for s, p in zip(spatial, patch_size)]
    after = [max(0, p - s) - b for s, p, b in zip(spatial, patch_size, before)]
    unpad = tuple([slice(None)] * (data.ndim - n) + [slice(b, b + s) for b, s in zip(before, spatial)])
    if not any(before) and not any(after):
        return data, unpad
    # F.pad takes (last_before, last_after, second_last_before, ...)
    pad = []
    for b, a in zip(reversed(before), reversed(after)):
        pad += [b, a]
    return torch.nn.functional.pad(data, pad, mode='constant', value=0), unpad


def get_sliding_window_slicers(image_size: Tuple[int, ...], patch_size: Sequence[int],
                               tile_step_size: float) -> List[Slicer]:
    """Tile regions (channel axis included) in the reference's order: first axis outermost.

    ``image_size`` is the padded spatial shape (3 axes). 2D configurations (``len(patch_size) == 2``) iterate over
    every slice of the first axis and tile the last two axes.
    """
    patch_size = tuple(patch_size)
    slicers: List[Slicer] = []
    if len(patch_size) < len(image_size):
        if len(patch_size) != len(image_size) - 1:
            raise ValueError(f"2D patch size {patch_size} needs a 3D image shape, got {image_size}")
        steps = compute_steps_for_sliding_window(image_size[1:], patch_size, tile_step_size)
        for d in range(image_size[0]):
            for sx in steps[0]:
                for sy in steps[1]:
                    slicers.append(tuple([slice(None), d, *[slice(s, s + p) for s, p in zip((sx, sy), patch_size)]]))
    else:
        steps = compute_steps_for_sliding_window(image_size, patch_size, tile_step_size)
        for position in itertools.product(*steps):
            slicers.append(tuple([slice(None), *[slice(s, s + p) for s, p in zip(position, patch_size)]]))
    return slicers


def mirror_axes_subsets(mirror_axes: Sequence[int]) -> List[Tuple[int, ...]]:
    """All non-empty subsets of the tensor axes (spatial axes shifted by batch + channel), by size then order."""
    axes = [int(m) + 2 for m in mirror_axes]
    return [c for k in range(1, len(axes) + 1) for c in itertools.combinations(axes, k)]


def mirror_variants(mirror_axes: Optional[Sequence[int]], tile_ndim: int) -> List[Tuple[int, ...]]:
    """The flips of one tile's passes, in the reference's order: ``()`` (no flip) first, then
    :func:`mirror_axes_subsets`. ``mirror_axes`` None: no TTA, one pass."""
    if mirror_axes is None:
        return [()]
    if len(mirror_axes) == 0 or max(mirror_axes) > tile_ndim - 3:
        raise ValueError(f"mirror_axes {tuple(mirror_axes)} are invalid for a tile with {tile_ndim} dimensions")
    return [()] + mirror_axes_subsets(mirror_axes)


def maybe_mirror_and_predict(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                             mirror_axes: Optional[Sequence[int]], passes_per_batch: int = 1) -> torch.Tensor:
    """Network output for ``x`` (1, C, *P), averaged over all mirrorings of ``mirror_axes`` (None: no TTA).

    Logits are averaged; the sum is built in subset order and divided once (same rounding as the reference).
    ``passes_per_batch`` > 1 runs that many mirrored copies through the network as one batch: much faster on CPU,
    identical up to convolution rounding (~1e-6 relative), but not bit-identical to one pass at a time.
    """
    if mirror_axes is None:
        return network(x)
    if len(mirror_axes) == 0 or max(mirror_axes) > x.ndim - 3:
        raise ValueError(f"mirror_axes {tuple(mirror_axes)} are invalid for a tile of shape {tuple(x.shape)}")
    subsets = mirror_axes_subsets(mirror_axes)
    if passes_per_batch <= 1:
        prediction = network(x)
        for axes in subsets:
            prediction += torch.flip(network(torch.flip(x, axes)), axes)
    else:
        variants = [()] + subsets
        outputs = []
        for start in range(0, len(variants), passes_per_batch):
            group = variants[start:start + passes_per_batch]
            batch = torch.cat([torch.flip(x, a) if a else x for a in group])
            out = network(batch)
            outputs += [torch.flip(out[i:i + 1], a) if a else out[i:i + 1] for i, a in enumerate(group)]
        prediction = outputs[0].clone()
        for o in outputs[1:]:
            prediction += o
    prediction /= (len(subsets) + 1)
    return prediction


def accumulate_tiles(data: torch.Tensor, slicers: List[Slicer], predict_tile: Callable[[torch.Tensor], torch.Tensor],
                     num_heads: int, gaussian: Union[torch.Tensor, float], compute_device: torch.device,
                     results_device: torch.device, progress: Optional[Callable] = None,
                     pool: Optional[Executor] = None, lookahead: int = 8,
                     prefetch: Optional[int] = None,
                     predict_tiles: Optional[Callable[[Iterable[torch.Tensor]], Iterator[torch.Tensor]]] = None) \
        -> torch.Tensor:
    """Gaussian-weighted average of the tile predictions over the (padded) image, as fp16 (num_heads, *spatial).

    ``predict_tile`` maps a contiguous (1, C, *P) tile on ``compute_device`` to (1, num_heads, *P) logits.
    ``gaussian`` is the fp16 map on ``results_device`` or the scalar 1 (no weighting). With a ``pool`` (CPU only),
    tiles are predicted concurrently (at most ``lookahead`` ahead) but accumulated in tile order, so the fp16 sums
    round exactly as without it. ``prefetch``: tiles gathered and copied to ``compute_device`` by a background thread,
    this many ahead (0: in the loop; None: 2 where the image is not on ``compute_device``, i.e. results on the CPU
    and the network on an accelerator). Neither option changes a bit of the result. ``predict_tiles`` (instead of
    ``predict_tile`` and ``pool``) maps the stream of tiles to the stream of their predictions, in order.
    """
    data = data.to(results_device)
    spatial = data.shape[1:]
    predicted = torch.zeros((num_heads, *spatial), dtype=torch.half, device=results_device)
    n_predictions = torch.zeros(spatial, dtype=torch.half, device=results_device)
    iterator = slicers if progress is None else progress(slicers)
    if prefetch is None:
        prefetch = 2 if data.device.type != torch.device(compute_device).type else 0
    target = concrete_device(compute_device)
    tiles: Iterable[torch.Tensor] = (gather_tile(data, sl, target) for sl in slicers)
    prefetcher = TilePrefetcher(tiles, prefetch) if prefetch > 0 else None
    try:
        if prefetcher is not None:
            tiles = iter(prefetcher)
        predictions = predict_tiles(tiles) if predict_tiles is not None else \
            ordered_map(pool, predict_tile, tiles, lookahead)
        for sl, prediction in zip(iterator, predictions):
            prediction = prediction[0].to(results_device)
            if isinstance(gaussian, torch.Tensor):
                prediction *= gaussian
            # in-place adds into fp16 buffers: computed in the promoted dtype, rounded once (reference recipe)
            predicted[sl] += prediction
            n_predictions[sl[1:]] += gaussian
    finally:
        if prefetcher is not None:
            prefetcher.close()
    torch.div(predicted, n_predictions, out=predicted)
    if torch.any(torch.isinf(predicted)):
        raise RuntimeError("Encountered inf in predicted array. Aborting... If this problem persists, reduce "
                           "value_scaling_factor in compute_gaussian or increase the dtype of predicted_logits "
                           "to fp32")
    return predicted
