"""LabelManager (spec 01 §2.5, 02 §5.4): plain labels, BraTS-style regions, ignore label, conversions."""
import numpy as np
import pytest
import torch

from nnunetv2.errors import UserError
from nnunetv2.utilities.helpers import softmax_helper_dim0
from nnunetv2.utilities.label_handling.label_handling import (LabelManager, convert_labelmap_to_one_hot,
                                                              determine_num_input_channels,
                                                              get_labelmanager_class_from_plans, argmax_first_axis)

BRATS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def test_plain_labels():
    lm = LabelManager({"background": 0, "liver": 1, "tumor": 2}, None)
    assert not lm.has_regions and not lm.has_ignore_label and lm.ignore_label is None
    assert lm.all_labels == [0, 1, 2] and all(isinstance(i, np.int64) for i in lm.all_labels)
    assert lm.foreground_labels == [1, 2] and lm.all_regions is None
    assert lm.num_segmentation_heads == 3
    assert lm.inference_nonlin is softmax_helper_dim0
    with pytest.raises(TypeError):  # reference quirk: no regions → None is not iterable
        lm.foreground_regions


def test_regions_brats():
    lm = LabelManager(BRATS, [1, 2, 3])
    assert lm.has_regions
    assert lm.all_regions == [(1, 2, 3), (2, 3), (3,)]
    assert lm.foreground_regions == [(1, 2, 3), (2, 3), (3,)]
    assert lm.all_labels == [0, 1, 2, 3] and lm.num_segmentation_heads == 3
    assert lm.inference_nonlin is torch.sigmoid
    # scalars stay scalars, background-only lists are dropped
    lm2 = LabelManager({"background": 0, "bg2": [0, 0], "wt": [1, 2], "et": 2}, [1, 2])
    assert lm2.all_regions == [(1, 2), 2]
    forced = LabelManager(BRATS, None, force_use_labels=True)
    assert not forced.has_regions and forced.num_segmentation_heads == 4


def test_region_errors():
    with pytest.raises(RuntimeError, match="regions_class_order"):
        LabelManager(BRATS, None)
    with pytest.raises(RuntimeError, match="2 entries but there are 3"):
        LabelManager(BRATS, [1, 2])


def test_ignore_label():
    lm = LabelManager({"background": 0, "a": 1, "ignore": 2}, None)
    assert lm.has_ignore_label and lm.ignore_label == 2 and lm.all_labels == [0, 1]
    assert lm.num_segmentation_heads == 2
    with pytest.raises(UserError, match="highest"):
        LabelManager({"background": 0, "a": 1, "ignore": 5}, None)
    with pytest.raises(UserError, match="single integer"):
        LabelManager({"background": 0, "a": 1, "ignore": [2]}, None)


def test_background_errors():
    with pytest.raises(RuntimeError, match="Background label not declared"):
        LabelManager({"a": 1}, None)
    with pytest.raises(RuntimeError, match="not a list"):
        LabelManager({"background": [0], "a": 1}, None)
    with pytest.raises(RuntimeError, match="must be 0"):
        LabelManager({"background": 1, "a": 2}, None)


def test_filter_background():
    assert LabelManager.filter_background([0, 1, (0,), (0, 0), (0, 1), [0], 2]) == [1, (0, 1), 2]


def test_probabilities_to_segmentation_labels():
    lm = LabelManager({"background": 0, "a": 1, "b": 2}, None)
    p = np.array([[[0.7, 0.1, 0.2]], [[0.2, 0.8, 0.3]], [[0.1, 0.1, 0.5]]], dtype=np.float32)  # (3, 1, 3)
    seg = lm.convert_probabilities_to_segmentation(p)
    assert isinstance(seg, np.ndarray) and seg.dtype == np.int64 and seg.tolist() == [[0, 1, 2]]
    seg_t = lm.convert_probabilities_to_segmentation(torch.from_numpy(p))
    assert isinstance(seg_t, torch.Tensor) and seg_t.dtype == torch.int64 and seg_t.tolist() == [[0, 1, 2]]
    logits = np.log(p)
    assert lm.convert_logits_to_segmentation(logits).tolist() == [[0, 1, 2]]
    with pytest.raises(RuntimeError):
        lm.convert_probabilities_to_segmentation(p[:2])
    with pytest.raises(RuntimeError):
        lm.convert_probabilities_to_segmentation(p.tolist())


