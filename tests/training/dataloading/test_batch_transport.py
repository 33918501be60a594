"""Batches that travel through the workers' shared-memory slots arrive unchanged: every dtype, nesting, rings that
grow with the batch size, and things that cannot use a slot (strings, non-contiguous tensors) by plain pickling."""
import sys

import numpy as np
import pytest
import torch
from batchgenerators.dataloading.data_loader import DataLoader

from nnunetv2.training.dataloading._batch_transport import slots_per_worker
from nnunetv2.training.dataloading.augmenters import nnUNetNonDetMultiThreadedAugmenter

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='fork semantics')


def _expected(n: int) -> dict:
    """Batch number ``n``: contents and sizes depend only on n (sizes grow, so rings get replaced)."""
    side = 3 + n  # grows by more than the ring's 25 % headroom early on
    base = torch.arange(2 * side ** 3, dtype=torch.float32).reshape(2, side, side, side) + n
    return {'data': base,
            'target': [base > n + 5, (base[:, ::2, ::2, ::2].contiguous() * 3).to(torch.int16)],
            'pair': (torch.tensor(float(n), dtype=torch.float64), torch.full((3,), n, dtype=torch.bfloat16)),
            'np': np.full((2, side), n, dtype=np.float32), 'np_int': np.arange(n, dtype=np.int64),
            'empty': torch.zeros((0, 4), dtype=torch.uint8),
            'strided': base[:, :, 0],  # not contiguous: travels by pickle
            'keys': np.array([f'case_{n}', 'x']), 'n': n}


class _Counting(DataLoader):
    def __init__(self):
        super().__init__(list(range(4)), 2, 1, None, True, False, True)
        self.indices = list(range(4))
        self.n = 0

    def generate_train_batch(self):
        self.n += 1
        return _expected(self.n)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return type(b) is torch.Tensor and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(b) is type(a) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b



@pytest.mark.parametrize('slots', [True, False])
def test_batches_arrive_unchanged(deadline, slots):
    aug = nnUNetNonDetMultiThreadedAugmenter(_Counting(), None, 2, 3, seeds=None, pin_memory=False, wait_time=0.002)
    aug.share_batches_via_slots = slots
    try:
        numbers = set()
        for _ in range(30):
            batch = next(aug)
            assert _same(_expected(batch['n']), batch)
            # through a slot: copied into the main process's own memory; else torch's shared-memory tensors
            assert batch['data'].is_shared() != slots and batch['target'][0].is_shared() != slots
            assert batch['strided'].is_shared()  # never slotted
            batch['data'] += 1  # writable
            numbers.add((batch['n'], batch['keys'][0]))
        assert len(numbers) >= 15  # 30 batches; each worker counts 1, 2, 3, ... on its own
    finally:
        aug._finish()


def test_slot_count_bounds_memory():
    # about the queue's share per worker plus the batch being written
    assert slots_per_worker(6, 2) == 4
    assert slots_per_worker(6, 12) == 2
    assert slots_per_worker(3, 1) == 4
