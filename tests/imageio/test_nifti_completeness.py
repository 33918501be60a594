"""The NIfTI length check: complete files written by SimpleITK and nibabel pass, every cut-off one is caught."""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.errors import UserError
from nnunetv2.imageio.nifti_completeness import (bgzf_content_length, cut_off_nifti, expected_nifti_length,
                                                 incomplete_nifti)
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

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


# --- files of several gzip members: bgzip's BGZF is measured from its members' trailers, others are decompressed

@pytest.fixture
def decompressions(monkeypatch):
    """The paths the full decompression was run on (it still runs)."""
    from nnunetv2.imageio import nifti_completeness
    calls = []
    real = nifti_completeness._cut_off_by_decompressing

    def spy(path):
        calls.append(path)
        return real(path)
    monkeypatch.setattr(nifti_completeness, "_cut_off_by_decompressing", spy)
    return calls


@pytest.fixture
def bgzf_image(tmp_path):
    """(single-stream .nii.gz, the same content as BGZF of 11 members plus the end-of-file one, the content)."""
    single = tmp_path / "single.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(RNG.rand(40, 64, 64).astype(np.float32)), str(single), True)
    content = gzip.decompress(single.read_bytes())
    bgzf = tmp_path / "bgzf.nii.gz"
    bgzf.write_bytes(bgzf_compress(content))
    return single, bgzf, content


def _member_starts(data: bytes) -> list:
    """Where each BGZF member of ``data`` starts (its size minus one sits at bytes 16-17 of our writer's headers)."""
    starts = [0]
    while starts[-1] < len(data):
        starts.append(starts[-1] + struct.unpack("<H", data[starts[-1] + 16:starts[-1] + 18])[0] + 1)
    return starts[:-1]


def test_bgzip_file_is_measured_without_decompressing(bgzf_image, decompressions):
    single, bgzf, content = bgzf_image
    assert len(_member_starts(bgzf.read_bytes())) == 12
    assert bgzf_content_length(str(bgzf)) == len(content)
    assert cut_off_nifti(str(bgzf)) is None
    a, _ = SimpleITKIO().read_images([str(bgzf)])
    b, _ = SimpleITKIO().read_images([str(single)])
    np.testing.assert_array_equal(a, b)
    assert decompressions == []


def _cut_points(data: bytes) -> dict:
    starts = _member_starts(data)
    return {"inside the first member": starts[1] - 100, "inside a middle member": starts[5] + 1000,
            "at a member boundary": starts[5], "inside a trailer": starts[6] - 3,
            "inside the end-of-file member": len(data) - 10, "without the last data member": starts[-2]}


@pytest.mark.parametrize("where", sorted(_cut_points(bgzf_compress(b"\0" * 12 * 0xff00))))
def test_cut_bgzip_file_is_refused(bgzf_image, where):
    _, bgzf, _ = bgzf_image
    data = bgzf.read_bytes()
    bgzf.write_bytes(data[:_cut_points(data)[where]])
    assert bgzf_content_length(str(bgzf)) is None
    with pytest.raises(UserError, match=r"bgzf\.nii\.gz is incomplete"):
        SimpleITKIO().read_images([str(bgzf)])


def test_bgzip_file_without_its_end_of_file_member_is_decompressed(bgzf_image, decompressions):
    """The missing end-of-file member is how a cut at a member boundary shows, so the trailers are not trusted; the
    decompression then finds every voxel there (SimpleITK reads them all, as before), and the file is read."""
    single, bgzf, _ = bgzf_image
    bgzf.write_bytes(bgzf.read_bytes()[:-28])
    assert bgzf_content_length(str(bgzf)) is None
    assert cut_off_nifti(str(bgzf)) is None
    assert decompressions == [str(bgzf)]
    a, _ = SimpleITKIO().read_images([str(bgzf)])
    np.testing.assert_array_equal(a, SimpleITKIO().read_images([str(single)])[0])


@pytest.mark.parametrize("size", [0, 27, 100, 0xffff, "one less", "one more"])
def test_damaged_bgzip_member_size_falls_back_to_decompressing(bgzf_image, decompressions, size):
    _, bgzf, _ = bgzf_image
    data = bytearray(bgzf.read_bytes())
    at = _member_starts(bytes(data))[4] + 16
    old = struct.unpack("<H", data[at:at + 2])[0]
    data[at:at + 2] = struct.pack("<H", {"one less": old - 1, "one more": old + 1}.get(size, size))
    bgzf.write_bytes(bytes(data))
    assert bgzf_content_length(str(bgzf)) is None
    assert cut_off_nifti(str(bgzf)) is None  # zlib does not read the size: the voxels are all there
    assert decompressions == [str(bgzf)]
    bgzf.write_bytes(bytes(data[:len(data) // 2]))
    assert cut_off_nifti(str(bgzf)) is not None


def test_bgzip_length_is_exact_not_modulo_2_to_the_32(bgzf_image, monkeypatch):
    """Each member holds under 64 KiB, so the sum of the trailers is the exact length, also past 4 GiB."""
    from nnunetv2.imageio import nifti_completeness
    _, bgzf, _ = bgzf_image
    real = nifti_completeness.expected_nifti_length
    monkeypatch.setattr(nifti_completeness, "expected_nifti_length", lambda header: real(header) + 2 ** 32)
    assert cut_off_nifti(str(bgzf)) is not None


def test_concatenated_plain_gzip_members_are_decompressed(bgzf_image, decompressions):
    single, _, content = bgzf_image
    multi = single.parent / "multi.nii.gz"
    multi.write_bytes(gzip.compress(content[:1000]) + gzip.compress(content[1000:]))
    assert bgzf_content_length(str(multi)) is None
    assert cut_off_nifti(str(multi)) is None
    assert decompressions == [str(multi)]
    # BGZF members followed by a plain one: not BGZF to the end, decompressed as well
    mixed = single.parent / "mixed.nii.gz"
    mixed.write_bytes(bgzf_compress(content[:200000])[:-28] + gzip.compress(content[200000:]))
    assert bgzf_content_length(str(mixed)) is None
    assert cut_off_nifti(str(mixed)) is None
    multi.write_bytes(multi.read_bytes()[:-5000])
    assert cut_off_nifti(str(multi)) is not None
