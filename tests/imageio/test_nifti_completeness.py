"""The NIfTI length check: complete files written by SimpleITK and nibabel pass, every cut-off one is caught."""
from __future__ import annotations

import os
import struct
import zlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.imageio.nifti_completeness import expected_nifti_length, incomplete_nifti

RNG = np.random.RandomState(0)
ARRAYS = {
    "seg_uint8": RNG.randint(0, 3, (24, 32, 32)).astype(np.uint8),
    "ct_int16": RNG.randint(-1000, 1000, (10, 20, 30)).astype(np.int16),
    "float32": RNG.rand(5, 7, 9).astype(np.float32),
    "float64_2d": RNG.rand(17, 13),
    "one_voxel": np.zeros((1, 1, 1), np.uint8),
    "uint32": RNG.randint(0, 5, (3, 4, 5)).astype(np.uint32),
}


def bgzf_compress(data: bytes, block: int = 0xff00) -> bytes:
    """``data`` as bgzip writes it: gzip members of at most 64 KiB of content, each with a 'BC' extra subfield holding
    its own length minus one, then the empty end-of-file member."""
    members = []
    for start in list(range(0, len(data), block)) + [len(data)]:  # the last range is empty: the end-of-file marker
        chunk = data[start:start + block]
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = deflate.compress(chunk) + deflate.flush()
        header = struct.pack("<BBBBIBBHBBHH", 31, 139, 8, 4, 0, 0, 255, 6, ord("B"), ord("C"), 2, 18 + len(body) + 7)
        members.append(header + body + struct.pack("<II", zlib.crc32(chunk), len(chunk)))
    return b"".join(members)


def _cut_copies(path: str, tmp_path) -> list:
    data = open(path, "rb").read()
    ending = ".nii.gz" if path.endswith(".gz") else ".nii"
    copies = []
    for cut in sorted(c for c in {0, 1, 100, len(data) // 3, len(data) // 2, len(data) - 1} if c < len(data)):
        copy = tmp_path / f"cut_{cut}{ending}"
        copy.write_bytes(data[:cut])
        copies.append(str(copy))
    return copies


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_simpleitk_files_complete_and_cut(tmp_path, name, ending):
    path = str(tmp_path / f"{name}{ending}")
    sitk.WriteImage(sitk.GetImageFromArray(ARRAYS[name]), path, True)
    assert incomplete_nifti(path) is None
    for copy in _cut_copies(path, tmp_path):
        assert incomplete_nifti(copy) is not None, copy


def test_vector_and_4d_images(tmp_path):
    vector = sitk.GetImageFromArray(RNG.rand(6, 7, 8, 3).astype(np.float32), isVector=True)
    sitk.WriteImage(vector, str(tmp_path / "vector.nii.gz"), True)
    sitk.WriteImage(sitk.GetImageFromArray(RNG.rand(2, 6, 7, 8).astype(np.float32)), str(tmp_path / "4d.nii.gz"), True)
    for name in ("vector.nii.gz", "4d.nii.gz"):
        assert incomplete_nifti(str(tmp_path / name)) is None
        for copy in _cut_copies(str(tmp_path / name), tmp_path):
            assert incomplete_nifti(copy) is not None


@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_nibabel_files(tmp_path, image_class, ending):
    path = str(tmp_path / f"image{ending}")
    nib.save(image_class(RNG.rand(5, 6, 7).astype(np.float32), np.eye(4)), path)
    assert incomplete_nifti(path) is None
    for copy in _cut_copies(path, tmp_path):
        assert incomplete_nifti(copy) is not None


def test_expected_length_of_a_header():
    header = nib.Nifti1Header()
    header.set_data_shape((4, 5, 6))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    assert expected_nifti_length(header.binaryblock) == 352 + 4 * 5 * 6 * 2
    assert expected_nifti_length(b"\0" * 348) is None  # not a NIfTI header: not judged


def test_big_gzip_length_is_compared_modulo_2_to_the_32(tmp_path, monkeypatch):
    """gzip records the length modulo 2**32; an image over 4 GiB must not be called incomplete."""
    from nnunetv2.imageio import nifti_completeness
    path = str(tmp_path / "big.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(ARRAYS["seg_uint8"]), path, True)
    real = nifti_completeness.expected_nifti_length
    monkeypatch.setattr(nifti_completeness, "expected_nifti_length", lambda header: real(header) + 2 ** 32)
    assert incomplete_nifti(path) is None
    assert os.path.getsize(path) > 0
