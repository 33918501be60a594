"""A label .png saved in colour (RGB, or a palette png as VOC-style datasets ship them: SimpleITK/imageio read it as
its colours) was reported as 'holds 3 volumes (a 4-D file)'; it is now named as a colour image with the fix. A grey
label saved as RGB (all channels equal) is one label map and is accepted, as by the reference."""
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
    if kind == "palette":
        _palette(seg).save(f)
    else:  # real colours: the channels differ
        Image.fromarray(np.stack([seg * 100, seg * 50, np.zeros_like(seg)], -1)).save(f)
    arr, _ = NaturalImage2DIO().read_seg(f)
    with pytest.raises(UserError) as e:
        check_single_channel_label(arr, f)
    text = e.value.one_line()
    assert "c0.png is a colour image" in text and "greyscale" in text and "4-D" not in text


def _two_case_png_dataset(folder, save_label) -> None:
    """A 2-case grey-png dataset whose label i is written by ``save_label(seg, i, path)``."""
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    for i in range(2):
        seg = np.zeros((12, 10), np.uint8)
        seg[2:6, 3:7] = 1
        Image.fromarray(np.full((12, 10), 100 + i, np.uint8)).save(folder / "imagesTr" / f"c{i}_0000.png")
        save_label(seg, i, folder / "labelsTr" / f"c{i}.png")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "grey"}, "labels": {"background": 0,
                                                     "a": 1}, "numTraining": 2, "file_ending": ".png"}))


def test_verify_names_a_palette_label(tmp_path):
    folder = tmp_path / "Dataset001_P"
    _two_case_png_dataset(folder, lambda seg, i, f: (_palette(seg) if i == 1 else Image.fromarray(seg)).save(f))
    problems = dataset_problems(str(folder), num_processes=1)
    assert len(problems) == 1 and "c1.png is a colour image" in problems[0], problems


@pytest.mark.parametrize("mode", ["RGB", "RGBA_equal"])
def test_grey_label_saved_as_rgb_is_one_label_map(tmp_path, mode):
    """A grey label saved with 3 (or 4) identical channels is accepted as its one channel, as the reference accepts
    it (the reference keeps all copies in the preprocessed seg; we keep one)."""
    seg = np.zeros((12, 10), np.uint8)
    seg[2:6, 3:7] = 1
    seg[7:9, 1:4] = 2
    f = str(tmp_path / "g0.png")
    n = 3 if mode == "RGB" else 4
    Image.fromarray(np.stack([seg] * n, -1), mode="RGB" if n == 3 else "RGBA").save(f)
    arr, props = NaturalImage2DIO().read_seg(f)
    assert arr.shape == (1, 1, 12, 10) and arr.dtype == np.float32 and props == {"spacing": (999, 1, 1)}
    np.testing.assert_array_equal(arr[0, 0], seg)
    check_single_channel_label(arr, f)  # no error


def test_verify_accepts_a_grey_label_saved_as_rgb(tmp_path):
    folder = tmp_path / "Dataset001_G"
    _two_case_png_dataset(folder, lambda seg, i, f: Image.fromarray(seg).convert("RGB").save(f))
    assert dataset_problems(str(folder), num_processes=1) == []


def test_evaluation_reads_a_grey_label_saved_as_rgb(tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    seg = np.zeros((12, 10), np.uint8)
    seg[2:6, 3:7] = 1
    seg[7:9, 1:4] = 2
    Image.fromarray(seg).convert("RGB").save(tmp_path / "ref.png")
    pred = seg.copy()
    pred[7:9, 1:4] = 0  # label 2 missed, label 1 exact
    Image.fromarray(pred).save(tmp_path / "pred.png")
    m = compute_metrics(str(tmp_path / "ref.png"), str(tmp_path / "pred.png"), NaturalImage2DIO(), [1, 2])
    assert m["metrics"][1]["TP"] == 16 and m["metrics"][1]["Dice"] == 1.0
    assert m["metrics"][2]["FN"] == 6 and m["metrics"][2]["Dice"] == 0.0


def test_four_d_nifti_label_keeps_its_message():
    with pytest.raises(UserError, match=r"holds 2 volumes \(a 4-D file\)"):
        check_single_channel_label(np.zeros((2, 3, 4, 5)), "x.nii.gz")
    with pytest.raises(UserError, match=r"holds 3 volumes \(a 4-D file\)"):
        check_single_channel_label(np.zeros((3, 1, 4, 5)), "x.nii.gz")
