import json
import os

import pytest

from nnunetv2.file_io import TMP_PREFIX, atomic_path, save_json


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "plans.json"
    save_json({"a": 1}, str(target))
    real_dump = json.dump

    def dump_then_fail(obj, f, **kw):  # a disk that fills up halfway through the write
        f.write('{"partial": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_then_fail)
    with pytest.raises(OSError):
        save_json({"b": 2}, str(target))
    monkeypatch.setattr(json, "dump", real_dump)
    assert json.load(open(target)) == {"a": 1}  # the previous complete file is still there
    assert [f for f in os.listdir(tmp_path) if f.startswith(TMP_PREFIX)] == []


def test_atomic_path_keeps_the_ending(tmp_path):
    with atomic_path(str(tmp_path / "case.nii.gz")) as tmp:
        assert tmp.endswith("case.nii.gz") and os.path.basename(tmp).startswith(TMP_PREFIX)
        open(tmp, "w").write("x")
    assert (tmp_path / "case.nii.gz").read_text() == "x"


def test_save_json_format(tmp_path):
    save_json({"b": 1, "a": [1, 2]}, str(tmp_path / "x.json"))
    assert (tmp_path / "x.json").read_text() == '{\n    "a": [\n        1,\n        2\n    ],\n    "b": 1\n}'
