"""Differential trial, not a speed benchmark: do our image readers/writers read and write what the reference's
(2.8.1) do, for random files?

    python benchmarks/imageio_fuzz.py [--cases 1000] [--msd 10] [--seed 0] [--reference-python PATH] [--keep]

The files are drawn from seeded generators and written once, before either side runs: 2-D and 3-D images (single
slices included) of 1-3 channel files per case and a label file, voxel types uint8 ... float64, random spacings,
origins and directions (axis permutations, flips, oblique rotations), as .nii.gz/.nii/.mha/.nrrd through SimpleITK,
as .nii/.nii.gz through nibabel with random qform/sform affines and codes (sometimes scaled data, sometimes 4-D,
sometimes big-endian), as .png (grey 8/16-bit, RGB, RGBA, grey+alpha, palette, 1-bit) or .bmp, and as .tif
volumes and 2-D .tif (some big-endian) with or without the spacing side-car json; float voxels sometimes hold NaN
and infinities. Some cases get channel files that disagree (shape, spacing, origin).

Each case names one reader/writer (SimpleITKIO, SimpleITKIOWithReorient, NibabelIO, NibabelIOWithReorient,
Tiff3DIO, NaturalImage2DIO). Each side runs, per case, in one process: ``read_images`` on the channel files,
``read_seg`` on the label file (file names sometimes as ``pathlib.Path``), ``write_seg`` of that label (in a random
integer or float type, sometimes with a label of 300, 65535, 70000 or -1) with its properties or those of the
images, ``read_seg`` of the written file, and ``determine_reader_writer_from_file_ending`` /
``determine_reader_writer_from_dataset_json`` (the files' ending, in capitals or another one; with or without an
example file, ``allow_nonmatching_filename`` and an ``overwrite_image_reader_writer``, also an unknown one).
Arrays are compared exactly with their dtype and shape, properties value for value and by type (float vs numpy
float64), the written files by content: NIfTI header fields and uncompressed bytes, SimpleITK's geometry, pixel type
and metadata of .mha/.nrrd, pixels and bytes of .png/.bmp/.tif, the .tif spacing side-car, and which files were
written. A step that both sides refuse agrees; our refusals are checked to be one-line UserErrors (printed as NOTE
otherwise). Documented differences are taken out step by step and listed as BY DESIGN.

It also converts ``--msd`` tiny random Medical Segmentation Decathlon task folders (4-D and 3-D images,
an MSD ``dataset.json``) with ``convert_msd_dataset`` and compares the produced datasets file by file.
Exit status 1 if anything differs.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, run_both, trial_arguments, work_folder  # noqa: E402

READERS = ["SimpleITKIO", "SimpleITKIOWithReorient", "NibabelIO", "NibabelIOWithReorient", "Tiff3DIO",
           "NaturalImage2DIO"]
INT_TYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]
ALL_TYPES = INT_TYPES + ["float32", "float64"]


# ----------------------------------------------------------------------------------------------------- drawing files

def _direction(rng, dim: int):
    """An orthonormal direction matrix: identity, a signed axis permutation or an oblique rotation."""
    import numpy as np
    kind = rng.choice(["identity", "permutation", "permutation", "oblique"])
    if kind == "identity":
        return np.eye(dim)
    if kind == "permutation":
        m = np.eye(dim)[rng.permutation(dim)]
        return m * rng.choice([-1, 1], size=dim)[None]
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))[None]


def _voxels(rng, shape, dtype: str):
    import numpy as np
    if dtype.startswith("float"):
        return (rng.normal(0, 100, shape) * rng.choice([1, 1e-3, 1e4])).astype(dtype)
    if dtype.startswith("float") and rng.random() < 0.1:  # NaN and infinities must come through as they are
        arr = rng.normal(0, 100, shape).astype(dtype)
        arr.flat[rng.integers(0, arr.size, 3)] = [np.nan, np.inf, -np.inf]
        return arr
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -5000), min(info.max, 70000)
    if rng.random() < 0.2:  # the type's extremes (values float32 cannot hold for the wide types)
        lo, hi = info.min, info.max
    return rng.integers(lo, hi, shape, endpoint=True, dtype=dtype)


def _labels(rng, shape, dtype: str):
    import numpy as np
    seg = rng.integers(0, int(rng.integers(1, 5)), shape)
    return seg.astype(dtype if dtype != "bool" else np.uint8)


def _shape(rng, dim: int):
    shape = [int(rng.integers(1, 9)) if rng.random() < 0.8 else 1 for _ in range(dim)]
    if rng.random() < 0.25:
        shape[int(rng.integers(0, dim))] = 1  # a single slice (or row)
    return shape


def _write_sitk_case(rng, folder: str, name: str, n_channels: int) -> dict:
    import numpy as np
    import SimpleITK as sitk
    ending = str(rng.choice([".nii.gz", ".nii.gz", ".nii", ".mha", ".nrrd"]))
    dim = int(rng.choice([2, 3, 3, 3, 4])) if ending in (".nii.gz", ".nii") else int(rng.choice([2, 3, 3]))
    shape = _shape(rng, dim)
    spacing = [float(v) for v in rng.uniform(0.2, 5, dim)]
    origin = [float(v) for v in rng.uniform(-200, 200, dim)]
    direction = _direction(rng, dim)
    dtype = str(rng.choice(ALL_TYPES))

    def write(arr, path, sp, og):
        if arr.ndim == 4:  # GetImageFromArray would take the last axis for a vector's components
            img = sitk.JoinSeries([sitk.GetImageFromArray(volume) for volume in arr])
        else:
            img = sitk.GetImageFromArray(arr)
        img.SetSpacing(sp)
        img.SetOrigin(og)
        img.SetDirection(direction.flatten().tolist())
        sitk.WriteImage(img, path)

    images = []
    for c in range(n_channels):
        sh, sp, og = list(shape), list(spacing), list(origin)
        if c > 0 and rng.random() < 0.1:
            odd = rng.choice(["shape", "spacing", "origin"])
            if odd == "shape":
                sh[0] += 1
            elif odd == "spacing":
                sp[0] *= 1.5
            else:
                og[0] += 3
        path = os.path.join(folder, f"{name}_{c:04d}{ending}")
        write(_voxels(rng, sh[::-1], dtype), path, sp, og)
        images.append(path)
    seg = os.path.join(folder, f"{name}{ending}")
    write(_labels(rng, shape[::-1], str(rng.choice(["uint8", "int16", "uint16", "float32"]))), seg, spacing, origin)
    reader = str(rng.choice(["SimpleITKIO", "SimpleITKIO", "SimpleITKIOWithReorient"]
                            + (["NibabelIO", "NibabelIOWithReorient"] if ending in (".nii", ".nii.gz") else [])))
    return {"kind": f"sitk{dim}d{ending}", "ending": ending, "images": images, "seg": seg, "reader": reader,
            "info": f"{dtype} {shape}"}


def _affine(rng, spacing):
    import numpy as np
    a = np.eye(4)
    a[:3, :3] = _direction(rng, 3) * np.asarray(spacing)[None]
    if rng.random() < 0.05:
        a[0, 1] += 0.3  # sheared: not a rotation
    a[:3, 3] = rng.uniform(-150, 150, 3)
    return a


def _write_nibabel_case(rng, folder: str, name: str, n_channels: int) -> dict:
    import nibabel
    import numpy as np
    ending = str(rng.choice([".nii.gz", ".nii"]))
    four_d = rng.random() < 0.08
    shape = _shape(rng, 3) + ([int(rng.integers(2, 4))] if four_d else [])
    spacing = [float(v) for v in rng.uniform(0.2, 5, 3)]
    qform, sform = _affine(rng, spacing), _affine(rng, spacing)
    if rng.random() < 0.5:
        sform = qform
    qcode, scode = int(rng.choice([0, 1, 1, 2, 3, 4])), int(rng.choice([0, 1, 1, 2, 4]))
    dtype = str(rng.choice(ALL_TYPES))
    scaled = rng.random() < 0.15
    big_endian = rng.random() < 0.1

    def write(arr, path):
        if big_endian:
            arr = arr.astype(arr.dtype.newbyteorder(">"))
        img = nibabel.Nifti1Image(arr, None, dtype=arr.dtype)
        img.set_qform(qform, code=qcode)
        img.set_sform(sform, code=scode)
        if scaled:
            img.header.set_slope_inter(float(rng.choice([0.5, 2.0, 1.0])), float(rng.choice([0.0, -10.0, 3.5])))
        nibabel.save(img, path)

    images = []
    for c in range(n_channels):
        sh = list(shape)
        if c > 0 and rng.random() < 0.08:
            sh[0] += 1
        path = os.path.join(folder, f"{name}_{c:04d}{ending}")
        write(_voxels(rng, sh, dtype), path)
        images.append(path)
    seg = os.path.join(folder, f"{name}{ending}")
    scaled = False
    write(_labels(rng, shape, str(rng.choice(["uint8", "int16", "float32"]))), seg)
    reader = str(rng.choice(["NibabelIO", "NibabelIOWithReorient", "SimpleITKIO", "SimpleITKIOWithReorient"]))
    kind = f"nibabel{'4d' if four_d else ''}{ending} q{qcode}s{scode}{' big-endian' if big_endian else ''}"
    return {"kind": kind, "ending": ending, "images": images,
            "seg": seg, "reader": reader, "info": f"{dtype} {shape}"}


def _write_png_case(rng, folder: str, name: str, n_channels: int) -> dict:
    import numpy as np
    from skimage import io
    shape = [int(rng.integers(1, 12)), int(rng.integers(1, 12))]
    images = []
    from PIL import Image
    ending = ".bmp" if rng.random() < 0.1 else ".png"
    for c in range(n_channels):
        mode = rng.choice(["grey", "grey", "grey", "rgb", "rgb", "rgba", "grey+alpha", "palette", "1-bit"])
        dtype = "uint16" if mode == "grey" and ending == ".png" and rng.random() < 0.3 else "uint8"
        sh = shape + ([3] if mode == "rgb" else [4] if mode == "rgba" else [2] if mode == "grey+alpha" else [])
        if c > 0 and rng.random() < 0.08:
            sh[0] += 1
        path = os.path.join(folder, f"{name}_{c:04d}{ending}")
        arr = _voxels(rng, sh, dtype).astype(dtype)
        if mode in ("palette", "1-bit") or (ending == ".bmp" and mode in ("grey+alpha", "rgba")):
            # PIL's own modes: a colour table of 256 entries, one bit per pixel; BMP without alpha
            img = Image.fromarray(arr if arr.ndim == 2 else arr[..., 0])
            img = img.convert("P" if mode == "palette" else "1" if mode == "1-bit" else "L")
            img.save(path)
        elif ending == ".bmp":
            Image.fromarray(arr.astype("uint8")).save(path)
        else:
            io.imsave(path, arr, check_contrast=False)
        images.append(path)
    seg = os.path.join(folder, f"{name}{ending}")
    Image.fromarray(_labels(rng, shape, "uint8")).save(seg)
    return {"kind": ending[1:], "ending": ending, "images": images, "seg": seg, "reader": "NaturalImage2DIO",
            "info": f"{shape}"}


def _write_tif_case(rng, folder: str, name: str, n_channels: int) -> dict:
    import numpy as np
    import tifffile
    ending = str(rng.choice([".tif", ".tif", ".tiff"]))
    two_d = rng.random() < 0.25
    shape = _shape(rng, 2 if two_d else 3)
    dtype = str(rng.choice(ALL_TYPES if not two_d else ["uint8", "uint16", "float32"]))
    big_endian = rng.random() < 0.1
    images = []
    for c in range(n_channels):
        sh = list(shape)
        if c > 0 and rng.random() < 0.08:
            sh[0] += 1
        path = os.path.join(folder, f"{name}_{c:04d}{ending}")
        tifffile.imwrite(path, _voxels(rng, sh, dtype), byteorder=">" if big_endian else "<")
        images.append(path)
    seg = os.path.join(folder, f"{name}{ending}")
    tifffile.imwrite(seg, _labels(rng, shape, str(rng.choice(["uint8", "uint16"]))))
    spacing = [float(v) for v in rng.uniform(0.2, 5, 3)]
    if rng.random() < 0.7:  # the side-car shared by the case's channel files; the label's own
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump({"spacing": spacing}, f)
    # mostly the reader meant for the file; the other one must refuse (or read) it alike
    reader = str(rng.choice(["NaturalImage2DIO", "NaturalImage2DIO", "Tiff3DIO"] if two_d else
                            ["Tiff3DIO", "Tiff3DIO", "NaturalImage2DIO"]))
    return {"kind": f"tif{'2d' if two_d else '3d'}{ending}", "ending": ending, "images": images, "seg": seg,
            "reader": reader, "info": f"{dtype} {shape}"}


def _write_case(folder: str, index: int, seed: int) -> dict:
    import numpy as np
    rng = np.random.default_rng(seed)
    case_folder = os.path.join(folder, f"case{index:04d}")
    os.makedirs(case_folder)
    n_channels = int(rng.choice([1, 1, 2, 3]))
    kind = rng.choice(["sitk", "sitk", "nibabel", "nibabel", "png", "tif"])
    writer = {"sitk": _write_sitk_case, "nibabel": _write_nibabel_case, "png": _write_png_case,
              "tif": _write_tif_case}[kind]
    case = writer(rng, case_folder, "c", n_channels)
    case["seg_dtype"] = str(rng.choice(["float32", "uint8", "int16", "int64", "float64"]))
    # a label above 255 must make the writers choose uint16; the reference's SimpleITKIOWithReorient writes uint8
    # (documented difference), so it does not get one
    case["big_label"] = int(rng.choice([300, 300, 65535, 70000, -1])) if (
        rng.random() < 0.2 and case["reader"] != "SimpleITKIOWithReorient") else 0
    case["image_props"] = bool(rng.random() < 0.3)  # write with read_images' properties instead of read_seg's
    case["pathlib"] = bool(rng.random() < 0.15)
    # the ending handed to the automatic choice: mostly the files' own, sometimes another case or another one
    case["asked_ending"] = str(rng.choice([case["ending"]] * 6 + [case["ending"].upper(), ".png", ".nii.gz",
                                                                  ".tif", ".nrrd", ".jpg", ".npy"]))
    case["allow_nonmatching"] = bool(rng.random() < 0.4)
    case["overwrite"] = str(rng.choice(["", "", "", *READERS, "NoSuchReaderWriter", "None"]))
    case["example"] = bool(rng.random() < 0.8)
    return case


def _write_msd_task(folder: str, index: int, seed: int) -> dict:
    """A tiny MSD task folder: 4-D (or, with one modality, sometimes 3-D) images, 3-D labels, an MSD dataset.json,
    and the hidden ``._`` files the MSD archives carry; sometimes without imagesTs/ or with a dataset.json that
    names more or fewer modalities than the images hold."""
    import numpy as np
    import SimpleITK as sitk
    rng = np.random.default_rng(seed)
    name = str(rng.choice(["Heart", "Prostate", "Lung", "Spleen"]))
    task = os.path.join(folder, f"Task{index + 1:02d}_{name}")
    n_mod = int(rng.choice([1, 1, 2, 3]))
    four_d = n_mod > 1 or rng.random() < 0.5
    shape = _shape(rng, 3)
    spacing = [float(v) for v in rng.uniform(0.3, 5, 3)]
    origin = [float(v) for v in rng.uniform(-100, 100, 3)]
    direction = _direction(rng, 3)
    dtype = str(rng.choice(["int16", "float32", "uint8", "float64"]))

    def image(arr, with_time: bool):
        if with_time:  # ITK's 4th axis is the modality; its spacing, origin and direction entries are arbitrary
            img = sitk.JoinSeries([sitk.GetImageFromArray(v) for v in arr])
            d4 = np.eye(4)
            d4[:3, :3] = direction
            img.SetSpacing(spacing + [float(rng.uniform(0.5, 3))])
            img.SetOrigin(origin + [float(rng.uniform(-5, 5))])
            img.SetDirection(d4.flatten().tolist())
        else:
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing(spacing)
            img.SetOrigin(origin)
            img.SetDirection(direction.flatten().tolist())
        return img

    training, test = [], []
    no_test_folder = rng.random() < 0.1
    for sub in ("imagesTr", "labelsTr") + (() if no_test_folder else ("imagesTs",)):
        os.makedirs(os.path.join(task, sub))
    for i in range(int(rng.integers(1, 4))):
        case = f"{name.lower()}_{i:03d}.nii.gz"
        arr = _voxels(rng, [n_mod] + shape[::-1] if four_d else shape[::-1], dtype)
        sitk.WriteImage(image(arr, four_d), os.path.join(task, "imagesTr", case))
        sitk.WriteImage(image(_labels(rng, shape[::-1], "uint8"), False), os.path.join(task, "labelsTr", case))
        training.append({"image": f"./imagesTr/{case}", "label": f"./labelsTr/{case}"})
    for i in range(0 if no_test_folder else int(rng.integers(0, 3))):
        case = f"{name.lower()}_{100 + i:03d}.nii.gz"
        arr = _voxels(rng, [n_mod] + shape[::-1] if four_d else shape[::-1], dtype)
        sitk.WriteImage(image(arr, four_d), os.path.join(task, "imagesTs", case))
        test.append(f"./imagesTs/{case}")
    if rng.random() < 0.5:
        for sub in ("imagesTr", "labelsTr"):
            with open(os.path.join(task, sub, f"._{name.lower()}_000.nii.gz"), "wb") as f:
                f.write(b"\x00\x05\x16\x07 mac metadata")
    modalities = ["MRI", "T2", "ADC", "CT", "FLAIR"]
    if rng.random() < 0.1:  # dataset.json names another number of modalities than the images hold
        n_mod = n_mod + 1 if rng.random() < 0.5 or n_mod == 1 else n_mod - 1
    n_labels = int(rng.integers(1, 4))
    with open(os.path.join(task, "dataset.json"), "w") as f:
        json.dump({"name": name, "description": "random", "reference": "none", "licence": "CC-BY-SA 4.0",
                   "release": "1.0 04/05/2018", "tensorImageSize": "4D" if four_d else "3D",
                   "modality": {str(m): modalities[m] for m in range(n_mod)},
                   "labels": {"0": "background", **{str(l): f"label{l}" for l in range(1, n_labels + 1)}},
                   "numTraining": len(training), "numTest": len(test), "training": training, "test": test},
                  f, indent=int(rng.choice([2, 4])))
    return {"task": task, "overwrite_id": int(500 + index) if rng.random() < 0.3 else None}


def write_msd_cases(base: str, n: int, seed: int) -> None:
    tasks = [_write_msd_task(os.path.join(base, "msd"), i, seed * 100003 + 50000 + i) for i in range(n)]
    with open(os.path.join(base, "msd_tasks.json"), "w") as f:
        json.dump(tasks, f)


def run_msd_case(base: str, index: int, out_root: str) -> dict:
    """Convert one task into this side's nnUNet_raw and describe every file of the dataset it made."""
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset
    with open(os.path.join(base, "msd_tasks.json")) as f:
        task = json.load(f)[index]
    raw = os.environ["nnUNet_raw"]
    before = set(os.listdir(raw)) if os.path.isdir(raw) else set()
    convert_msd_dataset(task["task"], task["overwrite_id"], num_processes=1)
    made = sorted(set(os.listdir(raw)) - before)
    files = {}
    for dataset in made:
        for root, _, names in os.walk(os.path.join(raw, dataset)):
            for n in names:
                path = os.path.join(root, n)
                files[os.path.relpath(path, raw)] = _describe_file(path)
    return {"datasets": made, "files": files}


