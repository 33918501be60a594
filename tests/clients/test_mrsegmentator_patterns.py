"""MRSegmentator's way of driving the predictor (mrsegmentator 2.0.0, read from its public wheel; no client code here).

MRSegmentator reads each image with its own SimpleITK reader into a (1, z, y, x) float32 array and a properties dict
holding only ``spacing`` and its own ``sitk_stuff``; it builds ``nnUNetPredictor(tile_step_size=0.5 or 0.8,
use_mirroring=..., device=cpu, verbose=..., verbose_preprocessing=..., allow_tqdm=...)``, initialises it from a
``pathlib.Path`` model folder with a tuple of folds, then either predicts a batch with
``predict_from_list_of_npy_arrays(imgs, None, props, None, num_processes=n, save_probabilities=False,
num_processes_segmentation_export=m)`` or (``--split_level``) cuts each image along its first spatial axis with an
overlap and calls ``predict_single_npy_array(part, props, None, None, False)`` per part, stitching the results.
The model here is fabricated: a small PlainConvUNet with seeded random weights, five folds, mirroring allowed.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from _tiny_plans import tiny_unet_plans
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

N_LABELS = 6


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory) -> Path:
    """MRSegmentator's weights folder: plans.json, dataset.json, version.json, fold_0..4/checkpoint_final.pth."""
    folder = tmp_path_factory.mktemp('mrseg_weights') / 'base'
    folder.mkdir()
    plans = tiny_unet_plans('Dataset200_MRSegTest')
    dataset_json = {'channel_names': {'0': 'MRI'}, 'file_ending': '.nii.gz', 'numTraining': 10,
                    'labels': {'background': 0, **{f'organ_{i}': i for i in range(1, N_LABELS)}}}
    (folder / 'plans.json').write_text(json.dumps(plans))
    (folder / 'dataset.json').write_text(json.dumps(dataset_json))
    (folder / 'version.json').write_text(json.dumps({'weights_version': 1.2}))
    cm = PlansManager(plans).get_configuration('3d_fullres')
    for fold in range(5):
        torch.manual_seed(fold)
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, N_LABELS, allow_init=True,
                                     deep_supervision=True)
        with torch.no_grad():  # a few classes win, so the output has regions rather than speckle
            head = net.decoder.seg_layers[-1]
            head.bias.fill_(-20.0)
            head.bias[[0, 2, 5]] = 0.0
        (folder / f'fold_{fold}').mkdir()
        torch.save({'network_weights': net.state_dict(), 'trainer_name': 'nnUNetTrainerNoMirroring',
                    'inference_allowed_mirroring_axes': (0, 1, 2), 'current_epoch': 1000,
                    'init_args': {'plans': plans, 'configuration': '3d_fullres', 'fold': fold,
                                  'dataset_json': dataset_json, 'device': 'cpu'}},
                   folder / f'fold_{fold}' / 'checkpoint_final.pth')
    return folder


