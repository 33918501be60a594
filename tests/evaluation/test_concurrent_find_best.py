"""Two runs of the cross-validation merge / postprocessing search on the same model at once (two
nnUNetv2_find_best_configuration, or one started while another is going): the second waits for the first; neither
fails, and the files left are those of a run alone. Drop into tests/evaluation/ (uses _fake_results_tree)."""
from __future__ import annotations

import os
import threading

import pytest

from _fake_results_tree import DATASET, FOLDS
import nnunetv2.evaluation.accumulate_cv_results as acc
import nnunetv2.postprocessing.remove_connected_components as rcc
from nnunetv2.file_io import TMP_PREFIX, folder_lock, load_json, load_pickle

OTHER_RUN_GRACE_S = 5  # the main run goes on after this even if the other run is (correctly) still waiting


def _hidden(folder):
    return [os.path.join(dp, n) for dp, dns, fns in os.walk(folder) for n in dns + fns if n.startswith(TMP_PREFIX)]


def _other_run_inside(target, run, n_trigger, after=False):
    """Wrap module attribute ``target`` (obj, name): its n-th call in the main thread starts ``run`` in a thread and
    waits until that run has finished or is blocked (grace period); ``after``: once the n-th call has returned."""
    obj, name = target
    orig = getattr(obj, name)
    main = threading.get_ident()
    state = {'n': 0, 'thread': None, 'error': []}

    def wrapped(*a, **k):
        result = orig(*a, **k) if after else None
        if threading.get_ident() == main:
            state['n'] += 1
            if state['n'] == n_trigger:
                done = threading.Event()

                def other():
                    try:
                        run()
                    except BaseException as e:  # noqa: BLE001 - reported by the test
                        state['error'].append(e)
                    finally:
                        done.set()
                state['thread'] = threading.Thread(target=other, daemon=True)
                state['thread'].start()
                done.wait(OTHER_RUN_GRACE_S)
        return result if after else orig(*a, **k)
    return wrapped, state


def test_second_accumulate_waits_for_the_first(model, monkeypatch):
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    alone = {f: load_json(os.path.join(merged, f)) for f in ('summary.json',)}
    files_alone = sorted(os.listdir(merged))

    wrapped, state = _other_run_inside((acc, '_atomic_copy'), lambda: acc.accumulate_cv_results(
        model, merged, FOLDS, num_processes=1), n_trigger=3)  # after dataset.json, plans.json: inside the case copies
    monkeypatch.setattr(acc, '_atomic_copy', wrapped)
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)  # was: "More than one of your folds has ..."
    state['thread'].join(60)
    assert not state['thread'].is_alive() and state['error'] == []
    assert sorted(os.listdir(merged)) == files_alone
    assert load_json(os.path.join(merged, 'summary.json'))['foreground_mean'] == alone['summary.json']['foreground_mean']
    assert _hidden(model) == []


def test_second_postprocessing_search_waits_for_the_first(model, monkeypatch):
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    gt = os.path.join(os.environ['nnUNet_preprocessed'], DATASET, 'gt_segmentations')
    alone = rcc.determine_postprocessing(merged, gt, num_processes=1)
    alone_pkl = load_pickle(os.path.join(merged, 'postprocessing.pkl'))

    wrapped, state = _other_run_inside((rcc, '_apply_to_files'), lambda: rcc.determine_postprocessing(
        merged, gt, num_processes=1), n_trigger=1, after=True)  # A has written its first candidate folder
    monkeypatch.setattr(rcc, '_apply_to_files', wrapped)
    result = rcc.determine_postprocessing(merged, gt, num_processes=1)  # was: KeyError traceback (temp deleted)
    state['thread'].join(60)
    assert not state['thread'].is_alive() and state['error'] == []
    assert [f.__name__ for f in result[0]] == [f.__name__ for f in alone[0]] and result[1] == alone[1]
    assert [f.__name__ for f in load_pickle(os.path.join(merged, 'postprocessing.pkl'))[0]] == \
        [f.__name__ for f in alone_pkl[0]]
    assert not os.path.exists(os.path.join(merged, 'postprocessed', 'temp'))
    assert _hidden(model) == []


def test_folder_lock_excludes_other_threads_and_is_reentrant(tmp_path):
    order = []
    inside = threading.Event()
    release = threading.Event()

    def holder():
        with folder_lock(str(tmp_path), 'testing'):
            with folder_lock(str(tmp_path), 'testing'):  # re-entrant in its thread: no self-deadlock
                inside.set()
                release.wait(30)
                order.append('holder done')

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(30)

    def waiter_run():
        with folder_lock(str(tmp_path), 'testing'):
            order.append('waiter in')
    waiter = threading.Thread(target=waiter_run)
    waiter.start()
    waiter.join(1)
    assert order == []  # the waiter is blocked while the holder has the lock
    release.set()
    t.join(30)
    waiter.join(30)
    assert order == ['holder done', 'waiter in']
    assert os.listdir(tmp_path) == []  # no lock file


def test_folder_lock_on_a_missing_folder_locks_nothing_and_creates_nothing(tmp_path):
    with folder_lock(str(tmp_path / 'absent'), 'testing'):
        pass
    assert not (tmp_path / 'absent').exists()


def _write_split(n_cases=4):
    from nnunetv2.file_io import save_json
    folds = [{'train': [f'case_{i}' for i in range(n_cases) if i % 2 != k],
              'val': [f'case_{i}' for i in range(n_cases) if i % 2 == k]} for k in FOLDS]
    save_json(folds, os.path.join(os.environ['nnUNet_preprocessed'], DATASET, 'splits_final.json'))


def test_fold_still_validating_is_refused_not_merged_silently(model):
    """find_best_configuration started while fold 1 is in its final validation: one of its two cases is written,
    summary.json (written last) is not. Was: merged and scored on 3 of 4 cases, exit code 0."""
    from nnunetv2.errors import UserError
    _write_split()
    os.remove(os.path.join(model, 'fold_1', 'validation', 'case_3.nii.gz'))
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    with pytest.raises(UserError, match=r"validation of fold 1 is not finished.*case_3"):
        acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)


def test_finished_validation_with_custom_split_is_merged(model):
    """A summary.json marks a finished validation: a fold validated on other cases than splits_final.json names (a
    trainer with its own split) is merged as before."""
    from nnunetv2.file_io import save_json
    _write_split()
    os.remove(os.path.join(model, 'fold_1', 'validation', 'case_3.nii.gz'))
    save_json({}, os.path.join(model, 'fold_1', 'validation', 'summary.json'))
    merged = os.path.join(model, 'crossval_results_folds_0_1')
    acc.accumulate_cv_results(model, merged, FOLDS, num_processes=1)
    assert len(load_json(os.path.join(merged, 'summary.json'))['metric_per_case']) == 3
