"""The GPU check times ours as the console commands run it: the driver makes the process settings of
``nnUNetv2_train`` / ``nnUNetv2_predict`` (utilities.console_command) before it imports torch, and records that it did;
the reference's commands make none, so its side stays a plain process. On CUDA both implementations' commands give
torch one CPU thread, and so do the timed steps."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "benchmarks" / "_gpu_check_driver.py"
PROBE = ("import os, sys; sys.path.insert(0, sys.argv[1]); import _gpu_check_driver as d; "
         "print(d._as_our_commands_run(), os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")


def _probe(python: str, pythonpath: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GLIBC_TUNABLES")}
    env["PYTHONPATH"] = pythonpath
    out = subprocess.run([python, "-c", PROBE, str(DRIVER.parent)], env=env, cwd="/", capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_ours_gets_the_commands_process_settings_before_torch():
    assert _probe(sys.executable, str(REPO)) == "True PASSIVE False"


def test_the_reference_stays_a_plain_process():
    reference = next((c for c in (os.environ.get("NNUNET_REFERENCE_PYTHON"), "/opt/nnunet_ref/bin/python")
                      if c and os.path.isfile(c)), None)
    if reference is None:
        pytest.skip("no reference python")
    assert _probe(reference, "") == "False None False"


def test_every_command_records_whether_it_ran_as_the_commands_do(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("_gpu_check_driver_under_test", DRIVER)
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    calls = []
    monkeypatch.setattr(driver, "_as_our_commands_run", lambda: calls.append("settings") or True)
    monkeypatch.setattr(driver, "train", lambda args: calls.append("train") or {"dummy": {}})
    out = tmp_path / "train.json"
    monkeypatch.setattr(sys, "argv", ["_gpu_check_driver.py", "train", "--work", str(tmp_path), "--out", str(out)])
    driver.main()
    assert calls == ["settings", "train"]
    assert json.loads(out.read_text()) == {"dummy": {}, "command_settings": True}


def test_one_torch_thread_on_cuda_as_the_commands_set_it():
    probe = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import _gpu_check_driver as d; "
             "torch.set_num_threads(2); d._threads_as_the_commands_set_them(torch, torch.device('cpu')); "
             "cpu = torch.get_num_threads(); d._threads_as_the_commands_set_them(torch, torch.device('cuda')); "
             "print(cpu, torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", probe, str(DRIVER.parent)], cwd="/", capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "1"]

