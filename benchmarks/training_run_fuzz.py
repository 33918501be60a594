"""Trial, not a speed benchmark: seeded training on RANDOM tiny datasets, ours against the reference (2.8.1), bit for bit.

    python benchmarks/training_run_fuzz.py [--cases 4] [--seed 0] [--cascade 0.3] [--reference-python PATH] [--keep]

``seeded_training.py`` does this for the golden datasets; this trial draws the datasets and the runs. Per case:

* a raw NIfTI dataset (2-D as single slices, or 3-D; random spacings, anisotropic now and then) of 3-6 cases with
  1-2 channels of random normalization (CT, z-score, none, 0-1 rescaling) and a label map: plain labels, regions
  (``regions_class_order``), an ignore label (with labels or regions), the highest label absent from some cases;
* planned by the reference and cut to tiny plans (3 stages, 8/16/32 features, a random small patch that may exceed
  the images, batch size 2-3, strides of 1 or 2 per axis), preprocessed once by the reference; each side trains on
  its own copy (``seeded_training.reference_preprocess`` / ``_run_side``);
* trained on both sides with everything seeded alike (seeded_training's driver: every batch, loss, weights, the
  checkpoint, ...) with a trainer drawn from the shipped variants, fold 0-4 or ``all``, 1-2 epochs x 2-3 iterations
  (+1-2 validation iterations), with the final validation now and then;
* a share of the 3-D cases (``--cascade``) is a cascade instead: a ``3d_lowres`` configuration at twice the spacing
  with ``next_stage`` is trained on fold ``all`` with the final validation (which writes ``predicted_next_stage``
  for every case, compared too), then ``3d_cascade_fullres`` with those predictions on a random fold.

Case ``i`` of ``--seed S`` is drawn from ``random.Random(S + i)``: ``--seed S+i --cases 1`` runs it again alone.
Prints per case what was drawn and, per training, ``identical`` (``both refuse ...`` counts as agreement) or the first
difference. Exit status 1 if anything differs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from seeded_training import PLANS, TrainingRun, Verdict, _run_side, compare, reference_preprocess  # noqa: E402

DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID}_TrainingRunFuzz"
# in both implementations' variants (and the spec); the Adan ones need a package neither side has here, the
# benchmarking ones write timings
TRAINERS = ["nnUNetTrainer", "nnUNetTrainerDA5", "nnUNetTrainerDA5ord0", "nnUNetTrainerDA5Segord0",
            "nnUNetTrainerNoDeepSupervision", "nnUNetTrainerBN", "nnUNetTrainerCELoss", "nnUNetTrainerDiceLoss",
            "nnUNetTrainerDiceCELoss_noSmooth", "nnUNetTrainerTopk10Loss", "nnUNetTrainerTopk10LossLS01",
            "nnUNetTrainerDiceTopK10Loss", "nnUNetTrainerNoMirroring", "nnUNetTrainerNoDA",
            "nnUNetTrainer_noDummy2DDA", "nnUNetTrainer_DASegOrd0", "nnUNetTrainer_DASegOrd0_NoMirroring",
            "nnUNetTrainer_onlyMirror01", "nnUNetTrainer_onlyMirror01_DA5", "nnUNetTrainer_probabilisticOversampling",
            "nnUNetTrainer_probabilisticOversampling_033", "nnUNetTrainer_probabilisticOversampling_010",
            "nnUNetTrainerAdam", "nnUNetTrainerVanillaAdam", "nnUNetTrainerAdam3en4", "nnUNetTrainerCosAnneal",
            "nnUNetTrainer_warmup", "nnUNetTrainer_5epochs"]
NORMALIZATIONS = ["CT", "zscore", "noNorm", "rescale_to_0_1"]
LABEL_KINDS = ["labels", "regions", "ignore", "regions+ignore"]


@dataclass
class Case:
    """One drawn dataset and what is trained on it."""
    three_d: bool
    channels: List[str]
    shapes: List[Tuple[int, int, int]]  # (z, y, x) per case; z = 1 for 2-D
    spacing: Tuple[float, float, float]  # (z, y, x)
    label_kind: str
    n_classes: int  # foreground labels (or regions)
    absent_in: List[int]  # cases without the highest foreground label
    patch: List[int]
    strides: List[List[int]]
    batch_size: int
    trainer: str
    fold: str
    epochs: int
    iterations: int
    val_iterations: int
    final_validation: bool
    npz: bool  # the final validation saves probabilities too
    cascade: bool
    configuration: str  # "2d" (single slices, or slices of 3-D images) or "3d_fullres" (the cascade: its 2nd stage)
    zero_outside: bool  # images 0 outside an ellipsoid: cropped to it, seg -1 outside, normalization in the mask

    def describe(self) -> str:
        what = "cascade" if self.cascade else self.configuration
        return (f"{'3-D' if self.three_d else '2-D'} {what}, {len(self.shapes)} cases "
                f"{'(0 outside an ellipsoid) ' if self.zero_outside else ''}"
                f"{'x'.join(map(str, self.shapes[0]))}.., spacing {self.spacing}, channels {'/'.join(self.channels)}, "
                f"{self.label_kind} ({self.n_classes}, absent in {len(self.absent_in)}), patch {self.patch}, "
                f"batch {self.batch_size}, {self.trainer}, fold {self.fold}, {self.epochs}x{self.iterations}"
                f"(+{self.val_iterations})"
                f"{', final validation' + (' with --npz' if self.npz else '') if self.final_validation else ''}")


def draw_case(rng: random.Random, cascade_share: float) -> Case:
    three_d = rng.random() < 0.6
    cascade = three_d and rng.random() < cascade_share
    n_cases = rng.randint(5, 6) if cascade or rng.random() < 0.85 else rng.randint(3, 4)
    if three_d:
        spacing = (rng.choice([1.0, 1.5, 3.0, 4.0]), rng.choice([0.8, 1.0]), 1.0)
        shapes = [(rng.randint(8, 20), rng.randint(12, 24), rng.randint(12, 24)) for _ in range(n_cases)]
        # a patch 4 slices deep makes the trainer augment in 2-D (an anisotropic patch)
        patch = [rng.choice([4, 8, 16]), rng.choice([16, 24]), rng.choice([16, 24])]
    else:
        spacing = (1.0, rng.choice([0.5, 1.0]), 1.0)
        shapes = [(1, rng.randint(20, 48), rng.randint(20, 48)) for _ in range(n_cases)]
        patch = [rng.choice([16, 32, 48]), rng.choice([32, 48])]
    # strides of 2 where the patch allows two halvings, now and then 1 (anisotropic pooling)
    per_axis = [[1, 2, 2] if p % 4 == 0 and rng.random() < 0.8 else [1, 1, 1] for p in patch]
    configuration = "3d_fullres" if three_d else "2d"
    if three_d and not cascade and rng.random() < 0.25:  # 2-D training on slices of the volumes
        configuration, patch = "2d", patch[1:]
        per_axis = per_axis[1:]
    strides = [list(s) for s in zip(*per_axis)]
    label_kind = rng.choice(LABEL_KINDS)
    n_classes = rng.randint(1, 3)
    absent_in = sorted(rng.sample(range(n_cases), rng.randint(0, n_cases - 2)))
    # fewer than 5 cases: only fold "all" can be split (both refuse the others), drawn now and then all the same
    fold = rng.choice(["0", "1", "2", "3", "4", "all"]) if n_cases >= 5 or rng.random() < 0.2 else "all"
    return Case(three_d=three_d, channels=[rng.choice(NORMALIZATIONS) for _ in range(rng.randint(1, 2))],
                shapes=shapes, spacing=spacing, label_kind=label_kind, n_classes=n_classes, absent_in=absent_in,
                patch=patch, strides=strides, batch_size=rng.randint(2, 3), trainer=rng.choice(TRAINERS), fold=fold,
                epochs=rng.randint(1, 2), iterations=rng.randint(2, 3), val_iterations=rng.randint(1, 2),
                final_validation=rng.random() < (0.25 if three_d else 0.5), npz=rng.random() < 0.5, cascade=cascade,
                configuration=configuration, zero_outside=rng.random() < 0.3)


# ---------------------------------------------------------------------------------------------------------------------
# the raw dataset
# ---------------------------------------------------------------------------------------------------------------------
def labels_json(case: Case) -> Tuple[Dict[str, object], int]:
    """dataset.json's ``labels`` (and ``regions_class_order`` where regions) and the highest label value written."""
    labels: Dict[str, object] = {"background": 0}
    n = case.n_classes
    if case.label_kind.startswith("regions"):
        # nested regions: region i holds the label values i..n
        for i in range(1, n + 1):
            labels[f"region{i}"] = list(range(i, n + 1))
    else:
        for i in range(1, n + 1):
            labels[f"label{i}"] = i
    if case.label_kind.endswith("ignore"):
        labels["ignore"] = n + 1
        return labels, n + 1
    return labels, n


