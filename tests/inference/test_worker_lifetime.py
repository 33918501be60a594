"""Background preprocessing workers start reliably: everything handed to a spawned worker outlives its start-up.

Regression: the per-worker ``done`` event was rebound on each loop pass, so a worker that had not yet unpickled its
arguments found the event's named semaphore unlinked and died ("Preprocessing worker 0 died unexpectedly"): the
default ``nnUNetv2_predict`` (3 preprocessing workers) crashed on any folder of two or more images.
"""
from __future__ import annotations

import numpy as np

from _slow_unpickle import SlowToUnpickle
from _tiny_plans import tiny_plans as _plans


def test_workers_survive_a_slow_start():
    """Each worker unpickles a slow object before its queue and events, so it reaches them long after the parent
    has started the next worker. Deterministic: before the fix worker 0's event was always gone by then."""
    num_processes = 3
    from nnunetv2.inference.data_iterators import preprocessing_iterator_fromnpy
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(_plans())
    configuration_manager = plans_manager.get_configuration('3d_fullres')
    dataset_json = {'labels': {'background': 0, 'thing': 1}, 'channel_names': {'0': 'MR'}, 'file_ending': '.nii.gz'}
    rng = np.random.default_rng(0)
    images = [rng.random((1, 8, 16, 14), dtype=np.float32) * (i + 1) for i in range(num_processes)]
    properties = [{'spacing': [3.0, 0.8, 0.8], 'slow': SlowToUnpickle(1.0)} for _ in images]
    names = [f'case_{i}' for i in range(num_processes)]
    items = list(preprocessing_iterator_fromnpy(images, None, properties, names, plans_manager, dataset_json,
                                                configuration_manager, num_processes=num_processes))
    assert [item['ofile'] for item in items] == names
    for image, item in zip(images, items):
        assert tuple(item['data'].shape) == (1, 8, 16, 14)
        expected = (image - image.mean()) / max(image.std(), 1e-8)  # ZScore over the whole image, no resampling
        np.testing.assert_allclose(item['data'].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_a_worker_killed_while_waiting_for_the_end_does_not_hang_the_consumer():
    """A worker that has queued its last case waits until the consumer is done. Killed there (out of memory, a
    user's kill), it must not take the consumer with it: with a multiprocessing.Event the consumer's final
    ``set()`` waited forever for the dead waiter to wake."""
    import os
    import signal
    import time

    import pytest
    from nnunetv2.inference.data_iterators import preprocessing_iterator_fromnpy
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(_plans())
    configuration_manager = plans_manager.get_configuration('3d_fullres')
    dataset_json = {'labels': {'background': 0, 'thing': 1}, 'channel_names': {'0': 'MR'}, 'file_ending': '.nii.gz'}
    image = np.random.default_rng(0).random((1, 8, 16, 14), dtype=np.float32)
    iterator = preprocessing_iterator_fromnpy([image], None, [{'spacing': [3.0, 0.8, 0.8]}], ['case_0'],
                                              plans_manager, dataset_json, configuration_manager, num_processes=1)

    def on_alarm(signum, frame):
        raise TimeoutError('the consumer hung on the dead worker')

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(60)
    try:
        item = next(iterator)
        assert item['ofile'] == 'case_0'
        worker = iterator.gi_frame.f_locals['processes'][0]
        time.sleep(0.5)  # the worker is past its last put, waiting for the end
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(timeout=10)
        with pytest.raises(StopIteration):
            next(iterator)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert worker.exitcode == -signal.SIGKILL
