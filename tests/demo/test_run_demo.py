"""The quick-start demo: its pictures, its closing table, and a reduced run of the whole demo with the real commands."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from nnunetv2.demo.pictures import PICTURE_SHAPE, write_prediction_pictures
from nnunetv2.demo.run_demo import run_demo, summary_table
from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset


def _read_png(path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def _assert_picture(path, shape=PICTURE_SHAPE) -> np.ndarray:
    """A real picture: a PNG of the expected size, not blank."""
    image = _read_png(path)
    assert image.shape == (*shape, 3)
    assert image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 20
    return image


def _panels(image: np.ndarray):
    """The three panels (image, ground truth, prediction), without the legend below them."""
    image = image[:int(0.85 * image.shape[0])]
    third = image.shape[1] // 3
    return image[:, :third], image[:, third:2 * third], image[:, 2 * third:]


def _label_colour_pixels(image: np.ndarray) -> int:
    """Pixels where a label colour (blue or orange overlay) dominates the grey image."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return int(((b - r > 40) | (r - b > 40)).sum())


def test_pictures_show_reference_and_prediction(tmp_path):
    folder = make_synthetic_dataset(str(tmp_path / "raw"), 998, "Pictures", num_train=1, num_test=2,
                                    shape=(8, 24, 24), max_objects=1, radius=(0.3, 0.35), core=0.3)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for f in (tmp_path / "raw" / "Dataset998_Pictures" / "labelsTs").iterdir():
        shutil.copy(f, predictions / f.name)  # a perfect prediction
    written = write_prediction_pictures(folder, str(predictions), str(tmp_path / "pictures"))
    assert [p.rsplit("/", 1)[1] for p in written] == ["case_001.png", "case_002.png"]
    for path in written:
        plain, reference, prediction = _panels(_assert_picture(path))
        # the labels in colour in the reference and prediction panels, equally much (the prediction is the
        # reference), none in the image panel
        assert _label_colour_pixels(reference) > 1000
        assert abs(_label_colour_pixels(reference) - _label_colour_pixels(prediction)) < \
            0.02 * _label_colour_pixels(reference)
        assert _label_colour_pixels(plain) < 0.02 * _label_colour_pixels(reference)

    # an empty prediction: the right panel has no label colour left
    import SimpleITK as sitk
    for f in predictions.iterdir():
        img = sitk.ReadImage(str(f))
        empty = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(img)))
        empty.CopyInformation(img)
        sitk.WriteImage(empty, str(f))
    _, reference, prediction = _panels(_assert_picture(
        write_prediction_pictures(folder, str(predictions), str(tmp_path / "pictures2"))[0]))
    assert _label_colour_pixels(prediction) < 0.05 * _label_colour_pixels(reference)


def test_summary_table():
    table = summary_table({"1": 0.9512, "2": 0.8876}, {"1": "object", "2": "core"},
                          [("train", 100.04), ("predict", 9.96)], 4)
    lines = table.splitlines()
    assert lines[0] == "Test-set Dice (4 images never seen in training):"
    assert lines[1].split() == ["label", "1", "object", "0.951"]
    assert lines[2].split() == ["label", "2", "core", "0.888"]
    assert lines[4].split() == ["train", "100.0", "s"]
    assert lines[-1].split() == ["total", "110.0", "s"]


@pytest.mark.slow
def test_reduced_demo_runs_every_step_and_leaves_pictures(tmp_path, capsys):
    """The whole demo with the real commands and their default worker counts, trained for a few iterations only
    (too few to learn: the Dice values are not checked here, the demo's own runs show them)."""
    result = run_demo(str(tmp_path / "demo"), epochs=1, iterations=2, num_train=5, num_test=2)
    assert sorted(result["dice"]) == ["1", "2"]
    assert all(0 <= d <= 1 or np.isnan(d) for d in result["dice"].values())
    assert [name for name, _ in result["times"]] == ["generate dataset", "plan (fingerprint, plans)", "preprocess",
                                                     "train", "predict", "evaluate", "pictures"]
    assert len(result["pictures"]) == 2
    out = capsys.readouterr().out
    # every step's timing line follows a line that says what the step did (the evaluation and pictures had none)
    assert f"Wrote {tmp_path / 'demo' / 'predictions' / 'summary.json'}" in out
    assert "Drawing each test image" in out
    for path in result["pictures"]:
        _assert_picture(path)
    progress = _read_png(result["progress"])
    assert progress.shape == (5400, 3000, 3) and progress.std() > 1


def test_output_folder_of_other_data_is_refused_and_kept(tmp_path):
    from nnunetv2.errors import UserError
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("months of work")
    with pytest.raises(UserError, match="not the output of an earlier demo run"):
        run_demo(str(precious))
    assert (precious / "chapter1.tex").read_text() == "months of work"
    assert sorted(p.name for p in precious.iterdir()) == ["chapter1.tex"]
    # a folder that looks like a demo's output but holds something else too
    (precious / "nnUNet_raw" / "Dataset999_Demo").mkdir(parents=True)
    with pytest.raises(UserError, match="not the output of an earlier demo run"):
        run_demo(str(precious))
    assert (precious / "chapter1.tex").read_text() == "months of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        run_demo(str(a_file))
    assert a_file.read_text() == "x"
