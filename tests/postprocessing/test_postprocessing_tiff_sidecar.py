"""Applying postprocessing to TIFF segmentations writes each case's spacing side-car CASE.json beside CASE.tif, as
the reference does (it was written under the temporary name of the segmentation and left behind as a hidden
file)."""
from __future__ import annotations

import json
import os

import numpy as np
import tifffile

from nnunetv2.postprocessing.remove_connected_components import (apply_postprocessing_to_folder,
                                                                  remove_all_but_largest_component_from_segmentation)
from _tiny_plans import tiff_label_plans_and_dataset

PLANS, DATASET = tiff_label_plans_and_dataset()


def test_sidecar_beside_each_tiff_and_nothing_hidden_left(tmp_path):
    seg = np.zeros((3, 6, 6), np.uint8)
    seg[0, :3, :3] = 1
    seg[2, 5, 5] = 1  # a second, smaller component
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "case.tif", seg)
    (tmp_path / "in" / "case.json").write_text('{"spacing": [3.0, 1.5, 0.5]}')
    out = tmp_path / "out"
    apply_postprocessing_to_folder(str(tmp_path / "in"), str(out), [remove_all_but_largest_component_from_segmentation],
                                   [{"labels_or_regions": 1}], PLANS, DATASET, num_processes=1)
    assert json.loads((out / "case.json").read_text()) == {"spacing": [3.0, 1.5, 0.5]}
    assert tifffile.imread(out / "case.tif")[2, 5, 5] == 0
    assert [n for n in os.listdir(out) if n.startswith(".nnunet_tmp")] == []
