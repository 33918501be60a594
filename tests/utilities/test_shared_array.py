"""Arrays reach another process through shared memory (equal values, dtypes and shapes, empty ones too), and the
prediction's preprocessing worker runs a case without importing torch."""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _tiny_plans import tiny_plans

from nnunetv2.utilities import shared_array

pytestmark = pytest.mark.skipif(not shared_array.AVAILABLE, reason="needs memfd_create (Linux)")


def _send_arrays(queue, done):
    from nnunetv2.utilities.shared_array import SharedArray
    rng = np.random.default_rng(0)
    queue.put([SharedArray(rng.random((2, 5, 7), dtype=np.float32)), SharedArray(np.arange(6, dtype=np.int16)),
               SharedArray(np.zeros((0, 4), dtype=np.float32)), 'torch' in sys.modules])
    done.wait()


def test_arrays_cross_processes_through_shared_memory():
    context = multiprocessing.get_context("spawn")
    queue, done = context.Queue(), context.Event()
    worker = context.Process(target=_send_arrays, args=(queue, done))
    worker.start()
    try:
        floats, ints, empty, worker_had_torch = queue.get(timeout=120)
    finally:
        done.set()
        worker.join(timeout=60)
    assert worker.exitcode == 0 and not worker_had_torch
    expected = np.random.default_rng(0).random((2, 5, 7), dtype=np.float32)
    assert floats.dtype == np.float32 and np.array_equal(floats, expected)
    assert ints.dtype == np.int16 and np.array_equal(ints, np.arange(6))
    assert empty.shape == (0, 4)
    floats += 1  # a private writable array: the worker's copy is gone, ours stays valid
    assert np.array_equal(floats, expected + 1)


WORKER_SCRIPT = textwrap.dedent('''
    import json, queue, sys, threading
    import numpy as np, SimpleITK as sitk
    from nnunetv2.inference.preprocessing_workers import preprocess_fromfiles_save_to_queue
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = sys.argv[1]
    plans, dataset_json = json.load(open(folder + "/plans.json")), json.load(open(folder + "/dataset.json"))
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((8, 16, 14)).astype(np.float32))
    image.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(image, folder + "/case_0000.nii.gz")
    pm = PlansManager(plans)
    items, done, abort = queue.Queue(), threading.Event(), threading.Event()
    worker = threading.Thread(target=preprocess_fromfiles_save_to_queue, args=(
        [[folder + "/case_0000.nii.gz"]], None, ["case"], pm, dataset_json, pm.get_configuration("3d_fullres"),
        items, done, abort))
    worker.start()
    item = items.get(timeout=120)
    abort.set()
    worker.join()
    print(type(item["data"]).__name__, item["data"].shape, "torch" in sys.modules)
''')


def test_the_preprocessing_worker_imports_no_torch(tmp_path):
    (tmp_path / "plans.json").write_text(json.dumps(tiny_plans()))
    (tmp_path / "dataset.json").write_text(json.dumps(
        {'labels': {'background': 0, 'thing': 1}, 'channel_names': {'0': 'MR'}, 'file_ending': '.nii.gz'}))
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["SharedArray", "(1,", "8,", "16,", "14)", "False"]
