"""benchmarks/gpu_check.py at toy size on the CPU (``--device cpu``): every step runs, the JSON holds the table, and
what can be checked without a GPU holds (training resumes, validation rewrites its summary, a checkpoint predicts the
same on both devices, ours and the reference agree). The reference parts run where a reference python exists
(NNUNET_REFERENCE_PYTHON or /opt/nnunet_ref) and are skipped elsewhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _reference_python():
    for candidate in (os.environ.get("NNUNET_REFERENCE_PYTHON"), "/opt/nnunet_ref/bin/python"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "gpu_check.json"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                           "--out", str(out), "--work", str(tmp_path / "work"), *args],
                          env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPU check: cpu" in proc.stdout  # the printed table
    results = json.loads(out.read_text())
    assert (tmp_path / "gpu_check.log").is_file()
    assert not [row for row in results["table"] if row["verdict"] == "FAIL"]
    return results


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    results = _run(tmp_path, "--no-reference")
    counts = results["pytest"]["counts"]
    assert counts.get("skipped", 0) >= 7 and not counts.get("failed") and not counts.get("passed")
    assert set(results["pytest"]["files"]) >= {"tests/inference/test_cuda_prediction.py",
                                               "tests/run/test_cuda_training.py"}
    assert results["reference"]["available"] is False
    train = results["train"]["ours"]
    for mode in ("dummy", "augmenter"):
        assert train[mode]["losses_finite"] and train[mode]["iters_per_s"] > 0 and train[mode]["timed_iters"] == 3
    assert train["compiled"] is False and train["amp"] is False  # the CPU defaults
    assert results["predict"]["ours"]["predict_s"] > 0
    for volume in results["prepare"]["volumes"]:
        assert (tmp_path / "work" / "predictions_ours" / f"{volume}.npz").is_file()
    resume = results["resume"]
    assert (resume["first_run_epochs"], resume["resumed_epochs"], resume["resumed_train_losses"]) == (1, 2, 2)
    assert 0 <= resume["val_mean_dice"] <= 1
    assert resume["cross_device_voxels_differing"] == 0 and resume["cross_device_max_abs_prob_diff"] == 0
    checks = {row["check"] for row in results["table"]}
    assert {"pytest -m cuda", "train it/s, dummy data", "predict wall s (TTA, all volumes)",
            "--c resume: epochs 1 -> 2"} <= checks


@pytest.mark.slow
def test_gpu_check_compares_with_the_reference_on_the_cpu(tmp_path):
    reference = _reference_python()
    if reference is None:
        pytest.skip("no reference python (NNUNET_REFERENCE_PYTHON or /opt/nnunet_ref)")
    results = _run(tmp_path, "--steps", "train,predict", "--reference-python", reference)
    assert results["reference"]["available"] is True
    ours, ref = results["train"]["ours"], results["train"]["ref"]
    assert "/opt/" in ref["implementation"] or ref["implementation"] != ours["implementation"]
    # same seed, same fixed batch, same CPU arithmetic: the very same losses
    assert ours["dummy"]["loss_first"] == ref["dummy"]["loss_first"]
    assert ours["dummy"]["loss_last"] == ref["dummy"]["loss_last"]
    comparison = results["predict"]["comparison"]
    assert comparison["ours_vs_ref1"]["voxels_differing"] == 0
    assert comparison["ours_vs_ref1"]["max_abs_prob_diff"] <= 1e-6
    assert comparison["ref2_vs_ref1"]["voxels_differing"] == 0
    assert "resume" not in results
