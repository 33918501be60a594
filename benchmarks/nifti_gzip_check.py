"""Benchmark: what the cut-off check of every NIfTI read costs, for a .nii.gz written as one gzip stream (SimpleITK,
nibabel) and for the same file written as BGZF (bgzip: many small gzip members).

    python benchmarks/nifti_gzip_check.py [--shape 200 256 256] [--repeats 5]

A float32 volume (smooth field plus noise, so that it compresses like an image rather than like noise) is written
both ways into a temporary folder. Prints the best of ``--repeats`` seconds for a plain ``sitk.ReadImage`` plus array
(what a read without the check costs), ``cut_off_nifti`` alone, ``SimpleITKIO.read_images`` and
``NibabelIO.read_images`` (which has no such check), and our reads over the plain SimpleITK read. Ours only: the
reference has no check, so its read is the plain one.
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time

import numpy as np
import SimpleITK as sitk

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "imageio"))
from test_nifti_completeness import bgzf_compress  # noqa: E402  (one BGZF writer, the tests')

from nnunetv2.imageio.nibabel_reader_writer import NibabelIO  # noqa: E402
from nnunetv2.imageio.nifti_completeness import cut_off_nifti  # noqa: E402
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO  # noqa: E402


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 256, 256])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.linspace(0, 6, n) for n in args.shape), indexing="ij", sparse=True)
    volume = (np.round(500 * np.sin(z) * np.cos(y) * np.sin(x + y)) + rng.integers(-20, 20, args.shape))
    volume = volume.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        single = os.path.join(tmp, "single_0000.nii.gz")
        sitk.WriteImage(sitk.GetImageFromArray(volume), single, True)
        bgzf = os.path.join(tmp, "bgzf_0000.nii.gz")
        with open(single, "rb") as f:
            content = gzip.decompress(f.read())
        with open(bgzf, "wb") as f:
            f.write(bgzf_compress(content))
        print(f"volume {tuple(args.shape)} float32, {len(content) / 2 ** 20:.0f} MiB; single stream "
              f"{os.path.getsize(single) / 2 ** 20:.1f} MiB, BGZF {os.path.getsize(bgzf) / 2 ** 20:.1f} MiB; "
              f"best of {args.repeats}")
        print(f"{'file':8} {'sitk s':>8} {'check s':>8} {'SimpleITKIO s':>14} {'ratio':>6} {'NibabelIO s':>12} "
              f"{'ratio':>6}")
        for name, path in (("single", single), ("bgzf", bgzf)):
            assert cut_off_nifti(path) is None
            plain = best(lambda: sitk.GetArrayFromImage(sitk.ReadImage(path)), args.repeats)
            check = best(lambda: cut_off_nifti(path), args.repeats)
            ours = best(lambda: SimpleITKIO().read_images([path]), args.repeats)
            nib = best(lambda: NibabelIO().read_images([path]), args.repeats)
            print(f"{name:8} {plain:8.3f} {check:8.4f} {ours:14.3f} {ours / plain:6.2f} {nib:12.3f} "
                  f"{nib / plain:6.2f}")


if __name__ == "__main__":
    main()
