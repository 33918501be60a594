"""nnUNetv2_predict (default worker counts) killed at random moments: SIGKILL of its main process (its preprocessing
and export workers exit by themselves) or Ctrl-C to the whole process group (status 130, no traceback from any
process). Every file in the output folder loads, and --continue_prediction completes the folder with exactly what
an uninterrupted run writes. Uses the reference-trained 2-D model of ../shared."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from _kill9 import assert_ran, command_env, console_script, is_temporary, kill_chains, run_command

DATASET = "Dataset903_SynthNatural2D"
N_CASES = 4


@pytest.fixture(scope="module")
def predict_setup(shared_dir, golden_raw, tmp_path_factory):
    """nnUNet_results with the golden 2-D model, and an input folder of N_CASES images."""
    root = tmp_path_factory.mktemp("kill9_predict")
    results = root / "results"
    env = command_env(nnUNet_results=str(results), nnUNet_raw=str(root / "raw"),
                      nnUNet_preprocessed=str(root / "preprocessed"))
    zip_path = next((shared_dir / "reference" / "models" / DATASET).glob("*.zip"))
    assert_ran(run_command([console_script("nnUNetv2_install_pretrained_model_from_zip"), str(zip_path)], env),
               "install")
    images = root / "images"
    images.mkdir()
    test_images = sorted((golden_raw(DATASET) / "imagesTs").glob("*_0000.png"))
    for i in range(N_CASES):  # the golden test images, repeated under new names
        shutil.copy(test_images[i % len(test_images)], images / f"case_{i:03d}_0000.png")
    return env, images, root


def _predict(env, images: Path, out: Path, resume: bool, **kill):
    cmd = [console_script("nnUNetv2_predict"), "-i", str(images), "-o", str(out), "-d", "903", "-c", "2d", "-f",
           "0", "-tr", "nnUNetTrainer_5epochs", "-p", "nnUNetPlansTiny", "-device", "cpu", "--save_probabilities",
           "--disable_tta"] + (["--continue_prediction"] if resume else [])
    return run_command(cmd, env, **kill)


def _outputs(out: Path) -> dict:
    """What the predictions are (case files only: the bookkeeping json records the flags of the last call). Files
    under temporary names are left out: a killed export worker may leave one, and no final name refers to it."""
    result = {}
    for p in sorted(out.iterdir()):
        if is_temporary(p, out):
            continue
        if p.name.endswith(".npz"):
            with np.load(p) as f:
                result[p.name] = {k: f[k] for k in f.files}
        elif p.name.endswith(".pkl"):
            result[p.name] = repr(pickle.loads(p.read_bytes()))
        elif p.name.endswith(".png"):
            result[p.name] = p.read_bytes()
    return result


def _kill_and_continue(predict_setup, n_chains: int, kills_per_chain: int) -> None:
    env, images, root = predict_setup

    def outputs(out: Path) -> dict:
        found = _outputs(out)
        assert len(found) == 3 * N_CASES
        return found

    kill_chains(lambda out, resume, **kill: _predict(env, images, out, resume, **kill), outputs, root, n_chains,
                kills_per_chain, "predict --continue_prediction")


def test_predict_killed_at_a_few_moments(predict_setup):
    _kill_and_continue(predict_setup, n_chains=1, kills_per_chain=1)


@pytest.mark.killtest
def test_predict_killed_at_many_moments(predict_setup):
    _kill_and_continue(predict_setup, n_chains=5, kills_per_chain=4)
