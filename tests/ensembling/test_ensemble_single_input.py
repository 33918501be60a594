"""nnUNetv2_ensemble with one -i folder (or one folder twice) writes that model's own prediction; the help asks
for two or more, and the reference accepts one silently. It still runs, with a warning naming the folder."""
import os
import sys

from nnunetv2.ensembling.ensemble import entry_point_ensemble_folders

sys.path.insert(0, os.path.dirname(__file__))
from test_ensemble import _prediction_folder  # noqa: E402


def _run(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_ensemble", *args])
    try:
        entry_point_ensemble_folders()
    except SystemExit as e:
        return e.code
    return 0


def test_one_input_folder_warns_and_runs(tmp_path, monkeypatch, capsys):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _prediction_folder(a, 0)
    _prediction_folder(b, 1)
    for inputs in ([a], [a, a + "/"]):
        out = str(tmp_path / f"out{len(inputs)}")
        assert _run(monkeypatch, "-i", *inputs, "-o", out, "-np", "1") in (0, None)
        err = capsys.readouterr().err
        assert "only one distinct input folder" in err and a in err
        assert os.path.isfile(os.path.join(out, "c0.nii.gz"))
    assert _run(monkeypatch, "-i", a, b, "-o", str(tmp_path / "out_ab"), "-np", "1") in (0, None)
    assert "only one distinct" not in capsys.readouterr().err
