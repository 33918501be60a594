"""The fold claim of nnUNetv2_train against short-lived holders: the commands that merge the folds' results take a
fold's lock for an instant to see whether a training holds it; a training starting in that instant is not refused."""
from __future__ import annotations

import contextlib
import threading

import pytest

from nnunetv2.errors import UserError
from nnunetv2.file_io import folder_lock
from nnunetv2.run._fold_claim import claim_fold_folder


def _held_by_another_thread(folder, seconds: float):
    taken, done = threading.Event(), threading.Event()

    def hold():
        with folder_lock(str(folder), 'checking the fold', wait=False):
            taken.set()
            done.wait(seconds)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    assert taken.wait(10)
    return t, done


def test_a_brief_holder_does_not_refuse_the_training(tmp_path):
    t, done = _held_by_another_thread(tmp_path, 0.15)
    with contextlib.ExitStack() as held:
        claim_fold_folder(str(tmp_path), held)  # waits out the instant the other holds it
    t.join(10)


def test_a_training_holding_the_fold_refuses_the_second(tmp_path):
    t, done = _held_by_another_thread(tmp_path, 30)
    try:
        with contextlib.ExitStack() as held, pytest.raises(UserError, match="training or validating this fold"):
            claim_fold_folder(str(tmp_path), held)
    finally:
        done.set()
        t.join(10)
