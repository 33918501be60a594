"""Tiny synthetic MSD and nnU-Net v1 tasks, and a snapshot helper to prove that failed conversions change nothing."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

# A 4-D direction whose 3x3 spatial block is a proper rotation (axes permuted, z flipped), so geometry checks bite.
DIRECTION_3X3 = np.array([[0., 1., 0.], [1., 0., 0.], [0., 0., -1.]])
SPACING_4D = (0.5, 0.75, 2.0, 1.0)
ORIGIN_4D = (1.0, -2.0, 3.5, 0.0)


def write_4d(path: Path, array: np.ndarray) -> None:
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing(SPACING_4D)
    image.SetOrigin(ORIGIN_4D)
    direction = np.eye(4)
    direction[:3, :3] = DIRECTION_3X3
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(path))


def write_3d(path: Path, array: np.ndarray, spacing=(0.8, 0.8, 3.0), origin=(10.0, 20.0, -5.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def msd_dataset_json(modalities, n_train, n_test) -> dict:
    return {"name": "Toy", "description": "a toy task", "reference": "nowhere", "licence": "CC-BY-SA 4.0",
            "relase": "1.0 01/01/2020", "tensorImageSize": "4D" if len(modalities) > 1 else "3D",
            "modality": {str(i): m for i, m in enumerate(modalities)},
            "labels": {"0": "background", "1": "edema", "2": "tumour"},
            "numTraining": n_train, "numTest": n_test,
            "training": [{"image": f"./imagesTr/toy_{i:03d}.nii.gz", "label": f"./labelsTr/toy_{i:03d}.nii.gz"}
                         for i in range(n_train)],
            "test": [f"./imagesTs/toy_{i:03d}.nii.gz" for i in range(n_train, n_train + n_test)]}


def make_msd_task(root: Path, folder_name: str = "Task07_Toy", modalities=("FLAIR", "T1w"), n_train: int = 2,
                  n_test: int = 1, seed: int = 0) -> Path:
    """An MSD-style task: 4-D images when there are several modalities, else 3-D; macOS junk files included."""
    rs = np.random.RandomState(seed)
    task = root / folder_name
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    shape = (4, 5, 6)
    for i in range(n_train + n_test):
        sub = "imagesTr" if i < n_train else "imagesTs"
        data = rs.rand(len(modalities), *shape).astype(np.float32)
        if len(modalities) > 1:
            write_4d(task / sub / f"toy_{i:03d}.nii.gz", data)
        else:
            write_3d(task / sub / f"toy_{i:03d}.nii.gz", data[0])
        if i < n_train:
            write_3d(task / "labelsTr" / f"toy_{i:03d}.nii.gz", rs.randint(0, 3, shape).astype(np.uint8))
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub / "._toy_000.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (task / ".DS_Store").write_bytes(b"junk")
    (task / "dataset.json").write_text(json.dumps(msd_dataset_json(modalities, n_train, n_test), indent=4))
    return task


def make_v1_task(root: Path, folder_name: str = "Task005_Prostate", seed: int = 1) -> Path:
    rs = np.random.RandomState(seed)
    task = root / folder_name
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (task / sub).mkdir(parents=True)
    for case, sub, lab in (("pro_000", "imagesTr", "labelsTr"), ("pro_001", "imagesTr", "labelsTr"),
                           ("pro_002", "imagesTs", "labelsTs")):
        for ch in range(2):
            write_3d(task / sub / f"{case}_{ch:04d}.nii.gz", rs.rand(3, 4, 5).astype(np.float32))
        write_3d(task / lab / f"{case}.nii.gz", rs.randint(0, 3, (3, 4, 5)).astype(np.uint8))
    (task / "dataset.json").write_text(json.dumps({
        "name": "PROSTATE", "description": "Prostate transitional zone and peripheral zone segmentation",
        "tensorImageSize": "4D", "reference": "Radboud", "licence": "CC-BY-SA 4.0", "release": "1.0 04/05/2018",
        "modality": {"0": "T2", "1": "ADC"}, "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "numTraining": 2, "numTest": 1,
        "training": [{"image": f"./imagesTr/pro_00{i}.nii.gz", "label": f"./labelsTr/pro_00{i}.nii.gz"}
                     for i in range(2)],
        "test": ["./imagesTs/pro_002.nii.gz"]}, indent=4))
    return task


def snapshot(*roots: Path) -> dict:
    """Every file and folder under ``roots`` (hidden ones included) with the sha256 of its content."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                out[os.path.join(dirpath, d)] = "dir"
            for f in filenames:
                p = os.path.join(dirpath, f)
                out[p] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


@pytest.fixture
def source_root(tmp_path) -> Path:
    d = tmp_path / "downloads"
    d.mkdir()
    return d


@pytest.fixture
def msd_task_factory(source_root):
    """Callable: (folder_name='Task07_Toy', modalities=(...), n_train, n_test) -> Path of a new MSD task."""
    return lambda *args, **kwargs: make_msd_task(source_root, *args, **kwargs)


@pytest.fixture
def v1_task_factory(source_root):
    return lambda *args, **kwargs: make_v1_task(source_root, *args, **kwargs)


@pytest.fixture
def take_snapshot():
    return snapshot


@pytest.fixture
def geometry():
    """The geometry the synthetic 4-D images carry, as (spacing3, origin3, direction3x3 flattened)."""
    return SPACING_4D[:3], ORIGIN_4D[:3], tuple(DIRECTION_3X3.ravel())


@pytest.fixture
def nifti_writers():
    return {"3d": write_3d, "4d": write_4d}
