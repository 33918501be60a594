"""Plans edited (or planned again) after preprocessing, without preprocessing again: the reference trained on data
resampled to the old spacing while its predictions resample images to the new one. The trainer now stops in
``initialize`` naming folder, case, shapes and the command that fixes it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
from nnunetv2.training.nnUNetTrainer._setup import check_preprocessed_matches_plans

PLANS = SimpleNamespace(transpose_forward=[0, 1, 2], dataset_name="Dataset321_Edited", plans_name="nnUNetPlans")


def _folder(tmp_path, stored_shape, before=(20, 30, 30), spacing=(3.0, 1.0, 1.0)):
    folder = tmp_path / "nnUNetPlans_3d_fullres"
    folder.mkdir()
    data = np.zeros((1, *stored_shape), np.float32)
    props = {"spacing": list(spacing), "shape_after_cropping_and_before_resampling": before}
    nnUNetDatasetBlosc2.save_case(data, np.zeros_like(data, dtype=np.int16), props, str(folder / "case_000"))
    return folder


def _configuration(spacing, preprocessor_name='DefaultPreprocessor'):
    # no preprocessor_class: the check must not need it (training never imports the preprocessor)
    return SimpleNamespace(spacing=spacing, preprocessor_name=preprocessor_name)


def test_data_of_the_plans_spacing_pass(tmp_path):
    folder = _folder(tmp_path, (30, 30, 30))  # 20 slices of 3 mm at 2 mm: 30
    check_preprocessed_matches_plans(str(folder), PLANS, _configuration([2.0, 1.0, 1.0]), "3d_fullres")
    # a 2d configuration keeps the slice axis as it is
    (tmp_path / "2d").mkdir()
    folder_2d = _folder(tmp_path / "2d", (20, 30, 30))
    check_preprocessed_matches_plans(str(folder_2d), PLANS, _configuration([1.0, 1.0]), "2d")
    with pytest.raises(UserError, match=r"\(20, 30, 30\), but the spacing the plans give configuration '2d' "
                                        r"\(\[3.0, 0.5, 0.5\]\) makes it \(20, 60, 60\)"):
        check_preprocessed_matches_plans(str(folder_2d), PLANS, _configuration([0.5, 0.5]), "2d")


def test_data_of_another_spacing_are_refused(tmp_path):
    folder = _folder(tmp_path, (30, 30, 30))
    with pytest.raises(UserError) as e:
        check_preprocessed_matches_plans(str(folder), PLANS, _configuration([2.0, 0.8, 0.8]), "3d_fullres")
    line = e.value.one_line()
    assert f"The preprocessed data in {folder} do not fit the plans: case case_000 is stored with shape " \
           f"(30, 30, 30), but the spacing the plans give configuration '3d_fullres' ([2.0, 0.8, 0.8]) makes it " \
           f"(30, 38, 38)" in line
    assert "nnUNetv2_preprocess -d 321 -plans_name nnUNetPlans -c 3d_fullres" in line


def test_other_preprocessors_and_empty_folders_are_not_judged(tmp_path):
    folder = _folder(tmp_path, (30, 30, 30))
    check_preprocessed_matches_plans(str(folder), PLANS, _configuration([2.0, 0.8, 0.8], 'ResamplesOtherwise'), "x")
    empty = tmp_path / "empty"
    empty.mkdir()
    check_preprocessed_matches_plans(str(empty), PLANS, _configuration([2.0, 0.8, 0.8]), "3d_fullres")
    check_preprocessed_matches_plans(None, PLANS, _configuration([2.0, 0.8, 0.8]), "3d_fullres")
