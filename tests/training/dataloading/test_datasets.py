"""Dataset classes read what our storage writes (spec 03 §4.1)."""
import os

import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.training.dataloading.nnunet_dataset import (infer_dataset_class, nnUNetDatasetBlosc2,
                                                          nnUNetDatasetNumpy)
from nnunetv2.training.dataloading.utils import unpack_dataset


def test_blosc2_dataset_reads_saved_cases(blosc2_folder):
    folder, cases = blosc2_folder
    assert infer_dataset_class(str(folder)) is nnUNetDatasetBlosc2
    ids = ['case_002', 'case_000']
    ds = nnUNetDatasetBlosc2(str(folder), ids)
    assert ds.identifiers == ['case_000', 'case_002'] and ids == ['case_000', 'case_002']  # sorted in place
    ds = nnUNetDatasetBlosc2(str(folder))
    assert ds.identifiers == sorted(cases)
    for k, (data, seg, props) in cases.items():
        d, s, prev, p = ds[k]
        assert prev is None
        np.testing.assert_array_equal(d[:], data)
        np.testing.assert_array_equal(s[:], seg)
        assert s.dtype == np.int16 and d.dtype == np.float32
        np.testing.assert_array_equal(p['class_locations'][1], props['class_locations'][1])
        # slicing reads only the requested part
        np.testing.assert_array_equal(d[:, 2:5, 3:9, 1:4], data[:, 2:5, 3:9, 1:4])


def test_blosc2_previous_stage_and_missing_files(blosc2_folder, tmp_path):
    folder, cases = blosc2_folder
    prev = tmp_path / 'prev'
    prev.mkdir()
    seg0 = cases['case_000'][1][0]
    nnUNetDatasetBlosc2.save_seg(seg0, str(prev / 'case_000'))
    ds = nnUNetDatasetBlosc2(str(folder), ['case_000', 'case_001'], folder_with_segs_from_previous_stage=str(prev))
    _, _, seg_prev, _ = ds.load_case('case_000')
    np.testing.assert_array_equal(seg_prev[:], seg0)
    with pytest.raises(UserError, match='case_001'):
        ds.load_case('case_001')
    os.remove(folder / 'case_002_seg.b2nd')
    with pytest.raises(UserError, match='case_002_seg.b2nd'):
        nnUNetDatasetBlosc2(str(folder)).load_case('case_002')


def test_numpy_dataset_npz_and_unpacked(npz_folder):
    folder, cases = npz_folder
    assert infer_dataset_class(str(folder)) is nnUNetDatasetNumpy
    ds = nnUNetDatasetNumpy(str(folder))
    assert ds.identifiers == ['case_000', 'case_001']
    d, s, _, p = ds['case_001']
    np.testing.assert_array_equal(d, cases['case_001'][0])
    np.testing.assert_array_equal(s, cases['case_001'][1])

    unpack_dataset(str(folder), True, False, num_processes=1, verify=True)
    assert (folder / 'case_000.npy').is_file() and (folder / 'case_000_seg.npy').is_file()
    assert infer_dataset_class(str(folder)) is nnUNetDatasetNumpy  # .npy files do not confuse the inference
    d, s, _, _ = nnUNetDatasetNumpy(str(folder)).load_case('case_000')
    assert isinstance(d, np.memmap)
    np.testing.assert_array_equal(d, cases['case_000'][0])
    np.testing.assert_array_equal(s, cases['case_000'][1])
    assert not any(f.startswith('.nnunet_tmp_') for f in os.listdir(folder))


def test_infer_dataset_class_errors(tmp_path):
    with pytest.raises(UserError, match='does not exist'):
        infer_dataset_class(str(tmp_path / 'nope'))
    (tmp_path / 'a.npz').write_bytes(b'')
    (tmp_path / 'b.b2nd').write_bytes(b'')
    with pytest.raises(UserError, match=r'\.b2nd, \.npz'):
        infer_dataset_class(str(tmp_path))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(UserError, match='no data files'):
        infer_dataset_class(str(empty))


def test_interrupted_unpacking_keeps_the_npy_files_that_exist(npz_folder, monkeypatch):
    """Ctrl-C while unpacking one case: the case's .npy files that are already there (written by a fold trained side
    by side, or an earlier run; complete, since they are renamed into place) stay; they used to be deleted."""
    import nnunetv2.training.dataloading.utils as unpacking
    folder, cases = npz_folder
    unpack_dataset(str(folder), True, False, num_processes=1)
    os.remove(folder / 'case_000_seg.npy')  # the other process is about to write this one
    data_before = (folder / 'case_000.npy').read_bytes()

    def interrupted(arr, filename):
        raise KeyboardInterrupt

    monkeypatch.setattr(unpacking, '_save_npy', interrupted)
    with pytest.raises(KeyboardInterrupt):
        unpacking._convert_to_npy(str(folder / 'case_000.npz'))
    assert (folder / 'case_000.npy').read_bytes() == data_before
    monkeypatch.undo()
    unpacking._convert_to_npy(str(folder / 'case_000.npz'), verify_npy=True)
    np.testing.assert_array_equal(np.load(folder / 'case_000_seg.npy'), cases['case_000'][1])


def test_unreadable_npy_is_rewritten(npz_folder):
    """A .npy found unreadable by the verification (a flaky network file system) is replaced by a good one."""
    import nnunetv2.training.dataloading.utils as unpacking
    folder, cases = npz_folder
    (folder / 'case_001.npy').write_bytes(b'not a numpy file')
    unpacking._convert_to_npy(str(folder / 'case_001.npz'), verify_npy=True)
    np.testing.assert_array_equal(np.load(folder / 'case_001.npy'), cases['case_001'][0])


def test_save_seg_uses_blosc2_default_compression_like_the_reference(tmp_path):
    # predicted_next_stage/<cfg>/<case>.b2nd (cascade input written by a 3d_lowres validation): the reference writes
    # it with the installed blosc2's default compression parameters, observed by running nnU-Net 2.8.1's
    # nnUNetDatasetBlosc2.save_seg, so lowres folds trained by either implementation leave the same kind of file.
    # The defaults move between blosc2 releases (ZSTD with clevel 5 up to 4.15, clevel 1 from 4.16; SHUFFLE in the
    # last filter slot), so compare with the library's own defaults rather than fixed numbers
    import blosc2
    defaults = blosc2.CParams()
    seg = ((np.random.RandomState(0).rand(14, 44, 37) > 0.7) * 2).astype(np.uint8)
    for name, args in (('auto', ()), ('given', ((14, 36, 36), (14, 32, 32)))):
        nnUNetDatasetBlosc2.save_seg(seg, str(tmp_path / name), *args)
        arr = blosc2.open(str(tmp_path / f'{name}.b2nd'), mode='r')
        cparams = arr.schunk.cparams
        assert (cparams.codec, cparams.clevel) == (defaults.codec, defaults.clevel)
        assert list(cparams.filters) == list(defaults.filters)
        assert cparams.codec != blosc2.Codec.LZ4HC  # not the preprocessed data's settings
        assert np.array_equal(arr[...], seg)
    assert blosc2.open(str(tmp_path / 'given.b2nd'), mode='r').chunks == (14, 36, 36)
