"""The synthetic dataset as .tif (for machines without SimpleITK) holds the same arrays and spacing as the NIfTI one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset


def test_tif_dataset_matches_the_nifti_dataset(tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.imageio.tif_reader_writer import Tiff3DIO
    kw = dict(num_train=2, num_test=1, num_channels=2, shape=(6, 14, 12))
    nii = make_synthetic_dataset(str(tmp_path / "a"), 5, "Nii", **kw)
    tif = make_synthetic_dataset(str(tmp_path / "b"), 5, "Tif", file_ending=".tif", **kw)
    dataset_json = json.loads((tmp_path / "b" / "Dataset005_Tif" / "dataset.json").read_text())
    assert dataset_json["file_ending"] == ".tif" and dataset_json["overwrite_image_reader_writer"] == "Tiff3DIO"
    for split, case in (("Tr", "case_001"), ("Ts", "case_002")):
        channels = [f"images{split}/{case}_{c:04d}" for c in range(2)]
        img_a, props_a = SimpleITKIO().read_images([f"{nii}/{c}.nii.gz" for c in channels])
        img_b, props_b = Tiff3DIO().read_images([f"{tif}/{c}.tif" for c in channels])
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_allclose(props_a["spacing"], props_b["spacing"])
        seg_a, _ = SimpleITKIO().read_seg(f"{nii}/labels{split}/{case}.nii.gz")
        seg_b, seg_props = Tiff3DIO().read_seg(f"{tif}/labels{split}/{case}.tif")
        np.testing.assert_array_equal(seg_a, seg_b)
        np.testing.assert_allclose(seg_props["spacing"], props_a["spacing"])


def test_unknown_file_ending_is_refused(tmp_path):
    with pytest.raises(ValueError, match="file_ending"):
        make_synthetic_dataset(str(tmp_path), 5, "X", file_ending=".nrrd")
