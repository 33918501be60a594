"""Differential trial, not a speed benchmark: do our image readers/writers read and write what the reference's
(2.8.1) do, for random files?

    python benchmarks/imageio_fuzz.py [--cases 150] [--seed 0] [--reference-python PATH] [--keep]

The files are drawn from seeded generators and written once, before either side runs: 2-D and 3-D images (single
slices included) of 1-3 channel files per case and a label file, voxel types uint8 ... float64, random spacings,
origins and directions (axis permutations, flips, oblique rotations), as .nii.gz/.nii/.mha/.nrrd through SimpleITK,
as .nii/.nii.gz through nibabel with random qform/sform affines and codes (sometimes scaled data, sometimes 4-D,
sometimes big-endian), as .png (grey, RGB, RGBA) and as .tif volumes and 2-D .tif (some big-endian) with or without the
spacing side-car json; float voxels sometimes hold NaN and infinities. Some cases
get channel files that disagree (shape, spacing, origin).

Each case names one reader/writer (SimpleITKIO, SimpleITKIOWithReorient, NibabelIO, NibabelIOWithReorient,
Tiff3DIO, NaturalImage2DIO). Each side runs, per case, in one process: ``read_images`` on the channel files,
``read_seg`` on the label file, ``write_seg`` of that label (in a random integer or float type, sometimes with a
label above 255) with its properties, ``read_seg`` of the written file, and ``determine_reader_writer_from_file_ending``
/ ``determine_reader_writer_from_dataset_json`` (with or without an ``overwrite_image_reader_writer``, also an
unknown one). Arrays are compared exactly with their dtype and shape, properties value for value and by type
(float vs numpy float64), the written files by content: NIfTI header fields and uncompressed bytes, SimpleITK's
geometry, pixel type and metadata of .mha/.nrrd, pixels of .png/.tif, the .tif spacing side-car, and which files
were written. A step that both sides refuse agrees; what our refusals say is checked to be one line.

With ``--msd N`` it also converts N tiny random Medical Segmentation Decathlon task folders (4-D and 3-D images,
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
    return {"kind": f"nibabel{'4d' if four_d else ''}{ending} q{qcode}s{scode}{' big-endian' if big_endian else ''}", "ending": ending, "images": images,
            "seg": seg, "reader": reader, "info": f"{dtype} {shape}"}


def _write_png_case(rng, folder: str, name: str, n_channels: int) -> dict:
    import numpy as np
    from skimage import io
    shape = [int(rng.integers(1, 12)), int(rng.integers(1, 12))]
    images = []
    for c in range(n_channels):
        mode = rng.choice(["grey", "grey", "rgb", "rgba"])
        dtype = "uint16" if mode == "grey" and rng.random() < 0.3 else "uint8"
        sh = shape + ([3] if mode == "rgb" else [4] if mode == "rgba" else [])
        if c > 0 and rng.random() < 0.08:
            sh[0] += 1
        path = os.path.join(folder, f"{name}_{c:04d}.png")
        io.imsave(path, _voxels(rng, sh, dtype).astype(dtype), check_contrast=False)
        images.append(path)
    seg = os.path.join(folder, f"{name}.png")
    io.imsave(seg, _labels(rng, shape, "uint8"), check_contrast=False)
    return {"kind": "png", "ending": ".png", "images": images, "seg": seg, "reader": "NaturalImage2DIO",
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
    case["big_label"] = bool(rng.random() < 0.2 and case["reader"] != "SimpleITKIOWithReorient")
    case["allow_nonmatching"] = bool(rng.random() < 0.4)
    case["overwrite"] = str(rng.choice(["", "", "", *READERS, "NoSuchReaderWriter", "None"]))
    case["example"] = bool(rng.random() < 0.8)
    return case


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


def _step(fn, whys: list) -> dict:
    """One step's result, or that it was refused (the message is kept aside: the sides word refusals differently)."""
    try:
        out = fn()
        out["refused"] = False
        return out
    except Exception as e:
        whys.append(f"{type(e).__name__}: {e}")
        return {"refused": True}


