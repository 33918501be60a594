"""Sliding-window building blocks against the values of spec 04 §3.2 and numbers recorded from the reference."""
import numpy as np
import pytest
import torch
from torch import nn

from nnunetv2.inference.sliding_window_prediction import (accumulate_tiles, compute_gaussian,
                                                          compute_steps_for_sliding_window, concurrent_cpu_passes,
                                                          ordered_map, thread_count_changes_result,
                                                          get_sliding_window_slicers, maybe_mirror_and_predict,
                                                          mirror_axes_subsets, pad_to_patch_size)

CPU = torch.device('cpu')


@pytest.mark.parametrize("image, tile, step, expected", [
    ((110,), (64,), 0.5, [[0, 23, 46]]),
    ((64,), (64,), 0.5, [[0]]),
    ((65,), (64,), 0.5, [[0, 1]]),
    ((113,), (64,), 0.5, [[0, 24, 49]]),  # 24.5 rounds half to even
    ((115,), (64,), 0.5, [[0, 26, 51]]),  # 25.5 rounds half to even
    ((100,), (64,), 1.0, [[0, 36]]),
    ((200, 130, 64), (128, 128, 64), 0.5, [[0, 36, 72], [0, 2], [0]]),
    # recorded from the reference (nnU-Net 2.8.1)
    ((61, 77, 59), (32, 32, 32), 0.37, [[0, 10, 19, 29], [0, 11, 22, 34, 45], [0, 9, 18, 27]]),
])
def test_steps(image, tile, step, expected):
    assert compute_steps_for_sliding_window(image, tile, step) == expected


@pytest.mark.parametrize("step", [0, -0.1, 1.01])
def test_steps_reject_bad_step(step):
    with pytest.raises(ValueError):
        compute_steps_for_sliding_window((100,), (64,), step)


# (patch, float64 sum of the fp16 map, min, count of min) recorded from the reference with value_scaling_factor 10
@pytest.mark.parametrize("patch, total, minimum, n_min", [
    ((32, 32, 32), 10077.422238707542, 5.960464477539063e-08, 321),
    ((64, 64), 4020.725321471691, 1.1324882507324219e-06, 1),
    ((20, 56, 40), 13778.12207043171, 5.960464477539063e-08, 425),
    ((5, 160, 192), 47284.596976816654, 5.960464477539063e-08, 918),
    ((7, 9), 61.843974351882935, 5.036592483520508e-05, 4),
])
def test_gaussian_matches_reference(patch, total, minimum, n_min):
    g = compute_gaussian(patch, 1. / 8, 10, torch.float16, CPU)
    assert g.dtype == torch.float16 and tuple(g.shape) == patch
    assert float(g.max()) == 10.0
    assert float(g.double().sum()) == total
    assert float(g.min()) == minimum
    assert int((g == g.min()).sum()) == n_min


def test_gaussian_closed_form_and_cache():
    patch = (20, 56, 40)
    g = compute_gaussian(patch, 1. / 8, 10, torch.float16, CPU)
    grids = np.meshgrid(*[np.arange(p) for p in patch], indexing='ij')
    closed = np.ones(patch)
    for d, (p, x) in enumerate(zip(patch, grids)):
        sigma = p / 8
        r = int(4 * sigma + 0.5)
        c = p // 2
        closed *= np.exp(-(x - c) ** 2 / (2 * sigma ** 2)) * (np.abs(x - c) <= r)
    closed = torch.from_numpy(closed * 10).half()
    closed[closed == 0] = closed[closed != 0].min()
    assert torch.equal(closed, g)
    assert compute_gaussian(patch, 1. / 8, 10, torch.float16, CPU) is g  # cached
    compute_gaussian.cache_clear()
    assert compute_gaussian(patch, 1. / 8, 10, torch.float16, CPU) is not g


def test_padding_and_unpadding():
    x = torch.arange(2 * 3 * 5 * 70, dtype=torch.float32).reshape(2, 3, 5, 70)
    padded, unpad = pad_to_patch_size(x, (8, 64))  # 2D patch: last two axes
    assert tuple(padded.shape) == (2, 3, 8, 70)
    assert torch.equal(padded[unpad], x)
    assert float(padded[:, :, 0].abs().sum()) == 0 and float(padded[:, :, -2:].abs().sum()) == 0  # 1 before, 2 after
    same, unpad2 = pad_to_patch_size(x, (3, 5, 64))
    assert same is x and torch.equal(same[unpad2], x)


