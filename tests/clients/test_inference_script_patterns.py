"""Third-party inference scripts that drive nnUNetPredictor through its Python API (patterns read from public code,
no client code here).

Several public scripts subclass nnUNetPredictor and override ``predict_from_data_iterator`` with their own signature
and behaviour (e.g. ``(data_iterator, return_probabilities, num_processes)`` running a spawn pool of
``num_processes`` workers and returning a dict). The reference calls that hook from ``predict_from_files`` and
``predict_from_list_of_npy_arrays`` only; ``predict_from_files_sequential`` and ``predict_single_npy_array`` do their
own in-process loop and never reach the override. Ours must keep it that way: routing the sequential path through
the override handed it ``num_processes=0`` (``Pool(0)``: ValueError) or let it change what the sequential call
returns. Model: a tiny PlainConvUNet with seeded random weights, made here.
"""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from _tiny_plans import write_tiny_model


def _model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp('Dataset077_Api') / 'nnUNetTrainer__nnUNetPlans__3d_fullres'
    write_tiny_model(folder, 'Dataset077_Api', {'background': 0, 'a': 1, 'b': 2}, seed=77)
    return folder


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return _model_folder(tmp_path_factory)


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    rng = np.random.default_rng(3)
    arr = rng.normal(0, 1, (14, 20, 18)).astype(np.float32)
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing((2.0, 2.0, 2.0))
    path = tmp_path_factory.mktemp('images') / 'case_0000.nii.gz'
    sitk.WriteImage(im, str(path))
    return path


class _PoolOverride(nnUNetPredictor):
    """The override shape found in public code: own signature, own spawn pool of ``num_processes`` workers, a dict
    back instead of a list."""
    calls = []

    def predict_from_data_iterator(self, data_iterator, return_probabilities=False, num_processes=2):
        type(self).calls.append(num_processes)
        with multiprocessing.get_context('spawn').Pool(num_processes):
            segs = super().predict_from_data_iterator(data_iterator, return_probabilities, 0)
        return {'annotation_preds': segs}


def _predictor(cls, model):
    p = cls(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, perform_everything_on_device=False,
            device=torch.device('cpu'), verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model), use_folds=(0,), checkpoint_name='checkpoint_final.pth')
    return p


def test_sequential_does_not_go_through_an_overridden_predict_from_data_iterator(model, image, tmp_path, capsys):
    plain = _predictor(nnUNetPredictor, model)
    expected = plain.predict_from_files_sequential([[str(image)]], None)
    assert isinstance(expected, list) and len(expected) == 1 and expected[0].dtype == np.uint8

    _PoolOverride.calls = []
    p = _predictor(_PoolOverride, model)
    capsys.readouterr()
    got = p.predict_from_files_sequential([[str(image)]], None)  # was: ValueError from Pool(0) in the override
    # as the reference's sequential path: no per-case announcements, one line on where the work runs
    printed = capsys.readouterr().out.splitlines()
    assert 'perform_everything_on_device: False' in printed
    assert not [line for line in printed if line.startswith(('Predicting', 'done with', 'Done with'))]
    assert _PoolOverride.calls == []
    assert isinstance(got, list) and len(got) == 1
    np.testing.assert_array_equal(got[0], expected[0])

    out = tmp_path / 'seq'
    out.mkdir()
    assert p.predict_from_files_sequential([[str(image)]], str(out), save_probabilities=True) == []
    assert _PoolOverride.calls == []
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / 'case.nii.gz')))
    np.testing.assert_array_equal(seg, expected[0])
    assert (out / 'case.npz').is_file() and (out / 'case.pkl').is_file()
    # nothing left to do (outputs exist, overwrite=False): None, as from predict_from_files (was: [])
    assert p.predict_from_files_sequential([[str(image)]], str(out), overwrite=False) is None
    assert p.predict_from_files([[str(image)]], str(out), overwrite=False, num_processes_preprocessing=1,
                                num_processes_segmentation_export=1) is None


def test_single_npy_array_does_not_go_through_the_override(model, image):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    img, props = SimpleITKIO().read_images([str(image)])
    _PoolOverride.calls = []
    p = _predictor(_PoolOverride, model)
    seg, probs = p.predict_single_npy_array(img, props, None, None, True)
    assert _PoolOverride.calls == []
    assert seg.dtype == np.uint8 and seg.shape == img.shape[1:]
    assert probs.shape == (3, *img.shape[1:]) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-4)


def test_predict_from_files_uses_the_override_positionally(model, image, tmp_path):
    """predict_from_files hands (iterator, save_probabilities, num_processes_segmentation_export) positionally to the
    override and returns what it returns."""
    _PoolOverride.calls = []
    p = _predictor(_PoolOverride, model)
    r = p.predict_from_files([[str(image)]], None, save_probabilities=False, overwrite=True,
                             num_processes_preprocessing=1, num_processes_segmentation_export=1)
    assert _PoolOverride.calls == [1]
    assert isinstance(r, dict) and len(r['annotation_preds']) == 1
