import numpy as np
import pytest
import torch
from batchgenerators.augmentations.utils import resize_segmentation
from scipy.ndimage import gaussian_filter, map_coordinates
from skimage.transform import resize

from nnunetv2.preprocessing.resampling.default_resampling import (
    compute_new_shape, determine_do_sep_z_and_axis, get_do_separate_z, get_lowres_axis, resample_data_or_seg,
    resample_data_or_seg_to_shape, resample_data_or_seg_to_spacing)
from nnunetv2.preprocessing.resampling.no_resampling import no_resampling_hack
from nnunetv2.preprocessing.resampling.resample_torch import resample_torch_fornnunet, resample_torch_simple
from nnunetv2.preprocessing.resampling.separable_zoom import resize_like_skimage
from nnunetv2.preprocessing.resampling.utils import recursive_find_resampling_fn_by_name


# ---- separate-z decisions (spec 02 §4.5.1) ----
@pytest.mark.parametrize("force,cur,new,expected", [
    (None, (5.0, 0.8, 0.8), (3.0, 0.8, 0.8), (True, 0)),        # current anisotropic
    (None, (1.0, 1.0, 1.0), (0.8, 0.8, 4.0), (True, 2)),        # only the target is anisotropic
    (None, (1.0, 1.0, 1.0), (1.0, 1.0, 2.9), (False, None)),    # ratio <= 3
    (None, (1.0, 1.0, 3.0), (1.0, 1.0, 3.0), (False, None)),    # ratio exactly 3 is not > 3
    (None, (0.24, 1.25, 1.25), (0.24, 1.25, 1.25), (False, None)),  # two low-res axes -> off
    (True, (1.0, 2.0, 1.0), (1.0, 1.0, 1.0), (True, 1)),        # forced: axis from the current spacing
    (True, (1.0, 1.0, 1.0), (1.0, 1.0, 5.0), (False, None)),    # forced, but three equal axes -> off
    (False, (5.0, 0.8, 0.8), (5.0, 0.8, 0.8), (False, None)),   # forced off
])
def test_determine_do_sep_z_and_axis(force, cur, new, expected):
    assert determine_do_sep_z_and_axis(force, cur, new) == expected


def test_low_resolution_axis_is_a_numpy_integer():
    """The axis is the element of get_lowres_axis's array, a NumPy integer as in the reference (callers that check
    its type or pickle the result see the same)."""
    _, axis = determine_do_sep_z_and_axis(None, (5.0, 1.0, 1.0), (5.0, 1.0, 1.0))
    assert axis == 0 and type(axis) is type(get_lowres_axis((5.0, 1.0, 1.0))[0])


def test_threshold_and_helpers():
    assert determine_do_sep_z_and_axis(None, (2.5, 1, 1), (2.5, 1, 1), separate_z_anisotropy_threshold=2) == (True, 0)
    assert get_do_separate_z((3.1, 1, 1)) and not get_do_separate_z((3, 1, 1))
    assert get_lowres_axis((1, 3, 3)).tolist() == [1, 2]
    assert compute_new_shape((40, 100, 83), (4.9945, 0.7156, 0.7156), (4.23, 0.78, 0.78)).tolist() == [47, 92, 76]
    # Python round: half to even
    assert compute_new_shape((5, 3), (1., 1.), (2., 2.)).tolist() == [2, 2]
    with pytest.raises(ValueError):
        compute_new_shape((5, 3), (1., 1., 1.), (2., 2.))


# ---- the fast image path equals skimage ----
@pytest.mark.parametrize("shape,new_shape,order", [((12, 40, 36), (20, 50, 30), 3), ((7, 9, 11), (13, 4, 11), 1),
                                                    ((30, 41), (17, 90), 3), ((6, 5, 4), (3, 9, 8), 0)])
def test_resize_like_skimage(shape, new_shape, order):
    img = np.random.RandomState(0).rand(*shape) * 300 - 100
    ref = resize(img, new_shape, order, mode='edge', anti_aliasing=False)
    np.testing.assert_allclose(resize_like_skimage(img, new_shape, order), ref, rtol=0, atol=1e-9)


