"""nnUNetv2_export_model_to_zip while nnUNetv2_train (re)trains or validates one of the exported folds (another GPU).
Was: exit code 0 and a zip mixing the fold's files of two runs: the old checkpoint_final.pth with the new debug.json
and progress.png during a retraining, the new checkpoint_final.pth with the old validation (summary.json and
predictions) during its final validation, or (--exp_cv_preds) a half-filled validation folder. Now: strict export
refuses the fold with a one-line error, --not_strict leaves it out and says so; a training that starts while the zip
is written makes the export fail without writing the zip. The training is simulated by the claim nnUNetv2_train
takes on its fold folder, held by another thread until the test releases it (no timing involved)."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import zipfile

import pytest

from _model_sharing_helpers import DATASET, MODEL, make_fake_results_tree
from nnunetv2.errors import UserError
from nnunetv2.model_sharing.model_export import export_pretrained_model
from nnunetv2.run._fold_claim import claim_fold_folder


@pytest.fixture
def model(nnunet_dirs):
    return make_fake_results_tree(str(nnunet_dirs["nnUNet_results"]))["model"]


class _Training:
    """A thread holding nnUNetv2_train's claim on a fold folder from start() until stop()."""

    def __init__(self, fold_folder):
        self.fold_folder = fold_folder
        self.claimed, self.release, self.errors = threading.Event(), threading.Event(), []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            with contextlib.ExitStack() as held:
                claim_fold_folder(self.fold_folder, held)
                self.claimed.set()
                self.release.wait(60)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)
            self.claimed.set()

    def start(self):
        self.thread.start()
        assert self.claimed.wait(60) and self.errors == []

    def stop(self):
        self.release.set()
        self.thread.join(60)
        assert self.errors == []


@contextlib.contextmanager
def _fold_being_trained(fold_folder):
    t = _Training(fold_folder)
    t.start()
    try:
        yield
    finally:
        t.stop()


@pytest.mark.parametrize("cv_preds", [False, True])
def test_strict_export_refuses_a_fold_being_trained(model, tmp_path, cv_preds):
    out = tmp_path / "export" / "m.zip"
    with _fold_being_trained(os.path.join(model, "fold_1")):
        with pytest.raises(UserError, match=r"training or validating .*fold_1 right now"):
            export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0, 1),
                                    export_crossval_predictions=cv_preds)
    assert not os.path.exists(out.parent) or os.listdir(out.parent) == []
    export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0, 1),
                            export_crossval_predictions=cv_preds)  # that run has ended: exported
    assert f"{DATASET}/{MODEL}/fold_1/checkpoint_final.pth" in zipfile.ZipFile(out).namelist()


def test_not_strict_export_leaves_the_fold_out_and_says_so(model, tmp_path, caplog):
    out = tmp_path / "export" / "m.zip"
    with caplog.at_level(logging.WARNING), _fold_being_trained(os.path.join(model, "fold_1")):
        export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0, 1), strict=False)
    names = zipfile.ZipFile(out).namelist()
    assert f"{DATASET}/{MODEL}/fold_0/checkpoint_final.pth" in names
    assert not any("/fold_1/" in n for n in names)
    assert "Skipping fold 1: another nnU-Net process is training or validating it" in caplog.text


def test_training_that_starts_while_the_zip_is_written_fails_the_export(model, tmp_path, monkeypatch):
    out = tmp_path / "export" / "m.zip"
    training = _Training(os.path.join(model, "fold_1"))
    real_write = zipfile.ZipFile.write

    def write(self, filename, *args, **kwargs):
        if "/fold_1/" in filename and not training.claimed.is_set():
            training.start()  # nnUNetv2_train of fold 1 starts after the folds were checked
        return real_write(self, filename, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "write", write)
    try:
        with pytest.raises(UserError, match=r"training or validating .*fold_1 right now"):
            export_pretrained_model(5, str(out), configurations=("3d_fullres",), folds=(0, 1))
    finally:
        training.stop()
    assert not os.path.exists(out.parent) or os.listdir(out.parent) == []  # no zip, no temporary
