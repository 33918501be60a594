"""Preprocessing workers started before the predictor exists: the data iterator hands them their cases (items as
from its own workers), releases those it does not need, and none outlives the command. Workers a command handed
their cases early are adopted only if the iterator would hand them exactly those; otherwise they are stopped and
the iterator's own workers give the same items. The command tells the cases as the predictor will, silently."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import SimpleITK as sitk

from _tiny_plans import tiny_plans as _plans

from nnunetv2.inference import data_iterators, prestarted_preprocessing
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

DATASET_JSON = {'labels': {'background': 0, 'thing': 1}, 'channel_names': {'0': 'MR'}, 'file_ending': '.nii.gz'}


def _cases(folder, n):
    rng = np.random.default_rng(0)
    cases = []
    for i in range(n):
        image = sitk.GetImageFromArray((rng.random((8, 16, 14)) * (i + 1)).astype(np.float32))
        image.SetSpacing((0.8, 0.8, 3.0))
        path = os.path.join(folder, f'case_{i}_0000.nii.gz')
        sitk.WriteImage(image, path)
        cases.append([path])
    return cases


def _items(cases, num_processes):
    plans_manager = PlansManager(_plans())
    configuration_manager = plans_manager.get_configuration('3d_fullres')
    names = [os.path.basename(c[0])[:-12] for c in cases]
    return list(data_iterators.preprocessing_iterator_fromfiles(cases, None, names, plans_manager, DATASET_JSON,
                                                                configuration_manager, num_processes))


def _early_tasks(cases, num_processes, plans=None):
    """The tasks a command hands over early: built from its own plans manager (equal content, another object)."""
    from nnunetv2.inference.preprocessing_workers import preprocess_fromfiles_save_to_queue
    plans_manager = PlansManager(plans or _plans())
    names = [os.path.basename(c[0])[:-12] for c in cases]
    return prestarted_preprocessing.round_robin_tasks(
        preprocess_fromfiles_save_to_queue, [cases, None, names],
        (plans_manager, dict(DATASET_JSON), plans_manager.get_configuration('3d_fullres')), num_processes, False)


def _assert_same_items(items, expected):
    assert [i['ofile'] for i in items] == [i['ofile'] for i in expected]
    for a, b in zip(items, expected):
        assert a['data'].dtype == b['data'].dtype and np.array_equal(a['data'].numpy(), b['data'].numpy())


def test_prestarted_workers_take_the_cases_and_the_spare_one_exits(tmp_path, monkeypatch):
    cases = _cases(str(tmp_path), 3)
    expected = _items(cases, 2)  # workers started by the iterator itself

    prestarted_preprocessing.prestart(3)
    workers = list(prestarted_preprocessing._waiting)

    def no_new_worker(*args, **kwargs):
        raise AssertionError("the iterator started a worker of its own")

    monkeypatch.setattr(data_iterators, 'start_worker', no_new_worker)
    items = _items(cases, 2)
    assert prestarted_preprocessing._waiting == []
    assert [i['ofile'] for i in items] == [i['ofile'] for i in expected] == ['case_0', 'case_1', 'case_2']
    for a, b in zip(items, expected):
        assert a['data'].dtype == b['data'].dtype and np.array_equal(a['data'].numpy(), b['data'].numpy())
        assert a['data_properties']['shape_before_cropping'] == b['data_properties']['shape_before_cropping']
    for w in workers:
        w.process.join(timeout=60)
        assert w.process.exitcode == 0  # two finished their cases, the spare read the end of its pipe


def test_without_prestart_nothing_is_taken():
    assert prestarted_preprocessing.take(3) == []


SCRIPT = textwrap.dedent('''
    import sys
    from nnunetv2.inference import prestarted_preprocessing
    if __name__ == "__main__":  # as console scripts are: spawned workers import this file
        prestarted_preprocessing.prestart(2)
        print(" ".join(str(w.process.pid) for w in prestarted_preprocessing._waiting), flush=True)
        sys.exit("the command failed before predicting")
''')


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_command_that_fails_before_predicting_leaves_no_worker(tmp_path):
    script = tmp_path / "command.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "the command failed before predicting" in proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def test_an_entry_point_that_fails_releases_its_prestarted_workers(tmp_path, monkeypatch):
    """Called from Python (a long-lived process), a failed prediction leaves no worker waiting for a task."""
    from nnunetv2.file_io import save_json
    from nnunetv2.inference.predict_cli import predict_entry_point_modelfolder
    model = tmp_path / "model"
    model.mkdir()
    save_json(DATASET_JSON, str(model / "dataset.json"))  # but no plans and no fold: initialisation fails
    save_json(_plans(), str(model / "plans.json"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    _cases(str(inputs), 2)
    started = []
    real_prestart = prestarted_preprocessing.prestart

    def recording_prestart(n, tasks=None):
        real_prestart(n, tasks)
        started.extend(prestarted_preprocessing._waiting)

    monkeypatch.setattr(prestarted_preprocessing, 'prestart', recording_prestart)
    with pytest.raises(SystemExit) as exc:
        predict_entry_point_modelfolder(['-i', str(inputs), '-o', str(tmp_path / 'out'), '-m', str(model),
                                         '-f', '0', '-device', 'cpu', '-npp', '2'])
    assert exc.value.code == 1
    assert len(started) == 2 and prestarted_preprocessing._waiting == []
    for w in started:
        w.process.join(timeout=60)
        assert w.process.exitcode == 0


def test_round_robin_tasks_split_the_cases_as_the_iterator_takes_them():
    tasks = prestarted_preprocessing.round_robin_tasks(len, [[0, 1, 2, 3, 4], None, 'abcde'], ('shared',), 2, True)
    assert tasks == [(len, ([0, 2, 4], None, ['a', 'c', 'e'], 'shared'), True),
                     (len, ([1, 3], None, ['b', 'd'], 'shared'), True)]


def test_same_task_compares_plans_by_content():
    a = _early_tasks([['x_0000.nii.gz'], ['y_0000.nii.gz']], 1)[0]
    b = _early_tasks([['x_0000.nii.gz'], ['y_0000.nii.gz']], 1)[0]
    assert a[1][3] is not b[1][3] and prestarted_preprocessing.same_task(a, b)
    other_spacing = _early_tasks([['x_0000.nii.gz'], ['y_0000.nii.gz']], 1, _plans(spacing=(2.0, 0.8, 0.8)))[0]
    assert not prestarted_preprocessing.same_task(a, other_spacing)
    other_cases = _early_tasks([['x_0000.nii.gz']], 1)[0]
    assert not prestarted_preprocessing.same_task(a, other_cases)
    assert not prestarted_preprocessing.same_task(a, (len, *a[1:]))
    assert not prestarted_preprocessing.same_task(a, (a[0], a[1], True))


def test_workers_handed_their_cases_early_are_adopted_when_the_tasks_match(tmp_path, monkeypatch):
    cases = _cases(str(tmp_path), 3)
    expected = _items(cases, 2)
    prestarted_preprocessing.prestart(2, _early_tasks(cases, 2))
    workers = list(prestarted_preprocessing._waiting)
    assert all(w.task is not None for w in workers)

    def no_new_worker(*args, **kwargs):
        raise AssertionError("the iterator started a worker of its own")

    monkeypatch.setattr(data_iterators, 'start_worker', no_new_worker)
    _assert_same_items(_items(cases, 2), expected)
    for w in workers:
        w.process.join(timeout=60)
        assert w.process.exitcode == 0


@pytest.mark.parametrize('early', ['other plans', 'other worker count'])
def test_workers_handed_other_cases_are_stopped_and_the_iterator_starts_its_own(tmp_path, early):
    cases = _cases(str(tmp_path), 3)
    expected = _items(cases, 2)
    if early == 'other plans':
        prestarted_preprocessing.prestart(2, _early_tasks(cases, 2, _plans(spacing=(2.0, 0.8, 0.8))))
    else:
        prestarted_preprocessing.prestart(3, _early_tasks(cases, 3))
    workers = list(prestarted_preprocessing._waiting)
    _assert_same_items(_items(cases, 2), expected)
    assert prestarted_preprocessing._waiting == []
    for w in workers:
        w.process.join(timeout=10)
        assert w.process.exitcode is not None  # stopped, not left computing


def test_the_command_tells_the_cases_as_the_predictor_will_and_says_nothing(tmp_path, capsys):
    from types import SimpleNamespace
    from nnunetv2.file_io import save_json
    from nnunetv2.inference import input_handling
    from nnunetv2.inference.predict_cli import _cases_the_predictor_will_take
    model = tmp_path / "model"
    model.mkdir()
    save_json(DATASET_JSON, str(model / "dataset.json"))
    save_json(_plans(), str(model / "plans.json"))
    inputs = tmp_path / "in"
    inputs.mkdir()
    _cases(str(inputs), 5)
    out = tmp_path / "out"
    args = SimpleNamespace(i=str(inputs), o=str(out), prev_stage_predictions=None, continue_prediction=False,
                           save_probabilities=True)
    per_case_lists, (plans_manager, dataset_json, configuration_manager) = \
        _cases_the_predictor_will_take(args, str(model), '3d_fullres', 2, 1)
    assert capsys.readouterr().out == ''
    assert per_case_lists == list(input_handling.manage_input_and_output_lists(
        str(inputs), str(out), DATASET_JSON, 1, None, True, 1, 2, True)[i] for i in (0, 2, 1))
    capsys.readouterr()  # what that call printed
    assert [os.path.basename(c[0]) for c in per_case_lists[0]] == ['case_1_0000.nii.gz', 'case_3_0000.nii.gz']
    assert plans_manager.plans == _plans() and dataset_json == DATASET_JSON
    assert configuration_manager.configuration == _plans()['configurations']['3d_fullres']
    # what the predictor would refuse or cannot be told: nothing is handed over early
    assert _cases_the_predictor_will_take(args, str(model), '3d_lowres', 1, 0) is None
    assert _cases_the_predictor_will_take(args, str(tmp_path / 'no_model'), '3d_fullres', 1, 0) is None
    args.prev_stage_predictions = str(tmp_path)  # not a cascade stage
    assert _cases_the_predictor_will_take(args, str(model), '3d_fullres', 1, 0) is None
    assert capsys.readouterr().out == ''
