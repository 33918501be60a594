"""A tiny workspace for the bad-input suite: one raw dataset (4 synthetic 3D cases of 8x16x16 voxels), planned and
preprocessed once per session; tests copy what they break. Prediction folders for ensembling/postprocessing are
written directly (a .npz/.pkl per case), so no network is trained here."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BASE_ID = 771
BASE_NAME = "Dataset771_BadBase"


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


PLANS = {"dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "label_manager": "LabelManager", "configurations": {}, "transpose_forward": [0, 1, 2],
         "transpose_backward": [0, 1, 2]}
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 1,
                "file_ending": ".nii.gz"}
PROPS = {"sitk_stuff": {"spacing": (1.0, 1.0, 2.0), "origin": (0.0, 0.0, 0.0),
                        "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, "spacing": [2.0, 1.0, 1.0]}


def write_prediction_folder(folder: Path, seed: int, cases=("c0", "c1"), segmentations: bool = True) -> Path:
    """What ``nnUNetv2_predict --save_probabilities`` leaves: .npz + .pkl (+ segmentation) per case, plans.json,
    dataset.json and the predictor's marker file."""
    import SimpleITK as sitk
    folder.mkdir(parents=True)
    rs = np.random.RandomState(seed)
    for c in cases:
        p = rs.rand(3, 4, 5, 6).astype(np.float32)
        p /= p.sum(0, keepdims=True)
        np.savez_compressed(folder / f"{c}.npz", probabilities=p)
        (folder / f"{c}.pkl").write_bytes(pickle.dumps(PROPS))
        if segmentations:
            img = sitk.GetImageFromArray(p.argmax(0).astype(np.uint8))
            img.SetSpacing(PROPS["sitk_stuff"]["spacing"])
            sitk.WriteImage(img, str(folder / f"{c}.nii.gz"))
    (folder / "plans.json").write_text(json.dumps(PLANS))
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    (folder / "predict_from_raw_data_args.json").write_text("{}")
    return folder


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


def pp_pickle(path: Path) -> Path:
    from nnunetv2.postprocessing.remove_connected_components import \
        remove_all_but_largest_component_from_segmentation as fn
    path.write_bytes(pickle.dumps(([fn], [{"labels_or_regions": [1, 2]}])))
    return path


@pytest.fixture
def keep_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def all_files(root: Path):
    return sorted(p for p in Path(root).rglob("*") if p.is_file() or p.is_symlink())


def rmtree(path) -> None:
    if os.path.lexists(path):
        shutil.rmtree(path)
