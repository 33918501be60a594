import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
    CTNormalization, NoNormalization, RescaleTo01Normalization, RGBTo01Normalization, ZScoreNormalization)
from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme


@pytest.mark.parametrize("name,cls", [("CT", CTNormalization), ("ct", CTNormalization), ("noNorm", NoNormalization),
                                      ("zscore", ZScoreNormalization), ("rescale_to_0_1", RescaleTo01Normalization),
                                      ("RGB_to_0_1", RGBTo01Normalization), ("T2", ZScoreNormalization),
                                      ("MRI", ZScoreNormalization), ("ADC", ZScoreNormalization)])
def test_channel_name_mapping(name, cls):
    assert get_normalization_scheme(name) is cls


def test_mask_flags():
    assert ZScoreNormalization.leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true is True
    for cls in (CTNormalization, NoNormalization, RescaleTo01Normalization, RGBTo01Normalization):
        assert cls.leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true is False


def test_zscore_without_mask():
    img = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = ZScoreNormalization(use_mask_for_norm=False).run(img.copy(), None)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (img - img.mean()) / img.std(), rtol=1e-6)
    assert abs(out.mean()) < 1e-6 and abs(out.std() - 1) < 1e-6


def test_zscore_with_mask_only_changes_masked_voxels():
    img = np.array([[0., 0., 2., 4., 6.]], dtype=np.float32)
    seg = np.array([[-1, -1, 0, 1, 0]])
    out = ZScoreNormalization(use_mask_for_norm=True).run(img.copy(), seg)
    vals = np.array([2., 4., 6.])
    np.testing.assert_allclose(out[0, 2:], (vals - 4) / vals.std(), rtol=1e-6)
    np.testing.assert_array_equal(out[0, :2], 0)


def test_zscore_constant_image_does_not_divide_by_zero():
    out = ZScoreNormalization(use_mask_for_norm=False).run(np.full((3, 3), 5, dtype=np.float32))
    np.testing.assert_array_equal(out, 0)


def test_ct_normalization_clips_and_scales():
    props = {'mean': 10.0, 'std': 2.0, 'percentile_00_5': 0.0, 'percentile_99_5': 20.0}
    img = np.array([-100., 0., 10., 14., 1000.], dtype=np.float32)
    out = CTNormalization(use_mask_for_norm=True, intensityproperties=props).run(img.copy())
    np.testing.assert_allclose(out, [-5., -5., 0., 2., 5.])
    assert out.dtype == np.float32


def test_ct_normalization_needs_properties():
    with pytest.raises(UserError, match="intensity properties"):
        CTNormalization(intensityproperties=None).run(np.zeros(3, dtype=np.float32))
    with pytest.raises(UserError, match="percentile_99_5"):
        CTNormalization(intensityproperties={'mean': 0, 'std': 1, 'percentile_00_5': 0}).run(np.zeros(3))


def test_rescale_and_rgb_and_nonorm():
    img = np.array([2., 4., 6.], dtype=np.float64)
    np.testing.assert_allclose(RescaleTo01Normalization().run(img), [0, 0.5, 1])
    assert img.tolist() == [2., 4., 6.]  # caller's array untouched
    out = RGBTo01Normalization().run(np.array([0, 51, 255], dtype=np.uint8))
    np.testing.assert_allclose(out, [0, 0.2, 1]) and out.dtype == np.float32
    with pytest.raises(UserError, match=r"\[0, 255\]"):
        RGBTo01Normalization().run(np.array([0., 300.]))
    out = NoNormalization().run(np.array([1, 2], dtype=np.int16))
    assert out.dtype == np.float32 and out.tolist() == [1., 2.]


def test_bad_constructor_arguments():
    with pytest.raises(UserError):
        ZScoreNormalization(intensityproperties=[1, 2])


@pytest.mark.parametrize("image_dtype,target", [(np.float64, np.float32), (np.float64, np.float16),
                                                (np.float32, np.float16), (np.uint8, np.float16)])
def test_rgb_rounds_like_the_reference(image_dtype, target):
    """Cast to the target type first, then divide in it: dividing in float64 and casting afterwards rounds some
    values to the neighbouring float (seen by benchmarks/utilities_fuzz.py)."""
    img = (np.random.default_rng(0).random((40, 50)) * 255).astype(image_dtype)
    before = img.copy()
    out = RGBTo01Normalization(target_dtype=target).run(img)
    expected = img.astype(target) / target(255)
    assert out.dtype == target
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(img, before)  # the caller's image is left alone
