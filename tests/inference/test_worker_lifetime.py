"""Background preprocessing workers start reliably: everything handed to a spawned worker outlives its start-up.

Regression: the per-worker ``done`` event was rebound on each loop pass, so a worker that had not yet unpickled its
arguments found the event's named semaphore unlinked and died ("Preprocessing worker 0 died unexpectedly"): the
default ``nnUNetv2_predict`` (3 preprocessing workers) crashed on any folder of two or more images.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from _slow_unpickle import SlowToUnpickle
from _tiny_plans import tiny_plans as _plans


def _iterator(images, properties, names, num_processes: int):
    from nnunetv2.inference.data_iterators import preprocessing_iterator_fromnpy
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(_plans())
    configuration_manager = plans_manager.get_configuration('3d_fullres')
    dataset_json = {'labels': {'background': 0, 'thing': 1}, 'channel_names': {'0': 'MR'}, 'file_ending': '.nii.gz'}
    return preprocessing_iterator_fromnpy(images, None, properties, names, plans_manager, dataset_json,
                                          configuration_manager, num_processes=num_processes)


def test_workers_survive_a_slow_start():
    """Each worker unpickles a slow object before its queue and events, so it reaches them long after the parent
    has started the next worker. Deterministic: before the fix worker 0's event was always gone by then."""
    num_processes = 3
    rng = np.random.default_rng(0)
    images = [rng.random((1, 8, 16, 14), dtype=np.float32) * (i + 1) for i in range(num_processes)]
    properties = [{'spacing': [3.0, 0.8, 0.8], 'slow': SlowToUnpickle(1.0)} for _ in images]
    names = [f'case_{i}' for i in range(num_processes)]
    items = list(_iterator(images, properties, names, num_processes))
    assert [item['ofile'] for item in items] == names
    for image, item in zip(images, items):
        assert tuple(item['data'].shape) == (1, 8, 16, 14)
        expected = (image - image.mean()) / max(image.std(), 1e-8)  # ZScore over the whole image, no resampling
        np.testing.assert_allclose(item['data'].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_a_worker_killed_while_waiting_for_the_end_does_not_hang_the_consumer(deadline):
    """A worker that has queued its last case waits until the consumer is done. Killed there (out of memory, a
    user's kill), it must not take the consumer with it: with a multiprocessing.Event the consumer's final
    ``set()`` waited forever for the dead waiter to wake."""
    image = np.random.default_rng(0).random((1, 8, 16, 14), dtype=np.float32)
    iterator = _iterator([image], [{'spacing': [3.0, 0.8, 0.8]}], ['case_0'], 1)
    item = next(iterator)
    assert item['ofile'] == 'case_0'
    worker = iterator.gi_frame.f_locals['processes'][0]
    time.sleep(0.5)  # the worker is past its last put, waiting for the end
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(timeout=10)
    with pytest.raises(StopIteration):  # the deadline fixture catches the hang
        next(iterator)
    assert worker.exitcode == -signal.SIGKILL
