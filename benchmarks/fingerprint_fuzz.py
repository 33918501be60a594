"""Differential trial, not a speed benchmark: does our fingerprint extraction write the reference's (2.8.1)
dataset_fingerprint.json for random datasets?

    python benchmarks/fingerprint_fuzz.py [--datasets 30] [--seed 0] [--reference-python PATH] [--keep]

Each dataset is drawn from its own seeded generator and written once as NIfTI files: 1-12 cases of 1-3 channels,
random shapes (2-D-like single slices included) and spacings, images of several types (uint8, int16, float32, with
negative values, constant channels, zero borders that cropping removes) and labels of a few blobs (or none at all, or
a tiny foreground of fewer voxels than the 10000 samples drawn per case). Each side runs
``DatasetFingerprintExtractor(dataset, num_processes=1).run()`` on every dataset in one process (ours: this checkout;
the reference from a temporary folder), and the two ``dataset_fingerprint.json`` are compared value for value
(floats exactly). A dataset both sides refuse counts as agreement. Exit status 1 if anything differs.
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, run_both, trial_arguments, work_folder  # noqa: E402

FIRST_ID = 800


def _write_dataset(raw: str, dataset_id: int, seed: int) -> None:
    import numpy as np
    import SimpleITK as sitk
    rng = np.random.default_rng(seed)
    folder = os.path.join(raw, f"Dataset{dataset_id:03d}_Fuzz")
    os.makedirs(os.path.join(folder, "imagesTr"))
    os.makedirs(os.path.join(folder, "labelsTr"))
    n_channels, n_cases = int(rng.integers(1, 4)), int(rng.integers(1, 13))
    n_labels = int(rng.integers(1, 4))
    dtype = rng.choice([np.uint8, np.int16, np.float32])
    foreground = rng.choice(["blobs", "blobs", "tiny", "none"])
    for case in range(n_cases):
        shape = [1 if rng.random() < 0.15 else int(rng.integers(4, 40))] + [int(v) for v in rng.integers(8, 64, 2)]
        spacing = [float(v) for v in rng.uniform(0.3, 5, 3)]
        seg = np.zeros(shape, dtype=np.uint8)
        if foreground == "blobs":
            for label in range(1, n_labels + 1):
                for _ in range(int(rng.integers(1, 3))):
                    centre = [int(rng.integers(0, s)) for s in shape]
                    radius = [int(rng.integers(1, max(2, s // 3))) for s in shape]
                    seg[tuple(slice(max(0, c - r), c + r) for c, r in zip(centre, radius))] = label
        elif foreground == "tiny":
            seg[tuple(int(rng.integers(0, s)) for s in shape)] = 1
        mask = np.ones(shape, dtype=bool)
        if rng.random() < 0.5:  # a zero border that cropping removes (where no label lies)
            border = [int(rng.integers(0, max(1, s // 4))) for s in shape]
            mask[:] = False
            mask[tuple(slice(b, s - b if s - b > b else s) for b, s in zip(border, shape))] = True
            seg[~mask] = 0
        for channel in range(n_channels):
            if dtype == np.uint8:
                image = rng.integers(0, 256, shape)
            elif dtype == np.int16:
                image = rng.integers(-1024, 3000, shape)
            else:
                image = rng.normal(rng.uniform(-100, 100), rng.uniform(0.01, 500), shape)
            image = image.astype(dtype)
            if rng.random() < 0.1:
                image[:] = 5
            image[~mask] = 0
            itk = sitk.GetImageFromArray(image)
            itk.SetSpacing(spacing[::-1])
            sitk.WriteImage(itk, os.path.join(folder, "imagesTr", f"case{case:03d}_{channel:04d}.nii.gz"))
        itk = sitk.GetImageFromArray(seg)
        itk.SetSpacing(spacing[::-1])
        sitk.WriteImage(itk, os.path.join(folder, "labelsTr", f"case{case:03d}.nii.gz"))
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"channel_names": {str(c): "CT" if c == 0 else "MR" for c in range(n_channels)},
                   "labels": {"background": 0, **{f"l{i}": i for i in range(1, n_labels + 1)}},
                   "numTraining": n_cases, "file_ending": ".nii.gz"}, f)


def drive(first_id: int, n_datasets: int, result_file: str) -> None:
    from _fuzz_harness import drive_cases
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    drive_cases(list(range(n_datasets)),
                lambda i: {"fingerprint": DatasetFingerprintExtractor(first_id + i, num_processes=1).run()},
                result_file)


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--datasets", type=int, default=30)
    args = p.parse_args()
    if args.driver:
        drive(int(args.driver[0]), int(args.driver[1]), args.driver[2])
        return 0

    with work_folder("nnunet_fingerprint_fuzz_", args.keep) as base:
        raw = os.path.join(base, "raw")
        for i in range(args.datasets):
            _write_dataset(raw, FIRST_ID + i, args.seed * 100003 + i)
        ref, ours = run_both(args, __file__, [str(FIRST_ID), str(args.datasets)], base, lambda side: {
            "nnUNet_raw": raw, "nnUNet_preprocessed": os.path.join(base, f"pre_{side}"), "OMP_NUM_THREADS": "1"})
        differing, refused_both = compare_outcomes(ref, ours, list(range(args.datasets)),
                                                   lambda i: f"Dataset{FIRST_ID + i:03d} (seed {args.seed})")
        print_summary("datasets", args.datasets, differing, refused_both, ref, ours)
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
