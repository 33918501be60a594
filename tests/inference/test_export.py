"""Export to original geometry on a synthetic case: un-crop, un-transpose, slab-wise nonlinearity."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import nnunetv2.inference.export_prediction as ep
from nnunetv2.utilities.label_handling.label_handling import LabelManager


def _managers(transpose=(0, 2, 1)):
    backward = list(np.argsort(transpose))
    plans = SimpleNamespace(transpose_forward=list(transpose), transpose_backward=backward)
    config = SimpleNamespace(spacing=[1., 1., 1.],
                             resampling_fn_probabilities=lambda data, shape, cur, new: data)
    return plans, config


@pytest.mark.parametrize("slab_bytes", [ep._SLAB_BYTES, 200])  # 200 bytes: one index per slab
@pytest.mark.parametrize("regions", [False, True])
def test_convert_logits_uncrops_and_untransposes(monkeypatch, slab_bytes, regions):
    monkeypatch.setattr(ep, '_SLAB_BYTES', slab_bytes)
    plans, config = _managers()
    if regions:
        lm = LabelManager({'background': 0, 'a': [1, 2], 'b': [2]}, regions_class_order=[1, 2])
        n = 2
    else:
        lm = LabelManager({'background': 0, 'a': 1, 'b': 2}, regions_class_order=None)
        n = 3
    rng = np.random.default_rng(0)
    cropped_shape = (4, 5, 3)  # transposed axis order
    logits = rng.normal(size=(n, *cropped_shape)).astype(np.float16)
    props = {'spacing': [1., 1., 1.], 'shape_before_cropping': (6, 8, 7),
             'bbox_used_for_cropping': [[1, 5], [2, 7], [3, 6]],
             'shape_after_cropping_and_before_resampling': cropped_shape}
    seg, probs = ep.convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, plans, config, lm, props, return_probabilities=True, num_threads_torch=1)
    seg_only = ep.convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, plans, config, lm, props, return_probabilities=False, num_threads_torch=1)

    full_probs = np.zeros((n, 6, 8, 7), np.float32)
    if not regions:
        full_probs[0] = 1
    p = lm.apply_inference_nonlin(torch.from_numpy(logits)).numpy()
    full_probs[:, 1:5, 2:7, 3:6] = p
    full_seg = np.zeros((6, 8, 7), np.uint8)
    full_seg[1:5, 2:7, 3:6] = lm.convert_probabilities_to_segmentation(p)
    assert seg.dtype == np.uint8 and probs.dtype == np.float32
    np.testing.assert_array_equal(seg, full_seg.transpose(0, 2, 1))
    np.testing.assert_array_equal(seg_only, seg)
    # softmax/sigmoid last bits depend on how torch splits the work (threads, slab size): compare to 1 ulp-ish
    np.testing.assert_allclose(probs, full_probs.transpose(0, 1, 3, 2), rtol=1e-6, atol=1e-7)


def test_export_writes_atomically_named_files(tmp_path):
    plans, config = _managers((0, 1, 2))
    written = []

    class Writer:
        def write_seg(self, seg, fname, properties):
            written.append(fname)
            open(fname, 'wb').write(seg.tobytes())

    plans.image_reader_writer_class = Writer
    plans.get_label_manager = lambda dj: LabelManager(dj['labels'], None)
    logits = np.zeros((2, 2, 3, 4), np.float16)
    props = {'spacing': [1., 1., 1.], 'shape_before_cropping': (2, 3, 4),
             'bbox_used_for_cropping': [[0, 2], [0, 3], [0, 4]], 'shape_after_cropping_and_before_resampling': (2, 3, 4)}
    ep.export_prediction_from_logits(logits, props, config, plans, {'labels': {'background': 0, 'x': 1},
                                                                     'file_ending': '.raw'},
                                     str(tmp_path / 'case'), save_probabilities=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['case.npz', 'case.pkl', 'case.raw']
    # written under its own name in a temporary folder beside it, then moved: same ending, never the final path
    assert written[0] != str(tmp_path / 'case.raw') and os.path.basename(written[0]) == 'case.raw'
    assert os.path.dirname(written[0]) != str(tmp_path)
    assert list(np.load(tmp_path / 'case.npz').keys()) == ['probabilities']


def test_segmentation_with_a_sidecar_file_keeps_its_final_names(tmp_path):
    """The TIFF writer writes CASE.tif and its spacing sidecar CASE.json, whose name it derives from the name it is
    given: both must end up under the case's name (before, the sidecar kept the temporary name and CASE.json was
    missing, so the prediction could not be read back or evaluated)."""
    from nnunetv2.imageio.tif_reader_writer import Tiff3DIO
    seg = np.zeros((4, 5, 6), np.uint8)
    seg[1:3, 2:4, 3:5] = 1
    ep.write_segmentation_atomically(Tiff3DIO(), seg, str(tmp_path / 'case.tif'), {'spacing': [1., 2., 3.]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ['case.json', 'case.tif']
    back, props = Tiff3DIO().read_seg(str(tmp_path / 'case.tif'))
    assert np.array_equal(back[0], seg) and list(props['spacing']) == [1., 2., 3.]
