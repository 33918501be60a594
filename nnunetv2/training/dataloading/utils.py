"""Unpacking of the legacy ``.npz`` preprocessed format into memory-mappable ``.npy`` files."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import List

import numpy as np

from nnunetv2.configuration import default_num_processes
from nnunetv2.file_io import atomic_path, finished_files
from nnunetv2.utilities.worker_processes import requested_processes

logger = logging.getLogger(__name__)

_MAX_ATTEMPTS = 3  # a first try and two retries (a flaky network file system can corrupt a write)


def _save_npy(arr: np.ndarray, filename: str) -> None:
    with atomic_path(filename) as tmp:
        with open(tmp, 'wb') as f:
            np.save(f, arr)


def _npy_is_readable(filename: str) -> bool:
    try:
        np.load(filename, mmap_mode='r')
        return True
    except Exception:
        return False


def _convert_to_npy(npz_file: str, unpack_segmentation: bool = True, overwrite_existing: bool = False,
                    verify_npy: bool = False, fail_ctr: int = 0) -> None:
    """Write ``<id>.npy`` (and ``<id>_seg.npy``) next to ``<id>.npz``; optionally verify by memory-mapping."""
    data_npy = npz_file[:-4] + '.npy'
    seg_npy = npz_file[:-4] + '_seg.npy'
    targets = [('data', data_npy)] + ([('seg', seg_npy)] if unpack_segmentation else [])
    # every .npy is written under a temporary name and renamed when complete, so an interruption (Ctrl-C, a kill)
    # never leaves a partial one; the existing files may also be another process's (folds trained side by side
    # unpack the same dataset), so nothing is deleted but a file found unreadable
    for attempt in range(fail_ctr, _MAX_ATTEMPTS):
        try:
            npz = None
            for key, target in targets:
                if overwrite_existing or not os.path.isfile(target):
                    if npz is None:
                        npz = np.load(npz_file)
                    _save_npy(npz[key], target)
            if verify_npy:
                bad = [t for _, t in targets if not _npy_is_readable(t)]
                if bad:
                    for target in bad:
                        with contextlib.suppress(FileNotFoundError):
                            os.remove(target)
                    raise OSError(f"unpacked file(s) not readable: {', '.join(bad)}")
            return
        except Exception as e:
            if attempt + 1 >= _MAX_ATTEMPTS:
                raise RuntimeError(f"Unpacking {npz_file} failed {_MAX_ATTEMPTS} times; last error: {e}") from e
            logger.warning("Unpacking %s failed (%s); retrying.", npz_file, e)
            overwrite_existing = True


def _npz_files(folder: str) -> List[str]:
    return [os.path.join(folder, f) for f in finished_files(folder, '.npz')]


def unpack_dataset(folder: str, unpack_segmentation: bool = True, overwrite_existing: bool = False,
                   num_processes: int = default_num_processes, verify: bool = False):
    """Unpack every ``.npz`` in ``folder`` to ``.npy`` files (skipping existing ones unless ``overwrite_existing``).

    ``.npy`` files can be memory-mapped, so the data loader reads only the patch it needs.
    """
    files = _npz_files(folder)
    args = [(f, unpack_segmentation, overwrite_existing, verify) for f in files]
    if requested_processes(num_processes) <= 1 or len(files) <= 1:
        for a in args:
            _convert_to_npy(*a)
        return
    from nnunetv2.utilities.watched_pool import WatchedPool
    from nnunetv2.utilities.worker_processes import worker_count
    with WatchedPool(worker_count(num_processes, len(files)), "unpacking worker", "nnUNet_def_n_proc") as pool:
        pool.starmap(_convert_to_npy, args, names=[os.path.basename(f) for f in files])
