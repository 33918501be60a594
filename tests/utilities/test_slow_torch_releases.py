import logging

import pytest
import torch

from nnunetv2.utilities import slow_torch_releases
from nnunetv2.utilities.slow_torch_releases import slow_conv3d_reason, warn_if_conv3d_is_slow


@pytest.mark.parametrize("torch_version, cudnn_version, slow", [
    ("2.9.0+cu128", 91002, True),
    ("2.9.0+cu130", 92100, True),  # 2.9.0 turns cuDNN's 3-D convolutions off whatever cuDNN is there
    ("2.9.1+cu128", 91002, True),
    ("2.9.1+cu130", 91300, True),
    ("2.9.1+cu130", 91500, False),
    ("2.9.1", None, True),
    ("2.8.0+cu128", 91002, False),
    ("2.10.0+cu130", 91300, False),
    ("2.11.0+cu130", 91300, False),
    ("2.1.2", 8902, False),
    ("2.90.0", 91300, False),
])
def test_slow_conv3d_reason(torch_version, cudnn_version, slow):
    reason = slow_conv3d_reason(torch_version, cudnn_version)
    assert (reason is not None) == slow
    if slow:
        assert torch_version in reason and "torch >= 2.10" in reason


@pytest.fixture
def torch_2_9_0(monkeypatch):
    monkeypatch.setattr(slow_torch_releases, "_warned", False)
    monkeypatch.setattr(slow_torch_releases.torch, "__version__", "2.9.0+cu128")
    monkeypatch.setattr(slow_torch_releases.torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(slow_torch_releases.torch.backends.cudnn, "version", lambda: 91002)


def test_warns_once_for_a_3d_network_on_cuda(torch_2_9_0, caplog):
    with caplog.at_level(logging.WARNING, logger=slow_torch_releases.__name__):
        warn_if_conv3d_is_slow(torch.device("cuda", 0), 3)
        warn_if_conv3d_is_slow(torch.device("cuda", 0), 3)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "PyTorch 2.9.0+cu128 with cuDNN 91002" in warnings[0]


@pytest.mark.parametrize("device, dims", [(torch.device("cpu"), 3), (torch.device("cuda", 0), 2), ("cpu", 3)])
def test_silent_for_2d_networks_and_other_devices(torch_2_9_0, caplog, device, dims):
    with caplog.at_level(logging.WARNING, logger=slow_torch_releases.__name__):
        warn_if_conv3d_is_slow(device, dims)
    assert caplog.records == []
