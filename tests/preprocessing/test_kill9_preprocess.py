"""nnUNetv2_plan_and_preprocess (default worker counts: fingerprint and preprocessing workers) killed at random
moments: SIGKILL of its main process (the workers exit by themselves) or Ctrl-C to the whole process group (status
130, no traceback from any process). Every file under nnUNet_preprocessed loads, and running the command again gives
the fingerprint, plans and preprocessed cases of an uninterrupted run."""
from __future__ import annotations

import pickle
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from _kill9 import (assert_clean_interruption, assert_final_files_load, assert_ran, command_env, console_script,
                    is_temporary, kill_seed, run_command)

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


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name, value in a.items():
        if isinstance(value, tuple):
            for x, y in zip(value, b[name]):
                np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert value == b[name], name


def _kill_and_rerun(raw: Path, root: Path, n_chains: int, kills_per_chain: int) -> None:
    uninterrupted = _plan_and_preprocess(raw, root / "uninterrupted")
    assert_ran(uninterrupted, "plan_and_preprocess")
    expected = _contents(root / "uninterrupted")
    assert any(k.endswith(".b2nd") for k in expected) and "dataset_fingerprint.json" in expected
    rng = random.Random(kill_seed())
    for chain in range(n_chains):
        preprocessed = root / f"killed_{chain}"
        shutil.rmtree(preprocessed, ignore_errors=True)
        for k in range(kills_per_chain):
            at = rng.uniform(0.0, uninterrupted.seconds)
            ctrl_c = rng.random() < 0.3
            outcome = _plan_and_preprocess(raw, preprocessed, kill_at=at,
                                           sig=signal.SIGINT if ctrl_c else signal.SIGKILL, whole_group=ctrl_c)
            where = f"chain {chain}, kill {k} at {at:.1f} s ({'Ctrl-C' if ctrl_c else 'SIGKILL'})"
            if outcome.killed and ctrl_c:
                assert_clean_interruption(outcome, 130)
            assert not outcome.left_behind, f"{where}: processes left behind"
            assert_final_files_load(preprocessed)
        assert_ran(_plan_and_preprocess(raw, preprocessed), f"plan_and_preprocess after chain {chain}")
        _assert_same(_contents(preprocessed), expected)


def test_plan_and_preprocess_killed_at_a_few_moments(raw_dataset, tmp_path):
    _kill_and_rerun(raw_dataset, tmp_path, n_chains=1, kills_per_chain=1)


@pytest.mark.killtest
def test_plan_and_preprocess_killed_at_many_moments(raw_dataset, tmp_path):
    _kill_and_rerun(raw_dataset, tmp_path, n_chains=5, kills_per_chain=4)