def test_probabilities_to_segmentation_regions():
    lm = LabelManager(BRATS, [1, 2, 3])
    # voxel 0: nothing; 1: wt only; 2: wt+tc; 3: all; 4: et without wt (later region wins anyway)
    p = np.array([[0.1, 0.9, 0.9, 0.9, 0.2],
                  [0.1, 0.2, 0.6, 0.7, 0.1],
                  [0.1, 0.3, 0.4, 0.8, 0.51]], dtype=np.float32)
    seg = lm.convert_probabilities_to_segmentation(p)
    assert seg.dtype == np.uint16 and seg.tolist() == [0, 1, 2, 3, 3]
    seg_t = lm.convert_probabilities_to_segmentation(torch.from_numpy(p))
    assert seg_t.dtype == torch.int16 and seg_t.tolist() == [0, 1, 2, 3, 3]
    # exactly 0.5 is not > 0.5
    assert lm.convert_probabilities_to_segmentation(np.full((3, 1), 0.5)).tolist() == [0]
    logits = np.log(p / (1 - p))
    seg_l = lm.convert_logits_to_segmentation(logits)
    assert isinstance(seg_l, np.ndarray) and seg_l.dtype == np.uint16 and seg_l.tolist() == [0, 1, 2, 3, 3]
    seg_lt = lm.convert_logits_to_segmentation(torch.from_numpy(logits))
    assert seg_lt.dtype == torch.int16 and seg_lt.tolist() == [0, 1, 2, 3, 3]
    # the custom class order is honoured
    lm2 = LabelManager(BRATS, [4, 5, 6])
    assert lm2.convert_probabilities_to_segmentation(p).tolist() == [0, 4, 5, 6, 6]


def test_apply_inference_nonlin():
    lm = LabelManager({"background": 0, "a": 1}, None)
    x = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float64)
    out = lm.apply_inference_nonlin(x)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), np.array([[0.26894142, 0.73105858], [0.73105858, 0.26894142]]),
                               rtol=1e-6)
    out_r = LabelManager(BRATS, [1, 2, 3]).apply_inference_nonlin(np.zeros((3, 2)))
    assert out_r.tolist() == [[0.5, 0.5]] * 3
    custom = LabelManager({"background": 0, "a": 1}, None, inference_nonlin=torch.relu)
    assert custom.apply_inference_nonlin(np.array([-1.0, 2.0])).tolist() == [0.0, 2.0]


def test_revert_cropping():
    lm = LabelManager({"background": 0, "a": 1}, None)
    p = np.full((2, 2, 3), 0.25, dtype=np.float16)
    out = lm.revert_cropping_on_probabilities(p, [[1, 3], [2, 5]], (4, 6))
    assert out.shape == (2, 4, 6) and out.dtype == np.float16
    expected0 = np.ones((4, 6)); expected0[1:3, 2:5] = 0.25
    expected1 = np.zeros((4, 6)); expected1[1:3, 2:5] = 0.25
    np.testing.assert_array_equal(out[0], expected0)
    np.testing.assert_array_equal(out[1], expected1)
    lr = LabelManager(BRATS, [1, 2, 3])
    pt = torch.full((3, 1, 2), 0.75)
    out_t = lr.revert_cropping_on_probabilities(pt, [[0, 1], [1, 3]], (2, 3))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    exp = torch.zeros((3, 2, 3)); exp[:, 0:1, 1:3] = 0.75  # regions: no background channel set to 1
    assert torch.equal(out_t, exp)


def test_one_hot():
    seg = np.array([[0, 1], [2, 5]])
    oh = convert_labelmap_to_one_hot(seg, [0, 1, 2, 5])
    assert oh.dtype == np.uint8 and oh.shape == (4, 2, 2)
    assert oh[:, 1, 1].tolist() == [0, 0, 0, 1] and oh[:, 0, 0].tolist() == [1, 0, 0, 0]
    assert convert_labelmap_to_one_hot(seg, [0, 300]).dtype == np.uint16
    assert convert_labelmap_to_one_hot(seg, [0, 1], output_dtype=np.float32).dtype == np.float32
    seg_t = torch.tensor([[0, 1], [2, 1]])
    oh_t = convert_labelmap_to_one_hot(seg_t, [0, 1, 2])
    assert oh_t.dtype == torch.uint8 and oh_t[:, 1, 0].tolist() == [0, 0, 1] and oh_t.sum().item() == 4
    assert convert_labelmap_to_one_hot(seg_t, torch.tensor([0, 1, 2]), output_dtype=torch.bool).dtype == torch.bool


