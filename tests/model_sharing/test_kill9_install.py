"""nnUNetv2_install_pretrained_model_from_zip killed at random moments (kill -9, Ctrl-C): nothing half-extracted is
left under a final name, and installing again gives exactly the files of an uninterrupted install."""
from __future__ import annotations

import io
import json
import random
import signal
import zipfile
from pathlib import Path

import pytest
import torch

from _kill9 import (assert_clean_interruption, assert_final_files_load, assert_ran, command_env, console_script,
                    kill_seed, run_command, tree_digest)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
MODEL = "Dataset778_KillInstall/nnUNetTrainer__nnUNetPlans__3d_fullres"


N_FILES = 3 + 4 * (2 + 150)


def _model_zip(path: Path) -> Path:
    """A model zip with checkpoints and enough files that extracting them takes a while (most of the command's time,
    so that most kill moments fall into it)."""
    generator = torch.Generator().manual_seed(0)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, content in (("plans.json", {"plans_name": "nnUNetPlans"}), ("dataset.json", {"labels": {}}),
                              ("dataset_fingerprint.json", {"spacings": []})):
            z.writestr(f"{MODEL}/{name}", json.dumps(content))
        for fold in range(4):
            buffer = io.BytesIO()
            torch.save({"network_weights": {"w": torch.randn(2_000_000, generator=generator)}}, buffer)
            z.writestr(f"{MODEL}/fold_{fold}/checkpoint_final.pth", buffer.getvalue())
            z.writestr(f"{MODEL}/fold_{fold}/debug.json", json.dumps({"fold": fold}))
            for case in range(150):
                z.writestr(f"{MODEL}/fold_{fold}/validation/case_{case:03d}.json", json.dumps({"case": case}))
    return path


def _install(zip_path: Path, results: Path, **kill):
    return run_command([console_script("nnUNetv2_install_pretrained_model_from_zip"), str(zip_path)],
                       command_env(nnUNet_results=str(results)), **kill)


def _kill_and_reinstall(tmp_path: Path, n_moments: int) -> None:
    zip_path = _model_zip(tmp_path / "model.zip")
    reference = tmp_path / "reference"
    uninterrupted = _install(zip_path, reference)
    assert_ran(uninterrupted, "install")
    expected = tree_digest(reference)
    assert len(expected) == N_FILES
    rng = random.Random(kill_seed())
    for i in range(n_moments):
        results = tmp_path / f"results_{i}"
        at = rng.uniform(0.0, uninterrupted.seconds)
        ctrl_c = rng.random() < 0.25
        outcome = _install(zip_path, results, kill_at=at, sig=signal.SIGINT if ctrl_c else signal.SIGKILL,
                           whole_group=ctrl_c)
        if outcome.killed and ctrl_c:
            assert_clean_interruption(outcome, 130)
        assert not outcome.left_behind
        assert_final_files_load(results)
        assert_ran(_install(zip_path, results), f"install after a kill at {at:.2f} s")
        assert tree_digest(results) == expected, f"kill at {at:.2f} s"


def test_install_killed_at_a_few_moments(tmp_path):
    _kill_and_reinstall(tmp_path, 3)


@pytest.mark.killtest
def test_install_killed_at_many_moments(tmp_path):
    _kill_and_reinstall(tmp_path, 25)
