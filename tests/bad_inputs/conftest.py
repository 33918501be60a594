"""A tiny workspace for the bad-input suite: one raw dataset (4 synthetic 3D cases of 8x16x16 voxels), planned and
preprocessed once per session; tests copy what they break. Prediction folders for ensembling/postprocessing are
written directly (a .npz/.pkl per case), so no network is trained here."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from _bad_inputs_helpers import BASE_ID, BASE_NAME, write_prediction_folder



@pytest.fixture(scope="session")
def bad_workspace(tmp_path_factory):
    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                     plan_experiment_dataset, preprocess_dataset)
    base = tmp_path_factory.mktemp("bad_inputs")
    dirs = {n: base / n for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for d in dirs.values():
        d.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for n, d in dirs.items():
            mp.setenv(n, str(d))
        make_synthetic_dataset(str(dirs["nnUNet_raw"]), BASE_ID, "BadBase", kind="3d", num_train=4, num_test=1,
                               shape=(8, 16, 16))
        extract_fingerprint_dataset(BASE_ID, num_processes=1, verbose=False, show_progress_bar=False)
        plan_experiment_dataset(BASE_ID)
        preprocess_dataset(BASE_ID, configurations=["3d_fullres"], num_processes=1, show_progress_bar=False)
    return SimpleNamespace(base=base, raw=dirs["nnUNet_raw"], preprocessed=dirs["nnUNet_preprocessed"],
                           results=dirs["nnUNet_results"], dataset=dirs["nnUNet_raw"] / BASE_NAME)


@pytest.fixture
def bad_env(bad_workspace, monkeypatch):
    """The session workspace's folders in the environment (tests that need fresh ones make their own)."""
    for n in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(n, str(getattr(bad_workspace, n.split("_")[1])))
    for v in ("nnUNet_raw_data_base", "RESULTS_FOLDER", "nnUNet_extTrainer"):
        monkeypatch.delenv(v, raising=False)
    return bad_workspace


_counter = [0]


@pytest.fixture
def clone_dataset(bad_env):
    """clone_dataset() -> (dataset id, raw folder) of a fresh copy of the base raw dataset (removed afterwards)."""
    made = []

    def clone():
        _counter[0] += 1
        dataset_id = 800 + _counter[0]
        dst = bad_env.raw / f"Dataset{dataset_id}_Bad{_counter[0]}"
        shutil.copytree(bad_env.dataset, dst, symlinks=True)
        made.append(dst)
        return dataset_id, dst

    yield clone
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(bad_env.preprocessed / d.name, ignore_errors=True)


@pytest.fixture
def prediction_folders(tmp_path):
    """Two prediction folders of the same cases (as two models would write them) and a ground-truth folder."""
    a = write_prediction_folder(tmp_path / "pred_a", 0)
    b = write_prediction_folder(tmp_path / "pred_b", 1)
    gt = tmp_path / "labelsTs"
    gt.mkdir()
    for c in ("c0", "c1"):
        shutil.copy(a / f"{c}.nii.gz", gt / f"{c}.nii.gz")
    return SimpleNamespace(a=a, b=b, gt=gt)


@pytest.fixture
def keep_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def all_files(root: Path):
    return sorted(p for p in Path(root).rglob("*") if p.is_file() or p.is_symlink())


def rmtree(path) -> None:
    if os.path.lexists(path):
        shutil.rmtree(path)