@pytest.mark.parametrize("bbox,rows", [([[-1, 2], [0, 3]], [0, 1]),   # starts before the image
                                       ([[3, 6], [0, 3]], [3]),       # ends after it
                                       ([[-5, -2], [0, 3]], []),      # entirely outside: background only
                                       ([[1, 4], [0, 3]], [1, 2, 3])])
def test_revert_cropping_with_a_box_beyond_the_image(bbox, rows):
    """Only the part of the crop that lies inside the image is put back, as the reference does (it clips the box);
    ours used to fail to broadcast."""
    lm = LabelManager({"background": 0, "a": 1}, None)
    p = np.full((2, 3, 3), 0.25, dtype=np.float32)
    for probabilities in (p, torch.from_numpy(p)):
        out = np.asarray(lm.revert_cropping_on_probabilities(probabilities, bbox, [4, 3]))
        inside = np.zeros(4, dtype=bool)
        inside[rows] = True
        assert out.shape == (2, 4, 3)
        np.testing.assert_array_equal(out[1][inside], 0.25)
        np.testing.assert_array_equal(out[1][~inside], 0)
        np.testing.assert_array_equal(out[0][~inside], 1)


def test_revert_cropping_box_covers_the_last_axes():
    """A box with fewer axes than the probabilities applies to the last ones (the reference's rule)."""
    lm = LabelManager({"background": 0, "a": 1}, None)
    p = np.full((2, 4, 2), 0.25, dtype=np.float32)
    out = lm.revert_cropping_on_probabilities(p, [[1, 3]], [4, 3])
    np.testing.assert_array_equal(out[1][:, 1:3], 0.25)
    np.testing.assert_array_equal(out[1][:, 0], 0)


class _CM:
    def __init__(self, prev):
        self.previous_stage_name = prev


class _PM:
    def get_configuration(self, name):
        return _CM("3d_lowres" if name == "3d_cascade_fullres" else None)

    def get_label_manager(self, dataset_json):
        return LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))


def test_determine_num_input_channels():
    dj = {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "a": 1, "b": 2}}
    assert determine_num_input_channels(_PM(), "3d_fullres", dj) == 2
    assert determine_num_input_channels(_PM(), "3d_cascade_fullres", dj) == 4
    assert determine_num_input_channels(_PM(), _CM("x"), dj) == 4
    legacy = dict(dj, modality={"0": "CT"})  # 'modality' wins
    assert determine_num_input_channels(_PM(), "3d_fullres", legacy) == 1


def test_determine_num_input_channels_checks_the_labels_also_without_a_cascade():
    """The label manager is built for every configuration, as in the reference: a dataset.json whose labels cannot
    be used is refused here rather than when the network's outputs are set up."""
    from nnunetv2.errors import UserError
    broken = {"channel_names": {"0": "T1"}, "labels": {"a": 1}}  # no background
    with pytest.raises(UserError):
        determine_num_input_channels(_PM(), "3d_fullres", broken)


def test_get_labelmanager_class_from_plans(capsys):
    assert get_labelmanager_class_from_plans({}) is LabelManager
    assert "No label manager specified" in capsys.readouterr().out
    assert get_labelmanager_class_from_plans({"label_manager": "LabelManager"}) is LabelManager
    with pytest.raises(UserError, match="NoSuchManager"):
        get_labelmanager_class_from_plans({"label_manager": "NoSuchManager"})


@pytest.mark.parametrize('dtype', [np.float32, np.float16, np.float64, np.int32, np.uint8, bool])
def test_argmax_first_axis_equals_numpy_argmax(dtype):
    """Channel by channel gives argmax's answer, ties to the first channel included (coarse values make many)."""
    rs = np.random.RandomState(1)
    for n in (2, 3, 7):
        values = (rs.rand(n, 5, 6, 7) * 4).round().astype(dtype)
        got = argmax_first_axis(values)
        assert got.shape == (5, 6, 7) and np.array_equal(got, values.argmax(0))
    assert np.array_equal(argmax_first_axis(np.ones((1, 3))), np.zeros(3))
    many = rs.rand(300, 4, 5).astype(np.float32)  # more channels than uint8 holds
    assert np.array_equal(argmax_first_axis(many), many.argmax(0))


def test_argmax_first_axis_nan_like_numpy():
    values = np.random.RandomState(2).rand(3, 4, 4).astype(np.float32)
    values[1, 0, 0] = np.nan
    values[2, 3, 3] = np.nan
    assert np.array_equal(argmax_first_axis(values), values.argmax(0))
    lm = LabelManager({'background': 0, 'a': 1, 'b': 2}, None)
    assert np.array_equal(lm.convert_probabilities_to_segmentation(values), values.argmax(0))
