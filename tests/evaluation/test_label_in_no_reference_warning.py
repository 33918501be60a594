"""References that hold none of the labels evaluated (0/255 masks evaluated with -l 1, or the wrong reference
folder): every Dice of those labels is 0 or NaN, which looks like a model that failed, and the reference said
nothing. One warning names the labels and the folder; the numbers stay as they were."""
from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from nnunetv2.evaluation import evaluate_predictions as ev
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO


def _folders(tmp_path, reference_scale: int):
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
        for case in ("a", "b"):
            seg = np.zeros((4, 6, 6), np.uint8)
            seg[1:3, 2:5, 2:5] = 1
            seg[3, :2, :2] = 2
            if folder == "ref":
                seg = seg * reference_scale  # 0/255 masks where the prediction holds 0/1/2
            sitk.WriteImage(sitk.GetImageFromArray(seg.astype(np.uint8)), str(tmp_path / folder / f"{case}.nii.gz"))
    return str(tmp_path / "ref"), str(tmp_path / "pred")


def _warnings(tmp_path, caplog, reference_scale: int, labels):
    ref, pred = _folders(tmp_path, reference_scale)
    with caplog.at_level(logging.WARNING, logger=ev.__name__):
        result = ev.compute_metrics_on_folder(ref, pred, None, SimpleITKIO(), ".nii.gz", labels, num_processes=1)
    return [r.getMessage() for r in caplog.records if "reference file(s)" in r.getMessage()], result, ref


def test_labels_in_no_reference_are_named(tmp_path, caplog):
    messages, result, ref = _warnings(tmp_path, caplog, 255, [1, 2])
    assert messages == [f"Label(s) or region(s) 1, 2 occur in none of the 2 reference file(s) in {ref}: their Dice "
                        f"is 0 wherever they are predicted and NaN elsewhere. The wrong reference folder, or "
                        f"references saved with other values (e.g. 0/255 masks)?"]
    assert result['mean'][1]['Dice'] == 0.0  # the numbers are the reference's


def test_regions_and_present_labels_give_no_warning(tmp_path, caplog):
    messages, result, _ = _warnings(tmp_path, caplog, 1, [1, (1, 2)])
    assert messages == [] and result['mean'][1]['Dice'] == 1.0