def test_resize_like_skimage_batch_axes_clip_per_slice():
    img = np.random.RandomState(1).rand(5, 20, 16) * np.arange(1, 6)[:, None, None]
    ref = np.stack([resize(s, (9, 31), 3, mode='edge', anti_aliasing=False) for s in img])
    np.testing.assert_allclose(resize_like_skimage(img, (5, 9, 31), 3, batch_axes=(0,)), ref, atol=1e-12)


def _per_slice_reference(data, new_shape, is_seg, axis, order):
    """The reference algorithm written out naively: per slice skimage/resize_segmentation, then map_coordinates."""
    out = np.zeros((data.shape[0], *new_shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        vol = data[c].astype(float)
        inplane = [s for i, s in enumerate(new_shape) if i != axis]
        slices = [np.take(vol, k, axis=axis) for k in range(vol.shape[axis])]
        fn = (lambda s: resize_segmentation(s, inplane, order)) if is_seg else \
            (lambda s: resize(s, inplane, order, mode='edge', anti_aliasing=False))
        rv = np.stack([fn(s) for s in slices], axis=axis)
        grids = np.mgrid[tuple(slice(0, s) for s in new_shape)].astype(float)
        for k, (o, n) in enumerate(zip(rv.shape, new_shape)):
            grids[k] = o / n * (grids[k] + 0.5) - 0.5
        out[c] = map_coordinates(rv, grids, order=0, mode='nearest')
    return out


@pytest.mark.parametrize("axis", [0, 2])
def test_separate_z_data_and_seg_match_naive_reference(axis):
    rs = np.random.RandomState(3)
    data = (rs.rand(2, 9, 30, 26) * 100).astype(np.float32)
    data = np.moveaxis(data, 1, axis + 1).copy()
    spacing = [0.8, 0.8, 0.8]
    spacing[axis] = 4.0
    new_shape = [34, 22, 25]
    new_shape[axis] = 14
    new_spacing = [0.7, 0.9, 0.85]
    new_spacing[axis] = 2.5
    res = resample_data_or_seg_to_shape(data, new_shape, spacing, new_spacing, is_seg=False, order=3,
                                        force_separate_z=None)
    assert res.dtype == np.float32 and res.shape == (2, *new_shape)
    assert np.abs(res - _per_slice_reference(data, new_shape, False, axis, 3)).max() < 1e-4
    smooth = gaussian_filter(rs.rand(*data.shape[1:]), 1.5)
    seg = (np.digitize(smooth, np.quantile(smooth, [0.3, 0.6, 0.85])) - 1).astype(np.float32)[None]
    res = resample_data_or_seg_to_shape(seg, new_shape, spacing, new_spacing, is_seg=True, order=1,
                                        force_separate_z=None)
    np.testing.assert_array_equal(res, _per_slice_reference(seg, new_shape, True, axis, 1))


def test_isotropic_seg_is_resize_segmentation_and_data_is_skimage():
    rs = np.random.RandomState(4)
    smooth = gaussian_filter(rs.rand(12, 20, 18), 2)
    seg = np.digitize(smooth, np.quantile(smooth, [0.5, 0.8])).astype(np.float32)[None]
    out = resample_data_or_seg_to_spacing(seg, (1., 1., 1.), (0.7, 1.3, 0.9), is_seg=True, order=1)
    np.testing.assert_array_equal(out[0], resize_segmentation(seg[0].astype(float), out.shape[1:], 1))
    data = rs.rand(1, 12, 20, 18).astype(np.float32)
    out = resample_data_or_seg_to_spacing(data, (1., 1., 1.), (0.7, 1.3, 0.9), order=3)
    np.testing.assert_allclose(out[0], resize(data[0].astype(float), out.shape[1:], 3, mode='edge',
                                              anti_aliasing=False), atol=1e-6)


def test_same_shape_returns_input_and_output_dtype():
    data = np.random.rand(1, 4, 5, 6).astype(np.float32)
    assert resample_data_or_seg_to_shape(data, (4, 5, 6), (1, 1, 1), (1, 1, 1)) is data
    assert resample_data_or_seg_to_shape(torch.from_numpy(data), (8, 5, 6), (1, 1, 1), (0.5, 1, 1)).dtype == np.float32
    out = resample_data_or_seg(data, (2, 5, 6), dtype_out=np.float16)
    assert out.dtype == np.float16
    with pytest.raises(ValueError):
        resample_data_or_seg(data[0], (2, 5, 6))


def test_order_z_nonzero_for_seg_uses_rounded_indicators():
    seg = np.zeros((1, 4, 6, 6), dtype=np.float32)
    seg[0, 1:3, 2:4, 2:4] = 1
    out = resample_data_or_seg_to_shape(seg, (8, 6, 6), (5., 1., 1.), (2.5, 1., 1.), is_seg=True, order=1,
                                        order_z=1, force_separate_z=None)
    assert set(np.unique(out)) == {0., 1.}
    assert out[0, :, 3, 3].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]


# ---- torch variant and helpers ----
def test_torch_resampling_basics():
    data = np.random.RandomState(5).rand(1, 6, 8, 8).astype(np.float32)
    out = resample_torch_simple(data, (12, 8, 8), is_seg=False)
    assert isinstance(out, np.ndarray) and out.shape == (1, 12, 8, 8) and out.dtype == np.float32
    seg = np.zeros((1, 6, 8, 8), dtype=np.float32)
    seg[0, 2:4, 2:6, 2:6] = 2
    for mem in (False, True):
        s = resample_torch_fornnunet(seg, (12, 16, 16), (2., 1., 1.), (1., .5, .5), is_seg=True,
                                     memefficient_seg_resampling=mem)
        assert s.dtype == np.int8 and set(np.unique(s)) == {0, 2}
        assert abs(int((s == 2).sum()) - 32 * 8) <= 16  # the 2x4x4 block, upsampled 2x per axis
    t = resample_torch_fornnunet(torch.from_numpy(data), (6, 16, 16), (5., 1., 1.), (5., .5, .5),
                                 force_separate_z=None)
    assert isinstance(t, torch.Tensor) and t.shape == (1, 6, 16, 16)


def test_no_resampling_and_lookup():
    data = np.zeros((1, 2, 3, 4))
    assert no_resampling_hack(data, (5, 5, 5), (1, 1, 1), (2, 2, 2)) is data
    assert recursive_find_resampling_fn_by_name('resample_data_or_seg_to_shape') is resample_data_or_seg_to_shape
    assert recursive_find_resampling_fn_by_name('resample_torch_fornnunet') is resample_torch_fornnunet
    with pytest.raises(RuntimeError, match="no_such_fn"):
        recursive_find_resampling_fn_by_name('no_such_fn')


def test_cubic_in_plane_then_linear_along_z_equals_skimage_then_map_coordinates_bitwise():
    """With order_z 1 the float64 in-plane result is interpolated again before the float32 cast, so its last bits
    show: they must be skimage's own (a faster separable cubic differed by an ulp of float32 after the cast; found by
    benchmarks/preprocessing_fuzz.py, plans with order_z 1 only)."""
    rng = np.random.default_rng(1107)
    data = (rng.normal(100, 50, (2, 10, 18, 22))).astype(np.float32)
    new_shape = (14, 12, 10)
    out = resample_data_or_seg_to_shape(data, new_shape, (0.65, 5.4, 2.6), (3.4, 0.62, 9.9), is_seg=False,
                                        order=3, order_z=1, force_separate_z=None)
    do_separate_z, axis = determine_do_sep_z_and_axis(None, (0.65, 5.4, 2.6), (3.4, 0.62, 9.9))
    assert do_separate_z and axis == 1
    inplane_shape = (new_shape[0], data.shape[2], new_shape[2])
    expected = np.zeros_like(out)
    for c in range(2):  # in-plane per slice along the low-resolution axis 1, then along it alone
        inplane = np.stack([resize(data[c, :, k].astype(float), (new_shape[0], new_shape[2]), 3, mode='edge',
                                   anti_aliasing=False) for k in range(data.shape[2])], axis=1)
        assert inplane.shape == inplane_shape
        grid = np.mgrid[:new_shape[0], :new_shape[1], :new_shape[2]].astype(float)
        for a in range(3):
            grid[a] = inplane_shape[a] / new_shape[a] * (grid[a] + 0.5) - 0.5
        expected[c] = map_coordinates(inplane, grid, order=1, mode='nearest')
    assert out.dtype == np.float32 and np.array_equal(out, expected)
