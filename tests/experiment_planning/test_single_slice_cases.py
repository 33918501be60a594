"""A 2-D image (a true 2-D NIfTI, or a one-slice volume) among the 3-D images of a dataset was accepted without a
word by plan_and_preprocess (found by a fuzz round; the reference does the same). Downstream a 3-D configuration
trains on it as a volume: the reference's 3d_fullres preprocessing turned a 27x32 2-D image into 189 copies of
its slice (the reader gives it a slice spacing of 999 times the pixel spacing), and such cases skew the planned
median spacing and shape. Now fingerprint extraction names them in one warning, with their shapes and the others'."""
import logging
import os

import pytest
import SimpleITK as sitk

from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor as fe


@pytest.fixture
def raw(nnunet_dirs):
    return make_synthetic_dataset(str(nnunet_dirs["nnUNet_raw"]), 812, "FpMixed", kind="3d", num_train=4,
                                  num_test=0, shape=(8, 16, 12))


def _flatten_first_case(raw, true_2d):
    """Case 0 (image and label) becomes its middle slice: a 2-D file, or a one-slice 3-D volume."""
    image = sorted(os.listdir(os.path.join(raw, "imagesTr")))[0]
    label = sorted(os.listdir(os.path.join(raw, "labelsTr")))[0]
    for path in (os.path.join(raw, "imagesTr", image), os.path.join(raw, "labelsTr", label)):
        im = sitk.ReadImage(path)
        a = sitk.GetArrayFromImage(im)
        flat = sitk.GetImageFromArray(a[4] if true_2d else a[4:5])
        flat.SetSpacing(im.GetSpacing()[:2] if true_2d else im.GetSpacing())
        sitk.WriteImage(flat, path)
    return os.path.join(raw, "imagesTr", image)


def _warnings(caplog):
    e = fe.DatasetFingerprintExtractor(812, num_processes=1)
    e.show_progress_bar = False
    e.num_foreground_voxels_for_intensitystats = 4000
    with caplog.at_level(logging.WARNING, logger=fe.__name__):
        fingerprint = e.run(overwrite_existing=True)
    return fingerprint, [r.getMessage() for r in caplog.records if "single slice" in r.getMessage()]


@pytest.mark.parametrize("true_2d", [True, False])
def test_single_slice_image_among_volumes_is_named(raw, caplog, true_2d):
    image = _flatten_first_case(raw, true_2d)
    fingerprint, messages = _warnings(caplog)
    assert fingerprint["shapes_after_crop"][0][0] == 1  # the fingerprint itself is unchanged (the reference's)
    assert len(messages) == 1
    assert messages[0].startswith(f"1 image(s) are a single slice (2-D) while the others are 3-D (median shape "
                                  f"[8, 16, 12]): {image} has shape [1, 16, 12] (spacing [")


def test_volumes_only_give_no_warning(raw, caplog):
    assert _warnings(caplog)[1] == []


def test_a_2d_dataset_gives_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger=fe.__name__):
        fe._warn_single_slice_cases({"shapes_after_crop": [[1, 20, 20], [1, 30, 20], [5, 20, 20]],
                                     "spacings": [[999, 1, 1]] * 3}, ["a", "b", "c"])
    assert caplog.records == []
