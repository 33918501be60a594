"""Images handed to the predictor as arrays (predict_single_npy_array, predict_from_list_of_npy_arrays), as many
client scripts do: the forms that work as in the reference, and the common mistakes (no channel axis, a batch axis,
a torch tensor, no or a mis-sized spacing), which the reference lets fail deep inside with messages such as "axes
don't match array" or KeyError: 'spacing', and which must be one clear UserError here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunetv2.errors import UserError
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.input_checks import case_array_problem
from _tiny_plans import write_tiny_model

SPACING = [2.0, 2.0, 2.0]


@pytest.fixture(scope='module')
def predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp('Dataset078_Arrays') / 'nnUNetTrainer__nnUNetPlans__3d_fullres'
    write_tiny_model(folder, 'Dataset078_Arrays', {'background': 0, 'a': 1}, seed=78)
    p = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False, device=torch.device('cpu'),
                        allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
    return p


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(5).normal(0, 1, (1, 14, 20, 18)).astype(np.float32)


def test_array_forms_clients_use_give_the_same_segmentation(predictor, image):
    expected = predictor.predict_single_npy_array(image, {'spacing': SPACING})
    read_only = image.copy()
    read_only.setflags(write=False)
    for variant in (read_only,  # np.frombuffer of a client's request
                    np.frombuffer(image.tobytes(), dtype=np.float32).reshape(image.shape),
                    np.asfortranarray(image),
                    np.ascontiguousarray(image.transpose(0, 3, 2, 1)).transpose(0, 3, 2, 1),
                    image.astype(np.float64)):
        kept = variant.copy()
        for spacing in (SPACING, tuple(SPACING), np.array(SPACING)):
            np.testing.assert_array_equal(predictor.predict_single_npy_array(variant, {'spacing': spacing}),
                                          expected)
        np.testing.assert_array_equal(variant, kept)  # the caller's array is never changed


@pytest.mark.parametrize('make, properties, fragment', [
    (lambda im: im[0], {'spacing': SPACING}, "shape (14, 20, 18): 3 axes (no channel axis: add it with image[None])"),
    (lambda im: im[None], {'spacing': SPACING}, "shape (1, 1, 14, 20, 18): 5 axes (a batch axis?)"),
    (lambda im: torch.from_numpy(im), {'spacing': SPACING}, "torch tensor, not a numpy array"),
    (lambda im: im.tolist(), {'spacing': SPACING}, "The image is a list, not a numpy array"),
    (lambda im: im[:, :0], {'spacing': SPACING}, "shape (1, 0, 20, 18): no voxels"),
    (lambda im: im, {}, "properties have no 'spacing'"),
    (lambda im: im, None, "properties are None"),
    (lambda im: im, {'spacing': [1.0, 1.0]}, "spacing [1.0, 1.0] has 2 value(s), but the image has 3 spatial axes"),
    (lambda im: im, {'spacing': '111'}, "spacing '111' is not a sequence of numbers"),
    (lambda im: im, {'spacing': [0, 1, 1]}, "spacing [0, 1, 1] is not positive and finite"),
    (lambda im: im, {'spacing': [float('nan'), 1, 1]}, "is not positive and finite"),
])
def test_wrong_arrays_are_one_clear_error(predictor, image, make, properties, fragment):
    with pytest.raises(UserError) as e:
        predictor.predict_single_npy_array(make(image), properties)
    assert fragment in e.value.one_line()
    assert "(channels, z, y, x)" in e.value.one_line()  # the hint: the form nnU-Net takes
    np.testing.assert_array_equal(image, np.random.default_rng(5).normal(0, 1, image.shape).astype(np.float32))


def test_wrong_array_among_several_is_named_by_the_worker_pool(predictor, image):
    """predict_from_list_of_npy_arrays preprocesses in worker processes: the same message comes back from there."""
    with pytest.raises(UserError, match="no channel axis"):
        predictor.predict_from_list_of_npy_arrays([image, image[0]], None, [{'spacing': SPACING}] * 2, None,
                                                  num_processes=2)


def test_reader_output_passes_the_check():
    """What every reader returns (and the 2-D form with its dummy slice spacing) is never refused."""
    assert case_array_problem(np.zeros((2, 1, 8, 9), np.uint8), {'spacing': (999, 1, 1)}) is None
    assert case_array_problem(np.zeros((1, 3, 8, 9), np.int16), {'spacing': [np.float64(2.5), 1, 1]}) is None


def test_failure_of_a_later_worker_is_raised_not_the_stop_of_an_earlier_one():
    """Worker 1 fails at once on case 2 while worker 0 still works on case 1; worker 0 then stops (exit code 0)
    without queueing case 1. The failure must come out, not "a preprocessing worker exited ... while preprocessing
    input case 1"."""
    from nnunetv2.inference.data_iterators import _round_robin
    from _failing_worker import slow_or_failing
    with pytest.raises(UserError, match="case bad is unusable"):
        list(_round_robin(slow_or_failing, [['slow', 'bad']], 2, (), 2, False, False))
