"""SimpleITKIO / SimpleITKIOWithReorient: axis order, geometry round trips, dtypes and one-line errors."""
import logging
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.errors import UserError
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO, SimpleITKIOWithReorient, read_seg_in_own_type

SPACING = (0.8, 1.3, 3.1)  # ITK order (x, y, z)
ORIGIN = (10.5, -20.25, 33.0)
DIRECTION = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0)  # a rotation with a flip: not identity


def write_sitk(path, arr, spacing=SPACING, origin=ORIGIN, direction=DIRECTION, is_vector=False):
    img = sitk.GetImageFromArray(arr, isVector=is_vector)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return str(path)


@pytest.fixture
def vol():
    return np.random.RandomState(0).randint(0, 5, (7, 9, 11)).astype(np.int16)  # numpy (z, y, x)


def test_read_3d_axis_order_dtype_and_properties(tmp_path, vol):
    f = write_sitk(tmp_path / "a_0000.nii.gz", vol)
    data, props = SimpleITKIO().read_images([f])
    assert data.shape == (1, 7, 9, 11) and data.dtype == np.float32 and data.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(data[0], vol)
    assert isinstance(props["spacing"], list) and all(type(s) is np.float64 for s in props["spacing"])
    np.testing.assert_allclose(props["spacing"], SPACING[::-1], rtol=1e-6)
    st = props["sitk_stuff"]
    assert set(st) == {"spacing", "origin", "direction"}
    assert all(isinstance(st[k], tuple) for k in st)
    np.testing.assert_allclose(st["spacing"], SPACING, rtol=1e-6)
    np.testing.assert_allclose(st["origin"], ORIGIN)
    np.testing.assert_allclose(st["direction"], DIRECTION, atol=1e-7)


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_write_seg_round_trip_preserves_geometry(tmp_path, vol, ending):
    f = write_sitk(tmp_path / f"a_0000{ending}", vol)
    data, props = SimpleITKIO().read_images([f])
    out = tmp_path / f"pred{ending}"
    SimpleITKIO().write_seg(data[0].astype(np.int64), str(out), props)
    assert sorted(os.listdir(tmp_path)) == sorted([f"a_0000{ending}", f"pred{ending}"])  # no temp files left
    written = sitk.ReadImage(str(out))
    assert written.GetSpacing() == props["sitk_stuff"]["spacing"]
    assert written.GetOrigin() == props["sitk_stuff"]["origin"]
    assert written.GetDirection() == props["sitk_stuff"]["direction"]
    assert written.GetPixelID() == sitk.sitkUInt8
    seg, seg_props = SimpleITKIO().read_seg(str(out))
    np.testing.assert_array_equal(seg[0], vol)
    assert seg_props == props


def test_output_dtype_uint8_vs_uint16(tmp_path, vol):
    f = write_sitk(tmp_path / "a_0000.nii.gz", vol)
    _, props = SimpleITKIO().read_images([f])
    small = np.full((7, 9, 11), 254, dtype=np.int32)
    big = small.copy()
    big[0, 0, 0] = 255
    SimpleITKIO().write_seg(small, str(tmp_path / "s.nii.gz"), props)
    SimpleITKIO().write_seg(big, str(tmp_path / "b.nii.gz"), props)
    assert sitk.ReadImage(str(tmp_path / "s.nii.gz")).GetPixelID() == sitk.sitkUInt8
    assert sitk.ReadImage(str(tmp_path / "b.nii.gz")).GetPixelID() == sitk.sitkUInt16
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b.nii.gz")))[0, 0, 0] == 255


def test_2d_image_layout_spacing_and_write(tmp_path):
    arr = np.arange(13 * 17, dtype=np.uint8).reshape(13, 17)
    f = write_sitk(tmp_path / "b_0000.nii.gz", arr, spacing=(0.5, 0.7), origin=(1.0, 2.0),
                   direction=(1.0, 0.0, 0.0, 1.0))
    data, props = SimpleITKIO().read_images([f])
    assert data.shape == (1, 1, 13, 17)
    np.testing.assert_allclose(props["spacing"], [999 * 0.7, 0.7, 0.5])
    SimpleITKIO().write_seg(data[0], str(tmp_path / "o.nii.gz"), props)
    back = sitk.ReadImage(str(tmp_path / "o.nii.gz"))
    assert back.GetDimension() == 2 and back.GetOrigin() == (1.0, 2.0)
    assert back.GetSpacing() == props["sitk_stuff"]["spacing"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)