def _image_and_seg(case: Case, index: int, rng) -> Tuple[List, object]:
    """Random intensities (per normalization) and a label map of boxes (numpy arrays, (z, y, x))."""
    import numpy as np
    shape = case.shapes[index]
    seg = np.zeros(shape, np.uint8)
    highest = case.n_classes if index not in case.absent_in else case.n_classes - 1
    for value in range(1, highest + 1):
        for _ in range(rng.integers(1, 3)):
            lo = [int(rng.integers(0, s)) for s in shape]
            hi = [min(s, a + int(rng.integers(1, max(2, s // 2 + 1)))) for a, s in zip(lo, shape)]
            seg[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    if case.label_kind.endswith("ignore") and rng.random() < 0.8:
        lo = [int(rng.integers(0, s)) for s in shape]
        seg[tuple(slice(a, a + 1 + int(rng.integers(0, max(1, s // 3)))) for a, s in zip(lo, shape))] = \
            case.n_classes + 1
    inside = np.ones(shape, bool)
    if case.zero_outside:  # an ellipsoid over ~70 % of each in-plane axis (all slices)
        grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape[1:]], indexing="ij")
        inside[:] = sum(g ** 2 for g in grid) <= 0.7 ** 2
    images = []
    for scheme in case.channels:
        noise = rng.normal(size=shape).astype(np.float32)
        if scheme == "CT":
            images.append((noise * 300 + seg * 150 - 200).round().astype(np.float32))
        else:
            images.append((noise + seg).astype(np.float32) * float(rng.uniform(0.5, 50)) + float(rng.uniform(-5, 50)))
        images[-1][~inside] = 0
    return images, seg


def write_raw(case: Case, raw: str, seed: int) -> None:
    import numpy as np
    import SimpleITK as sitk
    folder = os.path.join(raw, DATASET_NAME)
    os.makedirs(os.path.join(folder, "imagesTr"))
    os.makedirs(os.path.join(folder, "labelsTr"))
    rng = np.random.default_rng(seed)

    def save(array, path: str) -> None:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(reversed(case.spacing)))
        sitk.WriteImage(image, path)

    for i in range(len(case.shapes)):
        images, seg = _image_and_seg(case, i, rng)
        for c, image in enumerate(images):
            save(image, os.path.join(folder, "imagesTr", f"case{i:03d}_{c:04d}.nii.gz"))
        save(seg, os.path.join(folder, "labelsTr", f"case{i:03d}.nii.gz"))
    labels, _ = labels_json(case)
    dataset = {"channel_names": {str(c): s for c, s in enumerate(case.channels)}, "labels": labels,
               "numTraining": len(case.shapes), "file_ending": ".nii.gz"}
    if case.label_kind.startswith("regions"):
        dataset["regions_class_order"] = list(range(1, case.n_classes + 1))
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(dataset, f, indent=2)


# ---------------------------------------------------------------------------------------------------------------------
# tiny plans
# ---------------------------------------------------------------------------------------------------------------------
def tiny_plans(plans: dict, case: Case) -> dict:
    """The reference's plans cut to the drawn tiny configuration; for a cascade also a ``3d_lowres`` stage at twice
    the spacing (the planner makes none for images this small) and ``3d_cascade_fullres`` after it."""
    c = plans["configurations"][case.configuration]
    c["data_identifier"] = f"{PLANS}_{case.configuration}"
    c["batch_size"] = case.batch_size
    c["patch_size"] = list(case.patch)
    dim = len(case.patch)
    c["architecture"]["arch_kwargs"].update(
        n_stages=3, features_per_stage=[8, 16, 32], kernel_sizes=[[3] * dim] * 3, strides=case.strides,
        n_conv_per_stage=[2, 2, 2], n_conv_per_stage_decoder=[1, 1])
    configurations = {case.configuration: c}
    if case.cascade:
        low = json.loads(json.dumps(c))
        low["data_identifier"] = f"{PLANS}_3d_lowres"
        low["spacing"] = [s * 2 for s in c["spacing"]]
        low["median_image_size_in_voxels"] = [max(1, round(s / 2)) for s in c["median_image_size_in_voxels"]]
        low["next_stage"] = "3d_cascade_fullres"
        configurations = {"3d_lowres": low, "3d_fullres": c,
                          "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}
    plans["plans_name"] = PLANS
    plans["configurations"] = configurations
    return plans


# ---------------------------------------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------------------------------------
def runs_of(case: Case) -> List[TrainingRun]:
    """The trainings of a case: one, or a cascade's two (the first stage on fold ``all`` with its final validation,
    so that every case has a prediction for the second)."""
    def run(configuration: str, fold: str, final_validation: bool) -> TrainingRun:
        return TrainingRun(DATASET_NAME, configuration, case.trainer, case.epochs, case.iterations,
                           case.val_iterations, final_validation, fold=fold, npz=case.npz)
    if case.cascade:
        return [run("3d_lowres", "all", True), run("3d_cascade_fullres", case.fold, case.final_validation)]
    return [run(case.configuration, case.fold, case.final_validation)]


def run_case(case: Case, seed: int, ref_python: str, work: str) -> List[Tuple[str, Verdict, float, float]]:
    base = os.path.join(work, f"seed{seed}")
    os.makedirs(os.path.join(base, "raw"))
    write_raw(case, os.path.join(base, "raw"), seed)
    configurations = ["3d_fullres", "3d_lowres"] if case.cascade else [case.configuration]
    source = reference_preprocess(DATASET_ID, ref_python, base, lambda plans: tiny_plans(plans, case), configurations)
    rows = []
    for run in runs_of(case):
        ref, ref_s = _run_side("ref", ref_python, run, source, base)
        ours, ours_s = _run_side("ours", sys.executable, run, source, base)
        verdict = compare(ref, ours)
        if run.configuration == "3d_lowres":
            verdict.text += f", {len(_next_stage_files(ours))} next-stage predictions"
        rows.append((run.configuration, verdict, ours_s, ref_s))
    return rows


def _next_stage_files(record: dict) -> Dict[str, object]:
    """The ``predicted_next_stage`` files a first stage's record holds (a cascade with none would test nothing)."""
    return next((value for _, what, value in record["events"] if what == "predicted_next_stage"), {})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cascade", type=float, default=0.3, help="share of the 3-D cases trained as a cascade")
    p.add_argument("--reference-python", default=None, help="python of an env with nnunetv2==2.8.1")
    p.add_argument("--reference-venv", default=os.path.join(tempfile.gettempdir(), "nnunet_ref_venv"))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()

    from _harness import default_reference_python, reference_python
    ref_python = reference_python(args.reference_python or default_reference_python(), args.reference_venv)
    start = time.perf_counter()
    work = tempfile.mkdtemp(prefix="nnunet_training_run_fuzz_")
    counts = {"identical": 0, "both refuse": 0, "differ": 0}
    times = [0.0, 0.0]
    try:
        for i in range(args.cases):
            seed = args.seed + i
            case = draw_case(random.Random(seed), args.cascade)
            print(f"[seed {seed}] {case.describe()}", flush=True)
            for configuration, verdict, ours_s, ref_s in run_case(case, seed, ref_python, work):
                kind = ("differ" if not verdict.identical else
                        "both refuse" if verdict.text.startswith("both refuse") else "identical")
                counts[kind] += 1
                times[0] += ours_s
                times[1] += ref_s
                print(f"    {configuration}: {verdict.text} (ours {ours_s:.1f} s, ref {ref_s:.1f} s)", flush=True)
        total = sum(counts.values())
        print(f"\n{args.cases} cases, {total} trainings: {counts['identical']} identical, {counts['both refuse']} "
              f"refused by both, {counts['differ']} differ; drivers ours {times[0]:.0f} s, ref {times[1]:.0f} s, "
              f"total {time.perf_counter() - start:.0f} s")
        return 1 if counts["differ"] else 0
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
