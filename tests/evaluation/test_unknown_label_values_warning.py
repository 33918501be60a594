"""nnUNetv2_evaluate_folder on predictions (or references) holding label values that dataset.json does not define,
e.g. predictions of another dataset: no label counts those voxels, so they score as background, and the summary
looked like a normal evaluation (found by a fuzz round; the reference writes the same summary.json without a word).
The numbers stay; a warning now names the first such file and its values."""
from __future__ import annotations

import json
import logging

import numpy as np
import SimpleITK as sitk

from nnunetv2.evaluation import evaluate_predictions as ev
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

PLANS = {"dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "label_manager": "LabelManager", "configurations": {}}


def _folders(tmp_path, bad_pred=None, bad_ref=None):
    rng = np.random.RandomState(0)
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
        for case in ("a", "b"):
            seg = rng.randint(0, 3, (4, 6, 6)).astype(np.uint8)
            bad = bad_pred if folder == "pred" else bad_ref
            if bad is not None and case == "b":
                seg[0, :2, :2] = bad
            sitk.WriteImage(sitk.GetImageFromArray(seg), str(tmp_path / folder / f"{case}.nii.gz"))
    dj = tmp_path / "dataset.json"
    dj.write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz"}))
    (tmp_path / "plans.json").write_text(json.dumps(PLANS))
    return str(tmp_path / "ref"), str(tmp_path / "pred"), str(dj), str(tmp_path / "plans.json")


def _evaluate(tmp_path, caplog, **bad):
    ref, pred, dj, plans = _folders(tmp_path, **bad)
    with caplog.at_level(logging.WARNING, logger=ev.__name__):
        result = ev.compute_metrics_on_folder2(ref, pred, dj, plans, str(tmp_path / "s.json"), num_processes=1)
    plain = ev.compute_metrics_on_folder(ref, pred, None, SimpleITKIO(), ".nii.gz", [1, 2], num_processes=1)
    assert json.dumps(result, default=str) == json.dumps(plain, default=str)  # same numbers with or without check
    return [r.getMessage() for r in caplog.records if "does not define" in r.getMessage()], dj, pred, ref


def test_unknown_prediction_values_are_named(tmp_path, caplog):
    messages, dj, pred, _ = _evaluate(tmp_path, caplog, bad_pred=7)
    assert len(messages) == 1
    assert messages[0].startswith(f"1 prediction file(s) hold label values that {dj} does not define")
    assert f"(first: {pred}/b.nii.gz with 7)" in messages[0]


def test_unknown_reference_values_are_named(tmp_path, caplog):
    messages, dj, _, ref = _evaluate(tmp_path, caplog, bad_ref=5)
    assert len(messages) == 1 and "1 reference file(s)" in messages[0] and f"{ref}/b.nii.gz with 5" in messages[0]


def test_known_values_give_no_warning(tmp_path, caplog):
    messages, *_ = _evaluate(tmp_path, caplog)
    assert messages == []
