"""nnUNetv2_predict -device mps where PyTorch has no MPS (Linux, Windows, an old Mac): one line, as nnUNetv2_train
says it, instead of PyTorch's RuntimeError from the first tensor moved to the device after the output folder got
its first files."""
from __future__ import annotations

import torch

from _bad_inputs_helpers import assert_clean_failure
from nnunetv2.inference.predict_cli import predict_entry_point


def test_predict_on_missing_mps_is_one_line(bad_env, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out = tmp_path / "out"
    capsys.readouterr()
    try:
        predict_entry_point(["-i", str(bad_env.dataset / "imagesTs"), "-o", str(out), "-d", "771", "-c", "3d_fullres",
                             "-f", "0", "-device", "mps", "-npp", "0", "-nps", "0"])
        code = 0
    except SystemExit as e:
        code = e.code
    assert "mps" in assert_clean_failure(code, capsys.readouterr().err)
    assert not out.exists() or not list(out.iterdir())
