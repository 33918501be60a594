"""The accelerator paths of the sliding window, checked on the CPU: out-of-memory fallback (the failed attempt is
freed before the retry), batched TTA only on the CPU, contiguous tiles, and the tile prefetch thread."""
from __future__ import annotations

import os
import sys
import threading
import weakref
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nnunetv2.inference.out_of_memory import is_out_of_memory, on_device_else_results_on_cpu
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import (accumulate_tiles, compute_gaussian, concurrent_cpu_passes,
                                                          get_sliding_window_slicers, maybe_mirror_and_predict)
from nnunetv2.inference.tile_prefetch import TilePrefetcher

CPU = torch.device('cpu')
PATCH = (8, 12, 12)


class _Net(nn.Module):
    """A small convolutional network; raises out-of-memory on its ``fail_on_call``-th call (0: never).

    At the failing call it keeps weak references to the failed attempt's accumulators and to the tile."""

    def __init__(self, fail_on_call: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(2, 3, 3, padding=1)
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.lock = threading.Lock()
        self.watched = []

    def forward(self, x):
        with self.lock:
            self.calls += 1
            call = self.calls
        if call == self.fail_on_call:
            frame = sys._getframe()
            while frame is not None and frame.f_code.co_name != 'accumulate_tiles':
                frame = frame.f_back
            if frame is not None:  # found in this thread's stack (without concurrent passes)
                local = frame.f_locals
                self.watched = [weakref.ref(local['predicted']), weakref.ref(local['n_predictions'])]
                del local
            del frame
            self.watched.append(weakref.ref(x))
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB (simulated)')
        return self.conv(x)


def _predictor(network: nn.Module, on_device: bool, concurrent_passes: int = 1) -> nnUNetPredictor:
    """A CPU predictor for ``network`` without a model folder. ``on_device`` takes the results-on-device path (with
    its out-of-memory fallback), which the constructor otherwise enables on CUDA only."""
    p = nnUNetPredictor(tile_step_size=0.5, device=CPU, allow_tqdm=False)
    p.network = network
    p.configuration_manager = SimpleNamespace(patch_size=PATCH)
    p.label_manager = SimpleNamespace(num_segmentation_heads=3)
    p.allowed_mirroring_axes = (0, 2)
    p.perform_everything_on_device = on_device
    p.cpu_concurrent_passes = concurrent_passes
    p.tta_passes_per_batch = 1
    return p


def _image() -> torch.Tensor:
    return torch.rand((2, 12, 18, 18), generator=torch.Generator().manual_seed(3))


def test_out_of_memory_is_recognised_and_nothing_else():
    assert is_out_of_memory(torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 1 GiB'))
    assert is_out_of_memory(RuntimeError('CUDA error: out of memory'))
    assert is_out_of_memory(RuntimeError('cuDNN error: CUDNN_STATUS_NOT_ENOUGH_MEMORY'))
    assert not is_out_of_memory(RuntimeError('Encountered inf in predicted array. Aborting...'))
    assert not is_out_of_memory(RuntimeError('Given groups=1, weight of size [8, 2, 3, 3, 3], expected input'))
    assert not is_out_of_memory(ValueError('out of memory'))


def test_other_errors_are_not_retried():
    calls = []

    def fails():
        calls.append('device')
        raise RuntimeError('Encountered inf in predicted array')

    with pytest.raises(RuntimeError, match='inf'):
        on_device_else_results_on_cpu(fails, lambda: calls.append('cpu'), CPU)
    assert calls == ['device']


@pytest.mark.parametrize('concurrent_passes', [1, 2])
def test_out_of_memory_frees_the_failed_attempt_before_the_retry(capsys, concurrent_passes):
    failing = _Net(fail_on_call=7)
    predictor = _predictor(failing, on_device=True, concurrent_passes=concurrent_passes)
    attempts, alive_at_retry = [], []
    first_attempt = predictor._internal_predict_sliding_window_return_logits

    def spy(data, slicers, do_on_device=True):
        attempts.append(do_on_device)
        if not do_on_device:
            alive_at_retry.extend(w() is not None for w in failing.watched)
        return first_attempt(data, slicers, do_on_device)

    predictor._internal_predict_sliding_window_return_logits = spy
    with torch.no_grad():
        logits = predictor.predict_sliding_window_return_logits(_image())
    # the tile always; the accumulators where the failing call ran in the accumulating thread's stack
    assert len(failing.watched) == (3 if concurrent_passes == 1 else 1)
    assert attempts == [True, False]
    assert alive_at_retry == [False] * len(failing.watched)
    assert 'Prediction on device was unsuccessful' in capsys.readouterr().out
    # and the retry gives exactly what an uninterrupted run gives
    expected = _predictor(_Net(), on_device=False).predict_sliding_window_return_logits(_image())
    assert logits.dtype == torch.float16 and torch.equal(logits, expected)
    assert not [t for t in threading.enumerate() if t.name.startswith('nnunet_tile_prefetch')]


def test_batched_tta_only_on_the_cpu(monkeypatch):
    monkeypatch.setenv('nnUNet_tta_batch', '8')
    batch_sizes = []

    def net(x):
        batch_sizes.append(x.shape[0])
        return x[:, :1] * 2

    predictor = _predictor(net, on_device=False)
    predictor.tta_passes_per_batch = nnUNetPredictor(device=CPU).tta_passes_per_batch
    assert predictor.tta_passes_per_batch == 8
    x = torch.rand((1, 2, *PATCH))
    on_cpu = predictor._internal_maybe_mirror_and_predict(x)
    assert batch_sizes == [4]  # the image and its three mirrorings over axes (0, 2)
    batch_sizes.clear()
    predictor.device = torch.device('cuda')  # nothing is moved to the device by this method
    on_cuda = predictor._internal_maybe_mirror_and_predict(x)
    assert batch_sizes == [1] * 4
    torch.testing.assert_close(on_cpu, on_cuda)


@pytest.mark.parametrize('image, patch', [((2, 13, 20, 19), (8, 12, 12)), ((2, 3, 20, 19), (12, 12))])
def test_tiles_reach_the_network_contiguous(image, patch):
    seen = []

    def predict_tile(x):
        seen.append(x.is_contiguous())
        return torch.ones((1, 2, *x.shape[2:]))

    data = torch.rand(image)
    slicers = get_sliding_window_slicers(tuple(data.shape[1:]), patch, 0.5)
    for prefetch in (0, 2):
        seen.clear()
        accumulate_tiles(data, slicers, predict_tile, 2, 1, CPU, CPU, prefetch=prefetch)
        assert len(seen) == len(slicers) > 1 and all(seen)


def test_a_compiled_network_is_compiled_once_for_all_image_shapes():
    """Views into images of different shapes have different strides; fed as they are, dynamo compiles one graph per
    image shape (guard failure: stride mismatch)."""
    import torch._dynamo
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append([tuple(t.stride()) for t in example_inputs if isinstance(t, torch.Tensor)])
        return graph_module.forward

    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.LeakyReLU())
    compiled = torch.compile(net, backend=counting_backend, dynamic=False)
    try:
        with torch.no_grad():
            for shape in [(1, 20, 20, 20), (1, 24, 22, 21), (1, 30, 20, 26)]:
                slicers = get_sliding_window_slicers(shape[1:], (16, 16, 16), 0.5)
                accumulate_tiles(torch.rand(shape), slicers, compiled, 2, 1, CPU, CPU)
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 1


@pytest.mark.parametrize('workers', [1, 2])
def test_prefetching_tiles_changes_no_bit(workers):
    net = _Net().eval()
    data = torch.rand((2, 12, 18, 18), generator=torch.Generator().manual_seed(5))
    slicers = get_sliding_window_slicers(tuple(data.shape[1:]), PATCH, 0.5)
    gaussian = compute_gaussian(PATCH, 1. / 8, 10, torch.float16, CPU)
    predict = lambda t: maybe_mirror_and_predict(net, t, (1,))  # noqa: E731
    with torch.no_grad(), concurrent_cpu_passes(workers) as pool:
        plain = accumulate_tiles(data, slicers, predict, 3, gaussian, CPU, CPU, pool=pool, prefetch=0)
        prefetched = accumulate_tiles(data, slicers, predict, 3, gaussian, CPU, CPU, pool=pool, prefetch=2)
    assert torch.equal(plain, prefetched)
    assert not [t for t in threading.enumerate() if t.name.startswith('nnunet_tile_prefetch')]


def test_prefetch_thread_stops_and_lets_go_when_the_consumer_fails():
    data = torch.rand((1, 30, 30, 30))
    slicers = get_sliding_window_slicers((30, 30, 30), (10, 10, 10), 0.5)
    tiles = []

    def predict_tile(x):
        tiles.append(weakref.ref(x))
        if len(tiles) == 3:
            raise torch.OutOfMemoryError('simulated')
        return x

    with pytest.raises(torch.OutOfMemoryError):
        accumulate_tiles(data, slicers, predict_tile, 1, 1, CPU, CPU, prefetch=4)
    assert not [t for t in threading.enumerate() if t.name.startswith('nnunet_tile_prefetch')]
    assert [t() for t in tiles[:2]] == [None, None]


def test_prefetcher_hands_over_errors_of_its_source():
    def source():
        yield 1
        raise ValueError('broken source')

    with TilePrefetcher(source(), 2) as prefetcher:
        it = iter(prefetcher)
        assert next(it) == 1
        with pytest.raises(ValueError, match='broken source'):
            next(it)
    with TilePrefetcher(iter(range(100)), 2) as prefetcher:  # closed with most items never consumed
        assert next(iter(prefetcher)) == 0
    assert not [t for t in threading.enumerate() if t.name.startswith('nnunet_tile_prefetch')]


def test_automatic_prefetch_only_where_tiles_change_device(monkeypatch):
    import nnunetv2.inference.sliding_window_prediction as swp
    made = []
    real = swp.TilePrefetcher
    monkeypatch.setattr(swp, 'TilePrefetcher', lambda items, depth: made.append(depth) or real(items, depth))
    data = torch.rand((1, 12, 12, 12))
    slicers = get_sliding_window_slicers((12, 12, 12), (8, 8, 8), 0.5)
    accumulate_tiles(data, slicers, lambda t: t, 1, 1, CPU, CPU)
    assert made == []  # image and network on the same device: nothing to overlap
    accumulate_tiles(data, slicers, lambda t: t, 1, 1, CPU, CPU, prefetch=3)
    assert made == [3]


if __name__ == '__main__':  # pragma: no cover
    sys.exit(pytest.main([os.path.abspath(__file__), '-q']))
