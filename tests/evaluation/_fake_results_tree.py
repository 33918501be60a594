"""A tiny fake nnU-Net results tree (numpy + SimpleITK + pickle only): two trained configurations, two folds, with
validation segmentations, probabilities (.npz) and properties (.pkl), plus raw labelsTr and gt_segmentations."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import SimpleITK as sitk

DATASET = 'Dataset999_Fake'
LABELS = {'background': 0, 'a': 1, 'b': 2}
SHAPE = (8, 14, 14)  # z, y, x as SimpleITK arrays
FOLDS = (0, 1)  # the folds a tree has unless asked otherwise


def _gt(i: int) -> np.ndarray:
    gt = np.zeros(SHAPE, np.uint8)
    gt[2:6, 2 + i:8 + i, 2:8] = 1
    gt[2:6, 2 + i:6 + i, 8:11] = 2
    return gt


def _write(arr: np.ndarray, path: str) -> None:
    im = sitk.GetImageFromArray(arr.astype(np.uint8))
    im.SetSpacing((0.7, 0.8, 3.0))
    im.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(im, path)


def make_fake_results_tree(root: str, configurations=('2d', '3d_fullres'), folds=FOLDS, n_cases: int = 4) -> dict:
    """Create nnUNet_raw/preprocessed/results under ``root``; returns {env var: folder}."""
    dirs = {n: os.path.join(root, n) for n in ('nnUNet_raw', 'nnUNet_preprocessed', 'nnUNet_results')}
    dataset_json = {'channel_names': {'0': 'CT'}, 'labels': LABELS, 'numTraining': n_cases, 'file_ending': '.nii.gz'}
    plans = {'dataset_name': DATASET, 'plans_name': 'nnUNetPlans', 'image_reader_writer': 'SimpleITKIO',
             'label_manager': 'LabelManager', 'transpose_forward': [0, 1, 2], 'transpose_backward': [0, 1, 2],
             'configurations': {c: {'data_identifier': f'nnUNetPlans_{c}', 'architecture': {
                 'network_class_name': 'dynamic_network_architectures.architectures.unet.PlainConvUNet',
                 'arch_kwargs': {}, '_kw_requires_import': []}} for c in configurations}}
    labels_tr = os.path.join(dirs['nnUNet_raw'], DATASET, 'labelsTr')
    gt_folder = os.path.join(dirs['nnUNet_preprocessed'], DATASET, 'gt_segmentations')
    for d in (labels_tr, gt_folder):
        os.makedirs(d)
    with open(os.path.join(dirs['nnUNet_preprocessed'], DATASET, 'nnUNetPlans.json'), 'w') as f:
        json.dump(plans, f)
    props = {'sitk_stuff': {'spacing': (0.7, 0.8, 3.0), 'origin': (1.0, 2.0, 3.0),
                            'direction': (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)},
             'spacing': [3.0, 0.8, 0.7]}
    for i in range(n_cases):
        for d in (labels_tr, gt_folder):
            _write(_gt(i), os.path.join(d, f'case_{i}.nii.gz'))
    for m, c in enumerate(configurations):
        model = os.path.join(dirs['nnUNet_results'], DATASET, f'nnUNetTrainer__nnUNetPlans__{c}')
        os.makedirs(model)
        for name, content in (('plans.json', plans), ('dataset.json', dataset_json)):
            with open(os.path.join(model, name), 'w') as f:
                json.dump(content, f)
        rs = np.random.RandomState(m)
        for k, fold in enumerate(folds):
            validation = os.path.join(model, f'fold_{fold}', 'validation')
            os.makedirs(validation)
            for i in range(n_cases):
                if i % len(folds) != k:
                    continue
                gt = _gt(i)
                one_hot = np.stack([gt == v for v in range(3)]).astype(np.float32)
                logits = one_hot * 2 + rs.normal(0, 1.0, one_hot.shape).astype(np.float32)
                logits[1, 0, 12:, 12:] += 6  # a spurious small label-1 component far from the object
                probs = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
                probs = probs.astype(np.float32)
                _write(probs.argmax(0), os.path.join(validation, f'case_{i}.nii.gz'))
                np.savez_compressed(os.path.join(validation, f'case_{i}.npz'), probabilities=probs)
                with open(os.path.join(validation, f'case_{i}.pkl'), 'wb') as f:
                    pickle.dump(props, f)
    return dirs
