"""benchmarks/seeded_training.py: how two seeded training records are compared (no reference needed), and one tiny
run end to end against the reference where a reference python and the golden data exist (skipped elsewhere)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from _harness import default_reference_python  # noqa: E402
from seeded_training import compare, difference  # noqa: E402


def _record(loss: float = 0.5, weight: float = 1.0, error=None) -> dict:
    events = [("setup", "initial weights", {"w": np.ones(3, np.float32)}),
              ("train step 0 (epoch 0)", "loss", loss),
              ("train step 0 (epoch 0)", "weights after the step", {"w": np.full(3, weight, np.float32)}),
              ("end", "checkpoint_final.pth", {"_best_ema": np.float32(0.25), "current_epoch": 1})]
    return {"package": "x", "events": events if error is None else events[:1], "error": error}


def test_identical_records_agree_and_numbers_compare_by_value():
    ours = _record()
    ours["events"][-1][2]["_best_ema"] = 0.25  # a Python float where the reference keeps np.float32
    verdict = compare(_record(), ours)
    assert verdict.identical and verdict.text.startswith("identical (1 steps")


def test_the_first_difference_names_the_step_and_max_delta():
    verdict = compare(_record(), _record(weight=1.5, loss=0.75))
    assert not verdict.identical
    assert verdict.text == "train step 0 (epoch 0): loss (max |d| 0.25)"


def test_kind_of_difference_outranks_size():
    shape = difference({"a": np.zeros(2), "b": np.zeros(3)}, {"a": np.ones(2), "b": np.zeros(4)})
    assert shape == "shape (3,) vs (4,)"
    assert difference(np.zeros(2, np.float32), np.zeros(2, np.float64)) == "dtype float32 vs float64"
    assert difference([1.0, float("nan")], [1.0, float("nan")]) is None
    assert difference(["a"], ["a", "b"]) == "length 1 vs 2"


def test_both_sides_refusing_a_trainer_agree_but_one_side_failing_differs():
    ours = _record(error={"phase": "initialize", "type": "UserError", "message": "no regions"})
    ref = _record(error={"phase": "initialize", "type": "AssertionError", "message": "no regions"})
    verdict = compare(ref, ours)
    assert verdict.identical and verdict.text == "both refuse in initialize (ours UserError, ref AssertionError)"
    verdict = compare(_record(), ours)
    assert not verdict.identical and "ours UserError in initialize" in verdict.text




@pytest.mark.slow
@pytest.mark.skipif(default_reference_python() is None, reason="no reference python")
def test_one_tiny_seeded_run_is_identical_to_the_reference():
    shared = Path(os.environ.get("NNUNET_SHARED_DIR", REPO.parent / "shared"))
    if not (shared / "reference" / "Dataset903_SynthNatural2D" / "generate.sh").is_file():
        pytest.skip(f"no golden data in {shared}")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "seeded_training.py"), "--datasets", "903",
                           "--trainers", "nnUNetTrainer", "--epochs", "1", "--iterations", "2", "--val-iterations",
                           "1", "--reference-python", default_reference_python()],
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, NNUNET_SHARED_DIR=str(shared)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "identical (3 steps" in proc.stdout and "1 of 1 runs agree" in proc.stdout
