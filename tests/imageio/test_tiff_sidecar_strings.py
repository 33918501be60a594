"""A Tiff3DIO spacing side-car with the numbers quoted ({"spacing": ["3", "1", "1"]}, as some exporters write)
stopped planning with numpy's UFuncNoLoopError traceback; it is named with the fix."""
import json

import numpy as np
import pytest
import tifffile

from nnunetv2.errors import UserError
from nnunetv2.imageio.tif_reader_writer import Tiff3DIO


@pytest.mark.parametrize("spacing", [["3", "1", "1"], [3, None, 1], [True, 1, 1]])
@pytest.mark.parametrize("what", ["image", "seg"])
def test_spacing_that_is_not_numbers_is_named(tmp_path, spacing, what):
    tifffile.imwrite(tmp_path / "c_0000.tif", np.zeros((2, 3, 4), np.float32))
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((2, 3, 4), np.uint8))
    side = tmp_path / ("c.json" if what == "image" else "s.json")
    side.write_text(json.dumps({"spacing": spacing}))
    rw = Tiff3DIO()
    with pytest.raises(UserError, match="not numbers") as e:
        if what == "image":
            rw.read_images([str(tmp_path / "c_0000.tif")])
        else:
            rw.read_seg(str(tmp_path / "s.tif"))
    assert str(side) in e.value.one_line()


def test_numbers_still_read(tmp_path):
    tifffile.imwrite(tmp_path / "c_0000.tif", np.zeros((2, 3, 4), np.float32))
    (tmp_path / "c.json").write_text(json.dumps({"spacing": [3, 0.5, 1.0]}))
    _, props = Tiff3DIO().read_images([str(tmp_path / "c_0000.tif")])
    assert list(props["spacing"]) == [3, 0.5, 1.0]