def _run_case(case: dict, out_folder: str) -> dict:
    import numpy as np
    from nnunetv2.imageio.reader_writer_registry import (determine_reader_writer_from_dataset_json,
                                                         determine_reader_writer_from_file_ending,
                                                         recursive_find_reader_writer_by_name)
    whys: list = []
    result: dict = {}
    try:
        cls = recursive_find_reader_writer_by_name(case["reader"])
    except Exception as e:
        return {"missing_class": True, "why": [f"{type(e).__name__}: {e}"]}
    rw = cls()
    result["read_images"] = _step(lambda: (lambda a, p: {"array": a, "props": p, "types": _types(p)})(
        *rw.read_images(case["images"])), whys)
    state = {}

    def read_seg():
        seg, props = rw.read_seg(case["seg"])
        state["seg"], state["props"] = seg, props
        return {"array": seg, "props": props, "types": _types(props)}
    result["read_seg"] = _step(read_seg, whys)

    def write_and_reread():
        seg = state["seg"]
        if seg.ndim == 4:
            seg = seg[0]
        seg = np.array(seg, dtype=case["seg_dtype"])
        if case["big_label"] and seg.size:
            seg.flat[0] = 300
        target = os.path.join(out_folder, os.path.basename(os.path.dirname(case["seg"])) + case["ending"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        before = set(os.listdir(out_folder))
        rw.write_seg(seg, target, state["props"])
        written = sorted(set(os.listdir(out_folder)) - before)
        out = {"written": written, "files": {n: _describe_file(os.path.join(out_folder, n)) for n in written}}
        back, props = rw.read_seg(target)
        out.update(reread=back, reread_props=props)
        return out
    if "seg" in state:
        result["write_seg"] = _step(write_and_reread, whys)
    example = case["images"][0] if case["example"] else None
    result["from_ending"] = _step(lambda: {"class": determine_reader_writer_from_file_ending(
        case["ending"], example, case["allow_nonmatching"], verbose=False).__name__}, whys)
    dataset_json = {"file_ending": case["ending"]}
    if case["overwrite"]:
        dataset_json["overwrite_image_reader_writer"] = case["overwrite"]
    result["from_dataset_json"] = _step(lambda: {"class": determine_reader_writer_from_dataset_json(
        dataset_json, example, case["allow_nonmatching"], verbose=False).__name__}, whys)
    result["why"] = whys
    return result


def drive(base: str, n_cases: int, result_file: str) -> None:
    from _fuzz_harness import drive_cases
    with open(os.path.join(base, "cases.json")) as f:
        cases = json.load(f)
    out_root = os.path.join(base, os.environ["IMAGEIO_FUZZ_OUT"])
    os.makedirs(out_root)

    def compute(i):
        if i >= len(cases):
            from _msd_fuzz import run_msd_case  # noqa: F401 - only with --msd
            return run_msd_case(base, i - len(cases), out_root)
        out = os.path.join(out_root, f"case{i:04d}")
        os.makedirs(out)
        return _run_case(cases[i], out)
    drive_cases(list(range(n_cases)), compute, result_file, time_limit_s=60)


# ------------------------------------------------------------------------------------------------------ comparison

def _set_aside_refusals(side: dict) -> dict:
    """Take each outcome's refusal messages out of the comparison: {case: [message, ...]}."""
    return {k: o.pop("why", []) for k, o in side["outcomes"].items() if not o.get("error")}


def _by_design(ref: dict, ours: dict):
    """Why a case differs on purpose (documentation/differences_from_reference.md), or None."""
    import numpy as np
    r, o = ref.get("read_seg", {}), ours.get("read_seg", {})
    if not r.get("refused", True) and not o.get("refused", True):
        a, b = r["array"], o["array"]
        if a.shape[0] > 1 and b.shape[0] == 1 and a.shape[1:] == b.shape[1:] and all(
                np.array_equal(a[c], b[0]) for c in range(a.shape[0])):
            return "a label saved with equal colour channels is read as one channel by ours"
    return None


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=150)
    p.add_argument("--msd", type=int, default=0, help="also convert this many random MSD task folders")
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
            from _msd_fuzz import write_msd_cases
            write_msd_cases(base, args.msd, args.seed)
        ref, ours = run_both(args, __file__, [base, str(n)], base,
                             lambda side: {"IMAGEIO_FUZZ_OUT": f"out_{side}", "OMP_NUM_THREADS": "1"})
        _set_aside_refusals(ref)
        ours_whys = _set_aside_refusals(ours)

        def describe(i):
            if i >= args.cases:
                return f"MSD task {i - args.cases} (seed {args.seed})"
            c = cases[i]
            return (f"case {i} (seed {args.seed}, {c['kind']}, {c['reader']}, {len(c['images'])} channel(s), "
                    f"{c['info']})")
        by_design = {i: _by_design(ref["outcomes"][i], ours["outcomes"][i]) for i in range(n)
                     if not ref["outcomes"][i].get("error") and not ours["outcomes"][i].get("error")}
        by_design = {i: why for i, why in by_design.items() if why}
        for i, why in by_design.items():
            print(f"BY DESIGN {describe(i)}: {why}")
        compared = [i for i in range(n) if i not in by_design]
        differing, refused_both = compare_outcomes(ref, ours, compared, describe)
        for i, ws in ours_whys.items():
            odd = sorted({w for w in ws if "\n" in w.strip() or not w.startswith(("UserError", "ValueError"))})
            for w in odd:
                print(f"NOTE ours refused a step of {describe(i)} not with a one-line UserError: {w[:300]!r}")
        print_summary("cases", len(compared), differing, refused_both, ref, ours)
        steps = [(k, v) for i in compared if not ref["outcomes"][i].get("error")
                 for k, v in ref["outcomes"][i].items() if isinstance(v, dict) and "refused" in v]
        both = sum(1 for i in compared if not ref["outcomes"][i].get("error") and not ours["outcomes"][i].get("error")
                   for k, v in ref["outcomes"][i].items() if isinstance(v, dict) and v.get("refused")
                   and ours["outcomes"][i].get(k, {}).get("refused"))
        print(f"{len(steps)} steps compared, {both} refused by both; {len(by_design)} more cases differ by design")
        kinds = {}
        for c in cases:
            kinds[c["kind"].split(" ")[0]] = kinds.get(c["kind"].split(" ")[0], 0) + 1
        print("kinds:", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
