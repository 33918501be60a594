"""Export workers forked by a prediction command right after it imported torch: the predictor takes them and their
results equal those of spawned workers; torch's threads work in them although the command computes with many
threads after the fork; no fork where it would be unsafe; a pool of the wrong size or one nobody takes is stopped;
and prestarted preprocessing workers the command releases still exit at once."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from nnunetv2.inference import forked_export_workers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="export workers are forked on Linux only")

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(script: str) -> str:
    """Run ``script`` in a fresh interpreter (torch not imported yet, as in a console command); its stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=180, cwd=HERE, env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


PREDICT_SCRIPT = '''
import sys
import numpy as np
from nnunetv2.inference import forked_export_workers, predict_cli
assert 'torch' not in sys.modules
predict_cli._import_predictor_and_fork_export_workers(5, 2)
forked = forked_export_workers._waiting
assert forked is not None and forked.pool._ctx.get_start_method() == 'fork'
forked_pids = sorted(p.pid for p in forked.pool._pool)

import torch
from torch import nn
from _tiny_plans import tiny_plans
from nnunetv2.inference import predict_from_raw_data
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

torch.set_num_threads(2)
torch.manual_seed(0)
(torch.randn(1500, 1500) @ torch.randn(1500, 1500)).sum()  # OpenMP's threads start here, after the fork
network = nn.Conv3d(1, 3, 3, padding=1)
plans_manager = PlansManager(tiny_plans())
dataset_json = {'labels': {'background': 0, 'a': 1, 'b': 2}, 'channel_names': {'0': 'MR'}, 'file_ending': '.nii.gz'}
predictor = predict_from_raw_data.nnUNetPredictor(device=torch.device('cpu'), use_mirroring=False,
                                                  allow_tqdm=False)
predictor.manual_initialization(network, plans_manager, plans_manager.get_configuration('3d_fullres'),
                                [network.state_dict()], dataset_json, 'nnUNetTrainer', None)
rng = np.random.default_rng(0)
images = [rng.random((1, 10, 20, 18), dtype=np.float32) * (i + 1) for i in range(2)]


def predict(num_export):
    properties = [{'spacing': [3.0, 0.8, 0.8]} for _ in images]
    return predictor.predict_from_list_of_npy_arrays([i.copy() for i in images], None, properties, None, 1, True,
                                                     num_export)


real_pool = predict_from_raw_data.WatchedPool
def no_spawned_pool(*args, **kwargs):
    raise AssertionError('the predictor started a pool of its own')
predict_from_raw_data.WatchedPool = no_spawned_pool
in_forked = predict(2)
assert forked_export_workers._waiting is None
assert all(p.exitcode is not None for p in forked._seen.values())  # the predictor stopped them when done
predict_from_raw_data.WatchedPool = real_pool
in_spawned = predict(2)
for (seg_f, prob_f), (seg_s, prob_s) in zip(in_forked, in_spawned):
    assert seg_f.shape == (10, 20, 18) and np.array_equal(seg_f, seg_s) and np.array_equal(prob_f, prob_s)
    assert len(np.unique(seg_f)) > 1
print('ok', *forked_pids)
'''


def test_the_predictor_takes_the_forked_workers_and_they_export_as_spawned_ones():
    out = _run(PREDICT_SCRIPT).splitlines()[-1].split()  # the predictor prints its progress before
    assert out[0] == 'ok' and len(out) == 3


def test_no_fork_after_torch_was_used_or_beside_another_thread():
    # in this (test) process torch is imported and has computed: its OpenMP threads may exist
    assert forked_export_workers.fork_export_pool(1, torch_just_imported=False) is False
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert forked_export_workers.fork_export_pool(1, torch_just_imported=True) is False
    finally:
        stop.set()
        other.join()
    assert forked_export_workers.take(1) is None


def test_a_command_that_imported_torch_before_does_not_fork():
    from nnunetv2.inference import predict_cli
    predict_cli._import_predictor_and_fork_export_workers(5, 2)
    assert forked_export_workers.take(2) is None


SIZE_AND_RELEASE_SCRIPT = '''
import time
from nnunetv2.inference import forked_export_workers, prestarted_preprocessing, predict_cli

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False

def gone_within(pids, seconds):
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)

prestarted_preprocessing.prestart(2)
preprocessing_pids = [w.process.pid for w in prestarted_preprocessing._waiting]
predict_cli._import_predictor_and_fork_export_workers(4, 2)
export_pids = [p.pid for p in forked_export_workers._waiting.pool._pool]
prestarted_preprocessing.release_unused()
# the forked workers hold no copy of the pipes' sending ends: the released workers exit while they live on
assert gone_within(preprocessing_pids, 30), 'released preprocessing workers still wait'
assert all(alive(p) for p in export_pids)
assert forked_export_workers.take(3) is None  # the predictor wants another number of workers
assert gone_within(export_pids, 30)

forked_export_workers.fork_export_pool(1, torch_just_imported=True)
export_pids = [p.pid for p in forked_export_workers._waiting.pool._pool]
forked_export_workers.release_unused()
assert forked_export_workers._waiting is None and gone_within(export_pids, 30)
print('ok')
'''


def test_a_pool_of_another_size_or_not_taken_is_stopped_and_released_preprocessing_workers_exit():
    assert _run(SIZE_AND_RELEASE_SCRIPT).split() == ['ok']
