import numpy as np
import pytest
from scipy.ndimage import binary_fill_holes

from nnunetv2.preprocessing.cropping.cropping import (create_nonzero_mask, crop_to_nonzero, fill_holes,
                                                      get_bbox_from_mask)


def _hollow_cube() -> np.ndarray:
    """(1, 8, 9, 10) image: a cube shell at [2:6, 3:7, 1:8] with a zero interior (a hole)."""
    data = np.zeros((1, 8, 9, 10), dtype=np.float32)
    data[0, 2:6, 3:7, 1:8] = 5
    data[0, 3:5, 4:6, 2:7] = 0
    return data


def test_fill_holes_matches_scipy_on_random_masks():
    rs = np.random.RandomState(0)
    for _ in range(200):
        shape = tuple(rs.randint(1, 10, size=rs.choice([2, 3])))
        mask = rs.rand(*shape) < rs.rand()
        np.testing.assert_array_equal(fill_holes(mask), binary_fill_holes(mask))


def test_mask_with_hole_is_filled_and_bbox():
    data = _hollow_cube()
    mask = create_nonzero_mask(data)
    assert mask.dtype == bool and mask.shape == (8, 9, 10)
    assert mask.sum() == 4 * 4 * 7  # the interior hole is filled
    cropped, seg, bbox = crop_to_nonzero(data)
    assert bbox == [[2, 6], [3, 7], [1, 8]] and all(type(v) is int for p in bbox for v in p)
    assert cropped.shape == (1, 4, 4, 7)
    assert seg.dtype == np.int8 and seg.shape == (1, 4, 4, 7) and (seg == 0).all()


def test_multichannel_union_and_seg_minus_one_convention():
    data = np.zeros((2, 6, 6, 6), dtype=np.float32)
    data[0, 1:3, 1:5, 1:5] = 1      # channel 0 covers z 1..2
    data[1, 3:5, 1:3, 1:3] = -2     # channel 1 covers z 3..4, a smaller square
    seg = np.zeros((1, 6, 6, 6), dtype=np.float32)
    seg[0, 3, 4, 4] = 1             # labelled voxel outside the mask keeps its label
    seg[0, 1, 1, 1] = 2
    cropped, s, bbox = crop_to_nonzero(data, seg.copy())
    assert bbox == [[1, 5], [1, 5], [1, 5]]
    assert cropped.shape == (2, 4, 4, 4) and s.shape == (1, 4, 4, 4) and s.dtype == np.float32
    mask = create_nonzero_mask(data)[1:5, 1:5, 1:5]
    assert s[0, 2, 3, 3] == 1 and s[0, 0, 0, 0] == 2
    expected = np.where(mask, 0, -1).astype(np.float32)
    expected[2, 3, 3] = 1
    expected[0, 0, 0] = 2
    np.testing.assert_array_equal(s[0], expected)
    assert (s == -1).sum() == 4 * 4 * 4 - mask.sum() - 1
    # custom outside label without a seg
    _, s2, _ = crop_to_nonzero(data, None, nonzero_label=-7)
    np.testing.assert_array_equal(s2[0], np.where(mask, 0, -7))


def test_all_zero_image_keeps_full_box():
    data = np.zeros((1, 3, 4, 5), dtype=np.float32)
    cropped, seg, bbox = crop_to_nonzero(data)
    assert bbox == [[0, 3], [0, 4], [0, 5]] and cropped.shape == data.shape
    assert seg.dtype == np.int8 and (seg == -1).all()
    assert get_bbox_from_mask(np.zeros((2, 2), bool)) == [[0, 2], [0, 2]]


def test_rejects_wrong_rank():
    with pytest.raises(ValueError):
        create_nonzero_mask(np.ones((2, 3, 4, 5, 6)))
