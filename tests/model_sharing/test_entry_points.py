"""The model-sharing commands import their numpy/torch modules with Ctrl-C held back: a Ctrl-C while numpy's
C extension initialises turned into numpy's 'Importing the numpy C-extensions failed' (exit 1) instead of
'interrupted' (130)."""
from __future__ import annotations

import sys

import pytest

from nnunetv2.model_sharing import entry_points


@pytest.mark.parametrize("entry, argv, module, function", [
    ("install_from_zip_entry_point", ["model.zip"], "model_import", "install_model_from_zip_file"),
    ("download_by_url", ["https://example.org/model.zip"], "model_download", "download_and_install_from_url"),
    ("export_pretrained_model_entry", ["-d", "1", "-o", "x.zip"], "model_export", "export_pretrained_model"),
])
def test_heavy_modules_are_imported_with_ctrl_c_held_back(monkeypatch, entry, argv, module, function):
    import importlib
    events = []
    full_name = f"nnunetv2.model_sharing.{module}"
    monkeypatch.setattr(entry_points, "import_with_ctrl_c_deferred",
                        lambda *names: events.append(("deferred", names)) or [importlib.import_module(n) for n in names])
    monkeypatch.setattr(importlib.import_module(full_name), function, lambda *a, **k: events.append(("ran",)))
    monkeypatch.setattr(sys, "argv", [entry] + argv)
    getattr(entry_points, entry)()
    assert events == [("deferred", (full_name,)), ("ran",)]
