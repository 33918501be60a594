"""A label .png saved in colour (RGB, or a palette png as VOC-style datasets ship them: SimpleITK/imageio read it as
its colours) was reported as 'holds 3 volumes (a 4-D file)'; it is now named as a colour image with the fix."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.verify_dataset_integrity import dataset_problems
from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
from nnunetv2.utilities.input_checks import check_single_channel_label


def _palette(seg):
    p = Image.fromarray(seg).convert("P")
    p = Image.fromarray(seg, mode="L").convert("P") if p.mode != "P" else p
    p.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 253 * 3)
    return p


@pytest.mark.parametrize("kind", ["palette", "rgb"])
def test_colour_label_png_is_named_as_colour(tmp_path, kind):
    seg = np.zeros((12, 10), np.uint8)
    seg[2:6, 3:7] = 1
    seg[7:9, 1:4] = 2
    f = str(tmp_path / "c0.png")
    (_palette(seg) if kind == "palette" else Image.fromarray(seg).convert("RGB")).save(f)
    arr, _ = NaturalImage2DIO().read_seg(f)
    with pytest.raises(UserError) as e:
        check_single_channel_label(arr, f)
    text = e.value.one_line()
    assert "c0.png is a colour image" in text and "greyscale" in text and "4-D" not in text


def test_verify_names_a_palette_label(tmp_path):
    folder = tmp_path / "Dataset001_P"
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    for i in range(2):
        seg = np.zeros((12, 10), np.uint8)
        seg[2:6, 3:7] = 1
        Image.fromarray(np.full((12, 10), 100 + i, np.uint8)).save(folder / "imagesTr" / f"c{i}_0000.png")
        (_palette(seg) if i == 1 else Image.fromarray(seg)).save(folder / "labelsTr" / f"c{i}.png")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "grey"}, "labels": {"background": 0,
                                                     "a": 1}, "numTraining": 2, "file_ending": ".png"}))
    problems = dataset_problems(str(folder), num_processes=1)
    assert len(problems) == 1 and "c1.png is a colour image" in problems[0], problems


def test_four_d_nifti_label_keeps_its_message():
    with pytest.raises(UserError, match=r"holds 2 volumes \(a 4-D file\)"):
        check_single_channel_label(np.zeros((2, 3, 4, 5)), "x.nii.gz")
    with pytest.raises(UserError, match=r"holds 3 volumes \(a 4-D file\)"):
        check_single_channel_label(np.zeros((3, 1, 4, 5)), "x.nii.gz")
