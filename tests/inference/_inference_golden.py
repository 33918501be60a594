"""Helpers for the inference conformance tests: install a golden model zip safely, compare prediction folders."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

MODELS = {
    'Dataset902_SynthMRRegions': ('3d_fullres', '.nii.gz'),
    'Dataset903_SynthNatural2D': ('2d', '.png'),
}


def safe_extract(zip_path: Path, target: Path) -> None:
    """Extract ``zip_path`` into ``target``, refusing absolute paths and '..' components (path traversal)."""
    target = target.resolve()
    with zipfile.ZipFile(zip_path) as z:
        for member in z.infolist():
            dest = (target / member.filename).resolve()
            if member.filename.startswith('/') or '..' in Path(member.filename).parts or \
                    os.path.commonpath([str(target), str(dest)]) != str(target):
                raise ValueError(f"unsafe member {member.filename!r} in {zip_path}")
        z.extractall(target)


def model_folder(results: Path, dataset: str) -> Path:
    return results / dataset / f"nnUNetTrainer_5epochs__nnUNetPlansTiny__{MODELS[dataset][0]}"


def read_seg(path: Path):
    """(array, geometry) of a segmentation file."""
    if path.suffix == '.png':
        from PIL import Image
        img = Image.open(path)
        return np.asarray(img), (img.mode,)
    import SimpleITK as sitk
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), (img.GetPixelIDTypeAsString(), img.GetSpacing(), img.GetOrigin(),
                                         img.GetDirection())


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def compare_case(ours: Path, ref: Path, case: str, ending: str, with_probabilities: bool = True) -> None:
    seg_a, geo_a = read_seg(ours / f"{case}{ending}")
    seg_b, geo_b = read_seg(ref / f"{case}{ending}")
    assert seg_a.dtype == seg_b.dtype and seg_a.shape == seg_b.shape
    assert int((seg_a != seg_b).sum()) == 0, f"{case}: segmentation differs"
    assert geo_a == geo_b
    if with_probabilities:
        pa = np.load(ours / f"{case}.npz")
        pb = np.load(ref / f"{case}.npz")
        assert list(pa.keys()) == ['probabilities']
        a, b = pa['probabilities'], pb['probabilities']
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        assert float(np.abs(a - b).max()) <= 1e-4
        with open(ours / f"{case}.pkl", 'rb') as f:
            props_a = pickle.load(f)
        with open(ref / f"{case}.pkl", 'rb') as f:
            props_b = pickle.load(f)
        assert _plain(props_a) == _plain(props_b)
