"""DeepSupervisionWrapper with fewer weight factors than outputs: refused (the reference fails on it too), rather
than leaving the lower-resolution outputs out of the loss without a word. More weights than outputs stay fine."""
import pytest
import torch

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper


def _loss(a, b):
    return (a - b).abs().mean()


def test_fewer_weights_than_outputs_is_refused():
    wrapper = DeepSupervisionWrapper(_loss, [1.0, 0.5])
    outputs = [torch.ones(2), torch.ones(2), torch.ones(2)]
    targets = [torch.zeros(2), torch.zeros(2), torch.zeros(2)]
    with pytest.raises(ValueError, match="3 outputs but only 2 weight factors"):
        wrapper(outputs, targets)


def test_more_weights_than_outputs_uses_the_first_ones():
    wrapper = DeepSupervisionWrapper(_loss, [1.0, 0.5, 0.25])
    out = wrapper([torch.ones(2), torch.ones(2)], [torch.zeros(2), torch.zeros(2)])
    assert out.item() == 1.5
