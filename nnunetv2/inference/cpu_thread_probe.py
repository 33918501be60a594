"""Finding the modules of a network whose output, on the CPU at hand, changes with the torch thread count.

Why: concurrent CPU passes (``cpu_concurrent_passes``) give each pass fewer threads. On some CPUs a few kernels then
sum in another order: on an Intel Xeon with AVX-512 FP16, one of the 62 leaf modules of the default 3d_fullres
network (the last encoder convolution, 320 channels on 8x7x7) differs between 1 and 2 threads, and nothing else.
Running just those modules with the full count keeps a pass exact while the rest of it runs concurrently. Which
kernel oneDNN takes and how it splits the sums depends on the CPU, the shapes and the thread count, never on the
values, so one pass over a tile of the real shape finds them all.

Only called where the plain check has said no: it costs about two passes (each leaf runs twice, and each thread-count
change makes torch drop its cached oneDNN kernels).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn


def leaf_modules(network: nn.Module, skip: Sequence[nn.Module] = ()) -> List[nn.Module]:
    """The modules of ``network`` without submodules, in registration order, except ``network`` itself and those in
    ``skip``. The network itself is never a candidate: pinning it would leave nothing to run concurrently."""
    skipped = {id(m) for m in skip}
    return [m for m in network.modules()
            if m is not network and id(m) not in skipped and next(m.children(), None) is None]


def same_bits(a: Any, b: Any) -> bool:
    """Whether two module outputs are equal in every bit: tensors (same shape and dtype), or lists, tuples and dicts
    of them; other values by ``==``. Anything that cannot be compared counts as different, which at worst pins one
    module more than needed."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_bits(u, v) for u, v in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:
        return False


def _copied(value: Any) -> Any:
    """A copy of a module's arguments that survives the call: modules such as an in-place LeakyReLU overwrite their
    input. ``clone`` keeps the memory format, which can decide which kernel runs."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if type(value) in (list, tuple):
        return type(value)(_copied(v) for v in value)
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    return value


def thread_dependent_modules(network: Callable[[torch.Tensor], Any], x: torch.Tensor, total_threads: int,
                             other_threads: int, skip: Sequence[nn.Module] = ()) -> List[nn.Module]:
    """The leaf modules of ``network`` (see :func:`leaf_modules`) whose output on their own input of one pass over
    ``x`` with ``total_threads`` threads differs in any bit when run again on a copy of that input with
    ``other_threads`` threads; in the order of their first call. Runs in the caller's thread, without grad; the
    caller's thread count is restored. A network that is not an ``nn.Module`` has no modules to find."""
    if not isinstance(network, nn.Module):
        return []
    found: List[nn.Module] = []
    saved: Dict[int, List[Tuple[Any, Any]]] = {}

    def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
        saved.setdefault(id(module), []).append((_copied(args), _copied(kwargs)))

    def after(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        args_copy, kwargs_copy = saved[id(module)].pop()  # a stack: a module may call itself
        torch.set_num_threads(other_threads)
        try:
            again = module.forward(*args_copy, **kwargs_copy)  # forward, not __call__: no hooks of ours again
        finally:
            torch.set_num_threads(total_threads)
        if not same_bits(output, again) and all(m is not module for m in found):
            found.append(module)

    previous = torch.get_num_threads()
    handles = []
    try:
        for m in leaf_modules(network, skip):
            handles.append(m.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(m.register_forward_hook(after, with_kwargs=True))
        torch.set_num_threads(total_threads)
        with torch.no_grad():
            network(x)
    finally:
        for h in handles:
            h.remove()
        torch.set_num_threads(previous)
    return found