def test_4d_multichannel_file(tmp_path):
    arr = np.random.RandomState(1).rand(2, 5, 6, 7).astype(np.float32)  # (c, z, y, x)
    img = sitk.GetImageFromArray(arr, isVector=False)
    img.SetSpacing((1.0, 2.0, 3.0, 4.0))
    sitk.WriteImage(img, str(tmp_path / "c_0000.nii.gz"))
    data, props = SimpleITKIO().read_images([str(tmp_path / "c_0000.nii.gz")])
    assert data.shape == (2, 5, 6, 7) and data.dtype == np.float32
    np.testing.assert_array_equal(data, arr)
    assert props["spacing"] == [3.0, 2.0, 1.0]  # the 4th ITK spacing (channel axis) is dropped
    with pytest.raises(UserError, match="4-D"):
        SimpleITKIO().write_seg(data[0], str(tmp_path / "o.nii.gz"), props)


def test_several_channel_files_are_stacked(tmp_path, vol):
    f0 = write_sitk(tmp_path / "a_0000.nii.gz", vol)
    f1 = write_sitk(tmp_path / "a_0001.nii.gz", vol * 2)
    data, props = SimpleITKIO().read_images([f0, f1])
    assert data.shape == (2, 7, 9, 11) and data.dtype == np.float32
    np.testing.assert_array_equal(data[1], vol * 2)


def test_float32_single_file_owns_its_memory(tmp_path):
    arr = np.random.RandomState(2).rand(4, 5, 6).astype(np.float32)
    f = write_sitk(tmp_path / "f_0000.nii.gz", arr)
    data, _ = SimpleITKIO().read_images([f])
    import gc
    gc.collect()
    np.testing.assert_array_equal(data[0], arr)
    assert data.flags["OWNDATA"] or data.base is not None and data.base.flags["OWNDATA"]


def test_shape_and_spacing_mismatch_are_user_errors(tmp_path, vol):
    f0 = write_sitk(tmp_path / "a_0000.nii.gz", vol)
    f_shape = write_sitk(tmp_path / "a_0001.nii.gz", vol[:-1])
    f_sp = write_sitk(tmp_path / "a_0002.nii.gz", vol, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(UserError) as e:
        SimpleITKIO().read_images([f0, f_shape])
    assert "different shapes" in str(e.value) and f_shape in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError) as e:
        SimpleITKIO().read_images([f0, f_sp])
    assert "different spacings" in str(e.value) and f_sp in str(e.value) and "\n" not in str(e.value)


