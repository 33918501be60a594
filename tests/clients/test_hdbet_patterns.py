"""HD-BET 2's way of driving the predictor (hd-bet 2.0.1, read from its public wheel; no client code here).

HD-BET loads its model folder with ``initialize_from_trained_model_folder(folder, 'all')`` and calls
``predict_from_files([[image] for image in images], masks, save_probabilities=False, overwrite=True,
num_processes_preprocessing=4, num_processes_segmentation_export=8, ...)`` where the images have the user's own names
(``t1.nii.gz``, no ``_0000``) and every "truncated" output name already ends with ``.nii.gz`` (``t1_bet.nii.gz``):
the reference writes ``t1_bet.nii.gz`` + the model's ``.nii.gz`` with SimpleITK, whose NIfTI writer drops the doubled
ending, so the mask lands at ``t1_bet.nii.gz``, which HD-BET then reads. Afterwards it deletes ``dataset.json``,
``plans.json`` and ``predict_from_raw_data_args.json`` from the output folder, and a second run writes the masks again
into the same place. Model: a tiny PlainConvUNet with seeded random weights, made here.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from _tiny_plans import tiny_unet_plans

BOOKKEEPING = ('dataset.json', 'plans.json', 'predict_from_raw_data_args.json')


@pytest.fixture(scope='module')
def predictor(tmp_path_factory):
    """HD-BET's model folder layout: plans.json, dataset.json and fold_all/checkpoint_final.pth directly in it."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    folder = tmp_path_factory.mktemp('release_2.0.0')
    plans = tiny_unet_plans('Dataset001_BrainMask')
    dataset_json = {'channel_names': {'0': 'MRI'}, 'labels': {'background': 0, 'brain': 1}, 'numTraining': 10,
                    'file_ending': '.nii.gz'}
    for name, content in (('plans.json', plans), ('dataset.json', dataset_json)):
        (folder / name).write_text(json.dumps(content))
    cm = PlansManager(plans).get_configuration('3d_fullres')
    torch.manual_seed(0)
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, 2, allow_init=True,
                                 deep_supervision=True)
    (folder / 'fold_all').mkdir()
    torch.save({'network_weights': net.state_dict(), 'trainer_name': 'nnUNetTrainer',
                'init_args': {'plans': plans, 'configuration': '3d_fullres', 'fold': 'all',
                              'dataset_json': dataset_json, 'device': 'cpu'},
                'inference_allowed_mirroring_axes': (0, 1, 2), 'current_epoch': 1000},
               folder / 'fold_all' / 'checkpoint_final.pth')
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                        perform_everything_on_device=True, device=torch.device('cpu'), verbose=False,
                        verbose_preprocessing=False, allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(folder), 'all')
    return p


def _head(path, shape=(30, 34, 26), seed=0) -> None:
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij')
    r = x ** 2 + y ** 2 + z ** 2
    arr = np.where(r < 0.5, 800., np.where(r < 0.8, 300., 20.)) + rng.normal(0, 30, shape)
    img = sitk.GetImageFromArray(arr.astype(np.int16))
    img.SetSpacing((1.5, 1.4, 1.6))
    img.SetOrigin((10., -20., 5.))
    img.SetDirection((-1., 0., 0., 0., -1., 0., 0., 0., 1.))
    sitk.WriteImage(img, str(path))


def _hdbet_call(p, images, masks):
    p.predict_from_files([[str(i)] for i in images], [str(m) for m in masks], save_probabilities=False,
                         overwrite=True, num_processes_preprocessing=4, num_processes_segmentation_export=8,
                         folder_with_segs_from_prev_stage=None, num_parts=1, part_id=0)


def _expected(p, image, tmp_path):
    """The same image named the nnU-Net way (CASE_0000.nii.gz), predicted into a folder: what the mask must be."""
    src = tmp_path / 'named'
    src.mkdir(exist_ok=True)
    named = src / f"{os.path.basename(str(image))[:-7]}_0000.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(image)), str(named))
    out = tmp_path / 'named_out'
    p.predict_from_files([[str(named)]], [str(out / 'case')], save_probabilities=False, overwrite=True,
                         num_processes_preprocessing=1, num_processes_segmentation_export=1)
    return sitk.ReadImage(str(out / 'case.nii.gz'))


