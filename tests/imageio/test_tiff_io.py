"""Tiff3DIO: spacing side-cars (images vs segmentations), 3-D only, atomic write of image and side-car."""
import json
import logging

import numpy as np
import pytest
import tifffile

from nnunetv2.errors import UserError
from nnunetv2.imageio.tif_reader_writer import Tiff3DIO


@pytest.fixture
def vol():
    return np.random.RandomState(0).randint(0, 5, (5, 6, 7)).astype(np.uint16)


def test_read_with_sidecar_and_stacking(tmp_path, vol):
    tifffile.imwrite(tmp_path / "case_0000.tif", vol)
    tifffile.imwrite(tmp_path / "case_0001.tif", vol * 3)
    (tmp_path / "case.json").write_text(json.dumps({"spacing": [3.0, 0.5, 0.75]}))
    data, props = Tiff3DIO().read_images([str(tmp_path / "case_0000.tif"), str(tmp_path / "case_0001.tif")])
    assert data.shape == (2, 5, 6, 7) and data.dtype == np.float32
    np.testing.assert_array_equal(data[1], vol * 3)
    assert props == {"spacing": [3.0, 0.5, 0.75]}


def test_missing_sidecar_warns_and_uses_unit_spacing(tmp_path, vol, caplog):
    tifffile.imwrite(tmp_path / "case_0000.tiff", vol)
    with caplog.at_level(logging.WARNING):
        data, props = Tiff3DIO().read_images([str(tmp_path / "case_0000.tiff")])
    assert props == {"spacing": (1, 1, 1)} and type(props["spacing"]) is tuple
    assert str(tmp_path / "case.json") in caplog.text
    np.testing.assert_array_equal(data[0], vol)


def test_write_seg_and_read_back(tmp_path, vol):
    out = tmp_path / "seg.tif"
    Tiff3DIO().write_seg(vol.astype(np.int64), str(out), {"spacing": [3.0, 0.5, np.float32(0.75)]})
    assert json.loads((tmp_path / "seg.json").read_text()) == {"spacing": [3.0, 0.5, 0.75]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.json", "seg.tif"]
    assert tifffile.imread(out).dtype == np.uint8
    seg, props = Tiff3DIO().read_seg(str(out))
    assert seg.shape == (1, 5, 6, 7) and props == {"spacing": [3.0, 0.5, 0.75]}
    np.testing.assert_array_equal(seg[0], vol)
    big = vol.astype(np.int64)
    big[0, 0, 0] = 1000
    Tiff3DIO().write_seg(big, str(tmp_path / "big.tiff"), {"spacing": (1, 1, 1)})
    assert tifffile.imread(tmp_path / "big.tiff").dtype == np.uint16
    assert json.loads((tmp_path / "big.json").read_text()) == {"spacing": [1, 1, 1]}


def test_bad_inputs_are_user_errors(tmp_path, vol):
    tifffile.imwrite(tmp_path / "flat_0000.tif", vol[0])
    tifffile.imwrite(tmp_path / "seg.tif", vol)
    (tmp_path / "seg.json").write_text(json.dumps({"spacing": [1.0, 0.0, 1.0]}))
    tifffile.imwrite(tmp_path / "two_0000.tif", vol)
    (tmp_path / "two.json").write_text(json.dumps({"spacing": [1.0, 1.0]}))
    corrupt = tmp_path / "bad_0000.tif"
    corrupt.write_bytes(b"II*\x00garbage")
    cases = [(lambda: Tiff3DIO().read_images([str(tmp_path / "flat_0000.tif")]), "flat_0000.tif", "only 3-D"),
             (lambda: Tiff3DIO().read_seg(str(tmp_path / "seg.tif")), "seg.json", "non-positive"),
             (lambda: Tiff3DIO().read_images([str(tmp_path / "two_0000.tif")]), "two.json", "exactly 3"),
             (lambda: Tiff3DIO().read_images([str(corrupt)]), "bad_0000.tif", ""),
             (lambda: Tiff3DIO().read_images([str(tmp_path / "no_0000.tif")]), "no_0000.tif", "does not exist"),
             (lambda: Tiff3DIO().read_images([str(tmp_path / "x_0000.png")]), "x_0000.png", ".tif")]
    for fn, name, words in cases:
        with pytest.raises(UserError) as e:
            fn()
        assert name in str(e.value) and words in str(e.value) and "\n" not in str(e.value)
