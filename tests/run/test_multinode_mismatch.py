"""Two torchrun "nodes" (``--nnodes 2``, one process each, static rendezvous on localhost, gloo on the CPU) started
with different nnUNetv2_train arguments, as happens when a multi-node job script gives its nodes another fold or
forgets --c on one of them. Without a check the ranks train different folds in one process group (rank 1 trains on
fold 0's validation cases, the summary.json misses rank 1's cases) or run different numbers of epochs and wait for
each other until the collective timeout. Every node must stop at once with the same clear message."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args0, args1, differing", [
    (["0"], ["1"], "fold: rank 0=0, rank 1=1"),
    (["0", "--c"], ["0"], "continue_training: rank 0=True, rank 1=False"),
    (["0"], ["0", "-p", "otherPlans"], "plans: rank 0='nnUNetPlans', rank 1='otherPlans'"),
])
def test_nodes_started_with_different_arguments_stop_with_a_clear_error(t2, args0, args1, differing):
    python_path = os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = dict(os.environ, nnUNet_def_n_proc="1", OMP_NUM_THREADS="1", PYTHONPATH=python_path)
    for v in ("nnUNet_compile", "RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "MASTER_ADDR",
              "MASTER_PORT"):
        env.pop(v, None)
    port = str(_free_port())
    procs = []
    for node_rank, fold_args in enumerate((args0, args1)):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node_rank),
               "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", port,
               "-m", "nnunetv2.run.run_training", "321", "3d_fullres", *fold_args, "-device", "cpu"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      cwd=str(REPO_ROOT), start_new_session=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=120)[0])  # a node that waits instead of stopping fails here
    finally:
        for p in procs:
            if p.poll() is None:  # torchrun and its worker: the whole session
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for p, out in zip(procs, outputs):
        assert p.returncode != 0, out[-3000:]
        assert "started with different nnUNetv2_train arguments" in out and differing in out, out[-3000:]
    # nothing was trained: no checkpoint anywhere under nnUNet_results
    assert not list(Path(t2.env["results"]).rglob("checkpoint_*.pth"))
