"""Order-1 resampling stored in a narrow type rounds exactly like the reference's skimage/scipy formulation.

The predictor's logits are float16. Upsampled linearly, an output sample halfway between two input samples that
differ by one float16 step is an exact rounding tie, so any last-bit difference of the float64 sum decides which
float16 value is stored (one float16 step of a logit moves a probability by up to ~1e-3).
"""
import numpy as np
import pytest
from scipy import ndimage
from scipy.ndimage import gaussian_filter, map_coordinates
from skimage.transform import resize

from nnunetv2.preprocessing.resampling import separable_zoom as sz
from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape


def _logits(shape, seed=0, dtype=np.float16):
    """Smooth logit-like fields (channels first), rounded to ``dtype`` like the predictor's output."""
    rng = np.random.default_rng(seed)
    return np.stack([gaussian_filter(rng.standard_normal(shape[1:]), 2) * 40 for _ in range(shape[0])]).astype(dtype)


def _skimage(img, new_shape):
    return resize(img.astype(np.float64), new_shape, 1, mode='edge', anti_aliasing=False)


@pytest.mark.parametrize("shape,new_shape,batch_axes", [
    ((20, 32, 30), (27, 41, 37), ()),      # non-dyadic upsampling: exact ties where the weights are 1/2
    ((6, 64, 64), (6, 80, 80), (0,)),      # per-slice (separate z): 4/5 scaling, ties on every 5th row/column
    ((40, 50), (57, 71), ()),
])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_order1_rounds_like_skimage(shape, new_shape, batch_axes, dtype):
    img = _logits((1, *shape), dtype=dtype)[0].astype(np.float64)
    if batch_axes:
        ref = np.stack([_skimage(s, new_shape[1:]) for s in img])
    else:
        ref = _skimage(img, new_shape)
    ours = sz.resize_like_skimage(img, new_shape, 1, batch_axes=batch_axes, out_dtype=dtype)
    np.testing.assert_array_equal(ours.astype(dtype), ref.astype(dtype))
    if dtype == np.float16:
        # the cases do contain ties: the separable sum alone rounds differently somewhere
        plain = sz.resize_like_skimage(img, new_shape, 1, batch_axes=batch_axes)
        assert (plain.astype(dtype) != ref.astype(dtype)).any()


def test_order1_float64_output_is_skimage_bit_for_bit():
    img = _logits((1, 15, 17, 9))[0].astype(np.float64)
    np.testing.assert_array_equal(sz.resize_like_skimage(img, (22, 12, 14), 1, out_dtype=np.float64),
                                  _skimage(img, (22, 12, 14)))


def test_linear_zoom_at_is_scipy_bit_for_bit():
    img = _logits((1, 9, 13, 11), seed=3)[0].astype(np.float64)
    new_shape = (14, 10, 23)
    ref = ndimage.zoom(img, [n / o for o, n in zip(img.shape, new_shape)], order=1, mode='nearest', grid_mode=True)
    assert ref.shape == new_shape
    points = np.argwhere(np.ones(new_shape, dtype=bool))
    np.testing.assert_array_equal(sz.linear_zoom_at(img, new_shape, points, (0, 1, 2)), ref.ravel())


def test_float16_boundary_candidates_cover_every_near_tie():
    rng = np.random.default_rng(1)
    a = np.clip(rng.standard_normal(20000) * 10 ** rng.uniform(-4, 4.5, 20000), -6e4, 6e4).astype(np.float16)
    b = np.nextafter(a, np.float16(np.inf))
    ok = np.isfinite(b)
    boundary = (a[ok].astype(np.float64) + b[ok].astype(np.float64)) / 2  # float16 rounding boundaries
    tol = 1e-12
    for offset in (-tol, -tol / 3, 0.0, tol / 3, tol):
        assert sz._float16_boundary_candidates(boundary + offset, tol).all()
    # and it stays a filter: few random values are candidates
    assert sz._float16_boundary_candidates(rng.uniform(-50, 50, 100000), tol).mean() < 0.01


def _reference_formulation(data, new_shape, axis):
    """Exported probabilities' resampling as the reference defines it: skimage per channel (per slice when one axis
    is resampled separately, then slices picked with map_coordinates order 0), stored in the logits' dtype."""
    out = np.zeros((data.shape[0], *new_shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        vol = data[c].astype(np.float64)
        if axis is None:
            out[c] = _skimage(vol, new_shape)
            continue
        inplane = [s for i, s in enumerate(new_shape) if i != axis]
        rv = np.stack([_skimage(np.take(vol, k, axis=axis), inplane) for k in range(vol.shape[axis])], axis=axis)
        grids = np.mgrid[tuple(slice(0, s) for s in new_shape)].astype(float)
        for k, (o, n) in enumerate(zip(rv.shape, new_shape)):
            grids[k] = o / n * (grids[k] + 0.5) - 0.5
        out[c] = map_coordinates(rv, grids, order=0, mode='nearest')
    return out


@pytest.mark.parametrize("spacing,new_spacing,new_shape,axis", [
    ((1.0, 0.97, 0.97), (0.67, 0.62, 0.65), (30, 34, 33), None),
    ((1.0, 0.97, 0.97), (3.5, 0.83, 0.84), (6, 25, 26), 0),
])
def test_probability_resampling_is_the_reference_formulation(spacing, new_spacing, new_shape, axis):
    logits = _logits((3, 20, 22, 21), seed=5)
    kwargs = dict(is_seg=False, order=1, order_z=0, force_separate_z=None)  # the planner's probability resampling
    ours = resample_data_or_seg_to_shape(logits, new_shape, spacing, new_spacing, **kwargs)
    assert ours.dtype == np.float16
    np.testing.assert_array_equal(ours, _reference_formulation(logits, new_shape, axis))