def test_slicer_order_3d_and_2d():
    s3 = get_sliding_window_slicers((40, 32, 32), (32, 32, 32), 0.5)
    assert [sl[1].start for sl in s3] == [0, 8] and all(sl[0] == slice(None) for sl in s3)
    s2 = get_sliding_window_slicers((2, 96, 128), (64, 64), 0.5)
    # slice index outermost, then x, then y
    assert [(sl[1], sl[2].start, sl[3].start) for sl in s2][:7] == \
        [(0, 0, 0), (0, 0, 32), (0, 0, 64), (0, 32, 0), (0, 32, 32), (0, 32, 64), (1, 0, 0)]
    assert len(s2) == 12


def test_mirror_subsets_order():
    assert mirror_axes_subsets((0, 1, 2)) == [(2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
    assert mirror_axes_subsets((0, 1)) == [(2,), (3,), (2, 3)]


def test_mirroring_averages_logits():
    calls = []

    def net(x):
        calls.append(x.clone())
        return x * 2 + torch.arange(x.shape[-1], dtype=x.dtype)  # not mirror-symmetric

    x = torch.rand(1, 1, 4, 5, 6)
    out = maybe_mirror_and_predict(net, x.clone(), (0, 1, 2))
    assert len(calls) == 8
    expected = net(x)
    for axes in mirror_axes_subsets((0, 1, 2)):
        expected = expected + torch.flip(net(torch.flip(x, axes)), axes)
    torch.testing.assert_close(out, expected / 8)
    assert torch.equal(maybe_mirror_and_predict(lambda t: t * 3, x, None), x * 3)
    with pytest.raises(ValueError):
        maybe_mirror_and_predict(net, x, ())


def test_accumulation_is_weighted_average_in_fp16():
    data = torch.ones((2, 40, 36, 33))
    slicers = get_sliding_window_slicers((40, 36, 33), (32, 32, 32), 0.5)
    g = compute_gaussian((32, 32, 32), 1. / 8, 10, torch.float16, CPU)
    out = accumulate_tiles(data, slicers, lambda t: torch.full((1, 3, *t.shape[2:]), 0.75), 3, g, CPU, CPU)
    assert out.dtype == torch.float16 and tuple(out.shape) == (3, 40, 36, 33)
    # where the weights are not tiny fp16 subnormals the average is exact; at the far corners fp16 rounding of
    # products with ~6e-8 weights dominates (same in the reference); elsewhere fp16 sums are off by a few ulp
    assert float(out[0, 20, 18, 16]) == 0.75
    assert float((out[:, 8:32, 8:28, 8:25].float() - 0.75).abs().max()) <= 0.0025
    out1 = accumulate_tiles(data, slicers, lambda t: t[:, :1] * 2, 1, 1, CPU, CPU)
    assert torch.all(out1 == 2)


def test_batched_mirroring_matches_sequential():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.InstanceNorm3d(3, affine=True),
                              torch.nn.LeakyReLU(), torch.nn.Conv3d(3, 2, 1)).eval()
    x = torch.rand(1, 2, 8, 9, 10)
    with torch.no_grad():
        ref = maybe_mirror_and_predict(net, x, (0, 1, 2))
        for n in (2, 3, 8):
            torch.testing.assert_close(maybe_mirror_and_predict(net, x, (0, 1, 2), passes_per_batch=n), ref,
                                       rtol=1e-5, atol=1e-5)


def _small_unet() -> torch.nn.Module:
    """A small U-Net whose passes do the same arithmetic on every CPU, whatever thread runs them (_fixed_threads)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from _fixed_threads import FixedThreadCount
    torch.manual_seed(0)
    return FixedThreadCount(PlainConvUNet(
        2, 3, (8, 16, 32), torch.nn.Conv3d, 3, (1, 2, 2), (2, 2, 2), 3, (2, 2), conv_bias=True,
        norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={'eps': 1e-5, 'affine': True}, nonlin=torch.nn.LeakyReLU,
        nonlin_kwargs={'inplace': True}).eval())


def test_concurrent_passes_are_bit_identical_and_restore_threads():
    """Tiles predicted in parallel threads must give exactly the sequential fp16 sums."""
    net = _small_unet()
    data = torch.rand((2, 24, 20, 20))
    patch = (16, 16, 16)
    slicers = get_sliding_window_slicers(tuple(data.shape[1:]), patch, 0.5)
    assert len(slicers) == 8
    g = compute_gaussian(patch, 1. / 8, 10, torch.float16, CPU)
    threads = torch.get_num_threads()
    with torch.no_grad():
        predict = lambda t: maybe_mirror_and_predict(net, t, None)  # noqa: E731
        sequential = accumulate_tiles(data, slicers, predict, 3, g, CPU, CPU)
        with concurrent_cpu_passes(2) as pool:
            assert pool is not None
            tiles_parallel = accumulate_tiles(data, slicers, predict, 3, g, CPU, CPU, pool=pool, lookahead=3)
            # grad mode is per thread: pool threads must not record autograd graphs
            grad_modes = list(ordered_map(pool, lambda _: torch.is_grad_enabled(), range(4), 2))
    assert torch.get_num_threads() == threads
    assert torch.equal(tiles_parallel, sequential)
    assert grad_modes == [False] * 4


def test_concurrent_passes_off_for_one_worker():
    with concurrent_cpu_passes(1) as pool:
        assert pool is None


def test_thread_count_probe_detects_thread_dependent_results():
    threads = torch.get_num_threads()
    depends = lambda x: x * torch.get_num_threads()  # noqa: E731
    assert thread_count_changes_result(depends, (1, 2, 4, 4), 2, 1)
    assert not thread_count_changes_result(lambda x: (x * 2, x), (1, 2, 4, 4), 2, 1)
    assert torch.get_num_threads() == threads


def test_predictor_uses_concurrency_only_when_bit_identical(monkeypatch):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    monkeypatch.setattr(torch, 'get_num_threads', lambda: 4)
    monkeypatch.setattr(torch, 'set_num_threads', lambda n: None)
    predictor = nnUNetPredictor(device=CPU)
    assert predictor.cpu_concurrent_passes == 0  # automatic choice by default
    predictor.network = nn.Identity()
    assert predictor._concurrent_pass_workers((1, 1, 8, 12), n_passes=7) == 1  # too few passes to pay the check
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=64) == 4
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=5) == 4  # checked already: one per worker
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=3) == 1  # fewer passes than workers
    predictor = nnUNetPredictor(device=CPU)
    predictor.cpu_concurrent_passes = 0
    predictor.network = nn.Identity()
    calls = []
    import nnunetv2.inference.cpu_concurrent_passes as module
    monkeypatch.setattr(module, 'concurrent_pass_pins', lambda *a: calls.append(a) or None)
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=64) == 1
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=64) == 1
    assert len(calls) == 1  # checked once per network and tile shape
    predictor.cpu_concurrent_passes = 3  # set by the user: taken as is
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=64) == 3
    # a network of the client's own (another runtime's model put into predictor.network) is called as the reference
    # calls it, one pass at a time, without any check; a number set by the user still applies
    predictor.cpu_concurrent_passes = 0
    predictor.network = lambda x: x + 1
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=64) == 1
    assert len(calls) == 1
    predictor.cpu_concurrent_passes = 2
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=64) == 2
    # so is a network with a forward hook (features or statistics collected pass by pass), also a global one
    predictor.cpu_concurrent_passes = 0
    predictor.network = nn.Sequential(nn.Identity())
    handle = predictor.network[0].register_forward_hook(lambda m, a, o: None)
    assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=64) == 1
    handle.remove()
    handle = nn.modules.module.register_module_forward_pre_hook(lambda m, a: None)
    try:
        assert predictor._concurrent_pass_workers((1, 1, 8, 8), n_passes=64) == 1
    finally:
        handle.remove()
    assert len(calls) == 1  # none of these was checked
