"""A postprocessing.pkl of another dataset applied with nnUNetv2_apply_postprocessing: its steps name labels this
dataset does not have (keep the largest component of label 3 where there are only 1 and 2), so they did nothing,
or acted on a label that means something else here, and the output looked postprocessed (found by a fuzz round; the
reference applies it without a word). Now refused with one line naming the values and the dataset.json."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.postprocessing.remove_connected_components import (apply_postprocessing_to_folder,
                                                                  remove_all_but_largest_component_from_segmentation)
from test_postprocessing import make_case_folders

FN = remove_all_but_largest_component_from_segmentation


@pytest.mark.parametrize("kwargs, named", [
    ([{'labels_or_regions': [np.int64(1), np.int64(2), np.int64(3)]}, {'labels_or_regions': np.int64(3)}], "3"),
    ([{'labels_or_regions': [1, 2]}, {'labels_or_regions': (2, 4)}], "4"),
])
def test_steps_of_another_dataset_are_refused(tmp_path, kwargs, named):
    make_case_folders(tmp_path)
    out = tmp_path / 'out'
    with pytest.raises(UserError) as e:
        apply_postprocessing_to_folder(str(tmp_path / 'pred'), str(out), [FN] * len(kwargs), kwargs, num_processes=1)
    line = e.value.one_line()
    assert f"name label value(s) {named} that {tmp_path / 'pred' / 'dataset.json'} does not define" in line
    assert "(its labels: 0, 1, 2)" in line
    assert not out.exists()


def test_steps_of_this_dataset_are_applied(tmp_path):
    make_case_folders(tmp_path)
    out = tmp_path / 'out'
    apply_postprocessing_to_folder(str(tmp_path / 'pred'), str(out), [FN, FN],
                                   [{'labels_or_regions': [np.int64(1), np.int64(2)]}, {'labels_or_regions': 1}],
                                   num_processes=1)
    assert sorted(f for f in os.listdir(out) if f.endswith('.nii.gz')) == ['case_0.nii.gz', 'case_1.nii.gz']
