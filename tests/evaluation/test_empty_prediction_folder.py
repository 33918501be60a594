"""A prediction folder without a single prediction of the file ending is refused (the reference fails with an
IndexError); a summary of NaNs would look like a result of a wrong folder or file ending."""
from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.errors import UserError
from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO


@pytest.mark.parametrize("chill", [True, False])
def test_no_prediction_is_refused_and_nothing_written(tmp_path, chill):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 3, 3), np.uint8)), str(tmp_path / "ref" / "a.nii.gz"))
    (tmp_path / "pred" / "a.npz").write_bytes(b"")  # other files are not predictions of this ending
    out = tmp_path / "summary.json"
    with pytest.raises(UserError, match="no predictions ending with .nii.gz"):
        compute_metrics_on_folder(str(tmp_path / "ref"), str(tmp_path / "pred"), str(out), SimpleITKIO(), ".nii.gz",
                                  [1], num_processes=1, chill=chill)
    assert not os.path.exists(out)
