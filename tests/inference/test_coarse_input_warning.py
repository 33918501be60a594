"""Predicting an image far coarser than the model's spacing (model at 1 mm, image at 10 mm: 1000 times the voxels)
resampled it to a huge array without a word; the prediction then took very long or ran out of memory (found by a
fuzz round; the reference does the same). Now one warning names the case, both spacings and the shapes, and where
the resampled image cannot fit in memory at all the case is refused with a line that blames the image's spacing
(not the plans)."""
from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.errors import UserError
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling import plans_checks
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _tiny_plans import tiny_plans  # noqa: E402

DJ = {'channel_names': {'0': 'MR'}, 'labels': {'background': 0, 'a': 1}, 'numTraining': 1, 'file_ending': '.nii.gz'}


def _run(tmp_path, spacing_xyz, caplog):
    plans_manager = PlansManager(tiny_plans(spacing=(1.0, 1.0, 1.0)))
    image = tmp_path / 'case_0000.nii.gz'
    img = sitk.GetImageFromArray(np.random.RandomState(0).rand(4, 5, 6).astype(np.float32) + 1)
    img.SetSpacing(spacing_xyz)
    sitk.WriteImage(img, str(image))
    with caplog.at_level(logging.WARNING, logger=plans_checks.__name__):
        data, _, _ = DefaultPreprocessor(verbose=False).run_case(
            [str(image)], None, plans_manager, plans_manager.get_configuration('3d_fullres'), DJ)
    return data, str(image), [r.getMessage() for r in caplog.records if 'times as many voxels' in r.getMessage()]


def test_much_coarser_image_is_named(tmp_path, caplog):
    data, image, messages = _run(tmp_path, (10.0, 10.0, 10.0), caplog)
    assert data.shape == (1, 40, 50, 60)  # still predicted
    assert len(messages) == 1
    assert messages[0].startswith(f"{image}: resampling from spacing [10.0, 10.0, 10.0] to the configuration's "
                                  f"spacing [1.0, 1.0, 1.0] gives 1000 times as many voxels (> 64), shape [4, 5, 6] "
                                  f"-> [40, 50, 60]")


def test_image_near_the_model_spacing_is_not_named(tmp_path, caplog):
    # 2x per axis is 8 times the voxels: ordinary
    assert _run(tmp_path, (2.0, 2.0, 2.0), caplog)[2] == []


def test_ordinary_thick_slice_case_is_not_named(tmp_path, caplog):
    """Thick-slice scans among thin-slice ones are ordinary in CT datasets (MSD Liver: slices 0.7 to 5 mm, pixels
    0.5 to 1 mm, planned near 1 x 0.77 x 0.77 mm). Resampled, such a case is as large as the others: 5 mm slices
    with 1.1 mm pixels are 5 * 1.4 * 1.4 = 9.8 times their voxels, and were named as a suspicious spacing."""
    assert _run(tmp_path, (1.4, 1.4, 5.0), caplog)[2] == []  # SimpleITK order: x, y, z
    assert _run(tmp_path, (2.0, 2.0, 10.0), caplog)[2] == []  # 40 times: still no unit mistake


def test_image_that_cannot_fit_is_refused_naming_its_spacing_below_the_warning(tmp_path, caplog, monkeypatch):
    # not far enough from the model's spacing for the warning, but the refusal still blames the image's spacing
    monkeypatch.setattr(plans_checks, 'physical_memory_bytes', lambda: 10_000)  # 12*15*18 float32 = 13 kB
    with pytest.raises(UserError) as e:
        _run(tmp_path, (3.0, 3.0, 3.0), caplog)
    line = e.value.one_line()
    assert "resampling its shape [4, 5, 6] from spacing [3.0, 3.0, 3.0]" in line and "Fix 'spacing'" not in line


def test_image_that_cannot_fit_is_refused_naming_its_spacing(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(plans_checks, 'physical_memory_bytes', lambda: 100_000)  # 40*50*60 float32 = 480 kB
    with pytest.raises(UserError) as e:
        _run(tmp_path, (10.0, 10.0, 10.0), caplog)
    line = e.value.one_line()
    assert f"{tmp_path / 'case_0000.nii.gz'}: resampling its shape [4, 5, 6] from spacing [10.0, 10.0, 10.0]" in line
    assert "would give an image of shape [40, 50, 60]" in line and "Check the spacing in the image's header" in line
    assert "Fix 'spacing' in the plans" not in line
