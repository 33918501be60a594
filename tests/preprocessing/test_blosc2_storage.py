import os

import blosc2
import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.utilities.blosc2_storage import comp_blosc2_params, load_case, save_case, select_filter


@pytest.mark.parametrize("image,patch,bpp,block,chunk", [
    # the examples of spec 02 §4.7
    ((1, 40, 100, 100), (40, 112, 112), 4, (1, 16, 64, 32), (1, 40, 100, 100)),
    ((1, 40, 100, 100), (40, 112, 112), 2, (1, 16, 64, 64), (1, 40, 100, 100)),
    ((1, 40, 100, 100), (112, 112), 4, (1, 1, 100, 100), (1, 1, 100, 100)),
    ((1, 240, 448, 441), (80, 160, 160), 4, (1, 32, 32, 32), (1, 64, 192, 128)),
    # from the reference's storage.json of the golden datasets
    ((1, 47, 92, 76), (48, 96, 80), 4, (1, 32, 32, 32), (1, 47, 92, 76)),
    ((1, 196, 199, 205), (128, 128, 128), 2, (1, 64, 32, 32), (1, 128, 128, 192)),
    ((1, 272, 275, 284), (320, 320), 4, (1, 1, 128, 256), (1, 1, 275, 284)),
])
def test_comp_blosc2_params(image, patch, bpp, block, chunk):
    assert comp_blosc2_params(image, patch, bpp) == (block, chunk)


def test_comp_blosc2_params_rejects_bad_shapes():
    with pytest.raises(ValueError):
        comp_blosc2_params((40, 100, 100), (40, 112, 112))
    with pytest.raises(ValueError):
        comp_blosc2_params((1, 40, 100, 100), (112,))


def test_save_load_roundtrip_and_format(tmp_path):
    rs = np.random.RandomState(0)
    data = rs.rand(2, 10, 30, 20).astype(np.float32)
    seg = rs.randint(-1, 3, size=(1, 10, 30, 20)).astype(np.int16)
    props = {'spacing': [1., 2., 3.], 'class_locations': {1: np.zeros((0, 4), dtype=np.int64)}}
    out = str(tmp_path / "case_000")
    save_case(data, seg, props, out, patch_size=(8, 16, 16))
    assert sorted(os.listdir(tmp_path)) == ["case_000.b2nd", "case_000.pkl", "case_000_seg.b2nd"]  # no temp files
    d, s, p = load_case(out)
    np.testing.assert_array_equal(d, data)
    np.testing.assert_array_equal(s, seg)
    assert s.dtype == np.int16 and p['spacing'] == [1., 2., 3.]
    arr = blosc2.open(out + ".b2nd", mode='r')
    blocks, chunks = comp_blosc2_params(data.shape, (8, 16, 16), 4)
    assert tuple(arr.chunks) == chunks and tuple(arr.blocks) == blocks
    assert arr.schunk.cparams.codec == blosc2.Codec.LZ4HC and arr.schunk.cparams.clevel == 5
    assert arr.schunk.cparams.filters[0] in (blosc2.Filter.NOFILTER, blosc2.Filter.SHUFFLE)
    d2, s2, _ = load_case(out, mmap=True)
    np.testing.assert_array_equal(d2[:], data)


def test_filter_choice():
    zeros = np.zeros((1, 8, 16, 16), dtype=np.float32)
    assert select_filter(zeros, (1, 8, 16, 16), (1, 8, 16, 16)) == blosc2.Filter.NOFILTER  # tie -> NOFILTER
    smooth = np.linspace(0, 1, 8 * 64 * 64, dtype=np.float32).reshape(1, 8, 64, 64)
    assert select_filter(smooth, (1, 8, 32, 32), (1, 8, 64, 64)) == blosc2.Filter.SHUFFLE


def test_load_case_missing_files(tmp_path):
    with pytest.raises(UserError, match="missing"):
        load_case(str(tmp_path / "nope"))
