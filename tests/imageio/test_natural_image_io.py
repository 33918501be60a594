"""NaturalImage2DIO: grey/RGB layout, fixed spacing, stacking, output dtype and one-line errors."""
import numpy as np
import pytest
from PIL import Image

from nnunetv2.errors import UserError
from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO


def test_rgb_png(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 256, (10, 12, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x_0000.png")
    data, props = NaturalImage2DIO().read_images([str(tmp_path / "x_0000.png")])
    assert data.shape == (3, 1, 10, 12) and data.dtype == np.float32 and data.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(data[:, 0].transpose(1, 2, 0), rgb)
    assert props == {"spacing": (999, 1, 1)} and type(props["spacing"]) is tuple
    assert all(type(s) is int for s in props["spacing"])


def test_grey_png_and_bmp_and_stacking(tmp_path):
    g = np.arange(120, dtype=np.uint8).reshape(10, 12)
    Image.fromarray(g).save(tmp_path / "x_0000.png")
    Image.fromarray(255 - g).save(tmp_path / "x_0001.bmp")
    data, props = NaturalImage2DIO().read_images([str(tmp_path / "x_0000.png"), str(tmp_path / "x_0001.bmp")])
    assert data.shape == (2, 1, 10, 12)
    np.testing.assert_array_equal(data[0, 0], g)
    np.testing.assert_array_equal(data[1, 0], 255 - g)


def test_rgba_gives_four_channels(tmp_path):
    rgba = np.random.RandomState(1).randint(0, 256, (6, 7, 4)).astype(np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "x_0000.png")
    data, _ = NaturalImage2DIO().read_images([str(tmp_path / "x_0000.png")])
    assert data.shape == (4, 1, 6, 7)
    np.testing.assert_array_equal(data[3, 0], rgba[..., 3])


def test_write_seg_round_trip_and_dtype(tmp_path):
    seg = np.random.RandomState(2).randint(0, 4, (1, 10, 12))
    out = tmp_path / "s.png"
    NaturalImage2DIO().write_seg(seg, str(out), {"spacing": (999, 1, 1)})
    assert np.asarray(Image.open(out)).dtype == np.uint8
    back, _ = NaturalImage2DIO().read_seg(str(out))
    np.testing.assert_array_equal(back[0], seg)
    big = seg.copy()
    big[0, 0, 0] = 300
    NaturalImage2DIO().write_seg(big, str(tmp_path / "b.png"), {"spacing": (999, 1, 1)})
    back, _ = NaturalImage2DIO().read_seg(str(tmp_path / "b.png"))
    assert back[0, 0, 0, 0] == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "s.png"]


def test_bad_inputs_are_one_line_user_errors(tmp_path):
    import tifffile
    vol = np.zeros((5, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "v_0000.tif", vol)
    with pytest.raises(UserError) as e:
        NaturalImage2DIO().read_images([str(tmp_path / "v_0000.tif")])
    assert str(tmp_path / "v_0000.tif") in str(e.value) and "(5, 6, 7)" in str(e.value)
    bad = tmp_path / "c_0000.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(UserError) as e:
        NaturalImage2DIO().read_images([str(bad)])
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a_0000.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "a_0001.png")
    with pytest.raises(UserError, match="differ in size or colour layout"):
        NaturalImage2DIO().read_images([str(tmp_path / "a_0000.png"), str(tmp_path / "a_0001.png")])


def test_grey_and_rgb_channel_files_of_one_case_are_refused(tmp_path):
    # the reference refuses such a case too; stacking them would give 1 + 3 channels where dataset.json says 2
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "m_0000.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "m_0001.png")
    with pytest.raises(UserError, match="colour layout") as e:
        NaturalImage2DIO().read_images([str(tmp_path / "m_0000.png"), str(tmp_path / "m_0001.png")])
    assert "\n" not in str(e.value)
    # two RGB files of one case still give six channels
    Image.fromarray(np.ones((4, 5, 3), np.uint8)).save(tmp_path / "m_0000.png")
    data, _ = NaturalImage2DIO().read_images([str(tmp_path / "m_0000.png"), str(tmp_path / "m_0001.png")])
    assert data.shape == (6, 1, 4, 5)


def test_write_seg_of_16_bit_labels_to_bmp_is_one_line(tmp_path):
    # BMP has no 16-bit grey mode: both implementations cannot write it, ours says so in one line naming the file
    seg = np.zeros((1, 4, 5), np.int16)
    seg[0, 0, 0] = 300
    out = str(tmp_path / "s.bmp")
    with pytest.raises(UserError) as e:
        NaturalImage2DIO().write_seg(seg, out, {'spacing': (999, 1, 1)})
    assert out in str(e.value) and "\n" not in str(e.value)
    seg[0, 0, 0] = 254  # still 8-bit: written
    NaturalImage2DIO().write_seg(seg, out, {'spacing': (999, 1, 1)})
    assert NaturalImage2DIO().read_seg(out)[0].max() == 254
