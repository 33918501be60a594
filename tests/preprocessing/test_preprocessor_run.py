"""DefaultPreprocessor.run on a small synthetic dataset: output files, dead workers and bad cases."""
import os
import shutil

import numpy as np
import pytest
from _tiny_plans import tiny_plans

from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
from nnunetv2.errors import UserError
from nnunetv2.file_io import load_json, save_json
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

DATASET = "Dataset987_PPTest"


def _plans(spacing=(3.0, 0.8, 0.8)):
    return tiny_plans(DATASET, spacing, 'CTNormalization', {
        'max': 300., 'mean': 130., 'median': 130., 'min': 0., 'percentile_00_5': 40., 'percentile_99_5': 220.,
        'std': 40.})


@pytest.fixture
def dataset(nnunet_dirs):
    raw = make_synthetic_dataset(str(nnunet_dirs['nnUNet_raw']), 987, 'PPTest', '3d', num_train=3, num_test=0,
                                 shape=(8, 16, 14))
    pre = nnunet_dirs['nnUNet_preprocessed'] / DATASET
    pre.mkdir()
    shutil.copy(os.path.join(raw, 'dataset.json'), pre / 'dataset.json')
    save_json(_plans(), str(pre / 'nnUNetPlans.json'))
    return raw, pre


class KillingPreprocessor(DefaultPreprocessor):
    """Simulates the out-of-memory killer: the worker dies on case_000 without a chance to report."""

    def run_case_save(self, output_filename_truncated, *args, **kwargs):
        if output_filename_truncated.endswith('case_000'):
            import signal
            os.kill(os.getpid(), signal.SIGKILL)
        return super().run_case_save(output_filename_truncated, *args, **kwargs)


class RaisingPreprocessor(DefaultPreprocessor):
    def run_case_save(self, output_filename_truncated, *args, **kwargs):
        raise UserError(f"bad input in {os.path.basename(output_filename_truncated)}")


def test_run_writes_every_case(dataset):
    from nnunetv2.utilities.blosc2_storage import load_case
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    raw, pre = dataset
    out = pre / 'nnUNetPlans_3d_fullres'
    out.mkdir()
    (out / 'stale.b2nd').write_text('old')  # the folder is recreated
    pp = DefaultPreprocessor(verbose=False)
    pp.show_progress_bar = False
    pp.run(987, '3d_fullres', 'nnUNetPlans', 2)
    assert sorted(os.listdir(out)) == sorted(f'case_00{i}{s}' for i in range(3) for s in ('.b2nd', '_seg.b2nd', '.pkl'))
    pm = PlansManager(str(pre / 'nnUNetPlans.json'))
    dj = load_json(str(pre / 'dataset.json'))
    data, seg, props = load_case(str(out / 'case_002'))
    d2, s2, p2 = pp.run_case([os.path.join(raw, 'imagesTr', 'case_002_0000.nii.gz')],
                             os.path.join(raw, 'labelsTr', 'case_002.nii.gz'), pm, pm.get_configuration('3d_fullres'),
                             dj)
    np.testing.assert_array_equal(data, d2)
    np.testing.assert_array_equal(seg, s2)
    assert seg.dtype == np.int16 and data.dtype == np.float32
    assert set(props['class_locations'].keys()) == {1, 2}
    np.testing.assert_array_equal(props['class_locations'][1], p2['class_locations'][1])
    assert props['spacing'] == p2['spacing'] and 'sitk_stuff' in props


def test_dead_worker_stops_run_naming_the_case(dataset):
    pp = KillingPreprocessor(verbose=False)
    pp.show_progress_bar = False
    with pytest.raises(RuntimeError) as e:
        pp.run(987, '3d_fullres', 'nnUNetPlans', 1)
    assert 'case_000' in str(e.value) and 'out of memory' in str(e.value)


def test_worker_exception_is_reraised(dataset):
    pp = RaisingPreprocessor(verbose=False)
    pp.show_progress_bar = False
    with pytest.raises(UserError, match="bad input in case_000"):
        pp.run(987, '3d_fullres', 'nnUNetPlans', 1)


def test_label_with_other_shape_is_a_user_error_naming_the_case(dataset):
    import SimpleITK as sitk
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    raw, pre = dataset
    label = os.path.join(raw, 'labelsTr', 'case_001.nii.gz')
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 16, 13), dtype=np.uint8)), label)
    pm = PlansManager(str(pre / 'nnUNetPlans.json'))
    with pytest.raises(UserError, match=r"case_001\.nii\.gz.*\(8, 16, 13\)"):
        DefaultPreprocessor(verbose=False).run_case([os.path.join(raw, 'imagesTr', 'case_001_0000.nii.gz')], label,
                                                    pm, pm.get_configuration('3d_fullres'), str(pre / 'dataset.json'))


