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

import numpy as np
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
    results = _run(tmp_path, "--no-reference", "--steps", "pytest,predict,train,resume,variants")
    counts = results["pytest"]["counts"]
    assert counts.get("skipped", 0) >= 7 and not counts.get("failed") and not counts.get("passed")
    assert set(results["pytest"]["files"]) >= {"tests/inference/test_cuda_prediction.py",
                                               "tests/run/test_cuda_training.py"}
    assert results["reference"]["available"] is False
    train = results["train"]["ours"]
    for mode in ("dummy", "augmenter", "augmenter_few"):
        assert train[mode]["losses_finite"] and train[mode]["iters_per_s"] > 0 and train[mode]["timed_iters"] == 3
    assert train["augmenter_few"]["workers"] == 1
    assert train["compiled"] is False and train["amp"] is False  # the CPU defaults
    assert results["predict"]["ours"]["predict_s"] > 0 and results["predict"]["ours2"]["predict_s"] > 0
    for volume in results["prepare"]["volumes"]:
        assert (tmp_path / "work" / "predictions_ours" / f"{volume}.npz").is_file()
    assert results["predict"]["comparison"]["ours2_vs_ours"]["voxels_differing"] == 0
    resume = results["resume"]
    assert (resume["first_run_epochs"], resume["resumed_epochs"], resume["resumed_train_losses"]) == (1, 2, 2)
    assert 0 <= resume["val_mean_dice"] <= 1
    assert resume["cross_device_voxels_differing"] == 0 and resume["cross_device_max_abs_prob_diff"] == 0
    checks = {row["check"] for row in results["table"]}
    assert {"pytest -m cuda", "train it/s, dummy data", "predict wall s (TTA, all volumes), mean of runs",
            "--c resume: epochs 1 -> 2", "variant channels_last: train it/s, dummy data"} <= checks
    # the optional step: each way of computing our step trains the same network on the same batch; the first
    # loss comes before any update (fused SGD: the very same forward pass; channels-last: rounding only)
    variants = results["variants"]
    assert list(variants) == ["default", "fused_sgd", "channels_last", "fused_sgd+channels_last"]
    first = variants["default"]["dummy"]["loss_first"]
    for name, variant in variants.items():
        assert variant["variant"] == name and variant["dummy"]["losses_finite"] and "augmenter" not in variant
        assert name == "default" or variant["compiled"] is False  # the CPU default
        assert variant["dummy"]["loss_first"] == pytest.approx(first, rel=1e-4)
    assert variants["fused_sgd"]["dummy"]["loss_first"] == first
    # our default step was timed by the train step of the same run: not compiled and timed a second time
    assert variants["default"]["from"] == "the train step of this run"
    assert variants["default"]["dummy"] == results["train"]["ours"]["dummy"]


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
    # the deterministic-cuDNN pair: the smallest volume only, on both sides
    exact = comparison["ours_deterministic_vs_ref_deterministic"]
    smallest = min(results["prepare"]["volumes"], key=lambda v: np.prod(results["prepare"]["volumes"][v]))
    assert list(exact["cases"]) == [smallest]
    assert exact["voxels_differing"] == 0 and exact["max_abs_prob_diff"] <= 1e-6
    rows = {row["check"]: row for row in results["table"]}
    assert rows[f"deterministic cuDNN ({smallest}): voxels differing, max |dp|"]["ours"].startswith("0, ")
    # the preprocessed inputs and the logits of every case are the same on the CPU
    n = len(results["prepare"]["volumes"])
    assert comparison["ours_vs_ref1"]["same_input"] == comparison["ours_vs_ref1"]["same_logits"] == f"{n} of {n}"
    same = rows["cases with the same preprocessed input / logits as reference run 1"]["ours"]
    assert same == f"{n} of {n} / {n} of {n}"
    assert "resume" not in results


def _fake_gpu_results(ours_its: float, ours_predict_s: float, ours_vram: float, ours_differing: int,
                      deterministic_differing: int = 0) -> dict:
    run = {"iters_per_s": None, "peak_allocated_mb": None, "losses_finite": True}
    train = {impl: {mode: dict(run, iters_per_s=its, peak_allocated_mb=vram)
                    for mode in ("dummy", "augmenter", "augmenter_few")}
             for impl, its, vram in (("ours", ours_its, ours_vram), ("ref", 10.0, 1000.0))}
    train["ours"]["augmenter_few"]["workers"] = train["ref"]["augmenter_few"]["workers"] = 4
    train["ours"]["initialize_and_dummy_s"], train["ref"]["initialize_and_dummy_s"] = 70.0, 25.0
    diff = {"voxels_differing": ours_differing, "max_abs_prob_diff": 1e-3}
    spread = {"voxels_differing": 5, "max_abs_prob_diff": 1e-3}
    return {"meta": {"device": "cuda"}, "pytest": {"rc": 0, "counts": {"passed": 7}},
            "prepare": {"patch_size": [64, 192, 160], "batch_size": 2, "n_stages": 6}, "train": train,
            "predict": {"ours": {"predict_s": ours_predict_s, "peak_allocated_mb": ours_vram},
                        "ours2": {"predict_s": ours_predict_s + 1, "peak_allocated_mb": ours_vram - 50},
                        "ref1": {"predict_s": 10.0, "peak_allocated_mb": 1000.0},
                        "ref2": {"predict_s": 12.0, "peak_allocated_mb": 1100.0},
                        "ref_deterministic": {"predict_s": 3.0, "peak_allocated_mb": 500.0},
                        "ours_deterministic": {"predict_s": 2.0, "peak_allocated_mb": ours_vram / 2},
                        "comparison": {"ours_vs_ref1": diff, "ref2_vs_ref1": spread,
                                       "ours2_vs_ours": {"voxels_differing": 2, "max_abs_prob_diff": 1e-4},
                                       "ours_deterministic_vs_ref_deterministic": {
                                           "voxels_differing": deterministic_differing,
                                           "max_abs_prob_diff": 1e-4 * deterministic_differing,
                                           "cases": {"vol_c": {}}}}},
            "resume": {"first_run_epochs": 1, "resumed_epochs": 2, "resumed_train_losses": 2, "val_mean_dice": 0.5,
                       "cross_device_voxels_differing": 10, "cross_device_voxels": 100000,
                       "cross_device_max_abs_prob_diff": 0.01}}


