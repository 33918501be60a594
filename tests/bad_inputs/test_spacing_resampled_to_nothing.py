"""A case whose header spacing is far finer than the others' (a spacing of almost 0, or metres among millimetres):
resampling it to the target spacing leaves an axis of size 0. Preprocessing names the file and its spacing instead
of stopping with the resampler's ValueError (the reference's is another traceback)."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from _bad_inputs_helpers import Snapshot, assert_clean_failure, run_entry
from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry
from nnunetv2.utilities.plans_handling.plans_checks import check_resampled_not_empty


def test_case_with_tiny_spacing_is_named(clone_dataset, capsys):
    dataset_id, ds = clone_dataset()
    image = ds / "imagesTr" / "case_001_0000.nii.gz"
    for f in (image, ds / "labelsTr" / "case_001.nii.gz"):
        img = sitk.ReadImage(str(f))
        img.SetSpacing((1e-6, 1e-6, 1e-6))
        sitk.WriteImage(img, str(f))
    snapshot = Snapshot(ds)
    code, err = run_entry(plan_and_preprocess_entry, ["-d", dataset_id, "-np", "1", "-npfp", "1", "-c", "3d_fullres",
                                                      "--no_pbar"], capsys)
    assert "spacing" in assert_clean_failure(code, err, image)
    snapshot.assert_unchanged()


def test_resampled_shape_check():
    check_resampled_not_empty([1, 5, 5], [9, 19, 16], [3.0, 1.0, 1.0], [30.0, 4.0, 4.0])
    with pytest.raises(UserError, match=r"leaves \[9, 0, 0\], an axis without voxels"):
        check_resampled_not_empty(np.array([9, 0, 0]), (9, 19, 16), [3.0, 1e-3, 1e-3], [3.0, 1.0, 1.0])


def test_image_of_one_slice_too_thin_for_the_target_spacing(bad_env):
    """An image to predict of one 1-mm slice for a model with 2-mm slices (ZeroDivisionError in the resampler)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.file_io import load_json
    plans = PlansManager(str(bad_env.preprocessed / "Dataset771_BadBase" / "nnUNetPlans.json"))
    cm = plans.get_configuration("3d_fullres")
    thin = np.random.RandomState(0).rand(1, 1, 6, 6).astype(np.float32) + 1
    props = {"spacing": [float(cm.spacing[0]) / 4, *map(float, cm.spacing[1:])]}
    dj = load_json(str(bad_env.preprocessed / "Dataset771_BadBase" / "dataset.json"))
    with pytest.raises(UserError, match="an axis without voxels"):
        DefaultPreprocessor(verbose=False).run_case_npy(thin, None, props, plans, cm, dj)
