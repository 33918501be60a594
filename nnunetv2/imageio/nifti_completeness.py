"""Is a NIfTI file as long as its own header says? A cheap check for writers that ignore failed writes.

SimpleITK's NIfTI writer (ITK's znzlib) does not report a write that fails on a full disk or an exceeded quota: it
leaves an empty or cut-off file and returns normally, and a cut-off .nii.gz even reads back, with wrong voxels. The
header says how long the file must be (the data start at ``vox_offset``; ``dim`` and ``bitpix`` give their size), and
a gzip stream ends with the length of its uncompressed content (modulo 2**32), so comparing the two costs a read of
the header and of the last four bytes, whatever the image's size. A file of many gzip members (bgzip's BGZF) costs a
few bytes read per 64 KiB member; only other multi-member files are decompressed.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from typing import Optional

_NIFTI1_HEADER_BYTES = 348
_NIFTI2_HEADER_BYTES = 540
_BGZF_MAX_CONTENT = 1 << 16


def expected_nifti_length(header: bytes) -> Optional[int]:
    """Bytes of the whole (uncompressed) file that ``header`` begins, or None where the header is not one we know."""
    for order in ('<', '>'):
        if len(header) >= _NIFTI1_HEADER_BYTES and struct.unpack(order + 'i', header[:4])[0] == _NIFTI1_HEADER_BYTES:
            header_bytes = _NIFTI1_HEADER_BYTES
            dims = struct.unpack(order + '8h', header[40:56])
            bitpix = struct.unpack(order + 'h', header[72:74])[0]
            vox_offset = int(struct.unpack(order + 'f', header[108:112])[0])
            break
        if len(header) >= _NIFTI2_HEADER_BYTES and struct.unpack(order + 'i', header[:4])[0] == _NIFTI2_HEADER_BYTES:
            header_bytes = _NIFTI2_HEADER_BYTES
            bitpix = struct.unpack(order + 'h', header[14:16])[0]
            dims = struct.unpack(order + '8q', header[16:80])
            vox_offset = struct.unpack(order + 'q', header[168:176])[0]
            break
    else:
        return None
    # a single-file NIfTI's data follow the header; anything else (a .hdr/.img pair) is not checked
    if not 1 <= dims[0] <= 7 or bitpix <= 0 or bitpix % 8 or vox_offset < header_bytes:
        return None
    voxels = 1
    for d in dims[1:dims[0] + 1]:
        if d < 0:
            return None
        voxels *= max(d, 1)
    return vox_offset + voxels * (bitpix // 8)


def _header_bytes(start: bytes) -> int:
    """The header length its first field announces (NIfTI-2's where it says so, else NIfTI-1's)."""
    if len(start) >= 4 and _NIFTI2_HEADER_BYTES in (struct.unpack('<i', start[:4])[0],
                                                    struct.unpack('>i', start[:4])[0]):
        return _NIFTI2_HEADER_BYTES
    return _NIFTI1_HEADER_BYTES


def incomplete_nifti(path: str, compressed: Optional[bool] = None) -> Optional[str]:
    """Why the .nii / .nii.gz file at ``path`` is shorter than its header says, or None where it is complete (or not
    a NIfTI layout this check knows, which it then leaves alone). A .nii.gz must be one gzip stream, as SimpleITK
    writes it (the recorded length of a file of several concatenated streams is that of the last one only).
    ``compressed`` says whether the content is gzip data (default: whether the name ends with .gz)."""
    size = os.path.getsize(path)
    if size == 0:
        return 'the file is empty'
    if compressed is None:
        compressed = path.endswith('.gz')
    if not compressed:
        with open(path, 'rb') as f:
            header = f.read(_NIFTI2_HEADER_BYTES)
        if size < _header_bytes(header):
            return f'{size} bytes were written, fewer than a NIfTI header has'
        expected = expected_nifti_length(header)
        if expected is not None and size < expected:
            return f'{size} of {expected} bytes were written'
        return None
    try:
        with gzip.open(path, 'rb') as f:
            header = f.read(_NIFTI2_HEADER_BYTES)
    except (EOFError, OSError, zlib.error):
        return 'its compressed stream ends before the header does'
    expected = expected_nifti_length(header)
    if expected is None:
        return None
    with open(path, 'rb') as f:
        f.seek(-4, os.SEEK_END)
        recorded = struct.unpack('<I', f.read(4))[0]
    if size < 18 or recorded != expected % 2 ** 32:
        return 'its compressed stream ends early'
    return None


def is_gzip_file(path: str) -> bool:
    """Whether the file starts with the gzip magic bytes (its content, whatever its name says)."""
    with open(path, 'rb') as f:
        return f.read(2) == b'\x1f\x8b'


def load_nifti_lazily(path: str, fileobj):
    """nibabel's image of the NIfTI file at ``path`` (header read, voxels on demand). A .nii.gz that is not gzip
    data (an uncompressed file renamed) is read from ``fileobj``, an open binary file of it that must stay open
    while the voxels are used: SimpleITK reads such a file by its content, nibabel would go by the name and fail."""
    import nibabel
    if not (str(path).endswith('.gz') and not is_gzip_file(path)):
        return nibabel.load(str(path))
    start = fileobj.read(4)
    fileobj.seek(0)
    nifti2 = len(start) == 4 and _NIFTI2_HEADER_BYTES in (struct.unpack('<i', start)[0], struct.unpack('>i', start)[0])
    return (nibabel.Nifti2Image if nifti2 else nibabel.Nifti1Image).from_stream(fileobj)


def cut_off_nifti(path: str) -> Optional[str]:
    """For files read by others' tools: why the .nii / .nii.gz file at ``path`` is shorter than its header says
    (SimpleITK reads the missing voxels of a cut-off .nii.gz as 0 without a word), or None. Several concatenated gzip
    streams record the length of the last one only: a BGZF file (bgzip's) is measured by walking its members, any
    other (or a BGZF file that does not add up) is decompressed in full before it is called cut off."""
    compressed = is_gzip_file(path)
    why = incomplete_nifti(path, compressed)
    if why is None or not compressed or why != 'its compressed stream ends early':
        return why
    # bgzip's members say where the next one starts: their trailers add up to the length without decompressing.
    # Only a sum that matches is taken at its word; any other answer is decided by decompressing.
    with gzip.open(path, 'rb') as f:
        expected = expected_nifti_length(f.read(_NIFTI2_HEADER_BYTES))
    if expected is not None and bgzf_content_length(path) == expected:
        return None
    return _cut_off_by_decompressing(path)


def bgzf_content_length(path: str) -> Optional[int]:
    """The uncompressed length of a BGZF file (as bgzip writes: gzip members of at most 64 KiB of content, each
    recording its own compressed size in a 'BC' extra subfield), summed from the members' trailers, reading a few
    bytes per member. Each member's length is exact (not modulo 2**32), so is the sum, whatever the file's size.
    None where the file is not BGZF from its first byte to its last: a member without that subfield (plain
    concatenated gzip), a size that runs past the end of the file or onto bytes that are no member, or a file that
    does not end with bgzip's empty end-of-file member (whose absence is how a cut at a member boundary shows)."""
    size = os.path.getsize(path)
    total, position, last = 0, 0, None
    with open(path, 'rb', buffering=0) as f:
        while position < size:
            f.seek(position)
            fixed = f.read(12)
            if len(fixed) < 12:
                return None
            magic, method, flags, extra_length = fixed[:2], fixed[2], fixed[3], struct.unpack('<H', fixed[10:12])[0]
            if magic != b'\x1f\x8b' or method != 8 or not flags & 4 or flags & 0xe0:
                return None
            block_size = _bgzf_block_size(f.read(extra_length))
            # the smallest member: its headers, an empty deflate block (2 bytes) and the 8-byte trailer
            if block_size is None or block_size < 12 + extra_length + 10 or position + block_size > size:
                return None
            f.seek(position + block_size - 4)
            trailer = f.read(4)
            if len(trailer) < 4:  # the file shrank while it was read
                return None
            last = struct.unpack('<I', trailer)[0]
            if last > _BGZF_MAX_CONTENT:
                return None
            total += last
            position += block_size
    return total if last == 0 else None


def _bgzf_block_size(extra: bytes) -> Optional[int]:
    """The member's size from its gzip extra field's 'BC' subfield (which holds it minus one), or None."""
    at = 0
    while at + 4 <= len(extra):
        length = struct.unpack('<H', extra[at + 2:at + 4])[0]
        if extra[at:at + 2] == b'BC' and length == 2 and at + 6 <= len(extra):
            return struct.unpack('<H', extra[at + 4:at + 6])[0] + 1
        at += 4 + length
    return None


def _cut_off_by_decompressing(path: str) -> Optional[str]:
    """``cut_off_nifti``'s verdict on a gzip file from the length of all its content, decompressed (one pass)."""
    length, header = 0, b''
    try:
        with gzip.open(path, 'rb') as f:
            header = f.read(_NIFTI2_HEADER_BYTES)
            length = len(header)
            while True:
                chunk = f.read1(1 << 22)  # one decompression step at a time: ``length`` stays exact on an error
                if not chunk:
                    break
                length += len(chunk)
    except EOFError:
        return 'its compressed stream ends early (the file was cut off)'
    except (OSError, zlib.error) as e:
        # bytes after the last complete stream that are not another stream (zlib, hence SimpleITK, ignores them):
        # the voxels are all there
        expected = expected_nifti_length(header)
        if expected is not None and length >= expected:
            return None
        return f'its compressed data are damaged ({e})'
    expected = expected_nifti_length(header)
    if expected is not None and length < expected:
        return f'it holds {length} of the {expected} bytes its header announces'
    return None
