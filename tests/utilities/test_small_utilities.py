"""json_export, collate_outputs, helpers, InitWeights_He, ddp_allgather."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.ddp_allgather import AllGatherGrad, print_if_rank0
from nnunetv2.utilities.helpers import dummy_context, empty_cache, softmax_helper_dim0, softmax_helper_dim1
from nnunetv2.utilities.json_export import fix_types_iterable, recursive_fix_for_json_export
from nnunetv2.utilities.network_initialization import InitWeights_He


def test_recursive_fix_for_json_export():
    d = {np.int64(3): "x", "a": np.float32(1.5), "b": np.bool_(True), "c": np.array([1, 2], dtype=np.int16),
         "d": [np.int32(1), (np.float64(2.5), "s"), {"e": np.uint8(7)}], "f": (np.int8(4),),
         "g": torch.device("cpu"), "h": {np.int32(1): np.array([0.5])}, "i": "keep", "j": None}
    recursive_fix_for_json_export(d)
    assert d == {3: "x", "a": 1.5, "b": True, "c": [1, 2], "d": [1, (2.5, "s"), {"e": 7}], "f": (4,), "g": "cpu",
                 "h": {1: [0.5]}, "i": "keep", "j": None}
    assert type(list(d)[-1]) is int and type(d["a"]) is float and type(d["b"]) is bool and type(d["c"][0]) is int
    assert type(d["d"][1]) is tuple and type(d["f"][0]) is int
    json.dumps(d)  # serialisable now


def test_recursive_fix_for_json_export_moves_numpy_keys_last():
    # the reference re-inserts each converted key, so written JSON lists those keys after the others, in order
    d = {np.int64(2): "a", "x": 1, np.uint8(0): "b", "y": np.int64(5)}
    recursive_fix_for_json_export(d)
    assert list(d.items()) == [("x", 1), ("y", 5), (2, "a"), (0, "b")]
    assert all(type(k) in (int, str) for k in d)


def test_fix_types_iterable():
    out = fix_types_iterable([np.int64(1), [np.float16(0.5)], "ab", np.array([2, 3])], list)
    assert out == [1, [0.5], "ab", [2, 3]] and type(out[0]) is int and type(out[3][0]) is int
    assert fix_types_iterable(np.array([1.0, 2.0]), tuple) == (1.0, 2.0)


def test_collate_outputs():
    outs = [{"loss": 1.0, "tp": np.array([1, 2]), "names": ["a"]}, {"loss": np.float32(2.0), "tp": np.array([3, 4]),
                                                                    "names": ["b", "c"]}]
    c = collate_outputs(outs)
    assert c["loss"] == [1.0, 2.0]
    assert c["tp"].shape == (2, 2) and c["tp"].tolist() == [[1, 2], [3, 4]]
    assert c["names"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="Cannot collate"):
        collate_outputs([{"t": torch.zeros(1)}])


def test_helpers():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert torch.allclose(softmax_helper_dim0(x), torch.softmax(x, 0))
    assert torch.allclose(softmax_helper_dim1(x), torch.softmax(x, 1))
    assert softmax_helper_dim1(x)[0].tolist() == pytest.approx([0.26894142, 0.73105858])
    empty_cache(torch.device("cpu"))  # no-op
    with dummy_context():
        pass


def test_init_weights_he():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(2, 64, 3), nn.ConvTranspose2d(4, 4, 2, bias=False), nn.Linear(3, 3))
    lin_w = net[2].weight.detach().clone()
    net.apply(InitWeights_He(1e-2))
    assert torch.all(net[0].bias == 0) and net[1].bias is None
    assert torch.equal(net[2].weight, lin_w)  # other layers untouched
    std = net[0].weight.std().item()
    expected = (2.0 / (1 + 1e-4)) ** 0.5 / (2 * 27) ** 0.5  # kaiming normal, fan_in = 2 * 3^3
    assert abs(std - expected) / expected < 0.05


def test_allgather_single_process(tmp_path, capsys):
    import torch.distributed as dist
    print_if_rank0("before")  # not distributed: prints
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        x = torch.tensor([1.0, 2.0], requires_grad=True)
        y = AllGatherGrad.apply(x)
        assert y.shape == (1, 2) and y.tolist() == [[1.0, 2.0]]
        (y * torch.tensor([[3.0, 4.0]])).sum().backward()
        assert x.grad.tolist() == [3.0, 4.0]
        print_if_rank0("rank0")
    finally:
        dist.destroy_process_group()
    assert capsys.readouterr().out == "before\nrank0\n"