def test_origin_and_direction_mismatch_only_warn(tmp_path, vol, caplog):
    f0 = write_sitk(tmp_path / "a_0000.nii.gz", vol)
    f1 = write_sitk(tmp_path / "a_0001.nii.gz", vol, origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    with caplog.at_level(logging.WARNING):
        data, _ = SimpleITKIO().read_images([f0, f1])
    assert data.shape == (2, 7, 9, 11)
    text = caplog.text
    assert "same origin" in text and "same direction" in text and "nnUNetv2_plot_overlay_pngs" in text


def test_missing_and_corrupt_files_are_one_line_user_errors(tmp_path, vol):
    missing = str(tmp_path / "nope_0000.nii.gz")
    with pytest.raises(UserError) as e:
        SimpleITKIO().read_images([missing])
    assert missing in str(e.value) and "does not exist" in str(e.value) and "\n" not in str(e.value)
    good = write_sitk(tmp_path / "a_0000.nii.gz", vol)
    corrupt = tmp_path / "bad_0000.nii.gz"
    corrupt.write_bytes(open(good, "rb").read()[:100])  # truncated gzip
    with pytest.raises(UserError) as e:
        SimpleITKIO().read_seg(str(corrupt))
    assert str(corrupt) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("io_class", ["SimpleITKIO", "NibabelIO", "Tiff3DIO", "NaturalImage2DIO"])
def test_missing_label_file_is_not_called_an_image(tmp_path, io_class):
    """Label files are read through the images' code: the message must not call a missing label an image."""
    import nnunetv2.imageio.reader_writer_registry as registry
    cls = registry.recursive_find_reader_writer_by_name(io_class)
    missing = str(tmp_path / "labelsTr" / f"case{cls.supported_file_endings[0]}")
    with pytest.raises(UserError) as e:
        cls().read_seg(missing)
    assert str(e.value).startswith(f"The file {missing} does not exist.") and "image file" not in str(e.value)


def test_reorient_reads_ras_and_writes_back_original_orientation(tmp_path, vol):
    f = write_sitk(tmp_path / "a_0000.nii.gz", vol)
    data, props = SimpleITKIOWithReorient().read_images([f])
    st = props["sitk_stuff"]
    assert st["original_orientation"] == sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(DIRECTION)
    ras = sitk.DICOMOrient(sitk.ReadImage(f), "RAS")
    assert st["direction"] == ras.GetDirection() and st["direction"] != DIRECTION
    expected = sitk.GetArrayFromImage(ras)
    np.testing.assert_array_equal(data[0], expected)
    out = str(tmp_path / "o.nii.gz")
    SimpleITKIOWithReorient().write_seg(data[0], out, props)
    back = sitk.ReadImage(out)
    np.testing.assert_allclose(back.GetDirection(), DIRECTION, atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), ORIGIN, atol=1e-5)
    np.testing.assert_allclose(back.GetSpacing(), SPACING, rtol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), vol)


@pytest.mark.parametrize('dtype', [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32])
def test_read_seg_in_own_type_same_values_as_read_seg(tmp_path, dtype):
    """8/16-bit label files come back in their own type (float32 holds all their values, so nothing changes),
    wider or float ones as float32 like read_seg; shape and properties always equal read_seg's."""
    arr = np.random.RandomState(0).randint(-3 if np.dtype(dtype).kind == 'i' else 0, 9, (4, 5, 6)).astype(dtype)
    f = str(tmp_path / 'seg.nii.gz')
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing((0.5, 1.0, 2.0))
    sitk.WriteImage(im, f)
    plain, plain_props = SimpleITKIO().read_seg(f)
    own, own_props = read_seg_in_own_type(SimpleITKIO(), f)
    assert own.shape == plain.shape == (1, 4, 5, 6) and own_props == plain_props
    assert np.array_equal(own, plain)
    expected_type = np.dtype(dtype) if np.dtype(dtype).itemsize <= 2 else np.dtype(np.float32)
    assert own.dtype == expected_type and own.flags.writeable

    class Subclass(SimpleITKIO):  # may read differently: its read_seg is used as it is
        def read_seg(self, seg_fname):
            seg, props = super().read_seg(seg_fname)
            return seg + 1, props
    assert np.array_equal(read_seg_in_own_type(Subclass(), f)[0], plain + 1)
    patched = SimpleITKIO()
    patched.read_seg = lambda fname: (np.zeros((1, 1, 1, 1), np.float32), {})
    assert read_seg_in_own_type(patched, f)[0].shape == (1, 1, 1, 1)


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 4, 5)])
def test_reorient_reader_refuses_non_3d_images_in_one_line(tmp_path, shape):
    arr = np.zeros(shape, np.int16)
    img = sitk.JoinSeries([sitk.GetImageFromArray(v) for v in arr]) if arr.ndim == 4 else sitk.GetImageFromArray(arr)
    fname = str(tmp_path / "c_0000.nii.gz")
    sitk.WriteImage(img, fname)
    with pytest.raises(UserError) as e:
        SimpleITKIOWithReorient().read_images([fname])
    assert fname in str(e.value) and "\n" not in str(e.value)
