"""nnUNet_n_proc_DA=-1 (often meant as 'all CPUs'): the training used to start a data augmenter with -1 workers and
wait for its first batch forever. A negative value now falls back to the default, with a warning, as a value that is
not an integer does. An on/off switch with a value that is neither is off, also with a warning."""
from __future__ import annotations

import logging
import os

from nnunetv2.configuration import get_allowed_n_proc_DA


def test_negative_value_uses_the_default(monkeypatch, caplog):
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    default = get_allowed_n_proc_DA()
    monkeypatch.setenv("nnUNet_n_proc_DA", "-1")
    with caplog.at_level(logging.WARNING):
        assert get_allowed_n_proc_DA() == default
    assert any("nnUNet_n_proc_DA=-1" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    assert get_allowed_n_proc_DA() == 0
    monkeypatch.setenv("nnUNet_n_proc_DA", "1")
    assert get_allowed_n_proc_DA() == min(1, os.cpu_count() or 1)


def test_an_on_off_switch_with_another_value_is_off_with_a_warning(monkeypatch, caplog):
    from nnunetv2.configuration import flag_from_env
    for value, expected in (("1", True), (" Yes ", True), ("off", False), ("0", False), ("", False)):
        monkeypatch.setenv("nnUNet_test_switch", value)
        assert flag_from_env("nnUNet_test_switch") is expected
    assert not caplog.records
    monkeypatch.setenv("nnUNet_test_switch", "2")
    with caplog.at_level(logging.WARNING):
        assert flag_from_env("nnUNet_test_switch") is False
        assert flag_from_env("nnUNet_test_switch") is False
    lines = [r.getMessage() for r in caplog.records if "nnUNet_test_switch='2'" in r.getMessage()]
    assert len(lines) == 1 and "taken as off" in lines[0]


def test_nnUNet_compile_keeps_the_reference_spellings_and_warns_about_others(monkeypatch, caplog):
    from nnunetv2 import configuration
    from nnunetv2.configuration import compile_setting
    monkeypatch.setattr(configuration, "_flags_warned_about", set())  # warned once per process: maybe by a test before
    monkeypatch.delenv("nnUNet_compile", raising=False)
    assert compile_setting() is None
    for value, expected in (("T", True), ("true", True), ("1", True), ("f", False), ("False", False), ("0", False),
                            ("no", False), ("", False)):
        monkeypatch.setenv("nnUNet_compile", value)
        assert compile_setting() is expected
    assert not caplog.records
    for value in ("yes", "on", " true"):  # the reference reads these as off: so do we, but not silently
        monkeypatch.setenv("nnUNet_compile", value)
        with caplog.at_level(logging.WARNING):
            assert compile_setting() is False
            assert compile_setting() is False
        lines = [r.getMessage() for r in caplog.records if f"nnUNet_compile={value!r}" in r.getMessage()]
        assert len(lines) == 1 and "read as off" in lines[0]