@pytest.mark.slow
def test_plain_input_names_and_output_names_ending_in_nii_gz(predictor, tmp_path):
    inputs, out = tmp_path / 'in', tmp_path / 'out'
    inputs.mkdir()
    images = [inputs / 't1_a.nii.gz', inputs / 't1_b.nii.gz']
    _head(images[0], seed=1)
    _head(images[1], shape=(26, 30, 34), seed=2)
    masks = [out / 't1_a_bet.nii.gz', out / 't1_b_bet.nii.gz']
    _hdbet_call(predictor, images, masks)

    assert sorted(os.listdir(out)) == sorted(['t1_a_bet.nii.gz', 't1_b_bet.nii.gz', *BOOKKEEPING])
    for image, mask in zip(images, masks):
        got, ref_img = sitk.ReadImage(str(mask)), sitk.ReadImage(str(image))
        assert got.GetSize() == ref_img.GetSize()
        assert np.allclose(got.GetSpacing(), ref_img.GetSpacing()) and np.allclose(got.GetOrigin(), ref_img.GetOrigin())
        assert np.allclose(got.GetDirection(), ref_img.GetDirection())
        arr = sitk.GetArrayFromImage(got)
        assert arr.dtype == np.uint8 and set(np.unique(arr)) <= {0, 1}
        expected = sitk.GetArrayFromImage(_expected(predictor, image, tmp_path))
        assert np.array_equal(arr, expected)

    # HD-BET deletes the bookkeeping files, keeps the masks (--save_bet_mask) and is run again on the same output
    for name in BOOKKEEPING:
        os.remove(out / name)
    before = [sitk.GetArrayFromImage(sitk.ReadImage(str(m))) for m in masks]
    _hdbet_call(predictor, images, masks)
    assert sorted(os.listdir(out)) == sorted(['t1_a_bet.nii.gz', 't1_b_bet.nii.gz', *BOOKKEEPING])
    for mask, old in zip(masks, before):
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(mask))), old)


def test_simpleitkio_writes_where_simpleitk_would(tmp_path):
    """SimpleITK's NIfTI writer given ``x.nii.gz.nii.gz`` writes ``x.nii.gz``; the atomic write must end there too,
    with no temporary file or folder left behind."""
    seg = np.zeros((4, 5, 6), dtype=np.uint8)
    seg[1:3, 2:4, 3:5] = 1
    props = {'sitk_stuff': {'spacing': (1.5, 2.0, 2.5), 'origin': (1., 2., 3.),
                            'direction': (1., 0., 0., 0., 1., 0., 0., 0., 1.)}, 'spacing': [2.5, 2.0, 1.5]}
    SimpleITKIO().write_seg(seg, str(tmp_path / 'mask_bet.nii.gz.nii.gz'), props)
    direct = tmp_path / 'direct'
    direct.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(seg), str(direct / 'mask_bet.nii.gz.nii.gz'))
    assert os.listdir(direct) == ['mask_bet.nii.gz']
    assert sorted(os.listdir(tmp_path)) == ['direct', 'mask_bet.nii.gz']
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / 'mask_bet.nii.gz'))), seg)
    # a plain name is unaffected
    SimpleITKIO().write_seg(seg, str(tmp_path / 'plain.nii.gz'), props)
    assert sorted(os.listdir(tmp_path)) == ['direct', 'mask_bet.nii.gz', 'plain.nii.gz']


@pytest.mark.slow
def test_list_entries_are_channels_by_place_not_by_name(predictor, tmp_path):
    """A folder of single-channel scans named ``scan_0001.nii.gz``, ``scan_0002.nii.gz`` (HD-BET's folder mode lists
    them as [[scan_0001.nii.gz], [scan_0002.nii.gz]]): each is its own case's channel 0, as in the reference."""
    from nnunetv2.errors import UserError
    inputs, out = tmp_path / 'in', tmp_path / 'out'
    inputs.mkdir()
    images = [inputs / 'scan_0001.nii.gz', inputs / 'scan_0002.nii.gz']
    _head(images[0], seed=3)
    _head(images[1], seed=4)
    masks = [out / 'scan_0001_bet.nii.gz', out / 'scan_0002_bet.nii.gz']
    _hdbet_call(predictor, images, masks)
    for image, mask in zip(images, masks):
        expected = sitk.GetArrayFromImage(_expected(predictor, image, tmp_path))
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(mask))), expected)
    # the channel count is still checked, once the files are read: two files for this one-channel model
    with pytest.raises(UserError, match='channel'):
        predictor.predict_from_files([[str(i) for i in images]], [str(tmp_path / 'two' / 'x')],
                                     num_processes_preprocessing=1, num_processes_segmentation_export=1)
    with pytest.raises(UserError, match='not found'):
        predictor.predict_from_files([[str(inputs / 'missing.nii.gz')]], [str(tmp_path / 'three' / 'x')],
                                     num_processes_preprocessing=1, num_processes_segmentation_export=1)
