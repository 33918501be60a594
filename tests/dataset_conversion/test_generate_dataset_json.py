"""generate_dataset_json against the reference's output (literal JSON obtained once from nnU-Net 2.8.1)."""
from __future__ import annotations

import copy
import json

import pytest

from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
from nnunetv2.errors import UserError

LAZY = "Whoever converted this dataset was lazy and didn't look it up!"
NAME_ME = "Please enter your name, especially when sharing datasets with others in a common infrastructure!"

# Reference output (byte for byte) of
# generate_dataset_json(f, {0: 'CT'}, {'background': 0, 'liver': 1, 'tumor': 2}, 10, '.nii.gz')
EXPECTED_MINIMAL = """{
    "channel_names": {
        "0": "CT"
    },
    "labels": {
        "background": 0,
        "liver": 1,
        "tumor": 2
    },
    "numTraining": 10,
    "file_ending": ".nii.gz",
    "licence": "Whoever converted this dataset was lazy and didn't look it up!",
    "converted_by": "Please enter your name, especially when sharing datasets with others in a common infrastructure!"
}"""

# Reference output of the call in test_all_arguments, except "citation": the reference wrote the release ("1.0")
# there; we write the citation.
EXPECTED_FULL = """{
    "channel_names": {
        "1": "T2",
        "0": "T1"
    },
    "labels": {
        "background": 0,
        "whole": [
            1,
            2
        ],
        "core": [
            2
        ],
        "x": 3
    },
    "numTraining": 7,
    "file_ending": ".nii.gz",
    "licence": "L2",
    "converted_by": "me",
    "name": "N",
    "reference": "ref",
    "release": "1.0",
    "citation": "cit",
    "description": "desc",
    "overwrite_image_reader_writer": "SimpleITKIO",
    "regions_class_order": [
        1,
        2,
        3
    ],
    "extra": {
        "a": 1
    },
    "tup": [
        1,
        2
    ]
}"""


def test_minimal_matches_reference_bytes(tmp_path):
    generate_dataset_json(str(tmp_path), {0: "CT"}, {"background": 0, "liver": 1, "tumor": 2}, 10, ".nii.gz")
    assert (tmp_path / "dataset.json").read_text() == EXPECTED_MINIMAL
    assert [p.name for p in tmp_path.iterdir()] == ["dataset.json"]  # no temporary file left behind


def test_all_arguments_key_order_tuples_and_kwargs_override(tmp_path):
    channel_names = {0: "T1", "1": "T2"}
    labels = {"background": 0, "whole": (1, 2), "core": [2], "x": 3.0}
    before = copy.deepcopy((channel_names, labels))
    generate_dataset_json(tmp_path, channel_names, labels, 5, ".nii.gz", citation="cit", regions_class_order=(1, 2, 3),
                          dataset_name="N", reference="ref", release="1.0", description="desc",
                          overwrite_image_reader_writer="SimpleITKIO", license="CC", converted_by="me",
                          extra={"a": 1}, numTraining=7, licence="L2", tup=(1, 2))
    assert (tmp_path / "dataset.json").read_text() == EXPECTED_FULL
    # deliberate difference: the caller's dicts are not modified (the reference re-keyed and converted them)
    assert (channel_names, labels) == before
    assert list(channel_names) == [0, "1"] and labels["whole"] == (1, 2) and labels["x"] == 3.0


def test_citation_alone_is_written(tmp_path):
    generate_dataset_json(str(tmp_path), {"0": "CT"}, {"background": 0, "a": 1}, 3, ".png", citation="only citation")
    d = json.loads((tmp_path / "dataset.json").read_text())
    assert list(d) == ["channel_names", "labels", "numTraining", "file_ending", "licence", "converted_by", "citation"]
    assert d["citation"] == "only citation"  # the reference wrote null (the release) here
    assert d["licence"] == LAZY and d["converted_by"] == NAME_ME


def test_single_element_list_is_not_a_region(tmp_path):
    generate_dataset_json(str(tmp_path), {"0": "CT"}, {"background": 0, "a": (1,)}, 3, ".png")
    d = json.loads((tmp_path / "dataset.json").read_text())
    assert d["labels"] == {"background": 0, "a": [1]}
    assert "regions_class_order" not in d


def test_regions_without_order_raise_and_write_nothing(tmp_path):
    with pytest.raises(AssertionError, match="regions_class_order") as e:
        generate_dataset_json(str(tmp_path), {"0": "CT"}, {"background": 0, "a": (1, 2)}, 3, ".png")
    assert isinstance(e.value, UserError)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path):
    with pytest.raises(UserError, match="does_not_exist"):
        generate_dataset_json(str(tmp_path / "does_not_exist"), {"0": "CT"}, {"background": 0}, 1, ".nii.gz")


def test_labels_in_the_v1_form_are_named(tmp_path):
    # public conversion scripts carried over from nnU-Net v1 pass labels as value -> name; the reference fails with
    # "invalid literal for int() with base 10: 'background'"
    with pytest.raises(ValueError) as e:
        generate_dataset_json(str(tmp_path), {0: 'CT'}, {0: 'background', 1: 'lesion'}, 3, '.nii.gz')
    assert isinstance(e.value, UserError)
    assert "label 0 has the value 'background' (this looks like the nnU-Net v1 form, value -> name)" in str(e.value)
    assert "labels={'background': 0, 'tumor': 1}" in e.value.hint
    with pytest.raises(UserError, match=r"label 'b' has the value \('1', 'x'\)\. Write it as"):
        generate_dataset_json(str(tmp_path), {0: 'CT'}, {'background': 0, 'a': 1, 'b': ('1', 'x')}, 3, '.nii.gz',
                              regions_class_order=(1, 2))
    assert list(tmp_path.iterdir()) == []
