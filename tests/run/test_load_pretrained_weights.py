"""-pretrained_weights: weights land on the network's own device, also in a DDP (gloo, CPU) process group."""
from __future__ import annotations

import socket

import pytest
import torch
from torch import distributed as dist

from nnunetv2.errors import UserError
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights


class _Net(torch.nn.Module):
    def __init__(self, n_classes: int):
        super().__init__()
        self.encoder = torch.nn.Conv2d(1, 4, 3)
        self.decoder = torch.nn.Module()
        self.decoder.seg_layers = torch.nn.ModuleList([torch.nn.Conv2d(4, n_classes, 1)])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _save(tmp_path, net) -> str:
    path = str(tmp_path / "pretrained.pth")
    torch.save({"network_weights": net.state_dict()}, path)
    return path


def test_loads_into_a_ddp_network_on_a_gloo_cpu_rank(tmp_path):
    # the global rank used to be taken as a GPU index (cuda:0 here): unloadable without CUDA
    torch.manual_seed(0)
    source = _Net(n_classes=5)
    path = _save(tmp_path, source)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        target = _Net(n_classes=3)  # another number of classes: only the segmentation head differs
        head_before = target.decoder.seg_layers[0].weight.detach().clone()
        ddp = torch.nn.parallel.DistributedDataParallel(target)
        load_pretrained_weights(ddp, path)
    finally:
        dist.destroy_process_group()
    assert torch.equal(target.encoder.weight, source.encoder.weight)
    assert target.encoder.weight.device.type == "cpu"
    assert torch.equal(target.decoder.seg_layers[0].weight, head_before)  # heads are never transferred


def test_wrong_architecture_is_a_user_error(tmp_path):
    path = _save(tmp_path, _Net(n_classes=2))
    other = _Net(n_classes=2)
    other.encoder = torch.nn.Conv2d(1, 8, 3)
    before = other.encoder.weight.detach().clone()
    with pytest.raises(UserError, match=r"do not fit this network: encoder.weight \(4, 1, 3, 3\) != \(8, 1, 3, 3\)"):
        load_pretrained_weights(other, path)
    assert torch.equal(other.encoder.weight, before)
