"""benchmarks/_client_trial.py: the client trials' plumbing (what can be checked without a client or a network)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _client_trial  # noqa: E402


def test_install_client_passes_each_missing_requirement_as_one_pip_argument(tmp_path, monkeypatch):
    # Poetry writes version ranges in parentheses after a space (SPINEPS 2.1.3: 'TPTBox (>=1.0.0,<2.0.0)'); split on
    # whitespace, '(>=1.0.0,<2.0.0)' became a pip argument of its own and pip stopped ("Invalid requirement")
    info = tmp_path / "fakeclient-1.0.dist-info"
    info.mkdir()
    requires = ["nnunetv2-trial-absent-a (>=1.0.0,<2.0.0)", "nnunetv2-trial-absent-b", "nnunetv2 (>=2.8.0,<3.0.0)",
                "nnunetv2-trial-skipped (==1.0)", "numpy", "nnunetv2-trial-absent-c ; python_version < '3'"]
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeclient\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    installed = []
    monkeypatch.setattr(_client_trial, "pip", lambda python, *args: installed.append(args))
    _client_trial.install_client(sys.executable, "fakeclient", "1.0", str(tmp_path), ["NNUNETV2-trial-skipped"])
    # installed already (no --no-deps install); what is missing, each requirement whole; not nnunetv2, the skipped
    # one, those present (numpy) or for another Python
    assert installed == [("nnunetv2-trial-absent-a (>=1.0.0,<2.0.0)", "nnunetv2-trial-absent-b")]
