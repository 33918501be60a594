"""A dataset id that cannot be resolved because the path variables are unset says which are unset (and names the
nnU-Net v1 variables when those are set), as documentation/setting_up_paths.md promises; it used to print
'nnUNet_raw=None, ...' with no word about the variables."""
import pytest

from nnunetv2.errors import UserError
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_raw_data_base", "RESULTS_FOLDER")


def _clear(monkeypatch):
    for v in _VARS:
        monkeypatch.delenv(v, raising=False)


def test_unset_variables_are_named(monkeypatch):
    _clear(monkeypatch)
    with pytest.raises(UserError) as e:
        maybe_convert_to_dataset_name(5)
    msg = str(e.value)
    assert "nnUNet_raw, nnUNet_preprocessed, nnUNet_results are not set" in msg
    assert "setting_up_paths.md" in msg
    assert "None" not in msg


def test_v1_variables_are_mentioned(monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("nnUNet_raw_data_base", "/old/raw")
    monkeypatch.setenv("RESULTS_FOLDER", "/old/results")
    with pytest.raises(UserError) as e:
        maybe_convert_to_dataset_name("5")
    assert "nnUNet_raw_data_base, RESULTS_FOLDER" in str(e.value)


def test_one_unset_variable(monkeypatch, tmp_path):
    _clear(monkeypatch)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    with pytest.raises(UserError, match="nnUNet_results is not set"):
        maybe_convert_to_dataset_name(5)


def test_all_set_keeps_the_old_message(monkeypatch, tmp_path):
    _clear(monkeypatch)
    for v in _VARS[:3]:
        monkeypatch.setenv(v, str(tmp_path))
    with pytest.raises(UserError, match="looked for folders starting with 'Dataset005_'"):
        maybe_convert_to_dataset_name(5)
