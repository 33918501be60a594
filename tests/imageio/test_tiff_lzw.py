"""TIFF files compressed with LZW (what many microscopy and image tools save) are read as by the reference, whose
requirements bring imagecodecs: tifffile decodes LZW only through it."""
from __future__ import annotations

import base64

import numpy as np

from nnunetv2.imageio.tif_reader_writer import Tiff3DIO

# a (2, 4, 5) uint8 label volume written by tifffile with compression='lzw'
LZW_TIF = base64.b64decode(
    "SUkqAAgAAAAOAAABBAABAAAABQAAAAEBBAABAAAABAAAAAIBAwABAAAACAAAAAMBAwABAAAABQAAAAYBAwABAAAAAQAAAA4BAgAVAAAAtgAA"
    "ABEBBAABAAAAAAEAABUBAwABAAAAAQAAABYBBAABAAAABAAAABcBBAABAAAADgAAABoBBQABAAAA2gAAABsBBQABAAAA4gAAACgBAwABAAAA"
    "AQAAADEBAgAMAAAA6gAAAA4BAAB7InNoYXBlIjogWzIsIDQsIDVdfQAAAAAAAAAAAAAAAAAAAAABAAAAAQAAAAEAAAABAAAAdGlmZmZpbGUu"
    "cHkAAAAAAAAAAAAAAIAAIFAwDBYFBQDA4HAQDAAAAQQAAQAAAAUAAAABAQQAAQAAAAQAAAACAQMAAQAAAAgAAAADAQMAAQAAAAUAAAAGAQMA"
    "AQAAAAEAAAARAQQAAQAAAMABAAAVAQMAAQAAAAEAAAAWAQQAAQAAAAQAAAAXAQQAAQAAAA0AAAAaAQUAAQAAAKQBAAAbAQUAAQAAAKwBAAAo"
    "AQMAAQAAAAEAAAAAAAAAAQAAAAEAAAABAAAAAQAAAAAAAAAAAAAAAAAAAIAAIFA4IAgFA4NA4CA=")


def test_lzw_compressed_segmentation_is_read(tmp_path):
    path = tmp_path / "case.tif"
    path.write_bytes(LZW_TIF)
    (tmp_path / "case.json").write_text('{"spacing": [2.0, 1.0, 1.0]}')
    seg, properties = Tiff3DIO().read_seg(str(path))
    expected = np.zeros((2, 4, 5), np.float32)
    expected[0, 1:3, 1:4] = 1
    expected[1, 2:4, 0:2] = 2
    np.testing.assert_array_equal(seg[0], expected)
    assert list(properties["spacing"]) == [2.0, 1.0, 1.0]
