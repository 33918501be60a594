"""crop_and_pad against a voxel-by-voxel definition, for boxes inside, across and beyond every border."""
import numpy as np

from nnunetv2.training.dataloading.data_loader import crop_and_pad


def _by_definition(arr, lbs, ubs, pad, dtype):
    lead = arr.shape[:arr.ndim - len(lbs)]
    out = np.full((*lead, *[u - l for l, u in zip(lbs, ubs)]), pad, dtype=dtype)
    for idx in np.ndindex(*out.shape[len(lead):]):
        src = tuple(l + i for l, i in zip(lbs, idx))
        if all(0 <= x < s for x, s in zip(src, arr.shape[len(lead):])):
            out[(..., *idx)] = arr[(..., *src)]
    return out


def test_crop_and_pad_matches_definition():
    rs = np.random.RandomState(0)
    arr = rs.randint(0, 100, (2, 7, 6, 5)).astype(np.int16)
    for _ in range(200):
        lbs = [min(rs.randint(-6, 6), s - 1) for s in arr.shape[1:]]
        ubs = [max(l + rs.randint(1, 9), 1) for l in lbs]
        for dtype, pad in ((np.int16, -1), (np.float32, 0)):
            got = crop_and_pad(arr, lbs, ubs, pad, dtype)
            expected = _by_definition(arr, lbs, ubs, pad, dtype)
            assert got.dtype == dtype and got.shape == expected.shape and np.array_equal(got, expected), (lbs, ubs)
            assert got.flags.writeable and not np.shares_memory(got, arr)
