"""``num_processes=None``: one worker per CPU, as ``multiprocessing.Pool(None)`` gives in the reference.

Clients that leave the choice to nnU-Net (MONAI's runner passes its own ``None`` defaults through) call the library
functions with ``None``; every function that starts a pool must accept it.
"""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.utilities import worker_processes
from nnunetv2.utilities.worker_processes import requested_processes, worker_count

LABELS = {'background': 0, 'a': 1}
DATASET_JSON = {'channel_names': {'0': 'CT'}, 'labels': LABELS, 'numTraining': 3, 'file_ending': '.nii.gz'}
PLANS = {"dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "label_manager": "LabelManager", "configurations": {}, "transpose_forward": [0, 1, 2],
         "transpose_backward": [0, 1, 2]}
CASES = ('c0', 'c1', 'c2')


@pytest.fixture(autouse=True)
def two_cpus(monkeypatch):
    # the pools really start (two workers) whatever machine runs the test
    monkeypatch.setattr(worker_processes, 'usable_cpus', lambda: 2)


def _write_seg(path, seg):
    sitk.WriteImage(sitk.GetImageFromArray(seg.astype(np.uint8)), path)


def _segmentation_folder(folder, seed):
    os.makedirs(folder)
    rs = np.random.RandomState(seed)
    for c in CASES:
        seg = np.zeros((4, 8, 8), np.uint8)
        seg[1:3, 2:6, 2:6] = 1
        seg[0, 0, 0] = rs.randint(2)  # a stray voxel: postprocessing removes it, Dice differs by case
        _write_seg(os.path.join(folder, f'{c}.nii.gz'), seg)
    for name, content in (('plans.json', PLANS), ('dataset.json', DATASET_JSON)):
        with open(os.path.join(folder, name), 'w') as f:
            json.dump(content, f)


def test_none_means_one_per_cpu():
    assert requested_processes(None) == 2 and requested_processes(3) == 3
    assert worker_count(None, 5) == 2 and worker_count(None, 1) == 1 and worker_count(None, None) == 2


def test_evaluation_and_postprocessing_accept_none(tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder_simple
    from nnunetv2.postprocessing.remove_connected_components import (
        apply_postprocessing_to_folder, determine_postprocessing, remove_all_but_largest_component_from_segmentation)
    ref, pred = str(tmp_path / 'ref'), str(tmp_path / 'pred')
    _segmentation_folder(ref, 0)
    _segmentation_folder(pred, 1)
    compute_metrics_on_folder_simple(ref, pred, [1], num_processes=None)
    with open(os.path.join(pred, 'summary.json')) as f:
        summary = json.load(f)
    assert [os.path.basename(c['prediction_file']) for c in summary['metric_per_case']] == \
        [f'{c}.nii.gz' for c in CASES]

    determine_postprocessing(pred, ref, num_processes=None)  # several rounds on one shared pool
    assert os.path.isfile(os.path.join(pred, 'postprocessing.pkl'))

    out = str(tmp_path / 'pp')
    apply_postprocessing_to_folder(pred, out, [remove_all_but_largest_component_from_segmentation],
                                   [{'labels_or_regions': [1]}], num_processes=None)
    for c in CASES:
        seg = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, f'{c}.nii.gz')))
        assert seg[0, 0, 0] == 0 and seg.sum() == 2 * 4 * 4


def test_ensembling_accepts_none(tmp_path):
    from nnunetv2.ensembling.ensemble import ensemble_folders
    props = {'sitk_stuff': {'spacing': (1.0, 1.0, 1.0), 'origin': (0.0, 0.0, 0.0),
                            'direction': (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, 'spacing': [1.0, 1.0, 1.0]}
    folders = []
    for seed in (0, 1):
        folder = str(tmp_path / f'in{seed}')
        _segmentation_folder(folder, seed)
        rs = np.random.RandomState(seed)
        for c in CASES:
            p = rs.rand(2, 4, 8, 8).astype(np.float32)
            np.savez_compressed(os.path.join(folder, f'{c}.npz'), probabilities=p / p.sum(0, keepdims=True))
            with open(os.path.join(folder, f'{c}.pkl'), 'wb') as f:
                pickle.dump(props, f)
        folders.append(folder)
    out = str(tmp_path / 'ens')
    ensemble_folders(folders, out, num_processes=None)
    for c in CASES:
        p = sum(np.load(os.path.join(f, f'{c}.npz'))['probabilities'] for f in folders)
        seg = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, f'{c}.nii.gz')))
        assert np.array_equal(seg, p.argmax(0))


def test_unpacking_accepts_none(tmp_path):
    from nnunetv2.training.dataloading.utils import unpack_dataset
    unpack_dataset(str(tmp_path), num_processes=None)  # nothing to unpack, but no TypeError on the count
