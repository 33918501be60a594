"""Preprocessed-case datasets: where a case's image, segmentation and properties live on disk.

``nnUNetDatasetBlosc2`` reads the current format (``.b2nd`` + ``.pkl``, written by
:mod:`nnunetv2.utilities.blosc2_storage`); ``nnUNetDatasetNumpy`` reads the legacy ``.npz``/``.npy`` one.
``load_case`` returns arrays that support slicing (memory-mapped where possible) so that the data loader only
reads/decompresses the patch it crops.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import List, Type, Union

import numpy as np

from nnunetv2.configuration import default_num_processes
from nnunetv2.errors import UserError
from nnunetv2.file_io import finished_files, load_pickle, save_npz_compressed, save_pickle
from nnunetv2.utilities import blosc2_storage
from nnunetv2.utilities.blosc2_storage import comp_blosc2_params, select_filter, write_b2nd  # noqa: F401 (re-export)


class nnUNetBaseDataset(ABC):
    """A folder of preprocessed cases; ``ds[identifier]`` is ``load_case(identifier)``.

    ``identifiers`` defaults to every case in ``folder``; the list is sorted in place (splits rely on the order).
    """

    def __init__(self, folder: str, identifiers: List[str] = None,
                 folder_with_segs_from_previous_stage: str = None):
        super().__init__()
        if not os.path.isdir(folder):
            raise UserError(f"Preprocessed data folder {folder} does not exist.",
                            hint="Run nnUNetv2_preprocess (or nnUNetv2_plan_and_preprocess) for this configuration.")
        if identifiers is None:
            identifiers = self.get_identifiers(folder)
        identifiers.sort()

        self.source_folder = folder
        self.folder_with_segs_from_previous_stage = folder_with_segs_from_previous_stage
        self.identifiers = identifiers

    def __getitem__(self, identifier):
        return self.load_case(identifier)

    def __len__(self) -> int:
        return len(self.identifiers)

    @abstractmethod
    def load_case(self, identifier):
        """Return ``(data, seg, seg_prev or None, properties)``."""

    @staticmethod
    @abstractmethod
    def save_case(data: np.ndarray, seg: np.ndarray, properties: dict, output_filename_truncated: str):
        pass

    @staticmethod
    @abstractmethod
    def get_identifiers(folder: str) -> List[str]:
        pass

    @staticmethod
    def unpack_dataset(folder: str, overwrite_existing: bool = False, num_processes: int = default_num_processes,
                       verify: bool = True):
        """Nothing to unpack for formats that can be read in place."""
        pass

    def _missing(self, path: str, what: str) -> UserError:
        return UserError(f"{what} {path} is missing (case listed in {self.source_folder}).",
                         hint="Re-run preprocessing for this case.")

    def _missing_previous_stage(self, path: str) -> UserError:
        return UserError(f"Previous stage's segmentation {path} is missing (case listed in {self.source_folder}).",
                         hint=f"The cascade trains on the previous stage's validation predictions in "
                              f"{self.folder_with_segs_from_previous_stage}: train the previous stage (same trainer "
                              f"and plans) for every fold first, or rerun its validation with --val.")

    def previous_stage_file_exists(self, identifier: str) -> bool:
        """Whether the previous stage's segmentation of ``identifier`` is there (True without a previous stage)."""
        return True

    def check_previous_stage_complete(self) -> None:
        """UserError before training starts when cases lack the previous stage's segmentation: otherwise the
        cascade fails midway, whenever the augmentation first picks such a case. They are written by the final
        validation of each fold of the previous stage, which may still be running (another GPU) or not started."""
        if self.folder_with_segs_from_previous_stage is None:
            return
        missing = [i for i in self.identifiers if not self.previous_stage_file_exists(i)]
        if missing:
            raise UserError(f"{len(missing)} of the {len(self.identifiers)} cases have no previous stage's "
                            f"segmentation in {self.folder_with_segs_from_previous_stage} yet (first: {missing[0]}).",
                            hint="The cascade trains on the validation predictions of every fold of the previous "
                                 "stage (same trainer and plans): wait until all of its folds have finished training "
                                 "and their final validation (one may be validating right now), or rerun a fold's "
                                 "validation with --val.")


