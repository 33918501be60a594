"""DefaultPreprocessor.run while other processes use the dataset: a reader (a trainer started in another shell)
never sees a half-filled configuration folder, and a second run at once does not delete the first's files.
Drop into tests/preprocessing/ (uses the dataset fixture of test_preprocessor_run.py)."""
import os

import pytest

import nnunetv2.preprocessing.preprocessors.worker_pool as wp
from nnunetv2.file_io import TMP_PREFIX
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

from test_preprocessor_run import dataset  # noqa: F401 (fixture)

ALL = sorted(f'case_00{i}{s}' for i in range(3) for s in ('.b2nd', '_seg.b2nd', '.pkl'))


def _run():
    pp = DefaultPreprocessor(verbose=False)
    pp.show_progress_bar = False
    pp.run(987, '3d_fullres', 'nnUNetPlans', 1)


def test_reader_sees_old_or_new_complete_folder_never_half(dataset, monkeypatch):  # noqa: F811
    raw, pre = dataset
    out = pre / 'nnUNetPlans_3d_fullres'
    _run()  # a first, complete preprocessing (the folder a running trainer uses)
    seen = []
    orig = wp.run_cases_in_workers

    def one_case_then_look(preprocessor, tasks, *a, **k):
        orig(preprocessor, tasks[:1], *a, **k)
        seen.append(sorted(os.listdir(out)) if out.is_dir() else None)  # what another process sees now
        orig(preprocessor, tasks[1:], *a, **k)
    monkeypatch.setattr(wp, 'run_cases_in_workers', one_case_then_look)
    _run()  # the rerun
    assert seen == [ALL]  # was: [['case_000.b2nd', 'case_000.pkl', 'case_000_seg.b2nd']] (2 of 3 cases gone)
    assert sorted(os.listdir(out)) == ALL
    assert [n for n in os.listdir(pre) if n.startswith(TMP_PREFIX)] == []


def test_second_run_at_once_does_not_break_the_first(dataset, monkeypatch):  # noqa: F811
    raw, pre = dataset
    out = pre / 'nnUNetPlans_3d_fullres'
    orig = wp.run_cases_in_workers
    state = {'nested': False}

    def other_run_in_between(preprocessor, tasks, *a, **k):
        orig(preprocessor, tasks[:1], *a, **k)
        if not state['nested']:  # another shell runs the same preprocessing from start to end now
            state['nested'] = True
            _run()
        orig(preprocessor, tasks[1:], *a, **k)
    monkeypatch.setattr(wp, 'run_cases_in_workers', other_run_in_between)
    _run()
    assert sorted(os.listdir(out)) == ALL
    assert [n for n in os.listdir(pre) if n.startswith(TMP_PREFIX)] == []


def test_failed_rerun_keeps_the_previous_folder(dataset, monkeypatch):  # noqa: F811
    raw, pre = dataset
    out = pre / 'nnUNetPlans_3d_fullres'
    _run()
    before = {n: (out / n).read_bytes() for n in ALL}
    orig = wp.run_cases_in_workers

    def fail_after_one(preprocessor, tasks, *a, **k):
        orig(preprocessor, tasks[:1], *a, **k)
        raise KeyboardInterrupt
    monkeypatch.setattr(wp, 'run_cases_in_workers', fail_after_one)
    with pytest.raises(KeyboardInterrupt):
        _run()
    assert {n: (out / n).read_bytes() for n in sorted(os.listdir(out))} == before
    assert [n for n in os.listdir(pre) if n.startswith(TMP_PREFIX)] == []
