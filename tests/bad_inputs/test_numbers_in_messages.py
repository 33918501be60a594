"""Spacings read by SimpleITKIO are numpy float64s; inside a list numpy 2 shows them as ``np.float64(0.8)``, which
the spacing/origin messages printed as they were. They now show plain numbers."""
from __future__ import annotations

import logging

import numpy as np

from nnunetv2.errors import plain_numbers
from nnunetv2.experiment_planning.verify_dataset_integrity import _geometry_problems
from nnunetv2.preprocessing.preprocessors.default_preprocessor import _check_same_geometry

IMAGE_SPACING = [np.float64(3.0), np.float64(0.8343), np.float64(0.8171)]
LABEL_SPACING = [np.float64(3.0), np.float64(0.8343), np.float64(0.8252)]


def test_plain_numbers():
    assert plain_numbers(IMAGE_SPACING) == [3.0, 0.8343, 0.8171]
    assert repr(plain_numbers(np.array([1, 2], np.int64))) == "[1, 2]"
    assert repr(plain_numbers((np.float32(0.5), 2, 1.5))) == "[0.5, 2, 1.5]"


def test_preprocessing_spacing_warning_shows_plain_numbers(caplog):
    shape = (1, 2, 3, 4)
    with caplog.at_level(logging.WARNING):
        _check_same_geometry(np.zeros(shape), np.zeros(shape), {"spacing": IMAGE_SPACING},
                             {"spacing": LABEL_SPACING}, ["c_0000.nii.gz"], "c.nii.gz")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "[3.0, 0.8343, 0.8171] vs [3.0, 0.8343, 0.8252]" in text and "np." not in text, text


def test_verify_geometry_problems_show_plain_numbers():
    sitk = {"origin": (0.0, 0.0, 0.0), "direction": (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)}
    img = {"spacing": IMAGE_SPACING, "sitk_stuff": dict(sitk, origin=(np.float64(1.5), 2.0, 3.0))}
    seg = {"spacing": LABEL_SPACING, "sitk_stuff": sitk}
    problems = _geometry_problems(img, seg, ["c_0000.nii.gz"], "c.nii.gz")
    assert len(problems) == 2 and not any("np." in p for p in problems), problems
    assert "spacing [3.0, 0.8343, 0.8252] differs from that of its image(s) [3.0, 0.8343, 0.8171]" in problems[0]
    assert "origin [0.0, 0.0, 0.0] differs from that of its image [1.5, 2.0, 3.0]" in problems[1]