class nnUNetDatasetNumpy(nnUNetBaseDataset):
    """Legacy format: ``<id>.npz`` (keys ``data``, ``seg``), optionally unpacked to ``<id>.npy`` + ``<id>_seg.npy``."""

    def load_case(self, identifier):
        base = os.path.join(self.source_folder, identifier)
        npz = None

        def from_npz(key):
            nonlocal npz
            if npz is None:
                if not os.path.isfile(base + '.npz'):
                    raise self._missing(base + '.npz', 'Preprocessed case file')
                npz = np.load(base + '.npz')
            return npz[key]

        data = np.load(base + '.npy', mmap_mode='r') if os.path.isfile(base + '.npy') else from_npz('data')
        seg = np.load(base + '_seg.npy', mmap_mode='r') if os.path.isfile(base + '_seg.npy') else from_npz('seg')

        seg_prev = None
        if self.folder_with_segs_from_previous_stage is not None:
            prev = os.path.join(self.folder_with_segs_from_previous_stage, identifier)
            if os.path.isfile(prev + '.npy'):
                seg_prev = np.load(prev + '.npy', mmap_mode='r')
            elif os.path.isfile(prev + '.npz'):
                seg_prev = np.load(prev + '.npz')['seg']
            else:
                raise self._missing_previous_stage(prev + '.npz')

        properties = load_pickle(base + '.pkl')
        return data, seg, seg_prev, properties

    def previous_stage_file_exists(self, identifier: str) -> bool:
        if self.folder_with_segs_from_previous_stage is None:
            return True
        prev = os.path.join(self.folder_with_segs_from_previous_stage, identifier)
        return os.path.isfile(prev + '.npy') or os.path.isfile(prev + '.npz')

    @staticmethod
    def save_case(data: np.ndarray, seg: np.ndarray, properties: dict, output_filename_truncated: str):
        save_npz_compressed(output_filename_truncated + '.npz', data=data, seg=seg)
        save_pickle(properties, output_filename_truncated + '.pkl')

    @staticmethod
    def save_seg(seg: np.ndarray, output_filename_truncated: str):
        save_npz_compressed(output_filename_truncated + '.npz', seg=seg)

    @staticmethod
    def get_identifiers(folder: str) -> List[str]:
        return [f[:-4] for f in finished_files(folder) if f.endswith('.npz')]

    @staticmethod
    def unpack_dataset(folder: str, overwrite_existing: bool = False, num_processes: int = default_num_processes,
                       verify: bool = True):
        from nnunetv2.training.dataloading.utils import unpack_dataset
        return unpack_dataset(folder, True, overwrite_existing, num_processes, verify)


def _open_b2nd(path: str):
    from nnunetv2.utilities.blosc2_storage import open_b2nd  # names a truncated file instead of "returned NULL"
    # One decompression thread: parallelism comes from the augmentation workers. Memory-mapping lets the loader
    # decompress only the chunks its patch touches (mmap is unreliable on Windows).
    kwargs = {'mmap_mode': 'r'} if os.name != 'nt' else {}
    return open_b2nd(path, dparams={'nthreads': 1}, **kwargs)


