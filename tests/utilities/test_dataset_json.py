"""dataset.json loading and validation: every bad input gives a clear, complete list of problems."""
import json
import sys

import pytest

from nnunetv2.errors import UserError
from nnunetv2.utilities.dataset_json import dataset_json_problems, load_dataset_json, validate_dataset_json

GOOD = {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 3,
        "file_ending": ".nii.gz"}
REGIONS = {"channel_names": {"0": "T1"}, "numTraining": 8, "file_ending": ".nii.gz",
           "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
           "regions_class_order": [1, 2, 3]}


def _with(base, **changes):
    d = json.loads(json.dumps(base))
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return d


def test_load_missing_file(tmp_path):
    with pytest.raises(UserError) as e:
        load_dataset_json(str(tmp_path))
    assert str(tmp_path / "dataset.json") in str(e.value) and "not found" in str(e.value)


def test_load_invalid_json_names_line_and_column(tmp_path):
    (tmp_path / "dataset.json").write_text('{\n  "labels": {"background": 0,}\n}\n')
    with pytest.raises(UserError) as e:
        load_dataset_json(str(tmp_path / "dataset.json"))
    msg = str(e.value)
    # Python 3.13's json names a trailing comma itself ("Illegal trailing comma before end of object") and points at
    # the comma (column 29); before 3.13 it expected a property name and pointed at the "}" after it (column 30)
    column = 29 if sys.version_info >= (3, 13) else 30
    assert "dataset.json is not valid JSON" in msg and f"line 2, column {column}." in msg


