"""A raw dataset.json without a required key, or with one of the wrong type, is named by the commands that always run
(fingerprint extraction, planning; a missing 'numTraining' only by planning, as the fingerprint does without it), not
only by --verify_dataset_integrity: they used to stop with a KeyError, AttributeError or TypeError traceback (as the
reference does)."""
from __future__ import annotations

import json

import pytest

from _bad_inputs_helpers import Snapshot, assert_clean_failure, run_entry
from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import (extract_fingerprint_entry,
                                                                         plan_experiment_entry)

EDITS = {
    "labels_missing": (lambda d: d.pop("labels"), "'labels'"),
    "labels_list": (lambda d: d.update(labels=["background", "a", "b"]), "'labels' list"),
    "channel_names_missing": (lambda d: d.pop("channel_names"), "'channel_names'"),
    "channel_names_list": (lambda d: d.update(channel_names=["CT"]), "'channel_names' list"),
    "numTraining_string": (lambda d: d.update(numTraining="4"), "'numTraining' \"4\""),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_raw_dataset_json_structure_is_named(edit, clone_dataset, capsys):
    dataset_id, ds = clone_dataset()
    fn, what = EDITS[edit]
    dj_file = ds / "dataset.json"
    dj = json.loads(dj_file.read_text())
    fn(dj)
    dj_file.write_text(json.dumps(dj))
    snapshot = Snapshot(ds)
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar"], capsys)
    assert what in assert_clean_failure(code, err, dj_file)
    snapshot.assert_unchanged()


def test_numTraining_missing_is_named_by_planning_not_by_the_fingerprint(clone_dataset, capsys):
    """As in the reference, the fingerprint does without 'numTraining'; planning uses it."""
    dataset_id, ds = clone_dataset()
    dj_file = ds / "dataset.json"
    dj = json.loads(dj_file.read_text())
    dj.pop("numTraining")
    dj_file.write_text(json.dumps(dj))
    code, err = run_entry(extract_fingerprint_entry, ["-d", dataset_id, "-np", "1", "--no_pbar"], capsys)
    assert code == 0, err
    code, err = run_entry(plan_experiment_entry, ["-d", dataset_id], capsys)
    assert "'numTraining'" in assert_clean_failure(code, err, dj_file)