class nnUNetDatasetBlosc2(nnUNetBaseDataset):
    """Current format: ``<id>.b2nd`` (float32 data), ``<id>_seg.b2nd`` (int16 seg), ``<id>.pkl``."""

    def __init__(self, folder: str, identifiers: List[str] = None,
                 folder_with_segs_from_previous_stage: str = None):
        super().__init__(folder, identifiers, folder_with_segs_from_previous_stage)
        import blosc2
        blosc2.set_nthreads(1)

    def load_case(self, identifier):
        base = os.path.join(self.source_folder, identifier)
        for f in (base + '.b2nd', base + '_seg.b2nd', base + '.pkl'):
            if not os.path.isfile(f):
                raise self._missing(f, 'Preprocessed case file')
        data = _open_b2nd(base + '.b2nd')
        seg = _open_b2nd(base + '_seg.b2nd')

        seg_prev = None
        if self.folder_with_segs_from_previous_stage is not None:
            prev = os.path.join(self.folder_with_segs_from_previous_stage, identifier + '.b2nd')
            if not os.path.isfile(prev):
                raise self._missing_previous_stage(prev)
            seg_prev = _open_b2nd(prev)

        properties = load_pickle(base + '.pkl')
        return data, seg, seg_prev, properties

    def previous_stage_file_exists(self, identifier: str) -> bool:
        return self.folder_with_segs_from_previous_stage is None or os.path.isfile(
            os.path.join(self.folder_with_segs_from_previous_stage, identifier + '.b2nd'))

    @staticmethod
    def _select_filter(arr: np.ndarray, blocks, chunks, codec, clevel):
        return select_filter(arr, blocks, chunks, codec, clevel)

    @staticmethod
    def save_case(data: np.ndarray, seg: np.ndarray, properties: dict, output_filename_truncated: str,
                  chunks=None, blocks=None, chunks_seg=None, blocks_seg=None, clevel: int = 5, codec=None,
                  filters=None, filters_seg=None):
        # Without explicit chunking, treat the whole case as one "patch" (the preprocessor passes real values).
        if chunks is None or blocks is None:
            blocks, chunks = comp_blosc2_params(data.shape, data.shape[1:], data.itemsize)
        if chunks_seg is None or blocks_seg is None:
            blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, seg.shape[1:], seg.itemsize)
        blosc2_storage.save_case(data, seg, properties, output_filename_truncated, chunks=chunks, blocks=blocks,
                                 chunks_seg=chunks_seg, blocks_seg=blocks_seg, clevel=clevel, codec=codec,
                                 filters=filters, filters_seg=filters_seg)

    @staticmethod
    def save_seg(seg: np.ndarray, output_filename_truncated: str, chunks_seg=None, blocks_seg=None):
        """Write a segmentation alone (the cascade's previous-stage output, shape ``(x, y, z)``)."""
        seg = np.ascontiguousarray(seg)
        if chunks_seg is None or blocks_seg is None:
            shape4 = seg.shape if seg.ndim == 4 else (1, *seg.shape[-3:])
            blocks_seg, chunks_seg = comp_blosc2_params(shape4, shape4[1:], seg.itemsize)
            if seg.ndim != 4:
                blocks_seg, chunks_seg = blocks_seg[-seg.ndim:], chunks_seg[-seg.ndim:]
        # The reference stores this file with the installed blosc2's default compression (ZSTD and SHUFFLE; clevel
        # 5 up to blosc2 4.15, 1 from 4.16), not with the LZ4HC settings of the preprocessed data; keep that so a
        # lowres stage run by either implementation gives the same files.
        write_b2nd(seg, output_filename_truncated + '.b2nd', blocks_seg, chunks_seg, blosc2_defaults=True)

    @staticmethod
    def get_identifiers(folder: str) -> List[str]:
        return [f[:-5] for f in finished_files(folder) if f.endswith('.b2nd') and not f.endswith('_seg.b2nd')]


file_ending_dataset_mapping = {
    'npz': nnUNetDatasetNumpy,
    'b2nd': nnUNetDatasetBlosc2,
}


def infer_dataset_class(folder: str) -> Union[Type[nnUNetDatasetBlosc2], Type[nnUNetDatasetNumpy]]:
    """Dataset class matching the files in ``folder`` (``.b2nd`` -> Blosc2, ``.npz`` -> Numpy)."""
    if not os.path.isdir(folder):
        raise UserError(f"Preprocessed data folder {folder} does not exist.",
                        hint="Run nnUNetv2_preprocess (or nnUNetv2_plan_and_preprocess) for this configuration.")
    endings = {f.rsplit('.', 1)[-1] for f in finished_files(folder) if '.' in f} - {'pkl', 'npy'}
    if len(endings) != 1 or next(iter(endings)) not in file_ending_dataset_mapping:
        found = ', '.join(sorted('.' + e for e in endings)) or 'no data files'
        raise UserError(f"Cannot tell the preprocessed data format of {folder}: expected only .b2nd (current) or "
                        f".npz (legacy) case files besides .pkl/.npy, found {found}.",
                        hint="Remove stray files from that folder or re-run nnUNetv2_preprocess.")
    return file_ending_dataset_mapping[next(iter(endings))]
