"""nnUNet_n_proc_DA=-1 (often meant as 'all CPUs'): the training used to start a data augmenter with -1 workers and
wait for its first batch forever. A negative value now falls back to the default, with a warning, as a value that is
not an integer does."""
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
