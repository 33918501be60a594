"""Previous-stage predictions are needed only for the cases a run still predicts (as in the reference, where
--continue_prediction drops finished cases before any previous-stage file is read); a missing folder is named."""
from __future__ import annotations

import pytest

from nnunetv2.errors import UserError
from nnunetv2.inference.input_handling import PREDICT_MARKER, manage_input_and_output_lists

DJ = {'file_ending': '.nii.gz', 'channel_names': {'0': 'CT'}}


def _setup(tmp_path):
    images, prev, out = tmp_path / 'imagesTs', tmp_path / 'lowres', tmp_path / 'out'
    for d in (images, prev, out):
        d.mkdir()
    for c in ('a', 'b'):
        (images / f'{c}_0000.nii.gz').write_bytes(b'')
    (prev / 'b.nii.gz').write_bytes(b'')  # the previous stage of the finished case 'a' was cleaned up
    (out / PREDICT_MARKER).write_text('{}')
    (out / 'a.nii.gz').write_bytes(b'done')
    (out / 'a.npz').write_bytes(b'done')
    return images, prev, out


def test_continue_prediction_needs_previous_stage_of_remaining_cases_only(tmp_path):
    images, prev, out = _setup(tmp_path)
    lists, outs, segs = manage_input_and_output_lists(str(images), str(out), DJ, 1, str(prev), overwrite=False,
                                                      save_probabilities=True)
    assert lists == [[str(images / 'b_0000.nii.gz')]]
    assert outs == [str(out / 'b')]
    assert segs == [str(prev / 'b.nii.gz')]
    assert (out / 'a.nii.gz').read_bytes() == b'done'


def test_missing_previous_stage_of_a_case_to_predict_is_refused(tmp_path):
    images, prev, out = _setup(tmp_path)
    with pytest.raises(UserError, match=r"Previous-stage prediction .*a\.nii\.gz not found"):
        manage_input_and_output_lists(str(images), str(out), DJ, 1, str(prev), overwrite=True)


def test_missing_previous_stage_folder_is_named(tmp_path):
    images, _, out = _setup(tmp_path)
    with pytest.raises(UserError, match=r"Previous-stage predictions folder .*nope does not exist"):
        manage_input_and_output_lists(str(images), str(out), DJ, 1, str(tmp_path / 'nope'), overwrite=False)


def test_nothing_left_to_predict_needs_no_previous_stage(tmp_path):
    images, _, out = _setup(tmp_path)
    (out / 'b.nii.gz').write_bytes(b'done')
    (out / 'b.npz').write_bytes(b'done')
    lists, outs, segs = manage_input_and_output_lists(str(images), str(out), DJ, 1, str(tmp_path / 'gone'),
                                                      overwrite=False, save_probabilities=True)
    assert lists == [] and outs == [] and segs == []
