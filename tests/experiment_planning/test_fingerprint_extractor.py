"""DatasetFingerprintExtractor on small synthetic datasets, and the exact-statistics helpers."""
import json
import os
import signal

import numpy as np
import pytest

from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
from nnunetv2.experiment_planning.dataset_fingerprint.intensity_statistics import (aggregate_channel,
                                                                                   percentiles_like_numpy)
import nnunetv2.experiment_planning.dataset_fingerprint.intensity_statistics as stats_module


def _numpy_stats(samples):
    v = np.concatenate(samples)
    p = np.percentile(v, [0.5, 50.0, 99.5])
    return {'mean': float(np.mean(v)), 'median': float(p[1]), 'std': float(np.std(v)), 'min': float(np.min(v)),
            'max': float(np.max(v)), 'percentile_99_5': float(p[2]), 'percentile_00_5': float(p[0])}


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.0.0",
                    reason="the float32 sums reproduce NumPy 2's; NumPy 1.x differs in the last bits")
def test_aggregate_channel_is_bitwise_numpy(monkeypatch):
    rs = np.random.RandomState(0)
    for it in range(60):
        # small thresholds force the windowed selection and the pairwise-tree path on small inputs
        monkeypatch.setattr(stats_module, "_SMALL", 10 if it % 2 else 2_000_000)
        monkeypatch.setattr(stats_module, "_LEAF", int(rs.choice([128, 1000, 1 << 16])))
        monkeypatch.setattr(stats_module, "_CHUNK", int(rs.choice([333, 1 << 20])))
        samples = []
        for size in rs.choice([0, 1, 7, 129, 5000, 70001], rs.randint(1, 5)):
            if size == 0:
                samples.append([])  # a case without foreground: promotes everything to float64 (reference quirk)
                continue
            a = (rs.randn(size) * 10 ** rs.uniform(-2, 3) + rs.uniform(-100, 100)).astype(np.float32)
            samples.append(a.round() if rs.rand() < 0.5 else a)
        if sum(len(s) for s in samples) == 0:
            continue
        assert aggregate_channel(samples) == _numpy_stats(samples)


def test_percentiles_like_numpy_edge_sizes():
    for v in (np.array([3.0], np.float32), np.array([1.0, -2.0]), np.arange(10, dtype=np.float32)[::-1]):
        out = percentiles_like_numpy(v)
        ref = np.percentile(v, [0.5, 50.0, 99.5])
        assert out.dtype == ref.dtype and np.array_equal(out, ref)


def test_collect_foreground_intensities_matches_seeded_choice():
    rs = np.random.RandomState(3)
    images = rs.rand(2, 4, 5, 6).astype(np.float32)
    seg = np.zeros((1, 4, 5, 6), np.float32)
    seg[0, 1:3, 2:4, 1:5] = 1
    seg[0, 0, 0, 0] = -1  # outside-mask marker is not foreground
    samples, per_case = DatasetFingerprintExtractor.collect_foreground_intensities(seg, images, num_samples=50)
    expected_rs = np.random.RandomState(1234)  # one stream, continued from channel 0 to channel 1
    fg = seg[0] > 0
    for c in range(2):
        np.testing.assert_array_equal(samples[c], expected_rs.choice(images[c][fg], 50, replace=True))
        assert per_case[c]['max'] == images[c][fg].max()
    empty, stats = DatasetFingerprintExtractor.collect_foreground_intensities(np.zeros_like(seg), images)
    assert empty == [[], []] and np.isnan(stats[0]['mean'])


@pytest.fixture
def small_dataset(nnunet_dirs):
    make_synthetic_dataset(str(nnunet_dirs["nnUNet_raw"]), 811, "FpSmall", kind="3d", num_train=4, num_test=0,
                           num_channels=2, shape=(8, 16, 12))
    return nnunet_dirs


def _extractor(num_processes, cls=DatasetFingerprintExtractor):
    e = cls(811, num_processes=num_processes)
    e.show_progress_bar = False
    e.num_foreground_voxels_for_intensitystats = 4000  # 1000 samples per case keeps this fast
    return e


def test_run_in_process_and_in_workers_agree_and_reuse_file(small_dataset):
    fp1 = _extractor(1).run(overwrite_existing=True)
    out = small_dataset["nnUNet_preprocessed"] / "Dataset811_FpSmall" / "dataset_fingerprint.json"
    assert set(fp1) == {'foreground_intensity_properties_per_channel', 'median_relative_size_after_cropping',
                        'shapes_after_crop', 'spacings'}
    # computed: channels named by int, as the reference returns them; the file has json's string keys
    assert set(fp1['foreground_intensity_properties_per_channel']) == {0, 1}
    assert len(fp1['shapes_after_crop']) == 4 and all(len(s) == 3 for s in fp1['shapes_after_crop'])
    fp2 = _extractor(2).run(overwrite_existing=True)
    assert fp2 == fp1 and json.loads(out.read_text()) == json.loads(json.dumps(fp1))
    assert set(json.loads(out.read_text())['foreground_intensity_properties_per_channel']) == {'0', '1'}
    # an existing file is loaded, not recomputed
    doctored = dict(json.loads(out.read_text()), median_relative_size_after_cropping=0.123)
    out.write_text(json.dumps(doctored))
    assert _extractor(2).run(overwrite_existing=False)['median_relative_size_after_cropping'] == 0.123
    assert not [f for f in os.listdir(out.parent) if f.startswith(".nnunet_tmp_")]


