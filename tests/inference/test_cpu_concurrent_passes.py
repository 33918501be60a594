"""Concurrent CPU forward passes: pinned thread counts, passes (mirrored ones too) as separate jobs, the check on the
first real pass, and the predictor's use of them; every result bit-identical to one pass at a time."""
from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

from nnunetv2.inference.cpu_concurrent_passes import (PassVerdicts, checked_mirrored_predictions,
                                                      choose_pass_workers, concurrent_cpu_passes,
                                                      concurrent_pass_pins, mirrored_predictions,
                                                      pinned_thread_count, thread_sensitive_modules)
from nnunetv2.inference.sliding_window_prediction import maybe_mirror_and_predict, mirror_variants
from _fixed_threads import FixedThreadCount


@pytest.fixture(autouse=True)
def _test_modules_count_as_stateless(monkeypatch):
    """The stand-in networks below (defined here, wrapped by _fixed_threads) keep no state between calls, and the
    hooks these tests register only watch which thread runs a pass: let the automatic choice treat the networks like
    torch's and dynamic_network_architectures' layers without hooks (tests/inference/test_sliding_window.py checks
    that real hooks and foreign modules turn it off)."""
    import nnunetv2.inference.cpu_concurrent_passes as module
    monkeypatch.setattr(module, '_STATELESS_MODULE_PACKAGES',
                        module._STATELESS_MODULE_PACKAGES + (__name__, FixedThreadCount.__module__))
    monkeypatch.setattr(module, 'has_forward_hooks', lambda network: False)


