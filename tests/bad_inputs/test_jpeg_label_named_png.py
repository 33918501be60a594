"""A JPEG file named .png was read as a label without complaint (the readers go by the content), with the label
values its lossy compression changed along every edge (the reference accepts it too; only
--verify_dataset_integrity notices, and only where a changed value is not a declared label). Label files whose
content is JPEG are now refused, by their first bytes; images may still be JPEG."""
import json

import numpy as np
import pytest
from PIL import Image

from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.verify_dataset_integrity import dataset_problems
from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO


def _label():
    seg = np.zeros((24, 20), np.uint8)
    seg[4:12, 6:14] = 1
    seg[14:18, 2:8] = 2
    return seg


def test_jpeg_named_png_label_is_refused(tmp_path):
    f = tmp_path / "c0.png"
    Image.fromarray(_label()).save(f, format="JPEG", quality=95)
    with pytest.raises(UserError) as e:
        NaturalImage2DIO().read_seg(str(f))
    assert "c0.png is a JPEG file" in e.value.one_line() and "losslessly" in e.value.one_line()


def test_jpeg_named_png_image_is_still_read(tmp_path):
    f = tmp_path / "c0_0000.png"
    Image.fromarray(np.full((24, 20), 100, np.uint8)).save(f, format="JPEG", quality=95)
    img, _ = NaturalImage2DIO().read_images([str(f)])
    assert img.shape == (1, 1, 24, 20) and abs(float(img.mean()) - 100) < 2


def test_real_png_label_is_read(tmp_path):
    f = tmp_path / "c0.png"
    Image.fromarray(_label()).save(f)
    seg, _ = NaturalImage2DIO().read_seg(str(f))
    np.testing.assert_array_equal(seg[0, 0], _label())


def test_verify_names_the_jpeg_label(tmp_path):
    folder = tmp_path / "Dataset001_J"
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((24, 20), 100 + i, np.uint8)).save(folder / "imagesTr" / f"c{i}_0000.png")
        Image.fromarray(_label()).save(folder / "labelsTr" / f"c{i}.png", **({"format": "JPEG"} if i else {}))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "grey"}, "labels": {
        "background": 0, "a": 1, "b": 2}, "numTraining": 2, "file_ending": ".png"}))
    problems = dataset_problems(str(folder), num_processes=1)
    assert len(problems) == 1 and "c1.png is a JPEG file" in problems[0], problems
