import numpy as np

from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.preprocessing.preprocessors.foreground_sampling import number_of_samples


def _naive(seg, classes, seed=1234, min_num_samples=10000, min_percent_coverage=0.01):
    """The specification written out directly: coordinate lists per class, one RandomState for all classes."""
    rs = np.random.RandomState(seed)
    out = {}
    for c in classes:
        key = tuple(c) if isinstance(c, list) else c
        labels = key if isinstance(key, tuple) else (key,)
        coords = np.concatenate([np.argwhere(seg == lab) for lab in labels])
        if len(coords) == 0:
            out[key] = []
            continue
        n = max(min(min_num_samples, len(coords)), int(np.ceil(len(coords) * min_percent_coverage)))
        out[key] = coords[rs.choice(len(coords), n, replace=False)]
    return out


def _seg():
    rs = np.random.RandomState(0)
    return rs.choice([-1, 0, 1, 2, 3], size=(1, 30, 40, 50), p=[0.1, 0.6, 0.2, 0.09, 0.01]).astype(np.float32)


def test_matches_naive_for_labels_and_regions():
    seg = _seg()
    for classes in ([1, 2, 3, 4], [[1, 2, 3], [2, 3], [3]], [1, [-1, 0, 1, 2, 3]]):
        ours = DefaultPreprocessor._sample_foreground_locations(seg, classes)
        ref = _naive(seg, classes)
        assert list(ours.keys()) == list(ref.keys())
        for k in ref:
            if isinstance(ref[k], list):
                assert ours[k] == []
            else:
                assert ours[k].dtype == np.int64 and ours[k].shape[1] == 4
                np.testing.assert_array_equal(ours[k], ref[k])


def test_sample_counts_and_keys():
    seg = _seg()
    res = DefaultPreprocessor._sample_foreground_locations(seg, [1, (2, 3)], min_num_samples=100)
    assert set(res.keys()) == {1, (2, 3)}
    t1 = int((seg == 1).sum())
    assert len(res[1]) == max(100, int(np.ceil(t1 * 0.01)))
    assert all(seg[tuple(c)] == 1 for c in res[1][:50])
    assert number_of_samples(5) == 5 and number_of_samples(20000) == 10000
    assert number_of_samples(2_000_000) == 20000
    assert DefaultPreprocessor._sample_foreground_locations(np.zeros((1, 2, 2, 2)), [1, 2]) == {1: [], 2: []}
