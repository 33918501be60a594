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


# Probabilities of the same model differ between machines, the reference's own included: oneDNN picks its
# convolution blocking, and so the summation order, by the CPU's vector width and the thread count, and the fp16
# logit accumulation turns a last-bit difference at a rounding tie into a whole fp16 step of a logit. Measured: the
# golden files (reference, Zen 3 / AVX2) against the reference rerun on a Zen 4 (AVX-512), and ours there at 1-16
# torch threads: 2-D model max |dp| 9.2e-4, at most 6 of 36864 values per case off by more than 1e-5; 3-D model
# max |dp| 3e-17. On an Intel Xeon (AVX-512 FP16), natively and with torch, oneDNN, MKL and numpy restricted to AVX2
# or to SSE4 (scripts/test_other_cpus.sh): 2-D max |dp| 9.2e-4, 3-D 2.5e-4, at most 0.016% of the values off by
# more than 1e-5. Segmentations identical everywhere. Hence max |dp| <= 5e-3 (5x the largest drift measured) and
# at most 0.1% of the values off by more than 1e-5 (6x the largest share measured), which a real error would exceed.
PROB_ATOL = 5e-3
PROB_MAX_SHARE_ABOVE_1E5 = 1e-3


def assert_probabilities_close(a: np.ndarray, b: np.ndarray) -> None:
    """Probabilities of the same model computed on two machines agree within the measured cross-CPU drift."""
    assert a.shape == b.shape
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    assert float(diff.max()) <= PROB_ATOL, f"max |dp| {float(diff.max()):.3g}"
    share = float((diff > 1e-5).mean())
    assert share <= PROB_MAX_SHARE_ABOVE_1E5, f"{share:.3%} of the values differ by more than 1e-5"


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
        assert_probabilities_close(a, b)
        with open(ours / f"{case}.pkl", 'rb') as f:
            props_a = pickle.load(f)
        with open(ref / f"{case}.pkl", 'rb') as f:
            props_b = pickle.load(f)
        assert _plain(props_a) == _plain(props_b)
