"""Finding the modules whose output changes with the torch thread count: each leaf on its own input of one pass."""
from __future__ import annotations

import torch
from torch import nn

from nnunetv2.inference.cpu_thread_probe import leaf_modules, same_bits, thread_dependent_modules


class _ThreadEcho(nn.Module):
    """Output = input times the torch thread count seen inside the call."""

    def forward(self, x):
        return x * torch.get_num_threads()


class _InPlaceEcho(nn.Module):
    """As :class:`_ThreadEcho`, overwriting its input (as an in-place nonlinearity does)."""

    def forward(self, x):
        return x.mul_(torch.get_num_threads())


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 3, 1), nn.Sequential(_ThreadEcho(), nn.LeakyReLU(0.1, inplace=True)),
                         nn.Conv3d(3, 2, 3, padding=1))


def _tile() -> torch.Tensor:
    return torch.randn((1, 1, 4, 4, 4), generator=torch.Generator().manual_seed(0))  # negative values too


def test_leaf_modules_are_those_without_submodules_except_the_network_and_the_skipped():
    net = _net()
    assert leaf_modules(net) == [net[0], net[1][0], net[1][1], net[2]]
    assert leaf_modules(net, skip=[net[0]]) == [net[1][0], net[1][1], net[2]]
    echo = _ThreadEcho()
    assert leaf_modules(echo) == []  # pinning the whole network would leave nothing to run concurrently


def test_the_modules_whose_output_depends_on_the_thread_count_are_found():
    previous = torch.get_num_threads()
    net = _net()
    assert thread_dependent_modules(net, _tile(), 2, 1) == [net[1][0]]
    assert thread_dependent_modules(net, _tile(), 2, 2) == []  # same count: nothing differs
    assert thread_dependent_modules(net, _tile(), 2, 1, skip=[net[1][0]]) == []
    assert thread_dependent_modules(_ThreadEcho(), _tile(), 2, 1) == []
    assert thread_dependent_modules(lambda x: x * torch.get_num_threads(), _tile(), 2, 1) == []
    assert torch.get_num_threads() == previous
    assert all(not h for m in net.modules() for h in (m._forward_hooks, m._forward_pre_hooks))  # hooks removed


def test_a_module_that_overwrites_its_input_is_run_again_on_a_copy_taken_before_the_call():
    """Run again on the input it has overwritten, whose tensor is also its output, it would overwrite its own output
    once more and be compared with itself: never found."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 2, 1), _InPlaceEcho(), nn.LeakyReLU(0.1, inplace=True))
    assert thread_dependent_modules(net, _tile(), 2, 1) == [net[1]]


def test_the_probe_runs_each_leaf_with_the_other_count_once_per_call():
    seen = []

    class Log(nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x + 1
    log = Log()
    net = nn.Sequential(log, log)  # one module called twice in a pass
    previous = torch.get_num_threads()
    assert thread_dependent_modules(net, torch.zeros(2), 3, 1) == []
    assert seen == [3, 1, 3, 1]
    assert torch.get_num_threads() == previous


def test_same_bits():
    a = torch.tensor([0.0, 1.0])
    assert same_bits(a, a.clone()) and same_bits((a, [a]), (a.clone(), [a.clone()]))
    assert not same_bits(a, torch.tensor([-0.0, 1.0]).half())
    assert not same_bits(a, torch.tensor([0.0, 1.0 + 1e-7]))
    assert not same_bits(a, a[:1]) and not same_bits(a, 1.0) and not same_bits((a,), (a, a))
    assert same_bits({'x': a}, {'x': a.clone()}) and not same_bits({'x': a}, {'y': a})
    assert same_bits(None, None) and same_bits(3, 3)
