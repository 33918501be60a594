"""Cascade training whose previous stage has not been validated yet: the error names the previous stage's
predictions as the thing to produce (train / --val the previous stage), not preprocessing."""
from __future__ import annotations

import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2, nnUNetDatasetNumpy


@pytest.mark.parametrize('cls', [nnUNetDatasetBlosc2, nnUNetDatasetNumpy])
def test_missing_previous_stage_segmentation_points_at_the_previous_stage(tmp_path, cls):
    pre = tmp_path / 'pre'
    pre.mkdir()
    data = np.zeros((1, 4, 5, 6), np.float32)
    seg = np.zeros((1, 4, 5, 6), np.int16)
    cls.save_case(data, seg, {'spacing': [1, 1, 1]}, str(pre / 'case_a'))
    prev = tmp_path / 'res' / 'T__P__3d_lowres' / 'predicted_next_stage' / '3d_cascade_fullres'
    ds = cls(str(pre), ['case_a'], folder_with_segs_from_previous_stage=str(prev))
    with pytest.raises(UserError) as e:
        ds.load_case('case_a')
    msg = e.value.one_line()
    assert "\n" not in msg
    assert msg.startswith("Previous stage's segmentation " + str(prev / 'case_a'))
    assert f"validation predictions in {prev}:" in msg and "--val" in msg
    assert "preprocessing" not in msg
