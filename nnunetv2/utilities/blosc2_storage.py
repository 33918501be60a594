"""The on-disk format of one preprocessed case, identical to nnU-Net 2.8.1's.

Per case ``k`` in ``nnUNet_preprocessed/<dataset>/<data_identifier>/``:

* ``k.b2nd``: blosc2 NDArray, float32 (c, x, y, z);
* ``k_seg.b2nd``: blosc2 NDArray, int16 (1, x, y, z);
* ``k.pkl``: the properties dict.

Compression: LZ4HC, clevel 5, one filter per array (NOFILTER or SHUFFLE, whichever compresses a centred slab of at
most one chunk smaller; ties and failures -> NOFILTER); chunk and block shapes from ``comp_blosc2_params`` with the
configuration's patch size. Either implementation reads folders written by the other. All files are written under a
temporary name and renamed, so an interrupted run never leaves a truncated file under a final name.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Optional, Sequence, Tuple

import numpy as np

from nnunetv2.file_io import atomic_path, load_pickle, raise_if_disk_full, save_pickle

BLOSC2_CODEC_NAME = 'LZ4HC'
BLOSC2_CLEVEL = 5
BLOSC2_NTHREADS = 4
Shape4 = Tuple[int, int, int, int]


def _next_pow2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def _pow2_below(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((int(n) - 1).bit_length() - 1)


def comp_blosc2_params(image_size: Sequence[int], patch_size: Sequence[int], bytes_per_pixel: int = 4,
                       max_block_nbytes: int = 128 * 1024, max_chunk_nbytes: int = 6 * 1024 * 1024,
                       max_chunk_to_patch_ratio_per_axis: Optional[float] = 1.5,
                       grow_singleton_patch_axes: bool = False) -> Tuple[Shape4, Shape4]:
    """Blosc2 ``(blocks, chunks)`` for a 4-D array ``image_size`` = (c, x, y, z) read in patches of ``patch_size``
    ((x, y, z), or (y, z) for 2-D patches, treated as (1, y, z)). Channel entries are always 1.

    Blocks: the patch rounded up to powers of two (capped by the image), halved along the axis that is largest
    relative to its chunk limit until it fits ``max_block_nbytes``. Chunks: grown from the block one block step at a
    time along the axis that is least filled, up to ``max_chunk_to_patch_ratio_per_axis`` x patch per axis and
    ``max_chunk_nbytes`` in total.
    """
    if len(image_size) != 4:
        raise ValueError(f"image_size must be (c, x, y, z), got {tuple(image_size)}")
    is_2d_patch = len(patch_size) == 2
    if len(patch_size) not in (2, 3):
        raise ValueError(f"patch_size must have 2 or 3 entries, got {tuple(patch_size)}")
    patch = (1, *map(int, patch_size)) if is_2d_patch else tuple(map(int, patch_size))
    img = tuple(int(i) for i in image_size[1:])

    if max_chunk_to_patch_ratio_per_axis is None:
        limit = img
    else:
        limit = tuple(max(1, min(i, math.floor(max_chunk_to_patch_ratio_per_axis * p))) for i, p in zip(img, patch))

    def nbytes(shape: Sequence[int]) -> int:
        return int(np.prod(shape)) * bytes_per_pixel

    block = [min(_next_pow2(p), i) for p, i in zip(patch, img)]
    while nbytes(block) > max_block_nbytes:
        candidates = [d for d in range(3) if block[d] > 1]
        if not candidates:
            break
        d = max(candidates, key=lambda k: (block[k] / limit[k], k))
        block[d] = _pow2_below(block[d])

    chunk = list(block)
    while True:
        best = None
        for d in range(3):
            if (is_2d_patch and d == 0) or (patch[d] == 1 and not grow_singleton_patch_axes):
                continue
            if chunk[d] >= img[d] or chunk[d] >= limit[d]:
                continue
            grown = min(chunk[d] + block[d], img[d], limit[d])
            if grown <= chunk[d]:
                continue
            candidate = list(chunk)
            candidate[d] = grown
            if nbytes(candidate) > max_chunk_nbytes:
                continue
            key = (chunk[d] / limit[d], -img[d], d)
            if best is None or key < best[0]:
                best = (key, candidate)
        if best is None:
            break
        chunk = best[1]
    return (1, *block), (1, *chunk)


def _blosc2():
    import blosc2
    return blosc2


def select_filter(arr: np.ndarray, blocks: Sequence[int], chunks: Sequence[int],
                  codec=None, clevel: int = BLOSC2_CLEVEL):
    """NOFILTER or SHUFFLE, whichever compresses a centred slab of ``arr`` (at most one chunk) smaller.

    Only the file size depends on this choice, never the values. Ties and any failure give NOFILTER.
    """
    blosc2 = _blosc2()
    codec = blosc2.Codec.LZ4HC if codec is None else codec
    try:
        slab_shape = [min(int(c), s) for c, s in zip(chunks, arr.shape)]
        slicer = tuple(slice((s - ss) // 2, (s - ss) // 2 + ss) for s, ss in zip(arr.shape, slab_shape))
        slab = np.ascontiguousarray(arr[slicer])
        trial_blocks = tuple(max(1, min(int(b), ss)) for b, ss in zip(blocks, slab_shape))
        best, best_bytes = blosc2.Filter.NOFILTER, None
        for f in (blosc2.Filter.NOFILTER, blosc2.Filter.SHUFFLE):
            cparams = {'codec': codec, 'clevel': clevel, 'nthreads': BLOSC2_NTHREADS, 'filters': [f]}
            size = blosc2.asarray(slab, chunks=tuple(slab_shape), blocks=trial_blocks, cparams=cparams).schunk.cbytes
            if best_bytes is None or size < best_bytes:
                best, best_bytes = f, size
        return best
    except Exception as e:  # a failed trial only costs compression ratio
        warnings.warn(f"blosc2 filter selection failed ({e!r}); using NOFILTER.")
        return blosc2.Filter.NOFILTER


def write_b2nd(arr: np.ndarray, filename: str, blocks: Sequence[int], chunks: Sequence[int], filters=None,
               clevel: int = BLOSC2_CLEVEL, codec=None, blosc2_defaults: bool = False) -> None:
    """Write ``arr`` as a blosc2 NDArray file, atomically (temporary name in the same folder, then rename).

    ``blosc2_defaults``: compress with blosc2's own default parameters (``filters``/``clevel``/``codec`` unused)."""
    blosc2 = _blosc2()
    codec = blosc2.Codec.LZ4HC if codec is None else codec
    arr = np.ascontiguousarray(arr)
    compression = {}  # blosc2's defaults
    if not blosc2_defaults:
        if filters is None:
            filters = [select_filter(arr, blocks, chunks, codec, clevel)]
        compression['cparams'] = {'codec': codec, 'filters': list(filters), 'nthreads': BLOSC2_NTHREADS,
                                  'clevel': clevel}
    with atomic_path(filename) as tmp:
        try:
            blosc2.asarray(arr, urlpath=tmp, chunks=tuple(chunks), blocks=tuple(blocks), **compression)
        except RuntimeError:
            raise_if_disk_full(filename)  # blosc2 says only "Error while creating the NDArray"
            raise


