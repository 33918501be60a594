"""nnUNetv2_plan_and_preprocess (default worker counts: fingerprint and preprocessing workers) killed at random
moments: SIGKILL of its main process (the workers exit by themselves) or Ctrl-C to the whole process group (status
130, no traceback from any process). Every file under nnUNet_preprocessed loads, and running the command again gives
the fingerprint, plans and preprocessed cases of an uninterrupted run."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from _kill9 import command_env, console_script, is_temporary, kill_chains, run_command

DATASET_ID, NAME = 786, "KillPreprocess"


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory):
    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
    raw = tmp_path_factory.mktemp("kill9_preprocess_raw")
    make_synthetic_dataset(str(raw), DATASET_ID, NAME, kind="3d", num_train=6, num_test=0, shape=(24, 48, 44))
    return raw


def _plan_and_preprocess(raw: Path, preprocessed: Path, **kill):
    preprocessed.mkdir(exist_ok=True)
    env = command_env(nnUNet_raw=str(raw), nnUNet_preprocessed=str(preprocessed),
                      nnUNet_results=str(preprocessed.parent / "results"))
    return run_command([console_script("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
                        "--no_pbar"], env, **kill)


def _contents(preprocessed: Path) -> dict:
    """Every final file, decoded (blosc2 arrays, pickled properties) or as bytes."""
    from nnunetv2.utilities.blosc2_storage import load_case
    folder = preprocessed / f"Dataset{DATASET_ID}_{NAME}"
    result = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or is_temporary(p, folder):
            continue
        name = str(p.relative_to(folder))
        if name.endswith("_seg.b2nd"):
            continue  # loaded with its case
        if name.endswith(".b2nd"):
            data, seg, _ = load_case(str(p)[:-len(".b2nd")])
            result[name] = (np.asarray(data), np.asarray(seg))
        elif name.endswith(".pkl"):
            result[name] = repr(pickle.loads(p.read_bytes()))
        else:
            result[name] = p.read_bytes()
    return result


def _kill_and_rerun(raw: Path, root: Path, n_chains: int, kills_per_chain: int) -> None:
    def contents(preprocessed: Path) -> dict:
        found = _contents(preprocessed)
        assert any(k.endswith(".b2nd") for k in found) and "dataset_fingerprint.json" in found
        return found

    kill_chains(lambda folder, resume, **kill: _plan_and_preprocess(raw, folder, **kill), contents, root, n_chains,
                kills_per_chain, "plan_and_preprocess")


def test_plan_and_preprocess_killed_at_a_few_moments(raw_dataset, tmp_path):
    _kill_and_rerun(raw_dataset, tmp_path, n_chains=1, kills_per_chain=1)


@pytest.mark.killtest
def test_plan_and_preprocess_killed_at_many_moments(raw_dataset, tmp_path):
    _kill_and_rerun(raw_dataset, tmp_path, n_chains=5, kills_per_chain=4)