def test_unreadable_case_names_the_file(small_dataset):
    bad = small_dataset["nnUNet_raw"] / "Dataset811_FpSmall" / "imagesTr" / "case_002_0001.nii.gz"
    if not bad.exists():  # the demo's naming: find the second channel of the third case
        bad = sorted((small_dataset["nnUNet_raw"] / "Dataset811_FpSmall" / "imagesTr").iterdir())[5]
    bad.write_bytes(b"definitely not a nifti file")
    with pytest.raises(UserError, match=bad.name):
        _extractor(1).run(overwrite_existing=True)


def test_fingerprint_without_num_training_planning_needs_it(small_dataset):
    """As the reference, the fingerprint does not use 'numTraining' (a dataset.json without it is fine there);
    planning does, and names the missing key."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    dj = small_dataset["nnUNet_raw"] / "Dataset811_FpSmall" / "dataset.json"
    d = json.loads(dj.read_text())
    del d["numTraining"]
    dj.write_text(json.dumps(d))
    fp = _extractor(1).run(overwrite_existing=True)
    assert len(fp['shapes_after_crop']) == 4
    with pytest.raises(UserError, match="misses the required key.*'numTraining'"):
        ExperimentPlanner(811)
    d["numTraining"] = "4"  # present but not a number: still named, also by the fingerprint
    dj.write_text(json.dumps(d))
    with pytest.raises(UserError, match="'numTraining'.*whole number"):
        _extractor(1)


class _KillingExtractor(DatasetFingerprintExtractor):
    """Simulates the out-of-memory killer hitting the worker that processes the second case."""

    @staticmethod
    def analyze_case(image_files, segmentation_file, reader_writer_class, num_samples=10000):
        if "_001" in os.path.basename(segmentation_file):
            os.kill(os.getpid(), signal.SIGKILL)
        return DatasetFingerprintExtractor.analyze_case(image_files, segmentation_file, reader_writer_class,
                                                        num_samples)


def test_dead_worker_stops_with_case_name(small_dataset):
    case = sorted(_extractor(1).dataset)[1]
    with pytest.raises(UserError, match=f"{case}.*out of memory"):
        _extractor(2, _KillingExtractor).run(overwrite_existing=True)


def test_summarised_samples_give_the_same_statistics(monkeypatch):
    """Samples described in the workers (values, generator state, draw counts, partial pairwise sums) instead of
    sent: the same statistics, bit for bit, as aggregating the drawn samples; with leaves shared by cases, cases
    without foreground in a channel (float64 promotion), images of another dtype and a single value."""
    from nnunetv2.experiment_planning.dataset_fingerprint import sample_summaries as summaries
    from nnunetv2.experiment_planning.dataset_fingerprint.intensity_statistics import sample_foreground_intensities
    rs = np.random.RandomState(7)
    for it in range(24):
        monkeypatch.setattr(stats_module, "_LEAF", int(rs.choice([64, 1000, 1 << 16])))
        n_cases, n_channels, num_samples = int(rs.randint(1, 5)), int(rs.randint(1, 3)), int(rs.choice([5, 777, 20001]))
        dtype = np.float32 if it % 3 else np.float64
        cases = []
        for k in range(n_cases):
            shape = (1, 3, int(rs.randint(2, 9)), int(rs.randint(2, 9)))
            images = (rs.randn(n_channels, *shape[1:]) * 50).round(int(rs.randint(0, 3))).astype(dtype)
            seg = (rs.rand(*shape) < rs.choice([0.0, 0.02, 0.5])).astype(np.float32)
            if it % 5 == 0:
                images[:] = 3.0  # one value everywhere
            cases.append((seg, images))
        samples = [sample_foreground_intensities(s, i, 1234, num_samples) for s, i in cases]
        expected = {}
        for c in range(n_channels):
            per_case = [s[c] for s in samples]
            if any(len(p) for p in per_case):
                expected[str(c)] = aggregate_channel(per_case)
        first = [summaries.draw_and_sum(s, i, 1234, num_samples, k, n_cases) for k, (s, i) in enumerate(cases)]
        draws, parts = [f[0] for f in first], [f[1] for f in first]
        run_round = lambda args: [summaries.later_round(*a) for a in args]  # noqa: E731
        if len(expected) < n_channels:
            with pytest.raises(summaries.NoForeground):
                summaries.summarised_statistics(draws, parts, num_samples, n_channels, run_round)
            continue
        assert summaries.summarised_statistics(draws, parts, num_samples, n_channels, run_round) == expected


@pytest.mark.parametrize("blockwise", [False, True])
def test_summation_leaves_cover_the_range_in_order(monkeypatch, blockwise):
    from nnunetv2.experiment_planning.dataset_fingerprint.sample_summaries import summation_leaves
    monkeypatch.setattr(stats_module, "_LEAF", 100)
    monkeypatch.setattr(stats_module, "_BLOCKWISE_SUMS", blockwise)
    leaves = summation_leaves(0, 123456)
    longest = np.getbufsize() if blockwise else 100
    assert leaves[0][0] == 0 and leaves[-1][1] == 123456
    assert all(a[1] == b[0] for a, b in zip(leaves, leaves[1:])) and all(e - s <= longest for s, e in leaves)


def test_pairwise_tree_sums_as_the_installed_numpy_does():
    """older NumPy (2.2, 1.26) sums long arrays in buffer-sized blocks, NumPy 2.4 as one tree: the fingerprint's
    float32 means and stds must follow whichever is installed (was: NumPy 2.4's tree on NumPy 2.2, last bits off)."""
    rs = np.random.RandomState(3)
    for size in (9000, 70001, 200000):
        x = (rs.randn(size) * 50 + 60).astype(np.float32)
        assert stats_module.pairwise_tree(lambda s, e: np.add.reduce(x[s:e]), 0, size) == np.add.reduce(x)
