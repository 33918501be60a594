"""NibabelIO / NibabelIOWithReorient: axis order like SimpleITK, exact affine round trips, 3-D only."""
import numpy as np
import nibabel
import pytest

from nnunetv2.errors import UserError
from nnunetv2.imageio.nibabel_reader_writer import NibabelIO, NibabelIOWithReorient

# a permutation (3-cycle) with flips, anisotropic zooms and a non-zero origin
AFFINE = np.array([[0.0, -1.3, 0.0, -10.5],
                   [0.0, 0.0, 3.1, 20.25],
                   [-0.8, 0.0, 0.0, 33.0],
                   [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture
def vol_xyz():
    return np.random.RandomState(0).randint(0, 5, (11, 9, 7)).astype(np.int16)  # nibabel (x, y, z)


def write_nii(path, arr, affine=AFFINE):
    nibabel.save(nibabel.Nifti1Image(arr, affine), str(path))
    return str(path)


@pytest.mark.parametrize("ending", [".nii", ".nii.gz"])
def test_nibabelio_read_and_round_trip(tmp_path, vol_xyz, ending):
    f = write_nii(tmp_path / f"a_0000{ending}", vol_xyz)
    data, props = NibabelIO().read_images([f])
    assert data.shape == (1, 7, 9, 11) and data.dtype == np.float32 and data.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(data[0], vol_xyz.transpose(2, 1, 0))
    assert props["spacing"] == [float(np.float32(3.1)), float(np.float32(1.3)), float(np.float32(0.8))]  # zooms reversed
    assert all(type(s) is float for s in props["spacing"])
    assert set(props["nibabel_stuff"]) == {"original_affine"}
    np.testing.assert_array_equal(props["nibabel_stuff"]["original_affine"], nibabel.load(f).affine)
    out = str(tmp_path / f"pred{ending}")
    NibabelIO().write_seg(data[0].astype(np.int32), out, props)
    written = nibabel.load(out)
    np.testing.assert_array_equal(written.affine, props["nibabel_stuff"]["original_affine"])
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj), vol_xyz)
    seg, seg_props = NibabelIO().read_seg(out)
    np.testing.assert_array_equal(seg[0], data[0])
    assert seg_props["spacing"] == props["spacing"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"a_0000{ending}", f"pred{ending}"])


def test_uint16_output_for_large_labels(tmp_path, vol_xyz):
    f = write_nii(tmp_path / "a_0000.nii.gz", vol_xyz)
    _, props = NibabelIO().read_images([f])
    seg = np.zeros((7, 9, 11), np.int32)
    seg[1, 2, 3] = 256
    NibabelIO().write_seg(seg, str(tmp_path / "o.nii.gz"), props)
    assert nibabel.load(str(tmp_path / "o.nii.gz")).get_data_dtype() == np.uint16


def test_scaled_data_matches_get_fdata(tmp_path, vol_xyz):
    img = nibabel.Nifti1Image(vol_xyz, AFFINE)
    img.header.set_slope_inter(0.37, -2.5)
    nibabel.save(img, str(tmp_path / "s_0000.nii.gz"))
    data, _ = NibabelIO().read_images([str(tmp_path / "s_0000.nii.gz")])
    expected = nibabel.load(str(tmp_path / "s_0000.nii.gz")).get_fdata().transpose(2, 1, 0).astype(np.float32)
    np.testing.assert_array_equal(data[0], expected)


def test_reorient_round_trip_restores_affine_and_values(tmp_path, vol_xyz):
    f = write_nii(tmp_path / "a_0000.nii.gz", vol_xyz)
    data, props = NibabelIOWithReorient().read_images([f])
    stuff = props["nibabel_stuff"]
    assert set(stuff) == {"original_affine", "reoriented_affine"}
    ras = nibabel.as_closest_canonical(nibabel.load(f))
    np.testing.assert_allclose(stuff["reoriented_affine"], ras.affine)
    np.testing.assert_array_equal(data[0], np.asarray(ras.dataobj).transpose(2, 1, 0))
    np.testing.assert_allclose(props["spacing"], [0.8, 3.1, 1.3], rtol=1e-6)  # RAS axes: (z, y, x) reversed
    out = str(tmp_path / "pred.nii.gz")
    NibabelIOWithReorient().write_seg(data[0], out, props)
    written = nibabel.load(out)
    np.testing.assert_allclose(written.affine, nibabel.load(f).affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(written.dataobj), vol_xyz)


def test_channels_stack_and_mismatches(tmp_path, vol_xyz, caplog):
    f0 = write_nii(tmp_path / "a_0000.nii.gz", vol_xyz)
    f1 = write_nii(tmp_path / "a_0001.nii.gz", vol_xyz + 1)
    data, _ = NibabelIO().read_images([f0, f1])
    assert data.shape == (2, 7, 9, 11)
    np.testing.assert_array_equal(data[1], data[0] + 1)
    f_shape = write_nii(tmp_path / "a_0002.nii.gz", vol_xyz[:-1])
    with pytest.raises(UserError) as e:
        NibabelIO().read_images([f0, f_shape])
    assert f_shape in str(e.value) and "different shapes" in str(e.value)
    shifted = AFFINE.copy()
    shifted[:3, 3] += 5
    f_aff = write_nii(tmp_path / "a_0003.nii.gz", vol_xyz, shifted)
    NibabelIO().read_images([f0, f_aff])
    assert "same affine" in caplog.text
    f_sp = write_nii(tmp_path / "a_0004.nii.gz", vol_xyz, np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(UserError) as e:
        NibabelIO().read_images([f0, f_sp])
    assert f_sp in str(e.value) and "different spacings" in str(e.value)


@pytest.mark.parametrize("cls", [NibabelIO, NibabelIOWithReorient])
def test_2d_4d_missing_corrupt_are_user_errors(tmp_path, cls):
    f2 = write_nii(tmp_path / "flat_0000.nii.gz", np.zeros((5, 6), np.int16), np.eye(4))
    f4 = write_nii(tmp_path / "four_0000.nii.gz", np.zeros((5, 6, 7, 2), np.int16), np.eye(4))
    missing = str(tmp_path / "missing_0000.nii.gz")
    corrupt = tmp_path / "corrupt_0000.nii.gz"
    corrupt.write_bytes(open(f4, "rb").read()[:200])
    for f, words in [(f2, "only 3-D"), (f4, "only 3-D"), (missing, "does not exist"), (str(corrupt), "")]:
        with pytest.raises(UserError) as e:
            cls().read_images([f])
        msg = str(e.value)
        assert f in msg and words in msg and "\n" not in msg