def save_case(data: np.ndarray, seg: np.ndarray, properties: dict, output_filename_truncated: str,
              patch_size: Optional[Sequence[int]] = None, chunks=None, blocks=None, chunks_seg=None, blocks_seg=None,
              clevel: int = BLOSC2_CLEVEL, codec=None, filters=None, filters_seg=None) -> None:
    """Write ``<out>.b2nd`` (float32 data), ``<out>_seg.b2nd`` (int16 seg) and ``<out>.pkl``.

    Chunks/blocks come from ``comp_blosc2_params`` with ``patch_size`` (4 bytes for data, 2 for seg) unless given.
    ``data`` and ``seg`` are written with the dtype they have; pass float32 / int16 for the standard format.
    """
    blosc2 = _blosc2()
    blosc2.set_nthreads(1)  # parallelism comes from the worker processes
    if chunks is None or blocks is None:
        if patch_size is None:
            raise ValueError("save_case needs either patch_size or explicit chunks and blocks")
        blocks, chunks = comp_blosc2_params(data.shape, patch_size, data.itemsize)
    if chunks_seg is None or blocks_seg is None:
        if patch_size is None:
            chunks_seg, blocks_seg = chunks, blocks
        else:
            blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch_size, seg.itemsize)
    write_b2nd(data, output_filename_truncated + '.b2nd', blocks, chunks, filters, clevel, codec)
    write_b2nd(seg, output_filename_truncated + '_seg.b2nd', blocks_seg, chunks_seg, filters_seg, clevel, codec)
    save_pickle(properties, output_filename_truncated + '.pkl')


def open_b2nd(path: str, **kwargs):
    """``blosc2.open(path, mode='r')``; a file blosc2 cannot open (cut off by a full disk or a killed copy, or
    not a b2nd file) is a UserError naming it, instead of blosc2's "returned NULL"."""
    blosc2 = _blosc2()
    try:
        return blosc2.open(urlpath=path, mode='r', **kwargs)
    except (RuntimeError, ValueError, OSError) as e:
        if isinstance(e, OSError) and not os.path.isfile(path):
            raise
        from nnunetv2.errors import UserError
        raise UserError(f"The preprocessed file {path} cannot be read: it is truncated or corrupt "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:200]}).",
                        "Run nnUNetv2_preprocess (or nnUNetv2_plan_and_preprocess) for this configuration again.") \
            from None


def load_case(output_filename_truncated: str, mmap: bool = False) -> Tuple[np.ndarray, np.ndarray, dict]:
    """Read a case written by ``save_case`` (either implementation): ``(data, seg, properties)`` as numpy arrays
    (or blosc2 NDArrays opened read-only with ``mmap=True``)."""
    files = [output_filename_truncated + s for s in ('.b2nd', '_seg.b2nd', '.pkl')]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        from nnunetv2.errors import UserError
        raise UserError(f"Preprocessed case files missing: {', '.join(missing)}.",
                        hint="Run nnUNetv2_preprocess (or nnUNetv2_plan_and_preprocess) for this dataset again.")
    kwargs = {'mmap_mode': 'r'} if mmap else {}
    data = open_b2nd(files[0], **kwargs)
    seg = open_b2nd(files[1], **kwargs)
    if not mmap:
        data, seg = data[:], seg[:]
    return data, seg, load_pickle(files[2])
