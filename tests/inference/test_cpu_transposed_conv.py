"""Transposed convolutions through the channels-last path: bit-identical to torch's own, checked per input shape,
and the modules restored afterwards."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunetv2.inference.cpu_transposed_conv import channels_last_to_contiguous, fast_transposed_convolutions


@pytest.mark.parametrize('shape, fmt', [((2, 5, 3, 4, 6), torch.channels_last_3d), ((3, 4, 7, 5), torch.channels_last)])
def test_channels_last_to_contiguous_keeps_every_value(shape, fmt):
    t = torch.randn(shape).contiguous(memory_format=fmt)
    out = channels_last_to_contiguous(t)
    assert out.is_contiguous() and torch.equal(out, t)


@pytest.mark.parametrize('conv, shape', [(nn.ConvTranspose3d(16, 8, (1, 2, 2), (1, 2, 2)), (1, 16, 6, 10, 12)),
                                         (nn.ConvTranspose3d(8, 4, 2, 2), (2, 8, 5, 6, 7)),
                                         (nn.ConvTranspose2d(8, 4, 2, 2), (1, 8, 12, 10))])
def test_same_bits_as_torch_and_modules_restored(conv, shape):
    net = nn.Sequential(nn.Conv3d(shape[1], shape[1], 1) if len(shape) == 5 else nn.Conv2d(shape[1], shape[1], 1),
                        conv).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = net(x)
        conv_input = net[0](x)
        with fast_transposed_convolutions(net):
            assert 'forward' in conv.__dict__
            patched = conv.forward
            # the fast path's values are right on every CPU; whether they are the same bits as torch's depends on the
            # kernels oneDNN picks for this CPU (on AVX2 the 2-D one differs), and so does which path is kept
            assert torch.allclose(patched._fast(conv_input), reference, rtol=1e-5, atol=1e-6)
            fast_calls = []
            fast = patched._fast
            patched._fast = lambda t: fast_calls.append(1) or fast(t)
            first, second = net(x), net(x)  # the first call compares both paths, the second takes the kept one
            verdicts = list(patched.verdicts.values())
    assert 'forward' not in conv.__dict__
    assert verdicts in ([True], [False])
    assert len(fast_calls) == (2 if verdicts[0] else 1)
    assert torch.equal(first, reference) and torch.equal(second, reference) and second.is_contiguous()


def test_fast_path_taken_where_it_gives_the_same_bits(monkeypatch):
    conv = nn.ConvTranspose3d(4, 2, 2, 2).eval()
    x = torch.randn((1, 4, 3, 3, 3))
    fast_calls = []
    with torch.no_grad():
        reference = conv(x)
        with fast_transposed_convolutions(conv):
            monkeypatch.setattr(type(conv.forward), '_fast', lambda self, t: fast_calls.append(1) or reference.clone())
            assert torch.equal(conv(x), reference) and torch.equal(conv(x), reference)
            assert list(conv.forward.verdicts.values()) == [True] and len(fast_calls) == 2


def test_torchs_path_kept_where_the_two_differ(monkeypatch):
    conv = nn.ConvTranspose3d(4, 2, 2, 2).eval()
    x = torch.randn((1, 4, 3, 3, 3))
    with torch.no_grad():
        reference = conv(x)
        with fast_transposed_convolutions(conv):
            monkeypatch.setattr(type(conv.forward), '_fast', lambda self, t: reference + 1)
            assert torch.equal(conv(x), reference) and torch.equal(conv(x), reference)
            assert list(conv.forward.verdicts.values()) == [False]


def test_left_alone_with_gradients_or_another_dtype():
    conv = nn.ConvTranspose3d(4, 2, 2, 2)
    x = torch.randn((1, 4, 3, 3, 3))
    with fast_transposed_convolutions(conv):
        y = conv(x)  # grad enabled: torch's path, and the graph works
        y.sum().backward()
        with torch.no_grad():
            conv.double()(x.double())
        assert conv.forward.verdicts == {}
    assert conv.weight.grad is not None