# ----------------------------------------------------------------------------------------------- the driver (a side)

def _types(obj):
    """The types inside a properties dict, so that float and numpy.float64 (or tuple and list) count as different."""
    import numpy as np
    if isinstance(obj, dict):
        return {k: _types(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [type(obj).__name__, [_types(v) for v in obj]]
    if isinstance(obj, np.ndarray):
        return f"ndarray[{obj.dtype}]"
    return type(obj).__name__


def _describe_file(path: str) -> dict:
    """What a written file holds, read with the libraries both sides share."""
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith((".nii", ".nii.gz")):
        import nibabel
        img = nibabel.load(path)
        body = gzip.decompress(raw) if path.endswith(".gz") else raw
        return {"header": {k: np.asarray(v) for k, v in img.header.items()},
                "voxels": np.asanyarray(img.dataobj), "bytes": hashlib.sha256(body).hexdigest()}
    if path.endswith((".mha", ".nrrd")):
        import SimpleITK as sitk
        img = sitk.ReadImage(path)
        return {"pixel": img.GetPixelIDTypeAsString(), "size": img.GetSize(), "spacing": img.GetSpacing(),
                "origin": img.GetOrigin(), "direction": img.GetDirection(),
                "meta": {k: img.GetMetaData(k) for k in img.GetMetaDataKeys()},
                "voxels": sitk.GetArrayFromImage(img), "bytes": hashlib.sha256(raw).hexdigest()}
    if path.endswith((".tif", ".tiff")):
        import tifffile
        return {"voxels": tifffile.imread(path), "bytes": hashlib.sha256(raw).hexdigest()}
    if path.endswith(".json"):
        return {"text": raw.decode()}
    from skimage import io
    return {"voxels": io.imread(path), "bytes": hashlib.sha256(raw).hexdigest()}


def _step(fn) -> dict:
    """One step's result, or that it was refused (the message is set aside before the comparison: the sides word
    refusals differently)."""
    try:
        out = fn()
        out["refused"] = False
        return out
    except Exception as e:
        return {"refused": True, "why": f"{type(e).__name__}: {e}"}


def _run_case(case: dict, out_folder: str) -> dict:
    import numpy as np
    from nnunetv2.imageio.reader_writer_registry import (determine_reader_writer_from_dataset_json,
                                                         determine_reader_writer_from_file_ending,
                                                         recursive_find_reader_writer_by_name)
    result: dict = {}
    try:
        cls = recursive_find_reader_writer_by_name(case["reader"])
    except Exception as e:
        return {"missing_class": True, "why": [f"{type(e).__name__}: {e}"]}
    rw = cls()
    state = {}
    name = (lambda f: __import__("pathlib").Path(f)) if case["pathlib"] else str

    def read_images():
        arr, props = rw.read_images([name(f) for f in case["images"]])
        state["image_props"] = props
        return {"array": arr, "props": props, "types": _types(props)}
    result["read_images"] = _step(read_images)

    def read_seg():
        seg, props = rw.read_seg(name(case["seg"]))
        state["seg"], state["props"] = seg, props
        return {"array": seg, "props": props, "types": _types(props)}
    result["read_seg"] = _step(read_seg)

    def write_and_reread():
        seg = state["seg"]
        if seg.ndim == 4:
            seg = seg[0]
        seg = np.array(seg, dtype=case["seg_dtype"])
        if case["big_label"] and seg.size:
            seg = seg.astype(np.int64)
            seg.flat[0] = case["big_label"]
            seg = seg.astype(case["seg_dtype"] if case["big_label"] > 0 and case["seg_dtype"] != "int16" else np.int64)
        target = os.path.join(out_folder, os.path.basename(os.path.dirname(case["seg"])) + case["ending"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        before = set(os.listdir(out_folder))
        rw.write_seg(seg, target, state["image_props"] if case["image_props"] else state["props"])
        written = sorted(set(os.listdir(out_folder)) - before)
        out = {"written": written, "files": {n: _describe_file(os.path.join(out_folder, n)) for n in written}}
        back, props = rw.read_seg(target)
        out.update(reread=back, reread_props=props)
        return out
    if "seg" in state and ("image_props" in state or not case["image_props"]):
        result["write_seg"] = _step(write_and_reread)
    example = case["images"][0] if case["example"] else None
    result["from_ending"] = _step(lambda: {"class": determine_reader_writer_from_file_ending(
        case["asked_ending"], example, case["allow_nonmatching"], verbose=False).__name__})
    dataset_json = {"file_ending": case["asked_ending"]}
    if case["overwrite"]:
        dataset_json["overwrite_image_reader_writer"] = case["overwrite"]
    result["from_dataset_json"] = _step(lambda: {"class": determine_reader_writer_from_dataset_json(
        dataset_json, example, case["allow_nonmatching"], verbose=False).__name__})
    return result


def drive(base: str, n_cases: int, result_file: str) -> None:
    from _fuzz_harness import drive_cases
    with open(os.path.join(base, "cases.json")) as f:
        cases = json.load(f)
    out_root = os.path.join(base, os.environ["IMAGEIO_FUZZ_OUT"])
    os.makedirs(out_root)

    def compute(i):
        if i >= len(cases):
            return run_msd_case(base, i - len(cases), out_root)
        out = os.path.join(out_root, f"case{i:04d}")
        os.makedirs(out)
        return _run_case(cases[i], out)
    drive_cases(list(range(n_cases)), compute, result_file, time_limit_s=60)


# ------------------------------------------------------------------------------------------------------ comparison

def _set_aside_refusals(side: dict) -> dict:
    """Take the refusal messages out of the comparison: {case: {step: message}}."""
    whys = {}
    for k, o in side["outcomes"].items():
        o.pop("why", None)
        whys[k] = {step: v.pop("why") for step, v in o.items() if isinstance(v, dict) and "why" in v}
    return whys


def _by_design(ref: dict, ours: dict, ref_whys: dict, ours_whys: dict):
    """Why a case differs on purpose (documentation/differences_from_reference.md), or None. Steps that differ by
    design are taken out of both outcomes (with the write step that depends on them), the rest is still compared."""
    import numpy as np
    reasons = []

    def drop(step, reason):
        for side in (ref, ours):
            side.pop(step, None)
            if step in ("read_seg", "read_images"):
                side.pop("write_seg", None)
        reasons.append(reason)
    r, o = ref.get("read_seg", {}), ours.get("read_seg", {})
    if not r.get("refused", True) and not o.get("refused", True):
        a, b = r["array"], o["array"]
        if a.shape[0] > 1 and b.shape[0] == 1 and a.shape[1:] == b.shape[1:] and all(
                np.array_equal(a[c], b[0]) for c in range(a.shape[0])):
            drop("read_seg", "a label saved with equal colour channels is read as one channel by ours")
    for step in list(ref):
        if not isinstance(ref.get(step), dict) or not isinstance(ours.get(step), dict):
            continue
        if ref[step].get("refused") and not ours[step].get("refused") \
                and "'PosixPath' object" in ref_whys.get(step, ""):
            drop(step, f"{step}: ours takes pathlib.Path file names, the reference's Tiff3DIO fails on them")
        elif ours[step].get("refused") and not ref[step].get("refused") \
                and "components per voxel" in ours_whys.get(step, ""):
            drop(step, f"{step}: our SimpleITKIO refuses colour/vector images, the reference reads them")
    return "; ".join(reasons) or None


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--msd", type=int, default=10, help="random MSD task folders converted after the cases")
    args = p.parse_args()
    if args.driver:
        drive(args.driver[0], int(args.driver[1]), args.driver[2])
        return 0

    with work_folder("nnunet_imageio_fuzz_", args.keep) as base:
        cases = [_write_case(os.path.join(base, "in"), i, args.seed * 100003 + i) for i in range(args.cases)]
        for c in cases:
            for key in ("images",):
                c[key] = [os.path.abspath(f) for f in c[key]]
        with open(os.path.join(base, "cases.json"), "w") as f:
            json.dump(cases, f)
        n = args.cases + args.msd
        if args.msd:
            write_msd_cases(base, args.msd, args.seed)
        ref, ours = run_both(args, __file__, [base, str(n)], base, lambda side: {
            "IMAGEIO_FUZZ_OUT": f"out_{side}", "OMP_NUM_THREADS": "1",
            "nnUNet_raw": os.path.join(base, f"raw_{side}")})
        ref_whys, ours_whys = _set_aside_refusals(ref), _set_aside_refusals(ours)

        def describe(i):
            if i >= args.cases:
                return f"MSD task {i - args.cases} (seed {args.seed})"
            c = cases[i]
            return (f"case {i} (seed {args.seed}, {c['kind']}, {c['reader']}, {len(c['images'])} channel(s), "
                    f"{c['info']})")
        by_design = {i: _by_design(ref["outcomes"][i], ours["outcomes"][i], ref_whys[i], ours_whys[i])
                     for i in range(args.cases)
                     if not ref["outcomes"][i].get("error") and not ours["outcomes"][i].get("error")}
        by_design = {i: why for i, why in by_design.items() if why}
        for i, why in by_design.items():
            print(f"BY DESIGN {describe(i)}: {why}")
        for i in range(args.cases, n):  # documented in dataset_conversion.md
            if "imagesTs subfolder missing" in (ref["outcomes"][i]["error"] or "") \
                    and not ours["outcomes"][i]["error"]:
                by_design[i] = ("the task has no imagesTs/: ours converts it (an empty one is made), the reference "
                                "refuses")
            elif "modalities" in (ours["outcomes"][i]["error"] or "") and not ref["outcomes"][i]["error"]:
                by_design[i] = ("images of another channel count than dataset.json's modalities: ours refuses before "
                                "writing, the reference converts")
            if i in by_design:
                print(f"BY DESIGN {describe(i)}: {by_design[i]}")
        compared = [i for i in range(n) if i < args.cases or i not in by_design]
        differing, refused_both = compare_outcomes(ref, ours, compared, describe)
        for i, ws in ours_whys.items():
            odd = sorted({w for w in ws.values() if "\n" in w.strip() or not w.startswith(("UserError", "ValueError"))})
            for w in odd:
                print(f"NOTE ours refused a step of {describe(i)} not with a one-line UserError: {w[:300]!r}")
        print_summary("cases", len(compared), differing, refused_both, ref, ours)
        steps = [(k, v) for i in compared if not ref["outcomes"][i].get("error")
                 for k, v in ref["outcomes"][i].items() if isinstance(v, dict) and "refused" in v]
        both = sum(1 for i in compared if not ref["outcomes"][i].get("error") and not ours["outcomes"][i].get("error")
                   for k, v in ref["outcomes"][i].items() if isinstance(v, dict) and v.get("refused")
                   and ours["outcomes"][i].get(k, {}).get("refused"))
        print(f"{len(steps)} steps compared, {both} refused by both; {len(by_design)} cases differ by design in "
              f"some steps (taken out, the rest compared) or as a whole (MSD tasks; not counted above)")
        kinds = {}
        for c in cases:
            kinds[c["kind"].split(" ")[0]] = kinds.get(c["kind"].split(" ")[0], 0) + 1
        print("kinds:", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