def test_the_table_applies_the_gpu_targets():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from _gpu_check_report import build_table, format_table
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    good = {row["check"]: row for row in build_table(_fake_gpu_results(11.5, 8.0, 900.0, 3))}
    assert good["train it/s, dummy data"]["ratio"] == pytest.approx(1.15)
    # means of both runs on each side
    assert good["predict wall s (TTA, all volumes), mean of runs"]["ratio"] == pytest.approx(8.5 / 11.0)
    assert good["predict wall s, each run"]["ours"] == "8.0, 9.0"
    assert good["train start-up s (initialize, compile, dummy steps)"]["ratio"] == pytest.approx(2.8)
    # each side's highest run (cuDNN's run-time picks change the workspace from run to run)
    assert good["predict peak VRAM MB (highest run)"]["reference"] == 1100.0
    assert good["predict peak VRAM MB (highest run)"]["ours"] == 900.0
    assert good["ours run 2 vs run 1: voxels differing, max |dp|"]["ours"] == "2, 0.0001"
    assert good["deterministic cuDNN (vol_c): voxels differing, max |dp|"]["verdict"] == "ok"
    assert good["deterministic cuDNN: peak VRAM MB"]["ratio"] == pytest.approx(0.9)
    assert {row["verdict"] for row in good.values()} <= {"ok", "info"}
    bad = {row["check"]: row for row in build_table(_fake_gpu_results(10.5, 9.5, 1101.0, 6, 1))}
    assert good["train it/s, 4 augmenter workers"]["ratio"] == pytest.approx(1.15)
    for check in ("train it/s, dummy data", "train it/s, augmenter workers", "train it/s, 4 augmenter workers",
                  "predict wall s (TTA, all volumes), mean of runs", "predict peak VRAM MB (highest run)",
                  "train peak VRAM MB, dummy data", "voxels differing from reference run 1",
                  "deterministic cuDNN (vol_c): voxels differing, max |dp|", "deterministic cuDNN: peak VRAM MB"):
        assert bad[check]["verdict"] == "MISS", check
    failing = _fake_gpu_results(11.5, 8.0, 900.0, 3)
    failing["train"]["ours"]["dummy"]["losses_finite"] = False
    failing["resume"]["resumed_epochs"] = 1
    failing["pytest"] = {"rc": 1, "counts": {"passed": 6, "failed": 1}}
    verdicts = {row["check"]: row["verdict"] for row in build_table(failing)}
    assert verdicts["train loss finite, dummy data"] == verdicts["--c resume: epochs 1 -> 2"] == "FAIL"
    assert verdicts["pytest -m cuda"] == "FAIL"
    assert "train it/s, dummy data" in format_table(build_table(failing), {"gpu": "H100", "torch": "2.11"})


def test_the_table_puts_each_step_variant_beside_our_default_step():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from _gpu_check_report import build_table
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    step = {"iters_per_s": 3.3, "peak_allocated_mb": 5000.0, "loss_first": 1.25, "loss_last": 1.0,
            "losses_finite": True}
    variants = {"default": {"dummy": step},
                "channels_last": {"dummy": dict(step, iters_per_s=3.96, peak_allocated_mb=4500.0, loss_last=1.001)},
                "fused_sgd": {"dummy": dict(step, losses_finite=False)},
                "fused_sgd+channels_last": {"skipped": "time budget: 20 s left"}}
    rows = {row["check"]: row for row in build_table({"meta": {"device": "cuda"}, "variants": variants})}
    assert rows["variant channels_last: train it/s, dummy data"]["ratio"] == pytest.approx(1.2)
    assert rows["variant channels_last: train peak VRAM MB"]["ratio"] == pytest.approx(0.9)
    assert rows["variant channels_last: loss first -> last"]["ours"] == "1.2500 -> 1.0010"
    assert rows["variant channels_last: loss first -> last"]["reference"] == "1.2500 -> 1.0000"
    assert rows["variant default: train it/s, dummy data"]["ratio"] is None
    assert rows["variant fused_sgd: loss first -> last"]["verdict"] == "FAIL"
    assert rows["variant fused_sgd+channels_last"]["verdict"] == "skipped"