def _unet(dim: int = 3) -> nn.Module:
    """A small U-Net whose passes do the same arithmetic on every CPU (see _fixed_threads)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    torch.manual_seed(0)
    conv, norm = (nn.Conv3d, nn.InstanceNorm3d) if dim == 3 else (nn.Conv2d, nn.InstanceNorm2d)
    return FixedThreadCount(PlainConvUNet(1, 3, (8, 16, 32), conv, 3, (1, 2, 2), (2, 2, 2), 3, (2, 2), conv_bias=True,
                                          norm_op=norm, norm_op_kwargs={'eps': 1e-5, 'affine': True},
                                          nonlin=nn.LeakyReLU, nonlin_kwargs={'inplace': True}).eval())


class _ThreadEcho(nn.Module):
    """Output = input times the torch thread count seen inside the call."""

    def forward(self, x):
        return x * torch.get_num_threads()


def _at_least_two_threads() -> int:
    threads = torch.get_num_threads()
    if threads < 2:
        torch.set_num_threads(2)
    return threads


def _configure_tta_predictor(p, patch_size: tuple, concurrent_passes: int) -> None:
    """What predict_sliding_window_return_logits needs of an initialised predictor (p.network set): 3 outputs,
    mirroring on all axes, ``concurrent_passes`` as nnUNet_cpu_concurrent_passes would set it."""
    from types import SimpleNamespace
    p.configuration_manager = SimpleNamespace(patch_size=patch_size)
    p.label_manager = SimpleNamespace(num_segmentation_heads=3)
    p.allowed_mirroring_axes = (0, 1, 2)
    p.list_of_parameters = [p.network.state_dict()]
    p.cpu_concurrent_passes = concurrent_passes


def test_thread_sensitive_modules_are_the_pointwise_convolutions():
    net = nn.Sequential(nn.Conv3d(2, 4, 1), nn.Conv3d(4, 4, 3), nn.Conv3d(4, 4, 1, stride=2), nn.Conv2d(4, 4, (1, 1)),
                        nn.ConvTranspose3d(4, 4, 1), nn.Conv3d(4, 4, 1, dilation=2))
    assert thread_sensitive_modules(net) == [net[0], net[3]]
    seg_heads = thread_sensitive_modules(_unet())
    assert seg_heads and all(m.kernel_size == (1, 1, 1) for m in seg_heads)
    assert thread_sensitive_modules(lambda x: x) == []


def test_pinned_modules_run_with_the_pinned_count_and_restore_it():
    echo, other = _ThreadEcho(), _ThreadEcho()
    before = torch.get_num_threads()
    x = torch.ones(1)
    with pinned_thread_count([echo], 3):
        assert float(echo(x)) == 3
        assert float(other(x)) == before
        assert torch.get_num_threads() == before
        boom = nn.Sequential(echo, nn.Linear(2, 2))  # fails inside the pinned call's parent, after it
        with pytest.raises(RuntimeError):
            boom(x)
        assert torch.get_num_threads() == before
    assert float(echo(x)) == before  # hooks removed


def test_pinned_count_restored_when_the_pinned_module_fails():
    class Failing(nn.Module):
        def forward(self, x):
            raise ValueError('boom')
    failing = Failing()
    before = torch.get_num_threads()
    with pinned_thread_count([failing], before + 2):
        with pytest.raises(ValueError):
            failing(torch.ones(1))
        assert torch.get_num_threads() == before


@pytest.mark.parametrize('dim, mirror_axes', [(3, (0, 1, 2)), (3, None), (2, (0, 1))])
def test_passes_as_separate_jobs_are_bit_identical(dim, mirror_axes):
    net = _unet(dim)
    shape = (1, 1, 16, 16, 16) if dim == 3 else (1, 1, 32, 32)
    tiles = [torch.rand(shape, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    variants = mirror_variants(mirror_axes, len(shape))
    with torch.no_grad():
        sequential = [maybe_mirror_and_predict(net, t, mirror_axes) for t in tiles]
        with concurrent_cpu_passes(2, thread_sensitive_modules(net)) as pool:
            concurrent = list(mirrored_predictions(pool, net, iter(tiles), variants, lookahead=3))
    assert len(concurrent) == 3
    assert all(torch.equal(a, b) for a, b in zip(concurrent, sequential))


def test_check_on_the_first_pass_accepts_an_exact_configuration():
    net = _unet()
    tiles = [torch.rand((1, 1, 16, 16, 16), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    variants = mirror_variants((0, 1, 2), 5)
    verdicts = []
    threads = torch.get_num_threads()
    with torch.no_grad():
        sequential = [maybe_mirror_and_predict(net, t, (0, 1, 2)) for t in tiles]
        with concurrent_cpu_passes(2, thread_sensitive_modules(net)) as pool:
            checked = list(checked_mirrored_predictions(pool, net, tiles, variants, 3, threads, verdicts.append))
    assert verdicts == [True]
    assert all(torch.equal(a, b) for a, b in zip(checked, sequential))
    assert torch.get_num_threads() == threads


def test_check_on_the_first_pass_falls_back_to_one_pass_at_a_time():
    """A network whose result depends on the thread count: refused, and every pass computed as the reference does."""
    threads = torch.get_num_threads()
    if threads < 2:
        torch.set_num_threads(2)
    try:
        net = _ThreadEcho()
        tiles = [torch.rand((1, 1, 4, 4, 4)) for _ in range(3)]
        variants = mirror_variants((0, 1), 5)
        verdicts, seen = [], []
        with torch.no_grad():
            sequential = [maybe_mirror_and_predict(net, t, (0, 1)) for t in tiles]
            total = torch.get_num_threads()
            with concurrent_cpu_passes(2) as pool:
                for out in checked_mirrored_predictions(pool, net, tiles, variants, 3, total, verdicts.append):
                    seen.append(out)
        assert verdicts == [False]
        assert all(torch.equal(a, b) for a, b in zip(seen, sequential)) and len(seen) == 3
        assert concurrent_pass_pins(net, (1, 1, 4, 4, 4), total, 2) is None
        assert concurrent_pass_pins(_unet(), (1, 1, 16, 16, 16), total, 2) is not None
    finally:
        torch.set_num_threads(threads)


def test_predictor_runs_a_single_tiles_mirrored_passes_concurrently():
    """One tile with TTA (8 passes): concurrent on the CPU, checked once, bit-identical to one pass at a time."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    threads = _at_least_two_threads()
    try:
        results = {}
        p = nnUNetPredictor(device=torch.device('cpu'), allow_tqdm=False)
        p.network = _unet()
        for mode in (1, 0, 0):
            _configure_tta_predictor(p, (16, 16, 16), mode)
            calls = []

            def record(module, args, calls=calls):
                calls.append(threading.current_thread().name)  # list.append is atomic
            hook = p.network.register_forward_pre_hook(record)
            out = p.predict_sliding_window_return_logits(torch.rand((1, 16, 16, 16),
                                                                    generator=torch.Generator().manual_seed(3)))
            hook.remove()
            results.setdefault(mode, []).append((out, calls))
        (sequential, seq_calls), = results[1]
        (checked, first_calls), (cached, cached_calls) = results[0]
        assert torch.equal(checked, sequential) and torch.equal(cached, sequential)
        assert len(seq_calls) == 8 and len(first_calls) == 9 and len(cached_calls) == 8  # the check: one pass more
        assert any(name.startswith('nnunet_pass') for name in cached_calls)
        assert p._pass_verdicts().all() == [True]
    finally:
        torch.set_num_threads(threads)