def test_missing_plans_is_a_user_error(dataset):
    with pytest.raises(UserError, match="nnUNetPlansX.json"):
        DefaultPreprocessor(verbose=False).run(987, '3d_fullres', 'nnUNetPlansX', 1)


def test_inference_case_without_seg(dataset):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    raw, pre = dataset
    pm = PlansManager(str(pre / 'nnUNetPlans.json'))
    data, seg, props = DefaultPreprocessor(verbose=False).run_case(
        [os.path.join(raw, 'imagesTr', 'case_000_0000.nii.gz')], None, pm, pm.get_configuration('3d_fullres'),
        str(pre / 'dataset.json'))
    assert 'class_locations' not in props and seg.dtype == np.int8 and set(np.unique(seg)) <= {-1, 0}
    assert seg.shape[1:] == data.shape[1:]
    assert props['shape_before_cropping'] == (8, 16, 14)


def test_worker_session_reuses_workers_and_drops_them_after_a_failure(dataset):
    from nnunetv2.preprocessing.preprocessors import worker_pool

    raw, pre = dataset
    out = pre / 'nnUNetPlans_3d_fullres'
    pp = DefaultPreprocessor(verbose=False)
    pp.show_progress_bar = False
    pp.run(987, '3d_fullres', 'nnUNetPlans', 2)
    expected = _decoded(out)
    with worker_pool.worker_session():
        pp.run(987, '3d_fullres', 'nnUNetPlans', 2)
        first = worker_pool._session.workers
        pids = [w.pid for w in first.processes]
        pp.run(987, '3d_fullres', 'nnUNetPlans', 2)  # a second configuration: same processes
        assert worker_pool._session.workers is first and [w.pid for w in first.processes] == pids
        assert all(w.is_alive() for w in first.processes)
        _assert_same(_decoded(out), expected)
        bad = RaisingPreprocessor(verbose=False)
        bad.show_progress_bar = False
        with pytest.raises(UserError, match="bad input in case_00"):
            bad.run(987, '3d_fullres', 'nnUNetPlans', 2)
        assert worker_pool._session.workers is None and not any(w.is_alive() for w in first.processes)
        pp.run(987, '3d_fullres', 'nnUNetPlans', 2)  # fresh workers after the failure
        second = worker_pool._session.workers
        assert second is not first and all(w.is_alive() for w in second.processes)
    assert worker_pool._session is None and not any(w.is_alive() for w in second.processes)
    _assert_same(_decoded(out), expected)


def _decoded(folder):
    from nnunetv2.utilities.blosc2_storage import load_case
    return {f[:-4]: load_case(str(folder / f[:-4])) for f in sorted(os.listdir(folder)) if f.endswith('.pkl')}


def _assert_same(got, expected):
    assert got.keys() == expected.keys()
    for case in expected:
        (d1, s1, p1), (d2, s2, p2) = got[case], expected[case]
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(p1['class_locations'][1], p2['class_locations'][1])


def test_preprocessing_writes_through_the_dataset_class_save_case(dataset, monkeypatch, tmp_path):
    """As the reference: run_case_save writes through nnUNetDatasetBlosc2.save_case with the patch-size chunking, so
    code that patches or overrides that method (another compression, extra files) changes what preprocessing
    writes."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    calls = []
    original = nnUNetDatasetBlosc2.save_case

    def recording(data, seg, properties, output_filename_truncated, **kwargs):
        calls.append((os.path.basename(output_filename_truncated), data.dtype, seg.dtype, sorted(kwargs)))
        return original(data, seg, properties, output_filename_truncated, **kwargs)

    monkeypatch.setattr(nnUNetDatasetBlosc2, 'save_case', staticmethod(recording))
    raw, pre = dataset
    pm = PlansManager(str(pre / 'nnUNetPlans.json'))
    out = tmp_path / 'out'
    out.mkdir()
    DefaultPreprocessor(verbose=False).run_case_save(
        str(out / 'case_001'), [os.path.join(raw, 'imagesTr', 'case_001_0000.nii.gz')],
        os.path.join(raw, 'labelsTr', 'case_001.nii.gz'), pm, pm.get_configuration('3d_fullres'),
        load_json(str(pre / 'dataset.json')))
    assert calls == [('case_001', np.float32, np.int16, ['blocks', 'blocks_seg', 'chunks', 'chunks_seg'])]
    assert sorted(os.listdir(out)) == ['case_001.b2nd', 'case_001.pkl', 'case_001_seg.b2nd']
