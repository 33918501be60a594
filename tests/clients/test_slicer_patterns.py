"""3D Slicer's nnU-Net extension (SlicerNNUnet, read from its public repository; no client code here).

The extension runs the installed ``nnUNetv2_predict`` console script as a child process and merges its stdout and
stderr into the log it shows. It points nnUNet_raw, nnUNet_preprocessed and nnUNet_results all at the folder that
holds the user's ``DatasetXXX_Name`` model folder, names the dataset by its folder name, and passes every option
explicitly: ``-tr -p -c`` split from the configuration folder's name, ``-f``, ``-npp 1 -nps 1 -step_size 0.5``,
``-device`` (cpu where torch sees no GPU), ``-chk checkpoint_final.pth`` and ``--disable_tta``. The volume shown in
Slicer is written to ``input/volume_0000.nii.gz`` only, and the result is read back as the first file under the
output folder whose name matches ``*.nii*`` (searched recursively); a failure shows up as no such file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import SimpleITK as sitk

DATASET = "Dataset902_SynthMRRegions"  # golden 3d_fullres model, two input channels (T1, T2), regions


def _slicer_layout(golden_model_dir, tmp_path: Path):
    """The model folder as the user picked it, and Slicer's temporary input/output folders."""
    model = golden_model_dir(DATASET)
    models_root = model.parent.parent  # the folder holding DatasetXXX_Name
    (tmp_path / "input").mkdir()
    return model, models_root, tmp_path / "input", tmp_path / "output"


def _run_like_slicer(model: Path, models_root: Path, in_dir: Path, out_dir: Path) -> subprocess.CompletedProcess:
    trainer, plans, configuration = model.name.split("__")
    args = ["-i", in_dir.as_posix(), "-o", out_dir.as_posix(), "-d", model.parent.name, "-tr", trainer,
            "-p", plans, "-c", configuration, "-f", "0", "-npp", "1", "-nps", "1", "-step_size", "0.5",
            "-device", "cpu", "-chk", "checkpoint_final.pth", "--disable_tta"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = models_root.as_posix()
    executable = shutil.which("nnUNetv2_predict")
    assert executable, "console script nnUNetv2_predict is not installed (pip install -e .)"
    return subprocess.run([executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)


def _what_slicer_would_load(out_dir: Path):
    return sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.nii*")) if out_dir.is_dir() else []


def test_slicer_prediction_is_the_only_nifti_and_equals_the_reference(golden_model_dir, golden_raw, shared_dir,
                                                                      tmp_path):
    model, models_root, in_dir, out_dir = _slicer_layout(golden_model_dir, tmp_path)
    raw = golden_raw(DATASET)
    for channel in ("0000", "0001"):  # a user whose scene holds both channels (the extension itself writes one)
        shutil.copy(raw / "imagesTs" / f"mr_008_{channel}.nii.gz", in_dir / f"volume_{channel}.nii.gz")
    result = _run_like_slicer(model, models_root, in_dir, out_dir)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Traceback" not in result.stdout
    assert _what_slicer_would_load(out_dir) == ["volume.nii.gz"]
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / "volume.nii.gz")))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(
        str(shared_dir / "reference" / "models" / DATASET / "predictions" / "disable_tta" / "mr_008.nii.gz")))
    np.testing.assert_array_equal(ours, reference)


def test_single_volume_for_a_two_channel_model_is_one_clear_line(golden_model_dir, golden_raw, tmp_path):
    """What the extension does with a multi-channel model: only volume_0000 is written. The reference fails inside
    the network's first convolution with a traceback; ours names the missing file, and nothing is left for Slicer to
    load as if it were a result."""
    model, models_root, in_dir, out_dir = _slicer_layout(golden_model_dir, tmp_path)
    shutil.copy(golden_raw(DATASET) / "imagesTs" / "mr_008_0000.nii.gz", in_dir / "volume_0000.nii.gz")
    result = _run_like_slicer(model, models_root, in_dir, out_dir)
    assert result.returncode == 1, result.stdout[-4000:]
    assert "Traceback" not in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("nnU-Net error:") and "volume_0001.nii.gz" in last, last
    assert _what_slicer_would_load(out_dir) == []
