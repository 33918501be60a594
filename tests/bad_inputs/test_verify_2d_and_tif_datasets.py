"""--verify_dataset_integrity on 2-D natural-image and .tif datasets laid out as the reference reads them: one RGB
.png per case for channel_names R, G, B, and the CASE.json spacing side-cars of Tiff3DIO next to the .tif files."""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.experiment_planning.verify_dataset_integrity import dataset_problems


def _dataset_json(folder, channel_names, file_ending, n, **extra):
    dj = {"channel_names": channel_names, "labels": {"background": 0, "fg": 1}, "numTraining": n,
          "file_ending": file_ending, **extra}
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(dj, f)


def _png_dataset(root, n=3):
    from PIL import Image
    folder = os.path.join(root, "Dataset001_Png")
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(folder, sub))
    rs = np.random.RandomState(0)
    for i in range(n):
        img = rs.randint(0, 255, (20, 24, 3)).astype(np.uint8)
        seg = np.zeros((20, 24), np.uint8)
        seg[5:10, 6:12] = 1
        Image.fromarray(img).save(os.path.join(folder, "imagesTr", f"c{i}_0000.png"))
        Image.fromarray(seg).save(os.path.join(folder, "labelsTr", f"c{i}.png"))
    _dataset_json(folder, {"0": "R", "1": "G", "2": "B"}, ".png", n)
    return folder


def test_rgb_png_per_case_for_three_channel_names_is_accepted(tmp_path):
    assert dataset_problems(_png_dataset(str(tmp_path)), num_processes=1) == []


def test_grey_png_in_an_rgb_dataset_is_named(tmp_path):
    from PIL import Image
    folder = _png_dataset(str(tmp_path))
    f = os.path.join(folder, "imagesTr", "c1_0000.png")
    Image.open(f).convert("L").save(f)
    problems = dataset_problems(folder, num_processes=1)
    assert len(problems) == 1
    assert "c1_0000.png" in problems[0] and "give 1 channel(s)" in problems[0] and "declares 3" in problems[0]


def test_stray_channel_file_in_an_rgb_dataset_is_named_as_stray_not_as_a_missing_one(tmp_path):
    # asking for c1_0002.png as well (the earlier advice) led to a case of 3 files of 3 channels each
    from PIL import Image
    folder = _png_dataset(str(tmp_path), n=4)
    Image.open(os.path.join(folder, "imagesTr", "c1_0000.png")).save(os.path.join(folder, "imagesTr", "c1_0001.png"))
    problems = dataset_problems(folder, num_processes=1)
    assert len(problems) == 1, problems
    assert "case c1 has 2 image files" in problems[0] and "Remove c1_0001.png" in problems[0]
    assert "missing" not in problems[0]
    assert sorted(os.listdir(os.path.join(folder, "imagesTr")))[:3] == ["c0_0000.png", "c1_0000.png", "c1_0001.png"]


def test_missing_channel_file_of_a_multi_file_case_is_still_named(tmp_path):
    folder = os.path.join(str(tmp_path), "Dataset002_Two")
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(folder, sub))
    for i in range(2):
        arr = np.zeros((4, 8, 8), np.float32)
        for c in range(3):
            if not (i == 1 and c == 1):
                sitk.WriteImage(sitk.GetImageFromArray(arr), os.path.join(folder, "imagesTr", f"c{i}_{c:04d}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), os.path.join(folder, "labelsTr", f"c{i}.nii.gz"))
    _dataset_json(folder, {"0": "a", "1": "b", "2": "c"}, ".nii.gz", 2)
    problems = dataset_problems(folder, num_processes=1)
    assert any("c1_0001.nii.gz: missing" in p for p in problems), problems
    # a case with only _0000 of three channels is named too (when it is read)
    os.remove(os.path.join(folder, "imagesTr", "c1_0002.nii.gz"))
    problems = dataset_problems(folder, num_processes=1)
    assert any("c1_0000.nii.gz" in p and "declares 3" in p for p in problems), problems


def test_tif_spacing_side_cars_are_not_stray_files(tmp_path):
    import tifffile
    folder = os.path.join(str(tmp_path), "Dataset003_Tif")
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(folder, sub))
    for i in range(2):
        arr = np.random.RandomState(i).rand(6, 10, 12).astype(np.float32)
        seg = (arr > 0.5).astype(np.uint8)
        tifffile.imwrite(os.path.join(folder, "imagesTr", f"c{i}_0000.tif"), arr)
        tifffile.imwrite(os.path.join(folder, "labelsTr", f"c{i}.tif"), seg)
        for sub in ("imagesTr", "labelsTr"):
            with open(os.path.join(folder, sub, f"c{i}.json"), "w") as f:
                json.dump({"spacing": [3.0, 1.0, 1.0]}, f)
    _dataset_json(folder, {"0": "CT"}, ".tif", 2, overwrite_image_reader_writer="Tiff3DIO")
    assert dataset_problems(folder, num_processes=1) == []
    # other stray files are still named
    with open(os.path.join(folder, "imagesTr", "notes.json"), "w") as f:
        f.write("{}")
    problems = dataset_problems(folder, num_processes=1)
    assert len(problems) == 1 and "notes.json: does not end with '.tif'" in problems[0]
