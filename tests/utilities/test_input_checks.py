"""The pure checks behind the bad-input messages: label values, channels, links, non-finite values, patch size,
resampled size, splits structure, output-folder ownership."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.utilities import input_checks
from nnunetv2.utilities.crossval_split import splits_problem
from nnunetv2.utilities.input_checks import (broken_link_problem, channel_count_problem, non_integer_label_values,
                                             nonfinite_counts)
from nnunetv2.utilities.output_guard import check_output_files, claim_output_folder, refuse_input_as_output
from nnunetv2.utilities.plans_handling.plans_checks import check_resampled_size, patch_size_problem


def test_non_integer_labels_found_in_every_block(monkeypatch):
    monkeypatch.setattr(input_checks, "_BLOCK_VOXELS", 7)  # many blocks, one of them holds the bad value
    seg = np.zeros((1, 5, 6, 7), np.float32)
    seg[0, 4, 5, 6] = 1.9999
    seg[0, 0, 0, 0] = 2.0
    assert non_integer_label_values(seg) == [pytest.approx(1.9999)]
    assert non_integer_label_values(seg.astype(np.int16)) == []
    assert non_integer_label_values(np.round(seg)) == []
    seg[0, 1, 1, 1] = np.nan
    assert len(non_integer_label_values(seg)) == 2  # NaN counts as not a whole number


def test_nonfinite_counts_in_blocks(monkeypatch):
    monkeypatch.setattr(input_checks, "_BLOCK_VOXELS", 5)
    a = np.zeros((2, 3, 4), np.float32)
    a[0, 0, 0], a[1, 2, 3], a[1, 0, 1] = np.nan, np.inf, -np.inf
    assert nonfinite_counts(a) == (1, 2)
    assert nonfinite_counts(a[:, 1:]) == (0, 1)  # not contiguous
    assert nonfinite_counts(np.zeros(3, np.int16)) == (0, 0)


@pytest.mark.parametrize("num, files, expected, fragment", [
    (2, ["a_0000.nii.gz", "a_0001.nii.gz"], 1, "stray file such as _0001"),
    (4, ["a_0000.png"], 3, "RGBA"),
    (2, ["a_0000.nii.gz"], 1, "4-D or colour"),
    (1, ["a_0000.nii.gz"], 2, "give 1 channel(s)"),
])
def test_channel_count_problem_names_files_and_cause(num, files, expected, fragment):
    problem = channel_count_problem(num, files, expected)
    assert files[0] in problem and fragment in problem
    assert channel_count_problem(expected, files[:expected], expected) is None


def test_broken_links(tmp_path):
    (tmp_path / "real.nii.gz").write_bytes(b"x")
    os.symlink(tmp_path / "real.nii.gz", tmp_path / "good")
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    assert broken_link_problem(str(tmp_path / "good")) is None
    assert broken_link_problem(str(tmp_path / "real.nii.gz")) is None
    assert "which does not exist" in broken_link_problem(str(tmp_path / "dangling"))
    assert "symbolic link loop" in broken_link_problem(str(tmp_path / "loop_a"))


@pytest.mark.parametrize("patch, strides, bad", [
    ([128, 128, 128], [[1, 1, 1], [2, 2, 2], [2, 2, 2]], None),
    ([40, 192, 160], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], None),
    ([40, 191, 160], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], "axis 1"),
    ([20, 30], [1, 2, 2], "axis 1"),  # scalar strides: every axis
    ([8, 16, 16], [[1, 2], [2, 2]], "3 axes"),
])
def test_patch_size_problem(patch, strides, bad):
    problem = patch_size_problem(patch, strides)
    assert (problem is None) == (bad is None)
    if bad:
        assert bad in problem


def test_resampled_size_against_memory():
    check_resampled_size([100, 100, 100], 2, [1.0, 1.0, 1.0], "plans", memory_bytes=8 * 10 ** 6 + 1)
    with pytest.raises(UserError, match=r"metres instead of millimetres"):
        check_resampled_size([10000, 20000, 20000], 1, [0.003, 0.0008, 0.0008], "plans", memory_bytes=2 ** 35)
    with pytest.raises(UserError) as e:
        check_resampled_size([1000, 1000, 1000], 1, [0.5, 0.5, 0.5], "plans", memory_bytes=2 ** 30)
    assert "metres" not in str(e.value)


@pytest.mark.parametrize("splits, known, fragment", [
    ([{"train": ["a"], "val": ["b"]}], ["a", "b"], None),
    ([], None, "non-empty list"),
    ([["a"]], None, "must be an object"),
    ([{"train": ["a"]}], None, "lacks the key 'val'"),
    ([{"train": "a", "val": []}], None, "list of case identifiers"),
    ([{"train": ["a"], "val": ["b"]}, {"train": ["b", "zz"], "val": ["a"]}], ["a", "b"], "fold 1 names case(s)"),
])
def test_splits_problem(splits, known, fragment):
    problem = splits_problem(splits, known)
    assert (problem is None) == (fragment is None)
    if fragment:
        assert fragment in problem


def test_output_guard(tmp_path):
    out = tmp_path / "out"
    check_output_files(str(out), ["a.nii.gz"], "nnUNetv2_x")  # does not exist yet: fine
    out.mkdir()
    (out / "a.nii.gz").write_bytes(b"ground truth")
    check_output_files(str(out), ["b.nii.gz"], "nnUNetv2_x")  # no clash
    with pytest.raises(UserError, match=r"would overwrite .*a\.nii\.gz, which it did not write"):
        check_output_files(str(out), ["a.nii.gz"], "nnUNetv2_x")
    claim_output_folder(str(out), "nnUNetv2_x")
    check_output_files(str(out), ["a.nii.gz"], "nnUNetv2_x")  # a folder the command wrote before
    with pytest.raises(UserError):
        check_output_files(str(out), ["a.nii.gz"], "nnUNetv2_y")  # another command's folder
    with pytest.raises(UserError, match="also an input folder"):
        refuse_input_as_output(str(out) + "/", [str(tmp_path / "x"), str(out)], "nnUNetv2_x")