class _CallLog(nn.Module):
    """Identity that records, per call, the calling thread and the torch thread count, and whether another call was
    running at the same time."""

    def __init__(self):
        super().__init__()
        self.calls, self.running, self.overlapped = [], 0, False
        self.lock = threading.Lock()

    def forward(self, x):
        with self.lock:
            self.running += 1
            self.overlapped |= self.running > 1
            self.calls.append((threading.current_thread().name, torch.get_num_threads()))
        try:
            time.sleep(0.05)  # long enough for a pass started at the same time to be seen
            return x.clone()
        finally:
            with self.lock:
                self.running -= 1


def test_the_check_runs_its_two_passes_one_after_the_other_in_the_callers_thread():
    """Changing a thread count makes torch drop its cached oneDNN convolutions for every thread: a check whose two
    passes overlap could see a worker pass sum like the reference's on a CPU where the count matters (it did, at
    random, on an Intel Xeon). The reference pass, then one with a worker's thread count, never at the same time."""
    threads = torch.get_num_threads()
    if threads < 2:
        torch.set_num_threads(2)
    try:
        total = torch.get_num_threads()
        log = _CallLog()
        assert concurrent_pass_pins(log, (1, 1, 2, 2, 2), total, 2) is not None
        main = threading.current_thread().name
        assert log.calls == [(main, total), (main, max(1, total // 2))] and not log.overlapped

        log = _CallLog()
        tiles = [torch.rand((1, 1, 2, 2, 2)) for _ in range(3)]
        verdicts = []
        with torch.no_grad(), concurrent_cpu_passes(2) as pool:
            out = list(checked_mirrored_predictions(pool, log, tiles, [()], 3, total, verdicts.append))
        assert verdicts == [True] and all(torch.equal(a, b) for a, b in zip(out, tiles))
        assert log.calls[:2] == [(main, total), (main, max(1, total // 2))]
        assert all(name.startswith('nnunet_pass') for name, _ in log.calls[2:]) and len(log.calls) == 4
        assert torch.get_num_threads() == total
    finally:
        torch.set_num_threads(threads)


def _with_inner_echo() -> nn.Sequential:
    """A network with one inner module whose output depends on the thread count (as a convolution whose sums split
    differently with fewer threads on some CPU), between modules whose output does not."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 3, 1), _ThreadEcho(), nn.LeakyReLU(0.1))


class _EchoingRoot(nn.Sequential):
    """The network itself depends on the thread count too, outside any leaf: pinning leaves cannot make it exact."""

    def forward(self, x):
        return super().forward(x) + torch.get_num_threads()


def _no_probe(*args, **kwargs):
    raise AssertionError('the modules were probed although the plain check said yes')


def test_where_the_plain_check_says_yes_nothing_is_probed(monkeypatch):
    """On a CPU where a worker's pass with the pointwise convolutions pinned is already exact (the plain check), the
    check is the same as without the probe: one pass with a worker's threads, no module looked at."""
    import nnunetv2.inference.cpu_concurrent_passes as module
    monkeypatch.setattr(module, 'thread_dependent_modules', _no_probe)
    threads = _at_least_two_threads()
    try:
        total = torch.get_num_threads()
        net = _unet()
        assert concurrent_pass_pins(net, (1, 1, 16, 16, 16), total, 2) == []
        tiles = [torch.rand((1, 1, 16, 16, 16), generator=torch.Generator().manual_seed(i)) for i in range(2)]
        variants = mirror_variants((0, 1, 2), 5)
        calls, verdicts, pins = [], [], []
        hook = net.register_forward_pre_hook(lambda m, a: calls.append(threading.current_thread().name))
        with torch.no_grad():
            sequential = [maybe_mirror_and_predict(net, t, (0, 1, 2)) for t in tiles]
            calls.clear()
            with concurrent_cpu_passes(2, thread_sensitive_modules(net)) as pool:
                checked = list(checked_mirrored_predictions(pool, net, tiles, variants, 3, total, verdicts.append,
                                                            pins.append))
        hook.remove()
        assert verdicts == [True] and pins == [[]]
        assert all(torch.equal(a, b) for a, b in zip(checked, sequential)) and len(checked) == 2
        assert len(calls) == 2 * 8 + 1  # the check: one pass more, as before the probe existed
    finally:
        torch.set_num_threads(threads)


def test_where_the_plain_check_says_no_the_found_modules_are_pinned_and_the_check_says_yes():
    """The inner module runs with a worker's thread count in the plain check, which says no; the probe finds it,
    and with it pinned as well the whole pass is checked again and agrees."""
    threads = _at_least_two_threads()
    try:
        total = torch.get_num_threads()
        net = _with_inner_echo()
        assert concurrent_pass_pins(net, (1, 1, 4, 4, 4), total, 2) == [net[1]]
        tiles = [torch.rand((1, 1, 4, 4, 4), generator=torch.Generator().manual_seed(i)) for i in range(3)]
        variants = mirror_variants((0, 1, 2), 5)
        roots, inner = [], []
        root_hook = net.register_forward_pre_hook(
            lambda m, a: roots.append((threading.current_thread().name, torch.get_num_threads())))
        inner_hook = net[1].register_forward_hook(  # runs before the pin's own hook restores the count
            lambda m, a, o: inner.append((threading.current_thread().name, torch.get_num_threads())))
        verdicts, pins = [], []
        with torch.no_grad():
            sequential = [maybe_mirror_and_predict(net, t, (0, 1, 2)) for t in tiles]
            roots.clear(), inner.clear()
            with concurrent_cpu_passes(2, thread_sensitive_modules(net)) as pool:
                checked = list(checked_mirrored_predictions(pool, net, tiles, variants, 3, total, verdicts.append,
                                                            pins.append))
        root_hook.remove(), inner_hook.remove()
        assert verdicts == [True] and pins == [[net[1]]]
        assert all(torch.equal(a, b) for a, b in zip(checked, sequential)) and len(checked) == 3
        main = threading.current_thread().name
        # the used pass, the plain check, the probe, the check with the found module pinned: in this thread, in turn
        worker = max(1, total // 2)
        assert roots[:4] == [(main, total), (main, worker), (main, total), (main, worker)]
        assert len(roots) == 3 * 8 + 3
        in_pool = [n for name, n in inner if name.startswith('nnunet_pass')]
        assert in_pool and all(n == total for n in in_pool)
        assert float(net[1](torch.ones(1))) == total  # pins removed once the predictions are done
        assert torch.get_num_threads() == total
    finally:
        torch.set_num_threads(threads)


def test_where_pinning_the_found_modules_does_not_suffice_the_passes_stay_one_at_a_time(monkeypatch):
    """The network sums differently outside any leaf module: the probe finds the inner one, but with it pinned the
    whole pass still differs, so the check says no and every pass runs as the reference runs it."""
    import nnunetv2.inference.cpu_concurrent_passes as module
    from nnunetv2.inference.cpu_thread_probe import thread_dependent_modules
    probes = []
    monkeypatch.setattr(module, 'thread_dependent_modules',
                        lambda net, *a, **k: probes.append(net) or thread_dependent_modules(net, *a, **k))
    threads = _at_least_two_threads()
    try:
        total = torch.get_num_threads()
        torch.manual_seed(0)
        net = _EchoingRoot(nn.Conv3d(1, 3, 1), _ThreadEcho())
        assert concurrent_pass_pins(net, (1, 1, 4, 4, 4), total, 2) is None
        assert probes == [net]
        tiles = [torch.rand((1, 1, 4, 4, 4), generator=torch.Generator().manual_seed(i)) for i in range(2)]
        variants = mirror_variants((0,), 5)
        verdicts, pins, seen = [], [], []
        hook = net.register_forward_pre_hook(lambda m, a: seen.append(threading.current_thread().name))
        with torch.no_grad():
            sequential = [maybe_mirror_and_predict(net, t, (0,)) for t in tiles]
            seen.clear()
            with concurrent_cpu_passes(2) as pool:
                checked = list(checked_mirrored_predictions(pool, net, tiles, variants, 3, total, verdicts.append,
                                                            pins.append))
        hook.remove()
        assert verdicts == [False] and pins == [] and len(probes) == 2
        assert all(torch.equal(a, b) for a, b in zip(checked, sequential)) and len(checked) == 2
        assert not any(name.startswith('nnunet_pass') for name in seen)
        assert float(net[1](torch.ones(1))) == total  # nothing left pinned
    finally:
        torch.set_num_threads(threads)


def test_a_check_made_before_the_passes_keeps_the_found_modules():
    """Where tiles, not passes, are the unit of work, the check runs before the passes; it keeps what it found."""
    threads = _at_least_two_threads()
    try:
        total = torch.get_num_threads()
        workers = min(4, total)
        net, verdicts = _with_inner_echo(), PassVerdicts()
        assert choose_pass_workers(net, (1, 1, 4, 4, 4), 64, 0, verdicts) == workers
        assert verdicts.get(net, ((1, 1, 4, 4, 4), total, workers)) is True
        assert verdicts.pinned(net, ((1, 1, 4, 4, 4), total, workers)) == [net[1]]
        assert verdicts.pinned(net, ((1, 1, 8, 8, 8), total, workers)) == []  # another tile shape: not checked yet
    finally:
        torch.set_num_threads(threads)


def test_predictor_keeps_and_reuses_the_found_modules(monkeypatch):
    """The check runs on the first image; the second image (verdict known) pins the found module as well."""
    import nnunetv2.inference.cpu_concurrent_passes as module
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    monkeypatch.setattr(module, 'PROBE_MIN_PASSES', 8)  # one tile with TTA
    threads = _at_least_two_threads()
    try:
        total = torch.get_num_threads()
        p = nnUNetPredictor(device=torch.device('cpu'), allow_tqdm=False)
        p.network = _with_inner_echo()
        image = torch.rand((1, 8, 8, 8), generator=torch.Generator().manual_seed(3))
        results = {}
        for mode in (1, 0, 0):
            _configure_tta_predictor(p, (8, 8, 8), mode)
            calls = []
            hook = p.network[1].register_forward_hook(  # runs before the pin's own hook restores the count
                lambda m, a, o, calls=calls: calls.append((threading.current_thread().name,
                                                           torch.get_num_threads())))
            results.setdefault(mode, []).append((p.predict_sliding_window_return_logits(image), calls))
            hook.remove()
        (sequential, _), = results[1]
        (checked, _), (cached, cached_calls) = results[0]
        assert torch.equal(checked, sequential) and torch.equal(cached, sequential)
        assert p._pass_verdicts().all() == [True]
        key = ((1, 1, 8, 8, 8), total, min(4, total))  # as choose_pass_workers files it
        assert p._pass_verdicts().pinned(p.network, key) == [p.network[1]]
        assert any(name.startswith('nnunet_pass') for name, _ in cached_calls)
        assert all(n == total for _, n in cached_calls)
    finally:
        torch.set_num_threads(threads)


def test_an_image_too_small_to_pay_for_the_search_runs_one_pass_at_a_time_and_a_larger_one_searches():
    """The search for modules to pin costs about four passes: a one-tile image (8 passes with TTA) keeps the plain
    check's no (as before the search existed), and later images as small take that answer without checking again;
    an image with enough passes checks again, searches and runs its passes concurrently."""
    import nnunetv2.inference.cpu_concurrent_passes as module
    from nnunetv2.inference.cpu_thread_probe import thread_dependent_modules
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    threads = _at_least_two_threads()
    try:
        total = torch.get_num_threads()
        p = nnUNetPredictor(device=torch.device('cpu'), allow_tqdm=False)
        p.network = _with_inner_echo()
        _configure_tta_predictor(p, (8, 8, 8), 1)
        small = torch.rand((1, 8, 8, 8), generator=torch.Generator().manual_seed(3))
        large = torch.rand((1, 8, 8, 40), generator=torch.Generator().manual_seed(4))  # 9 tiles: 72 passes
        sequential = [p.predict_sliding_window_return_logits(x) for x in (small, large)]
        _configure_tta_predictor(p, (8, 8, 8), 0)
        key = ((1, 1, 8, 8, 8), total, min(4, total))
        original_probe, probes, calls = module.thread_dependent_modules, [], []
        module.thread_dependent_modules = lambda *a, **k: probes.append(1) or original_probe(*a, **k)
        hook = p.network.register_forward_pre_hook(lambda m, a: calls.append(threading.current_thread().name))
        try:
            for _ in range(2):
                calls.clear()
                assert torch.equal(p.predict_sliding_window_return_logits(small), sequential[0])
                assert probes == [] and not any(n.startswith('nnunet_pass') for n in calls)
                assert p._pass_verdicts().get(p.network, key) is False
            assert len(calls) == 8  # the second small image: no check at all
            calls.clear()
            assert torch.equal(p.predict_sliding_window_return_logits(large), sequential[1])
            assert probes == [1] and any(n.startswith('nnunet_pass') for n in calls)
            assert p._pass_verdicts().get(p.network, key, may_search=True) is True
            assert p._pass_verdicts().pinned(p.network, key) == [p.network[1]]
        finally:
            module.thread_dependent_modules = original_probe
            hook.remove()
        assert thread_dependent_modules is original_probe
    finally:
        torch.set_num_threads(threads)


def test_after_enough_small_images_under_a_plain_no_the_next_one_searches(monkeypatch):
    """A run of many small images: once as many passes as the search needs to pay off have run one at a time, the
    next image searches (a run that has predicted many images is likely to predict as many more)."""
    import nnunetv2.inference.cpu_concurrent_passes as module
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    monkeypatch.setattr(module, 'PROBE_MIN_PASSES', 24)  # three one-tile images with TTA
    probes = []
    original_probe = module.thread_dependent_modules
    monkeypatch.setattr(module, 'thread_dependent_modules', lambda *a, **k: probes.append(1) or original_probe(*a, **k))
    threads = _at_least_two_threads()
    try:
        p = nnUNetPredictor(device=torch.device('cpu'), allow_tqdm=False)
        p.network = _with_inner_echo()
        _configure_tta_predictor(p, (8, 8, 8), 1)
        image = torch.rand((1, 8, 8, 8), generator=torch.Generator().manual_seed(3))
        sequential = p.predict_sliding_window_return_logits(image)
        _configure_tta_predictor(p, (8, 8, 8), 0)
        searched_before = []
        for _ in range(4):
            assert torch.equal(p.predict_sliding_window_return_logits(image), sequential)
            searched_before.append(len(probes))
        assert searched_before == [0, 0, 1, 1]  # 8 + 8 passes ran one at a time, the third image (8 more) searched
        assert p._pass_verdicts().all() == [True]
    finally:
        torch.set_num_threads(threads)
