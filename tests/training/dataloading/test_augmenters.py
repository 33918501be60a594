"""A failing augmentation worker stops training quickly with its own error (never a hang, never the bare
"background workers are no longer alive")."""
import os
import signal
import sys

import numpy as np
import pytest
import torch
from batchgenerators.dataloading.data_loader import DataLoader
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

from nnunetv2.errors import UserError
from nnunetv2.training.dataloading import augmenters
from nnunetv2.training.dataloading.augmenters import (AugmentationWorkerError, get_train_val_augmenters,
                                                      nnUNetNonDetMultiThreadedAugmenter, wrap_in_augmenter)

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='fork/SIGKILL semantics')


class _Loader(DataLoader):
    """Yields two good batches per worker, then fails the way ``mode`` says."""

    def __init__(self, mode: str):
        super().__init__(list(range(4)), 2, 1, None, True, False, True)
        self.indices = list(range(4))
        self.mode = mode
        self.n = 0

    def generate_train_batch(self):
        self.n += 1
        if self.n > 2:
            if self.mode == 'raise':
                raise ValueError('corrupt patch in case_007')
            if self.mode == 'kill':
                os.kill(os.getpid(), signal.SIGKILL)
            if self.mode == 'user':
                raise UserError('Preprocessed case file x.b2nd is missing.', 'Re-run preprocessing.')
        return {'data': torch.full((2, 1, 8, 8), float(self.n)), 'keys': np.array(['a', 'b'])}



def _drain(aug):
    for _ in range(1000):
        next(aug)


def test_worker_exception_carries_traceback(deadline):
    aug = wrap_in_augmenter(_Loader('raise'), 2, 2, False)
    with pytest.raises(ValueError, match='corrupt patch in case_007') as e:  # the deadline fixture catches hangs
        _drain(aug)
    cause = str(e.value.__cause__)  # the worker's own traceback
    assert 'in data augmentation worker' in cause and 'Traceback' in cause and 'generate_train_batch' in cause
    assert 'no longer alive' not in str(e.value)
    assert aug._processes == [] and not aug.initialized


def test_killed_worker_reports_out_of_memory(deadline):
    aug = wrap_in_augmenter(_Loader('kill'), 2, 2, False)
    with pytest.raises(AugmentationWorkerError, match=r'killed by signal 9 \(SIGKILL\), probably out of memory: '
                                                      r'lower nnUNet_n_proc_DA') as e:
        _drain(aug)
    assert isinstance(e.value, UserError)  # one line at the command line


def test_user_error_in_worker_stays_user_error(deadline):
    aug = wrap_in_augmenter(_Loader('user'), 1, 2, False)
    with pytest.raises(UserError, match='x.b2nd is missing') as e:
        _drain(aug)
    assert 'Traceback' in str(e.value.__cause__)


def test_healthy_augmenter_and_factory(deadline):
    tr, val = get_train_val_augmenters(_Loader('none'), _Loader('none'), 2, False)
    assert isinstance(tr, nnUNetNonDetMultiThreadedAugmenter) and tr.num_processes == 2 and tr.num_cached == 6
    assert val.num_processes == 1 and val.num_cached == 3
    try:
        batch = next(tr)
        assert batch['data'].shape == (2, 1, 8, 8)
        assert next(val)['data'].shape == (2, 1, 8, 8)
    finally:
        tr._finish()
        val._finish()
    st_tr, _ = get_train_val_augmenters(_Loader('none'), _Loader('none'), 0, False)
    assert isinstance(st_tr, SingleThreadedAugmenter)
    assert next(st_tr)['data'][0, 0, 0, 0] == 1


def _explode():
    raise RuntimeError('this object cannot be rebuilt in the main process')


class _BadOnArrival:
    def __reduce__(self):
        return _explode, ()


class _UnreceivableLoader(_Loader):
    def generate_train_batch(self):
        return {'data': torch.zeros((2, 1, 4, 4)), 'bad': _BadOnArrival()}


def test_batch_that_cannot_be_received_raises_instead_of_hanging(deadline, monkeypatch):
    # no worker failed, so no worker report may be waited for: with an endless grace period such a wait would hit
    # the deadline (instead of a wall-clock limit, which a loaded machine can exceed)
    monkeypatch.setattr(augmenters, '_ERROR_REPORT_GRACE_S', 3600.0)
    aug = wrap_in_augmenter(_UnreceivableLoader('none'), 2, 2, False)
    with pytest.raises(AugmentationWorkerError, match='cannot be rebuilt in the main process') as e:
        _drain(aug)
    assert 'receiving a batch' in str(e.value) and 'Traceback' in str(e.value)
    assert aug._processes == []


def _die_holding_what_workers_take(monkeypatch):
    """From now on a forked process dies (SIGKILL) right after it takes any multiprocessing lock or semaphore: the
    moment an OOM kill or a SIGTERM to the whole process group can hit a worker."""
    import multiprocessing.synchronize as synchronize
    parent = os.getpid()

    def die_if_worker(got):
        if got and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return got

    make_methods = synchronize.SemLock._make_methods

    def _make_methods(self):
        make_methods(self)
        acquire = self.acquire
        self.acquire = lambda *a, **k: die_if_worker(acquire(*a, **k))

    monkeypatch.setattr(synchronize.SemLock, '_make_methods', _make_methods)
    monkeypatch.setattr(synchronize.SemLock, '__enter__', lambda self: die_if_worker(self._semlock.__enter__()))


@pytest.fixture
def default_start_method_fork():
    """The workers must inherit the patched locks, so they are forked: the augmenter starts them with the default
    start method, which Python 3.14 makes forkserver on Linux (a forkserver child never sees the patch)."""
    import multiprocessing
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method('fork', force=True)
    yield
    multiprocessing.set_start_method(previous, force=True)


def test_worker_killed_while_holding_a_shared_lock_does_not_hang_the_main_process(deadline, monkeypatch,
                                                                                   default_start_method_fork):
    # a worker killed inside multiprocessing.Event.is_set() kept the event's lock: the main process then waited
    # forever in abort_event.is_set() / set() (CI: SIGTERM to the group, stop message printed, the command never ended)
    _die_holding_what_workers_take(monkeypatch)
    aug = wrap_in_augmenter(_Loader('none'), 2, 2, False)
    try:
        with pytest.raises(AugmentationWorkerError, match=r'killed by signal 9 \(SIGKILL\)'):
            _drain(aug)
        assert aug._processes == [] and not aug.initialized
    finally:
        if aug._processes:  # the test failed: clean up without the augmenter's flags (their lock may be held for good)
            for p in aug._processes:
                p.kill()
                p.join()
            aug._processes, aug.initialized = [], False
            aug.abort_event = aug.pause_event = aug.results_loop_thread = None
