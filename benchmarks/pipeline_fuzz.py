"""Differential trial, not a speed benchmark: the whole planning + preprocessing pipeline, end to end through the
console commands, on random raw datasets: does ours leave the reference's (2.8.1) files on disk?

    python benchmarks/pipeline_fuzz.py [--datasets 5] [--seed 0] [--faults 0.2] [--reference-python PATH] [--keep]

Each dataset is drawn from its own seeded generator and written once under a temporary nnUNet_raw as
``Dataset<id>_Pipe<i>``: `.nii.gz`, `.nii`, `.mha`, `.nrrd`, `.png` (2-D, grey or RGB) or `.tif` (3-D with the
spacing side-car, sometimes without naming ``Tiff3DIO``), 2-D or 3-D, 1-3 channels named for every normalization
(CT, MRI/anything -> z-score, noNorm, rescale_to_0_1, rgb_to_0_1), sometimes an ``overwrite_image_reader_writer``
(NibabelIO, NibabelIOWithReorient, SimpleITKIOWithReorient, Tiff3DIO), permuted/flipped directions, plain labels,
regions with ``regions_class_order``, an ignore label (also with regions), label files of several types, cases
without foreground, isotropic or anisotropic spacings, single slices, larger volumes now and then (so that 3d_lowres
and the cascade are planned), 2-10 cases with or without zero borders and with plain or odd names, an ``imagesTs``
folder sometimes, the legacy ``modality`` key or a wrong ``numTraining`` now and then. A share of the SimpleITK-format
datasets (``--faults``) gets one mistake in its last case: a label value not declared, a label one column short, a
missing label file, a NaN image voxel, a label with another origin or spacing, a stray extra channel file.
Then a random sequence of commands is drawn: ``nnUNetv2_plan_and_preprocess`` with random flags (``-c`` subsets,
``--verify_dataset_integrity``, ``-pl`` of several planners, ``-gpu_memory_target``, ``-overwrite_plans_name``,
``-overwrite_target_spacing``, ``--no_pp``, ``--clean``), or ``nnUNetv2_extract_fingerprint`` +
``nnUNetv2_plan_experiment`` + ``nnUNetv2_preprocess`` with theirs, sometimes followed by a second planning with
another planner or a rerun. Each side gets its own copy of the raw dataset and its own nnUNet_preprocessed and runs
the same command lines through its own console scripts (ours: those installed beside this interpreter with
PYTHONPATH on this checkout; the reference's beside its python, run from the work folder without PYTHONPATH),
stopping at the first command that fails. Compared: each command's success (both failing agrees; the last lines
of both messages are printed; where ours refuses and the reference goes on, a refusal that
documentation/differences_from_reference.md lists is counted apart as by design: ``-c`` naming only configurations
the plans lack, an undeclared label value, a NaN image voxel, an image/label shape mismatch, a stray channel file,
an origin mismatch under ``--verify_dataset_integrity``), the set of files under nnUNet_preprocessed and
nnUNet_raw afterwards, every JSON file by value (floats exactly), every ``.pkl`` by value (paths normalised), every
``.b2nd`` array bit for bit with shape, dtype, chunks, blocks and codec, and every other file (gt_segmentations)
byte for byte. What a command refused by both left behind is not compared (ours refuses some mistakes before it
writes anything, the reference part-way through). Exit status 1 if anything differs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import REPO, first_difference, trial_arguments, work_folder  # noqa: E402
from _harness import console_script, default_reference_python, our_console_script, reference_python  # noqa: E402

FIRST_ID = 850
SITK_ENDINGS = [".nii.gz", ".nii", ".mha", ".nrrd"]
PLANNERS = ["ExperimentPlanner", "ExperimentPlanner", "nnUNetPlannerResEncM", "nnUNetPlannerResEncL",
            "nnUNetPlanner_torchres", "nnUNetPlannerResEncL_torchres_sepz", "nnUNetPlannerResEncL_noResampling"]


# ----------------------------------------------------------------------------------------------------- datasets

def _draw_dataset(rng) -> dict:
    """What the dataset is: ending, dimensionality, channels, labels, sizes."""
    two_d = rng.random() < 0.3
    ending = str(rng.choice(SITK_ENDINGS + [".png", ".png"] if two_d else SITK_ENDINGS + [".tif"]))
    rgb = ending == ".png" and rng.random() < 0.4
    n_channels = 3 if rgb else int(rng.integers(1, 4))
    schemes = ["CT", "MRI", "T2", "zscore", "noNorm", "rescale_to_0_1"]
    channel_names = ({"0": "R", "1": "G", "2": "B"} if rgb and rng.random() < 0.5 else
                     {str(c): ("rgb_to_0_1" if rgb and rng.random() < 0.7 else str(rng.choice(schemes)))
                      for c in range(n_channels)})
    label_kind = str(rng.choice(["plain", "plain", "regions", "ignore", "regions_ignore"]))
    n_labels = int(rng.integers(1, 4))
    reader = None
    if rng.random() < 0.25:
        options = {".nii.gz": ["NibabelIO", "NibabelIOWithReorient", "SimpleITKIOWithReorient"],
                   ".nii": ["NibabelIO", "NibabelIOWithReorient"], ".mha": ["SimpleITKIOWithReorient"],
                   ".nrrd": ["SimpleITKIO"], ".tif": ["Tiff3DIO"], ".png": ["NaturalImage2DIO"]}[ending]
        reader = str(rng.choice(options))
        if two_d and reader.startswith("Nibabel") and rng.random() < 0.8:
            reader = None  # the nibabel readers refuse 2-D files (both sides): rarely worth a case
    if ending == ".tif" and reader is None and rng.random() < 0.7:
        reader = "Tiff3DIO"
    big = not two_d and rng.random() < 0.3
    return {"two_d": two_d, "ending": ending, "rgb": rgb, "n_channels": n_channels, "channel_names": channel_names,
            "label_kind": label_kind, "n_labels": n_labels, "reader": reader, "big": big,
            "n_cases": int(rng.integers(2, 5 if big else 11)), "anisotropic": rng.random() < 0.4,
            "borders": rng.random() < 0.5, "inplane": float(rng.uniform(0.5, 1.5)),
            "dtype": str(rng.choice(["uint8", "int16", "float32"])), "imagesTs": rng.random() < 0.3,
            "uint16_png": ending == ".png" and not rgb and rng.random() < 0.3,
            "oriented": ending in SITK_ENDINGS and rng.random() < 0.3,
            "seg_dtype": str(rng.choice(["uint8", "uint8", "int16", "uint16", "int32", "float32"])),
            "single_slices": rng.random() < 0.1, "p_empty": float(rng.choice([0, 0, 0.2])),
            "names": str(rng.choice(["case", "case", "odd"]))}


def _labels_entry(spec: dict) -> Tuple[dict, Optional[list]]:
    n = spec["n_labels"]
    if spec["label_kind"].startswith("regions"):
        # nested regions: region k holds labels k..n (the usual whole/core/enhancing layout)
        labels = {"background": 0, **{f"r{k}": (list(range(k, n + 1)) if k < n else n) for k in range(1, n + 1)}}
        if spec["label_kind"] == "regions_ignore":
            labels["ignore"] = n + 1
        return labels, list(range(1, n + 1))
    labels = {"background": 0, **{f"l{k}": k for k in range(1, n + 1)}}
    if spec["label_kind"] == "ignore":
        labels["ignore"] = n + 1
    return labels, None


def _case_arrays(rng, spec: dict, shape: List[int]):
    """(list of channel arrays, label array) of one case, in array axis order."""
    import numpy as np
    seg = np.zeros(shape, dtype=np.uint8)
    for label in range(1, spec["n_labels"] + 1):
        for _ in range(int(rng.integers(1, 3))):
            centre = [int(rng.integers(0, s)) for s in shape]
            radius = [max(1, int(rng.integers(1, max(2, s // 3)))) for s in shape]
            seg[tuple(slice(max(0, c - r), c + r) for c, r in zip(centre, radius))] = label
    if spec["label_kind"].endswith("ignore") and rng.random() < 0.8:
        box = [int(rng.integers(0, s)) for s in shape]
        seg[tuple(slice(b, b + max(1, s // 4)) for b, s in zip(box, shape))] = spec["n_labels"] + 1
    mask = np.ones(shape, dtype=bool)
    if spec["borders"]:  # a zero border that cropping removes (no label there)
        # thin on large volumes, whose cropped size must stay over 4 patches for 3d_lowres
        border = [int(rng.integers(0, max(1, s // (12 if spec["big"] else 4)))) for s in shape]
        mask[:] = False
        mask[tuple(slice(b, s - b if s - b > b else s) for b, s in zip(border, shape))] = True
        seg[~mask] = 0
    channels = []
    for c in range(spec["n_channels"]):
        if spec["ending"] == ".png":
            top = 65535 if spec["uint16_png"] else 255
            image = (rng.integers(0, top // 2, shape) + (seg > 0) * (top // 3)).astype(
                np.uint16 if spec["uint16_png"] else np.uint8)
        elif spec["dtype"] == "uint8":
            image = (rng.integers(0, 200, shape) + seg * 15).astype(np.uint8)
        elif spec["dtype"] == "int16":
            image = (rng.integers(-1024, 1500, shape) + seg * 200).astype(np.int16)
        else:
            image = (rng.normal(rng.uniform(-50, 50), rng.uniform(0.5, 200), shape) + seg * 30).astype(np.float32)
        if rng.random() < 0.05:
            image[:] = 7
        image[~mask] = 0
        channels.append(image)
    return channels, seg


def _write_sitk(array, spacing: List[float], origin: List[float], direction: Optional[List[float]], path: str
                ) -> None:
    import SimpleITK as sitk
    itk = sitk.GetImageFromArray(array)
    itk.SetSpacing([float(s) for s in spacing[::-1]])
    itk.SetOrigin([float(o) for o in origin[::-1]])
    if direction is not None:
        itk.SetDirection(direction)
    sitk.WriteImage(itk, path)


def _direction(rng, spec: dict) -> Optional[List[float]]:
    """A permuted and flipped direction matrix sometimes (what the reorienting readers undo), else None."""
    import numpy as np
    if not spec["oriented"]:
        return None
    n = 2 if spec["two_d"] else 3
    matrix = np.eye(n)[rng.permutation(n)] * rng.choice([-1.0, 1.0], n)[:, None]
    return [float(v) for v in matrix.ravel()]


def _write_case(rng, spec: dict, folder: str, seg_folder: Optional[str], name: str) -> None:
    import numpy as np
    if spec["two_d"]:
        shape = [int(v) for v in rng.integers(24, 96, 2)]
        spacing = [float(v) for v in rng.uniform(0.4, 1.5, 2)]
    else:
        # big: ~2.5 M voxels, over 4 patches of a 1 GB GPU memory target (patch ~48x80x80), hence 3d_lowres
        low, high = (96, 128) if spec["big"] else (8, 48)
        shape = [int(rng.integers(low // 2 if spec["anisotropic"] else low, high))] + \
            [int(v) for v in rng.integers(low + low // 3, int(high * 1.4), 2)]
        if spec["single_slices"] and rng.random() < 0.3:
            shape[0] = 1
        # the dataset's in-plane spacing, a little different per case (a factor 2 between cases would resample
        # the large volumes below the size at which 3d_lowres is planned)
        inplane = spec["inplane"] * float(rng.uniform(0.9, 1.1))
        spacing = [inplane * (float(rng.uniform(3, 6)) if spec["anisotropic"] else float(rng.uniform(0.8, 1.2))),
                   inplane, inplane * float(rng.uniform(0.9, 1.1))]
    origin = [float(v) for v in rng.uniform(-100, 100, len(shape))]
    channels, seg = _case_arrays(rng, spec, shape)
    if rng.random() < spec["p_empty"]:
        seg[:] = 0  # a case without foreground
    ending = spec["ending"]
    direction = _direction(rng, spec)
    if ending == ".png":
        from PIL import Image
        if spec["rgb"]:
            Image.fromarray(np.stack(channels, -1).astype(np.uint8)).save(os.path.join(folder, f"{name}_0000.png"))
        else:
            for c, image in enumerate(channels):
                Image.fromarray(image).save(os.path.join(folder, f"{name}_{c:04d}.png"))
        if seg_folder:
            Image.fromarray(seg).save(os.path.join(seg_folder, f"{name}.png"))
        return
    if ending == ".tif":
        import tifffile
        for c, image in enumerate(channels):
            tifffile.imwrite(os.path.join(folder, f"{name}_{c:04d}.tif"), image)
        with open(os.path.join(folder, f"{name}.json"), "w") as f:
            json.dump({"spacing": spacing}, f)
        if seg_folder:
            tifffile.imwrite(os.path.join(seg_folder, f"{name}.tif"), seg)
            with open(os.path.join(seg_folder, f"{name}.json"), "w") as f:
                json.dump({"spacing": spacing}, f)
        return
    for c, image in enumerate(channels):
        _write_sitk(image, spacing, origin, direction, os.path.join(folder, f"{name}_{c:04d}{ending}"))
    if seg_folder:
        _write_sitk(seg.astype(spec["seg_dtype"]), spacing, origin, direction,
                    os.path.join(seg_folder, f"{name}{ending}"))


# a mistake in the last case, as users make them; the refusals of ours that differences_from_reference.md documents
# (the reference goes on) are counted apart
FAULTS = ["undeclared_label", "shape_mismatch", "missing_label", "nan_image", "origin_mismatch", "spacing_mismatch",
          "extra_channel"]
DOCUMENTED_REFUSALS = {"undeclared_label", "nan_image", "shape_mismatch", "extra_channel"}


def _inject_fault(fault: str, folder: str, case: str, spec: dict) -> None:
    import numpy as np
    import SimpleITK as sitk
    ending = spec["ending"]
    label_file = os.path.join(folder, "labelsTr", case + ending)
    image_file = os.path.join(folder, "imagesTr", f"{case}_0000{ending}")
    if fault == "missing_label":
        os.remove(label_file)
        return
    if fault == "extra_channel":
        shutil.copy(image_file, os.path.join(folder, "imagesTr", f"{case}_{spec['n_channels']:04d}{ending}"))
        return
    target = image_file if fault == "nan_image" else label_file
    itk = sitk.ReadImage(target)
    array = sitk.GetArrayFromImage(itk)
    if fault == "undeclared_label":
        array.flat[array.size // 2] = 255 if array.dtype != np.int16 else 300
    elif fault == "nan_image":
        array = array.astype(np.float32)
        array.flat[array.size // 3] = np.nan
    elif fault == "shape_mismatch":
        array = np.ascontiguousarray(array[..., :-1])
    new = sitk.GetImageFromArray(array)
    new.SetSpacing(itk.GetSpacing())
    new.SetOrigin(itk.GetOrigin())
    new.SetDirection(itk.GetDirection())
    if fault == "origin_mismatch":
        new.SetOrigin([o + 5.0 for o in itk.GetOrigin()])
    elif fault == "spacing_mismatch":
        new.SetSpacing([v * 1.1 for v in itk.GetSpacing()])
    sitk.WriteImage(new, target)


def write_dataset(raw: str, dataset_id: int, seed: int, p_fault: float) -> Tuple[str, dict]:
    """Write the dataset; returns its folder name and what was drawn."""
    import numpy as np
    rng = np.random.default_rng(seed)
    spec = _draw_dataset(rng)
    name = f"Dataset{dataset_id:03d}_Pipe{seed % 1000}"
    folder = os.path.join(raw, name)
    for sub in ("imagesTr", "labelsTr") + (("imagesTs",) if spec["imagesTs"] else ()):
        os.makedirs(os.path.join(folder, sub))
    for case in range(spec["n_cases"]):
        # "odd" names: unpadded numbers (case_10 sorts before case_2), dots and dashes inside
        case_name = f"case{case:03d}" if spec["names"] == "case" else f"p-{case}.v{case % 3}_x{case * 7}"
        _write_case(rng, spec, os.path.join(folder, "imagesTr"), os.path.join(folder, "labelsTr"), case_name)
    for case in range(int(rng.integers(1, 3)) if spec["imagesTs"] else 0):
        _write_case(rng, spec, os.path.join(folder, "imagesTs"), None, f"test{case:03d}")
    spec["fault"] = None
    if spec["ending"] in SITK_ENDINGS and rng.random() < p_fault:
        spec["fault"] = str(rng.choice(FAULTS))
        _inject_fault(spec["fault"], folder, case_name, spec)
    labels, regions_class_order = _labels_entry(spec)
    # now and then the legacy "modality" key, or a numTraining that does not count the cases
    dataset_json = {"modality" if rng.random() < 0.1 else "channel_names": spec["channel_names"], "labels": labels,
                    "numTraining": spec["n_cases"] + (int(rng.choice([-1, 1])) if rng.random() < 0.15 else 0),
                    "file_ending": spec["ending"]}
    if regions_class_order:
        dataset_json["regions_class_order"] = regions_class_order
    if spec["reader"]:
        dataset_json["overwrite_image_reader_writer"] = spec["reader"]
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(dataset_json, f, indent=4)
    return name, spec


# ----------------------------------------------------------------------------------------------------- commands

def _planning_flags(rng, spec: dict) -> Tuple[List[str], str]:
    """Flags of a planning step (plan_and_preprocess or plan_experiment) and the plans name they write."""
    flags, planner = [], str(rng.choice(PLANNERS))
    if planner != "ExperimentPlanner" or rng.random() < 0.3:
        flags += ["-pl", planner]
    plans_name = {"ExperimentPlanner": "nnUNetPlans", "nnUNetPlanner_torchres": "nnUNetPlans_torchres",
                  "nnUNetPlannerResEncM": "nnUNetResEncUNetMPlans", "nnUNetPlannerResEncL": "nnUNetResEncUNetLPlans",
                  "nnUNetPlannerResEncL_torchres_sepz": "nnUNetResEncUNetLPlans_torchres_sepz",
                  "nnUNetPlannerResEncL_noResampling": "nnUNetResEncUNetLPlans_noResampling"}[planner]
    if spec["big"] and rng.random() < 0.7:  # small patches: the volumes are then large enough for 3d_lowres
        flags += ["-gpu_memory_target", str(rng.choice(["1", "1", "1.5"]))]
    elif rng.random() < 0.35:
        flags += ["-gpu_memory_target", str(rng.choice(["1", "2", "3.5", "6", "12", "24"]))]
    if rng.random() < (0.05 if spec["big"] else 0.2):  # mostly coarser: would take large volumes below 3d_lowres
        spacing = [float(f"{v:.3g}") for v in rng.uniform(0.4, 4, 3)]
        if spec["two_d"]:
            spacing[0] = 999.0
        flags += ["-overwrite_target_spacing", *map(str, spacing)]
    if rng.random() < 0.3:
        plans_name = f"Fuzz{int(rng.integers(0, 100))}Plans"
        flags += ["-overwrite_plans_name", plans_name]
    return flags, plans_name


def _configurations(rng) -> Optional[List[str]]:
    if rng.random() < 0.6:
        return None  # the default 2d 3d_fullres 3d_lowres
    pool = ["2d", "3d_fullres", "3d_lowres"]
    chosen = [str(c) for c in rng.permutation(pool)[:int(rng.integers(1, 4))]]
    if chosen == ["3d_lowres"] and rng.random() < 0.7:  # mostly planned only for large volumes: rarely alone
        chosen.append("3d_fullres")
    return chosen


def _num_processes(rng, configs: Optional[List[str]], npc: str) -> List[str]:
    """``-np``: one value for all configurations, or one per configuration named with ``-c``."""
    if configs and len(configs) > 1 and rng.random() < 0.4:
        return [str(int(rng.integers(1, 3))) for _ in configs]
    return [npc]


def draw_commands(rng, dataset_id: int, spec: dict) -> List[List[str]]:
    """Command lines (console script name first) of one case."""
    d = ["-d", str(dataset_id)]
    npc = str(int(rng.integers(1, 3)))
    commands = []
    if rng.random() < 0.55:
        flags, plans_name = _planning_flags(rng, spec)
        cmd = ["nnUNetv2_plan_and_preprocess", *d, "-npfp", npc, *flags]
        if rng.random() < 0.3:
            cmd.append("--verify_dataset_integrity")
        if rng.random() < 0.15:
            cmd.append("--clean")
        if rng.random() < 0.1:
            cmd.append("--no_pp")
        configs = _configurations(rng)
        if configs:
            cmd += ["-c", *configs]
        cmd += ["-np", *_num_processes(rng, configs, npc)]
        commands.append(cmd)
    else:
        fp = ["nnUNetv2_extract_fingerprint", *d, "-np", npc]
        if rng.random() < 0.3:
            fp.append("--verify_dataset_integrity")
        if rng.random() < 0.2:
            fp.append("--clean")
        commands.append(fp)
        flags, plans_name = _planning_flags(rng, spec)
        if rng.random() < 0.2:
            flags += ["-preprocessor_name", "DefaultPreprocessor"]
        commands.append(["nnUNetv2_plan_experiment", *d, *flags])
        pp = ["nnUNetv2_preprocess", *d, "-np", npc]
        if plans_name != "nnUNetPlans" or rng.random() < 0.3:
            pp += ["-plans_name", plans_name]
        configs = _configurations(rng)
        if configs:
            pp += ["-c", *configs]
            pp[4:5] = _num_processes(rng, configs, npc)
        commands.append(pp)
    if rng.random() < 0.25:  # a second planning of the same dataset: another planner, or a rerun over the files
        flags, _ = _planning_flags(rng, spec)
        again = ["nnUNetv2_plan_and_preprocess", *d, "-npfp", "1", *flags, "-c", str(rng.choice(["2d", "3d_fullres"])),
                 "-np", "1"]
        if rng.random() < 0.5:
            again.append("--clean")
        commands.append(again)
    return commands


def run_side(side: str, commands: List[List[str]], raw: str, pre: str, base: str, ref_python: str
             ) -> List[Tuple[int, str]]:
    """Run the command lines on one side, stopping at the first that fails: (exit status, last lines of output)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(nnUNet_raw=raw, nnUNet_preprocessed=pre, nnUNet_results=os.path.join(base, f"results_{side}"),
               OMP_NUM_THREADS="1")
    if side == "ours":
        env["PYTHONPATH"] = REPO
    results = []
    for cmd in commands:
        exe = our_console_script(cmd[0]) if side == "ours" else console_script(ref_python, cmd[0])
        proc = subprocess.run([exe, *cmd[1:]], env=env, cwd=REPO if side == "ours" else base,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = proc.stdout.decode(errors="replace").strip().splitlines()
        results.append((proc.returncode, " | ".join(text[-3:])[-600:]))
        if proc.returncode != 0:
            break
    return results


# ----------------------------------------------------------------------------------------------------- comparison

def _files(root: str) -> List[str]:
    out = []
    for folder, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(out)


def _normalised(value, roots: List[str]):
    """``value`` with the side's own folders in strings replaced by a placeholder (recursively)."""
    if isinstance(value, str):
        for i, r in enumerate(roots):
            value = value.replace(r, f"<root{i}>")
        return value
    if isinstance(value, dict):
        return {k: _normalised(v, roots) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_normalised(v, roots) for v in value)
    return value


def _b2nd(path: str) -> dict:
    import blosc2
    a = blosc2.open(path, mode="r")
    return {"array": a[...], "chunks": tuple(a.chunks), "blocks": tuple(a.blocks),
            "codec": str(a.schunk.cparams.codec), "clevel": a.schunk.cparams.clevel}


def compare_file(ref_path: str, ours_path: str, ref_roots: List[str], our_roots: List[str]) -> Optional[str]:
    """Where two files written under the same name differ (None if equal)."""
    import pickle
    if ref_path.endswith(".json"):
        with open(ref_path) as f, open(ours_path) as g:
            return first_difference(_normalised(json.load(f), ref_roots), _normalised(json.load(g), our_roots))
    if ref_path.endswith(".pkl"):
        with open(ref_path, "rb") as f, open(ours_path, "rb") as g:
            return first_difference(_normalised(pickle.load(f), ref_roots), _normalised(pickle.load(g), our_roots))
    if ref_path.endswith(".b2nd"):
        return first_difference(_b2nd(ref_path), _b2nd(ours_path))
    with open(ref_path, "rb") as f, open(ours_path, "rb") as g:
        return None if f.read() == g.read() else "bytes differ"


def compare_trees(ref_root: str, ours_root: str, ref_roots: List[str], our_roots: List[str]) -> List[str]:
    """Differences between two folders: files only on one side, then each file's content."""
    ref_files, our_files = _files(ref_root), _files(ours_root)
    problems = [f"only in the reference: {f}" for f in ref_files if f not in set(our_files)]
    problems += [f"only in ours: {f}" for f in our_files if f not in set(ref_files)]
    for f in ref_files:
        if f in set(our_files):
            try:
                d = compare_file(os.path.join(ref_root, f), os.path.join(ours_root, f), ref_roots, our_roots)
            except Exception as e:  # an unreadable file is a difference to look at, not the end of the trial
                d = f"could not compare: {type(e).__name__}: {e}"
            if d:
                problems.append(f"{f}: {d}")
    return problems


def _planned(folder: str) -> str:
    """The configurations of every plans file in ``folder`` (what the trial reached): ``nnUNetPlans: 2d 3d_fullres``."""
    out = []
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if f.endswith(".json") and f not in ("dataset.json", "dataset_fingerprint.json"):
            with open(os.path.join(folder, f)) as g:
                out.append(f"{f[:-5]}: {' '.join(json.load(g).get('configurations', {}))}")
    return "; ".join(out) or "no plans"


def _by_design(cmd: List[str], our_output: str, spec: dict) -> bool:
    """A refusal of ours documented in differences_from_reference.md where the reference went on: ``-c`` naming only
    configurations the plans lack, or a documented check of faulty input (one line, no traceback)."""
    if "-c" in cmd and "None of the requested configurations" in our_output:
        return True
    if spec["fault"] == "origin_mismatch" and "--verify_dataset_integrity" in cmd:
        return "nnU-Net error" in our_output and "Traceback" not in our_output
    return spec["fault"] in DOCUMENTED_REFUSALS and "nnU-Net error" in our_output and "Traceback" not in our_output


def run_case(i: int, args, base: str, template: str, ref_python: str) -> Tuple[List[str], dict]:
    import numpy as np
    seed = args.seed * 100003 + i
    dataset_id = FIRST_ID + i
    name, spec = write_dataset(template, dataset_id, seed, args.faults)
    commands = draw_commands(np.random.default_rng(seed + 7), dataset_id, spec)
    outcome = {"name": name, "spec": spec, "commands": commands}
    for side in ("ref", "ours"):
        raw, pre = os.path.join(base, f"raw_{side}"), os.path.join(base, f"pre_{side}")
        shutil.copytree(os.path.join(template, name), os.path.join(raw, name))
        start = time.perf_counter()
        outcome[side] = run_side(side, commands, raw, pre, base, ref_python)
        outcome[f"seconds_{side}"] = time.perf_counter() - start
    problems = []
    for k, cmd in enumerate(commands):
        r = outcome["ref"][k] if k < len(outcome["ref"]) else None
        o = outcome["ours"][k] if k < len(outcome["ours"]) else None
        if r is None and o is None:
            break
        if r is not None and o is not None and r[0] == 0 and o[0] != 0 and _by_design(cmd, o[1], spec):
            # documented refusals of ours where the reference goes on: the folders then differ by what the reference
            # went on to write, so they are not compared
            outcome["by_design"] = f"{cmd[0]}: ours {o[1][-300:]}"
            return problems, outcome
        if (r is None) != (o is None) or (r[0] == 0) != (o[0] == 0):
            problems.append(f"{cmd[0]}: reference {'not run' if r is None else f'exit {r[0]}: {r[1]}'}; "
                            f"ours {'not run' if o is None else f'exit {o[0]}: {o[1]}'}")
        elif r[0] != 0:
            outcome.setdefault("refused", []).append(f"{cmd[0]}: reference: {r[1][-250:]} || ours: {o[1][-250:]}")
    outcome["files"] = len(_files(os.path.join(base, "pre_ref")))
    outcome["configurations"] = _planned(os.path.join(base, "pre_ref", name))
    if outcome.get("refused") or problems:
        # what a failed command left behind is not compared: ours checks some mistakes earlier (before anything is
        # written), the reference part-way through (after the fingerprint, the plans and some cases)
        return problems, outcome
    roots = {side: [os.path.join(base, f"pre_{side}"), os.path.join(base, f"raw_{side}"), base]
             for side in ("ref", "ours")}
    for what in ("pre", "raw"):
        problems += [f"{what}: {p}" for p in compare_trees(os.path.join(base, f"{what}_ref"),
                                                           os.path.join(base, f"{what}_ours"),
                                                           roots["ref"], roots["ours"])]
    return problems, outcome


def _describe(outcome: dict) -> str:
    s = outcome["spec"]
    what = (f"{'2-D' if s['two_d'] else '3-D'} {s['ending']}{' RGB' if s['rgb'] else ''} {s['n_channels']} ch "
            f"{'/'.join(s['channel_names'].values())}, {s['label_kind']} {s['n_labels']}, {s['n_cases']} cases"
            f"{', big' if s['big'] else ''}{', anisotropic' if s['anisotropic'] else ''}"
            f"{', reader ' + s['reader'] if s['reader'] else ''}{', oriented' if s['oriented'] else ''}"
            f"{', single slices' if s['single_slices'] else ''}{', empty cases' if s['p_empty'] else ''}"
            f"{', odd names' if s['names'] == 'odd' else ''}, labels {s['seg_dtype']}"
            f"{', FAULT ' + s['fault'] if s['fault'] else ''}")
    return f"{outcome['name']} ({what})\n    " + "\n    ".join(" ".join(c) for c in outcome["commands"])


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=1)
    p.add_argument("--datasets", type=int, default=5)
    p.add_argument("--faults", type=float, default=0.2, help="share of the .nii.gz/.nii/.mha/.nrrd datasets given a "
                   "mistake in their last case")
    args = p.parse_args()
    ref_python = reference_python(args.reference_python or default_reference_python(), args.reference_venv)
    differing = refused = by_design = 0
    seconds = {"ref": 0.0, "ours": 0.0}
    for i in range(args.datasets):
        with work_folder("nnunet_pipeline_fuzz_", args.keep) as base:
            template = os.path.join(base, "template")
            problems, outcome = run_case(i, args, base, template, ref_python)
        for side in seconds:
            seconds[side] += outcome[f"seconds_{side}"]
        print(f"[{i}] {_describe(outcome)}", flush=True)
        for line in outcome.get("refused", []):
            print(f"    refused by both: {line}")
        if outcome.get("refused"):
            refused += 1
        if outcome.get("by_design"):
            by_design += 1
            print(f"    BY DESIGN: {outcome['by_design']}")
        elif problems:
            differing += 1
            for line in problems[:12]:
                print(f"    DIFFERENT: {line}")
            if len(problems) > 12:
                print(f"    ... and {len(problems) - 12} more differences")
        else:
            compared = "files left after the refusal not compared" if outcome.get("refused") else \
                f"{outcome['files']} preprocessed files, {outcome['configurations']}"
            print(f"    agree, {compared} (ours "
                  f"{outcome['seconds_ours']:.1f} s, reference {outcome['seconds_ref']:.1f} s)",
                  flush=True)
    print(f"\n{args.datasets} datasets (seed {args.seed}): {args.datasets - differing - by_design} agree ({refused} "
          f"with a command refused by both), {by_design} by design, {differing} differ; time ours "
          f"{seconds['ours']:.1f} s, reference {seconds['ref']:.1f} s "
          f"(ratio {seconds['ours'] / max(seconds['ref'], 1e-9):.2f})")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
