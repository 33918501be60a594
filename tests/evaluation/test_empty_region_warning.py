"""A region with an empty label list (dataset.json "x": []) matches no voxel, so its Dice is NaN in every case and
the foreground mean Dice of summary.json is NaN too; this happened without a word (found by a fuzz round). The
reference scores it the same way (observed with 2.8.1: '()' -> Dice NaN, foreground_mean Dice NaN), so the numbers
stay; a warning now names the region."""
from __future__ import annotations

import logging
import math

import numpy as np
import SimpleITK as sitk

from nnunetv2.evaluation import evaluate_predictions as ev
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO


def _folders(tmp_path):
    rng = np.random.RandomState(0)
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
        for case in ("a", "b"):
            seg = rng.randint(0, 3, (4, 6, 6)).astype(np.uint8)
            sitk.WriteImage(sitk.GetImageFromArray(seg), str(tmp_path / folder / f"{case}.nii.gz"))
    return str(tmp_path / "ref"), str(tmp_path / "pred")


def test_empty_region_is_named_and_scores_like_the_reference(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(ev, "_warned_empty_regions", set())
    ref, pred = _folders(tmp_path)
    with caplog.at_level(logging.WARNING, logger=ev.__name__):
        result = ev.compute_metrics_on_folder(ref, pred, None, SimpleITKIO(), ".nii.gz", [(1, 2), (2,), ()],
                                              num_processes=1)
        ev.compute_metrics_on_folder(ref, pred, None, SimpleITKIO(), ".nii.gz", [(1, 2), (2,), ()],
                                     num_processes=1)
    warnings = [r.getMessage() for r in caplog.records if "has no labels" in r.getMessage()]
    assert len(warnings) == 1 and "key '()' in summary.json" in warnings[0]
    assert math.isnan(result["mean"][()]["Dice"]) and result["mean"][()]["n_ref"] == 0
    assert math.isnan(result["foreground_mean"]["Dice"])  # unchanged: summary.json is the reference's
    assert not math.isnan(result["mean"][(1, 2)]["Dice"])


def test_no_warning_for_regions_with_labels(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(ev, "_warned_empty_regions", set())
    ref, pred = _folders(tmp_path)
    with caplog.at_level(logging.WARNING, logger=ev.__name__):
        ev.compute_metrics_on_folder(ref, pred, None, SimpleITKIO(), ".nii.gz", [(1, 2), (2,)], num_processes=1)
        ev.compute_metrics_on_folder(ref, pred, None, SimpleITKIO(), ".nii.gz", [1, 2], num_processes=1)
    assert not [r for r in caplog.records if "has no labels" in r.getMessage()]