def test_load_not_an_object(tmp_path):
    (tmp_path / "dataset.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="must contain a JSON object"):
        load_dataset_json(str(tmp_path))


def test_load_good_and_validate(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps(GOOD))
    assert load_dataset_json(str(tmp_path)) == GOOD
    assert load_dataset_json(str(tmp_path), validate=True) == GOOD
    (tmp_path / "dataset.json").write_text(json.dumps(_with(GOOD, numTraining="3")))
    with pytest.raises(UserError, match="numTraining"):
        load_dataset_json(str(tmp_path), validate=True)


def test_good_inputs_have_no_problems():
    assert dataset_json_problems(GOOD) == []
    assert dataset_json_problems(REGIONS) == []
    assert dataset_json_problems(_with(GOOD, labels={"background": 0, "a": 1, "ignore": 2})) == []
    legacy = _with(GOOD, channel_names=...)
    legacy["modality"] = {"0": "CT"}
    assert dataset_json_problems(legacy) == []
    assert dataset_json_problems(_with(GOOD, overwrite_image_reader_writer="SimpleITKIO")) == []
    validate_dataset_json(GOOD)


def test_missing_keys_all_listed():
    problems = dataset_json_problems({"name": "x"}, source="/data/D1/dataset.json")
    assert problems == ["/data/D1/dataset.json: missing required key(s) 'channel_names', 'labels', 'numTraining', "
                        "'file_ending' (required: channel_names, labels, numTraining, file_ending)"]
    assert dataset_json_problems([1]) == ["dataset.json: must be a JSON object, not list"]


@pytest.mark.parametrize("changes, expected", [
    (dict(channel_names=["T1"]), "'channel_names' must be an object"),
    (dict(channel_names={}), "'channel_names' is empty"),
    (dict(channel_names={"0": 1}), "'channel_names' values must be channel names"),
    (dict(labels=[0, 1]), "'labels' must be an object"),
    (dict(labels={"background": 0, "a": "one"}), "label 'a' has value \"one\": must be an integer"),
    (dict(labels={"background": 0, "a": 1.0}), "label 'a' has value 1.0: must be an integer"),
    (dict(labels={"background": 0, "a": []}), "a region must be a non-empty list of integers"),
    (dict(numTraining=3.5), "'numTraining' must be an integer"),
    (dict(numTraining=True), "'numTraining' must be an integer"),
    (dict(file_ending="nii.gz"), "'file_ending' must be a string starting with '.'"),
    (dict(file_ending=5), "'file_ending' must be a string starting with '.'"),
    (dict(overwrite_image_reader_writer=3), "'overwrite_image_reader_writer' must be the name"),
    (dict(labels={"a": 1}), "'labels' has no \"background\" entry"),
    (dict(labels={"background": 1, "a": 2}), "\"background\" must be 0, not 1"),
    (dict(labels={"background": [0], "a": 1}), "\"background\" must be the integer 0, not a list"),
    (dict(labels={"background": 0, "a": 1, "ignore": [2]}), "\"ignore\" must be a single integer"),
    (dict(labels={"background": 0, "a": 1, "ignore": 4}), "\"ignore\" is 4 but must be the highest label value, i.e. 2"),
    (dict(labels={"background": 0, "a": 1, "b": 3}), "label values [0, 1, 3] are not consecutive (gap between 1 and 3)"),
    (dict(dataset={"c1": {"images": "x.nii.gz", "label": "y.nii.gz"}}), "wrong for case(s) 'c1'"),
])
def test_each_problem(changes, expected):
    problems = dataset_json_problems(_with(GOOD, **changes))
    assert len(problems) == 1, problems
    assert problems[0].startswith("dataset.json: ") and expected in problems[0]


def test_region_problems():
    no_order = dataset_json_problems(_with(REGIONS, regions_class_order=...))
    assert len(no_order) == 1 and "'regions_class_order' is missing" in no_order[0] and "(3)" in no_order[0]
    wrong_len = dataset_json_problems(_with(REGIONS, regions_class_order=[1, 2]))
    assert wrong_len == ["dataset.json: 'regions_class_order' has 2 entries but 'labels' declares 3 foreground "
                         "regions; give one entry per region in the order of 'labels'"]
    wrong_type = dataset_json_problems(_with(REGIONS, regions_class_order="1,2,3"))
    assert len(wrong_type) == 1 and "must be a list of integers" in wrong_type[0]
    # a region referring to a value that breaks consecutiveness
    gap = dataset_json_problems(_with(REGIONS, labels={"background": 0, "wt": [1, 2, 4], "et": [4]}))
    assert any("not consecutive" in p for p in gap)


def test_validate_lists_all_problems_in_one_line():
    bad = {"channel_names": [], "labels": {"background": 2, "a": 1}, "numTraining": "8", "file_ending": "png"}
    with pytest.raises(UserError) as e:
        validate_dataset_json(bad, source="/x/dataset.json")
    msg = e.value.one_line()
    assert msg.startswith("/x/dataset.json has 4 problems: ")
    for part in ("'channel_names' must be an object", "\"background\" must be 0",
                 "'numTraining' must be an integer", "'file_ending' must be a string"):
        assert part in msg
    assert "\n" not in str(e.value)


def test_golden_dataset_jsons_are_valid(shared_dir, golden_raw):
    for ds in ("Dataset901_SynthCT3D", "Dataset902_SynthMRRegions", "Dataset903_SynthNatural2D",
               "Dataset904_SynthSparse3D", "Dataset905_SynthBig3D"):
        d = load_dataset_json(str(golden_raw(ds)))
        assert dataset_json_problems(d) == [], ds


def test_files_saved_with_a_byte_order_mark_are_read(tmp_path):
    """Windows editors (Notepad before 2019, PowerShell 5's Out-File -Encoding utf8) save UTF-8 with a byte-order
    mark and CRLF line ends; the reference's json.load stops at the mark ("Unexpected UTF-8 BOM")."""
    from nnunetv2.file_io import load_json
    from nnunetv2.imageio.tif_reader_writer import Tiff3DIO
    text = json.dumps(GOOD, indent=2).replace("\n", "\r\n")
    (tmp_path / "dataset.json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_dataset_json(str(tmp_path), validate=True) == GOOD
    assert load_json(str(tmp_path / "dataset.json")) == GOOD  # plans, splits, ... go through this one
    (tmp_path / "case.json").write_bytes(b"\xef\xbb\xbf" + b'{"spacing": [3.0, 0.5, 0.75]}')
    assert list(Tiff3DIO._read_sidecar(str(tmp_path / "case.json"), "image", True)) == [3.0, 0.5, 0.75]
