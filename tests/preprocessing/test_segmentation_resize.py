"""Our segmentation resize must give exactly batchgenerators 0.25.5's ``resize_segmentation`` (the reference's)."""
import numpy as np
import pytest
from batchgenerators.augmentations.utils import resize_segmentation as bg_resize_segmentation
from skimage.transform import resize

from nnunetv2.preprocessing.resampling.segmentation_resize import resize_segmentation, skimage_resize


def _blocks(shape, labels, block, rs):
    """Label map of constant blocks: every block edge is an exact 0.5 tie for even resize factors."""
    coarse = rs.choice(labels, size=tuple(-(-s // block) for s in shape))
    seg = coarse
    for ax in range(len(shape)):
        seg = np.repeat(seg, block, axis=ax)
    return seg[tuple(slice(0, s) for s in shape)]


def _cases():
    rs = np.random.RandomState(42)
    cases = []
    for k, (shape, new) in enumerate([((8, 8), (4, 4)), ((8, 8), (16, 16)), ((9, 7), (18, 14)), ((16, 12), (8, 6)),
                                      ((6, 6, 6), (3, 3, 3)), ((6, 6, 6), (12, 12, 12)), ((10, 9, 8), (5, 18, 4)),
                                      ((7, 11, 5), (13, 6, 9)), ((12, 12), (12, 6)), ((20, 16, 12), (10, 8, 6)),
                                      ((5, 5), (7, 3)), ((4, 4, 4), (8, 2, 6))]):
        for labels in ([0, 1], [-1, 0, 1, 2], [0, 3, 1, 2], [-1, 0, 1, 2, 3, 4, 5]):
            for block in (1, 2, 3):
                cases.append((_blocks(shape, labels, block, rs).astype(np.float64), new))
    # 2x2 checkerboards of 3-4 labels: several labels tie where they meet, and the nearest may be a loser
    cb = np.array([[3, 1], [2, 0]], dtype=float)
    cases.append((np.kron(np.tile(cb, (3, 3)), np.ones((2, 2))), (6, 6)))
    cases.append((np.kron(np.array([[[3, 1], [1, 1]], [[2, 2], [2, 3]]], float), np.ones((2, 2, 2))), (2, 2, 2)))
    return cases


CASES = _cases()


@pytest.mark.parametrize('order', [0, 1, 3])
def test_equals_batchgenerators_on_tie_heavy_inputs(order):
    n_ties = 0
    for seg, new in CASES:
        expected = bg_resize_segmentation(seg, new, order)
        got = resize_segmentation(seg, new, order)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
        if order == 1:  # how many exact ties the inputs produce (the point of this test)
            labels = np.unique(seg)
            scores = np.stack([skimage_resize((seg == c).astype(float), new, 1) for c in labels])
            top = scores.max(0)
            n_ties += int(((scores == top).sum(0) > 1).sum())
    if order == 1:
        assert n_ties > 1000


def test_integer_input_and_edge_cases():
    seg = np.kron(np.array([[0, 1], [2, 1]], dtype=np.int16), np.ones((3, 3), dtype=np.int16))
    for new in ((3, 3), (12, 12), (5, 7)):
        got = resize_segmentation(seg, new, 1)
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, bg_resize_segmentation(seg, new, 1))
    np.testing.assert_array_equal(resize_segmentation(np.full((4, 4), 2.0), (3, 5), 1), np.full((3, 5), 2.0))
    assert resize_segmentation(np.zeros((0, 4)), (0, 2), 1).shape == (0, 2)


def test_skimage_resize_is_skimage():
    rs = np.random.RandomState(0)
    img = rs.rand(9, 7, 5)
    for order in (0, 1, 3):
        for new in ((18, 14, 10), (4, 3, 5), (9, 11, 2)):
            np.testing.assert_array_equal(skimage_resize(img, new, order),
                                          resize(img, new, order, mode='edge', clip=True, anti_aliasing=False))


@pytest.mark.parametrize('labels', [[0, 1, 2], [-1, 0, 5], [0, 300, 1000], [0.0, 0.5, 2.25]])
def test_order_1_from_the_borders_equals_batchgenerators(labels):
    """Order 1 decides only the voxels whose interpolation taps disagree: smooth blobs (few border voxels, as in
    real label maps) and noise (mostly border) at random sizes and factors, label values beyond int8 and
    fractional ones included."""
    rs = np.random.RandomState(len(labels) + int(labels[-1] * 4))
    from scipy.ndimage import gaussian_filter
    for _ in range(12):
        shape = tuple(int(x) for x in rs.randint(3, 24, size=rs.choice([2, 3])))
        new = tuple(max(1, int(round(s * f))) for s, f in zip(shape, rs.uniform(0.3, 2.5, len(shape))))
        if rs.rand() < 0.5:
            field = gaussian_filter(rs.randn(*shape), 2)
            seg = np.asarray(labels, float)[np.digitize(field, np.quantile(field, [0.5, 0.8]))]
        else:
            seg = rs.choice(np.asarray(labels, float), size=shape)
        np.testing.assert_array_equal(resize_segmentation(seg, new, 1), bg_resize_segmentation(seg, new, 1))