def _image(shape, seed):
    """What MRSegmentator's SimpleITKIO.read_image returns: (1, z, y, x) float32 and a reduced properties dict."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij')
    img = np.where(x ** 2 + y ** 2 + z ** 2 < 0.5, 900., 200.) + rng.normal(0, 30, shape)
    props = {'sitk_stuff': {'spacing': (2.5, 2.5, 3.0), 'origin': (0., 0., 0.),
                            'direction': (1., 0., 0., 0., 1., 0., 0., 0., 1.), 'orientation': 'LPS'},
             'spacing': [3.0, 2.5, 2.5]}
    return img[None].astype(np.float32), props


def _predictor(model_dir, fast: bool, verbose: bool = False, folds=(0,)):
    p = nnUNetPredictor(tile_step_size=0.8 if fast else 0.5, use_gaussian=True, use_mirroring=not fast,
                        device=torch.device('cpu'), verbose=verbose, verbose_preprocessing=verbose, allow_tqdm=False)
    p.initialize_from_trained_model_folder(model_dir, use_folds=folds, checkpoint_name='checkpoint_final.pth')
    return p


def test_batch_of_arrays_with_reduced_properties_and_path_model_folder(model_dir):
    predictor = _predictor(model_dir, fast=False, folds=(0, 1, 2, 3, 4))
    images = [_image((20, 24, 22), 1), _image((14, 18, 26), 2)]
    segs = predictor.predict_from_list_of_npy_arrays([i for i, _ in images], None, [p for _, p in images], None,
                                                     num_processes=1, save_probabilities=False,
                                                     num_processes_segmentation_export=1)
    assert len(segs) == 2
    for (img, _), seg in zip(images, segs):
        assert seg.shape == img.shape[1:] and seg.dtype == np.uint8
        assert set(np.unique(seg)) <= {0, 2, 5} and len(np.unique(seg)) > 1
    for (img, props), seg in zip(images, segs):  # one by one in memory: the same result
        alone = predictor.predict_single_npy_array(img, dict(props), None, None, False)
        assert np.array_equal(seg, alone)


def test_split_level_parts_predicted_one_by_one_and_stitched(model_dir):
    predictor = _predictor(model_dir, fast=True, folds=(2,))
    img, props = _image((24, 20, 20), 3)
    margin, half = 3, img.shape[1] // 2
    parts = [img[:, :half + margin], img[:, half - margin:]]
    segs = [predictor.predict_single_npy_array(p, props, None, None, False) for p in parts]
    stitched = np.concatenate([segs[0][:-margin], segs[1][margin:]], axis=0)
    assert stitched.shape == img.shape[1:]
    for part, seg in zip(parts, segs):
        assert seg.shape == part.shape[1:]
    seg, prob = predictor.predict_single_npy_array(img, props, None, None, True)
    assert prob.shape == (N_LABELS, *img.shape[1:]) and np.array_equal(np.argmax(prob, 0), seg)


def _printed(fn) -> list:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn()
    return [line for line in out.getvalue().splitlines() if line.strip()]


def test_console_of_an_in_memory_batch_is_the_references(model_dir):
    """The lines the reference prints around an in-memory batch (ofile None): shape as torch.Size, no "and export",
    "Done with ...", and the two lines around collecting the background workers' results."""
    predictor = _predictor(model_dir, fast=True)
    img, props = _image((20, 24, 22), 4)
    lines = _printed(lambda: predictor.predict_from_list_of_npy_arrays(
        [img], None, [props], None, num_processes=1, save_probabilities=False, num_processes_segmentation_export=1))
    shape = 'torch.Size([1, 30, 30, 28])'  # (20, 24, 22) voxels of 3 x 2.5 x 2.5 mm at 2 mm
    assert f'Predicting image of shape {shape}:' in lines
    assert 'sending off prediction to background worker for resampling' in lines
    assert not any(line.endswith('and export') for line in lines)
    assert f'Done with image of shape {shape}:' in lines
    i = lines.index('GPU prediction completed. Waiting for remaining segmentation exports to finish...')
    assert lines[-1] == 'Segmentation export complete.' and i < len(lines) - 1


def test_verbose_sliding_window_prints_steps(model_dir):
    """--log_level DEBUG: verbose=True and allow_tqdm=False; the reference prints the tile start positions, the
    preallocation and the number of steps."""
    predictor = _predictor(model_dir, fast=True, verbose=True)
    img, props = _image((20, 24, 22), 5)
    lines = _printed(lambda: predictor.predict_single_npy_array(img, props, None, None, False))
    i = lines.index('steps:')
    assert lines[i - 1].startswith('n_steps 18, image size is torch.Size([30, 30, 28]), tile_size [16, 16, 16]')
    assert lines[i + 1] == '[[0, 7, 14], [0, 7, 14], [0, 12]]'
    assert 'preallocating results arrays on device cpu' in lines
    assert 'running prediction: 18 steps' in lines
