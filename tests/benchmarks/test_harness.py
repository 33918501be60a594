"""benchmarks/_harness.py: the measuring helpers every benchmark script shares (no timing asserted, only values)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _harness import checkout_warnings, measure, measure_tree  # noqa: E402

# held for 2 s: measure_tree sleeps 19x the cost of a poll between polls, which on a loaded machine passed 0.5 s and
# missed the whole allocation (CI on 2 busy cores saw 77 MB)
ALLOCATE_200_MB = "import time; x = bytearray(200 * 2 ** 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(2)"


@pytest.mark.parametrize("measure_fn", [measure, measure_tree])
def test_peak_memory_of_a_child_is_seen_and_can_be_switched_off(measure_fn):
    polled = measure_fn([sys.executable, "-c", ALLOCATE_200_MB], dict(os.environ))
    assert polled.returncode == 0 and polled.wall_s > 0.5
    assert 200 <= polled.peak_rss_mb < 1000
    unpolled = measure_fn([sys.executable, "-c", "pass"], dict(os.environ), memory=False)
    assert unpolled.returncode == 0 and unpolled.peak_rss_mb == 0


def test_exit_status_is_reported():
    assert measure([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ)).returncode == 3


def test_checkout_warnings_name_another_checkout_and_a_shadowing_pythonpath(tmp_path):
    import nnunetv2
    installed_repo = str(Path(nnunetv2.__file__).resolve().parents[1])
    assert checkout_warnings(installed_repo, pythonpath="") == []
    other = checkout_warnings(str(tmp_path), pythonpath="")
    assert len(other) == 1 and "not this checkout" in other[0] and str(tmp_path) in other[0]
    (tmp_path / "nnunetv2").mkdir()
    (tmp_path / "nnunetv2" / "__init__.py").write_text("")
    shadowed = checkout_warnings(installed_repo, pythonpath=os.pathsep.join(["", str(tmp_path / "none"), str(tmp_path)]))
    assert len(shadowed) == 1 and "unset PYTHONPATH" in shadowed[0] and str(tmp_path) in shadowed[0]
