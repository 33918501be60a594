"""documentation/examples/nnunet_train_requeue.sbatch, run by bash with stand-ins for nnUNetv2_train and scontrol:
a stop signal to the batch script reaches the training, and a training that stopped is requeued; one that finished
or failed is not."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "documentation" / "examples" / "nnunet_train_requeue.sbatch"

FAKE_TRAIN = """#!/bin/bash
echo "$@" > "$T/args"
trap 'echo stopping > "$T/got_usr1"; exit 138' USR1
touch "$T/started"
if [ -n "$FAKE_STATUS" ]; then exit "$FAKE_STATUS"; fi
for i in $(seq 3000); do sleep 0.1; done
exit 0
"""


def _run(tmp_path: Path, fake_status=None, signal_script: bool = False):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nnUNetv2_train").write_text(FAKE_TRAIN)
    (bin_dir / "scontrol").write_text('#!/bin/bash\necho "$@" >> "$T/scontrol"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", T=str(tmp_path), SLURM_JOB_ID="4242")
    if fake_status is not None:
        env["FAKE_STATUS"] = str(fake_status)
    proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        if signal_script:
            deadline = time.time() + 60
            while not (tmp_path / "started").exists():
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGUSR1)  # what #SBATCH --signal=B:USR1@300 does
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    scontrol = (tmp_path / "scontrol").read_text() if (tmp_path / "scontrol").exists() else ""
    return proc.returncode, output, scontrol


@pytest.mark.skipif(not SCRIPT.is_file(), reason="example script missing")
def test_stop_signal_is_passed_on_and_the_job_requeued(tmp_path):
    status, output, scontrol = _run(tmp_path, signal_script=True)
    assert (tmp_path / "args").read_text().split() == ["5", "3d_fullres", "0", "--c"]
    assert (tmp_path / "got_usr1").is_file()
    assert status == 0 and scontrol == "requeue 4242\n", output
    assert "status 138" in output


@pytest.mark.parametrize("fake_status, expected", [(0, 0), (1, 1), (143, 0)])
def test_requeued_only_when_stopped(tmp_path, fake_status, expected):
    # 143: the training was stopped by SIGTERM sent to it directly (preemption signals every process of the job)
    status, output, scontrol = _run(tmp_path, fake_status=fake_status)
    assert status == expected, output
    assert scontrol == ("requeue 4242\n" if fake_status == 143 else ""), output
