"""Small deterministic raw datasets for the quick-start demo and the tests (no download needed).

``make_synthetic_dataset`` writes ``<raw_root>/DatasetXXX_Name`` in the nnU-Net v2 raw format: 3D NIfTI volumes
with anisotropic spacing, a non-zero origin and a non-identity direction (``kind='3d'``), or RGB PNG images
(``kind='2d'``). Foreground objects are bright ellipsoids (label 1) with a darker core (label 2).
"""
from __future__ import annotations

import os
from typing import Sequence, Tuple

import numpy as np

from nnunetv2.file_io import maybe_mkdir_p, save_json

_DIRECTION_3D = (0.0, 1.0, 0.0,
                 -1.0, 0.0, 0.0,
                 0.0, 0.0, 1.0)


def _objects(rng: np.random.RandomState, shape: Sequence[int], max_objects: int = 2,
             radius: Tuple[float, float] = (0.12, 0.22), core: float = 0.35) -> np.ndarray:
    """Label map with 1..max_objects ellipsoids (1) each with a core (2).

    Radii are drawn as fractions ``radius`` of the image size per axis; a voxel is core where its normalised
    squared distance from the centre is at most ``core`` (0.35: core radii about 0.6 of the ellipsoid's).
    """
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    seg = np.zeros(shape, dtype=np.uint8)
    for _ in range(rng.randint(1, max_objects + 1)):
        center = [rng.uniform(0.3 * s, 0.7 * s) for s in shape]
        radii = [rng.uniform(radius[0] * s, radius[1] * s) for s in shape]
        dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))
        seg[dist <= 1] = 1
        seg[dist <= core] = 2
    return seg


def _image_from_seg(rng: np.random.RandomState, seg: np.ndarray, offset: float,
                    intensities: Tuple[float, float, float] = (0.0, 100.0, 60.0), noise: float = 15.0) -> np.ndarray:
    means = np.array([offset + i for i in intensities], dtype=np.float32)
    return (means[seg] + rng.normal(0, noise, seg.shape)).astype(np.float32)


def make_synthetic_dataset(raw_root: str, dataset_id: int = 999, name: str = "Demo", kind: str = "3d",
                           num_train: int = 8, num_test: int = 2, num_channels: int = 1,
                           shape: Tuple[int, ...] = (20, 40, 36), seed: int = 1234, *, max_objects: int = 2,
                           radius: Tuple[float, float] = (0.12, 0.22), core: float = 0.35,
                           intensities: Tuple[float, float, float] = (0.0, 100.0, 60.0),
                           noise: float = 15.0, file_ending: str = ".nii.gz") -> str:
    """Write a synthetic dataset and return its folder.

    The keyword-only arguments shape the objects (see ``_objects``) and their mean intensities (background,
    label 1, label 2) plus Gaussian noise; the defaults give the dataset the tests were written against.
    ``file_ending`` (3D only): ``.nii.gz`` (SimpleITK) or ``.tif`` (tifffile, spacing in ``CASE.json`` side-cars,
    read with Tiff3DIO), for environments without SimpleITK.
    """
    shape_kw = dict(max_objects=max_objects, radius=radius, core=core)
    image_kw = dict(intensities=intensities, noise=noise)
    if kind not in ("3d", "2d"):
        raise ValueError(f"kind must be '3d' or '2d', not {kind!r}")
    if file_ending not in (".nii.gz", ".tif"):
        raise ValueError(f"file_ending must be '.nii.gz' or '.tif', not {file_ending!r}")
    folder = os.path.join(raw_root, f"Dataset{dataset_id:03d}_{name}")
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        maybe_mkdir_p(os.path.join(folder, sub))
    ending = file_ending if kind == "3d" else ".png"
    write_3d = _write_nifti if ending == ".nii.gz" else _write_tif
    for i in range(num_train + num_test):
        rng = np.random.RandomState([seed, i])
        split = "Tr" if i < num_train else "Ts"
        case = f"case_{i:03d}"
        if kind == "3d":
            seg = _objects(rng, shape, **shape_kw)
            spacing_xyz = (0.8 + 0.05 * rng.rand(), 0.8 + 0.05 * rng.rand(), 3.0)
            origin = (-10.0 * rng.rand(), 5.0, 12.5)
            for c in range(num_channels):
                write_3d(_image_from_seg(rng, seg, 50.0 * c, **image_kw),
                         os.path.join(folder, f"images{split}", f"{case}_{c:04d}{ending}"), spacing_xyz, origin)
            write_3d(seg, os.path.join(folder, f"labels{split}", f"{case}{ending}"), spacing_xyz, origin)
            if ending == ".tif":  # spacing in array axis order, one side-car for all channels and one for the label
                for sub in ("images", "labels"):
                    save_json({"spacing": [float(s) for s in reversed(spacing_xyz)]},
                              os.path.join(folder, f"{sub}{split}", f"{case}.json"))
        else:
            seg = _objects(rng, shape[-2:], **shape_kw)
            rgb = np.stack([np.clip(_image_from_seg(rng, seg, 40.0 * c, **image_kw), 0, 255) for c in range(3)], -1)
            _write_png(rgb.astype(np.uint8), os.path.join(folder, f"images{split}", f"{case}_0000.png"))
            _write_png(seg, os.path.join(folder, f"labels{split}", f"{case}.png"))
    channel_names = {str(c): ("CT" if c == 0 else f"channel{c}") for c in range(num_channels)} \
        if kind == "3d" else {"0": "R", "1": "G", "2": "B"}
    dataset_json = {
        "channel_names": channel_names,
        "labels": {"background": 0, "object": 1, "core": 2},
        "numTraining": num_train,
        "file_ending": ending,
        "name": name,
        "description": "Synthetic nnU-Net v2 demo dataset",
    }
    if ending == ".tif":  # .tif alone would also match the 2D natural-image reader
        dataset_json["overwrite_image_reader_writer"] = "Tiff3DIO"
    save_json(dataset_json, os.path.join(folder, "dataset.json"), sort_keys=False)
    return folder


def _write_nifti(array_zyx: np.ndarray, path: str, spacing_xyz, origin) -> None:
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(tuple(float(s) for s in spacing_xyz))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(_DIRECTION_3D)
    sitk.WriteImage(img, path, True)


def _write_tif(array_zyx: np.ndarray, path: str, spacing_xyz, origin) -> None:
    import tifffile
    tifffile.imwrite(path, array_zyx)  # no geometry in the file: the caller writes the spacing side-car


def _write_png(array: np.ndarray, path: str) -> None:
    from PIL import Image
    Image.fromarray(array).save(path)


if __name__ == "__main__":  # pragma: no cover
    import argparse
    p = argparse.ArgumentParser(description="Write a small synthetic nnU-Net v2 raw dataset.")
    p.add_argument("raw_root")
    p.add_argument("--id", type=int, default=999)
    p.add_argument("--kind", choices=("3d", "2d"), default="3d")
    a = p.parse_args()
    print(make_synthetic_dataset(a.raw_root, a.id, kind=a.kind))
