"""A training that crashes (a bug in a hook, a batch the network cannot take) stops its augmentation workers before
the exception leaves the loop: workers of augmenters a trainer built itself (batchgenerators' own classes, as public
trainers do) otherwise kept the process from exiting (it hung after the traceback)."""
from __future__ import annotations

import pytest

from _stub_augmenter import StubAugmenter
from nnunetv2.training.nnUNetTrainer import _loop


class _CrashingTrainer:
    is_ddp = False
    current_epoch = 0
    num_epochs = 2
    num_iterations_per_epoch = 3
    lr_scheduler = None

    def __init__(self, fails_in: str):
        self.fails_in = fails_in
        self.dataloader_train, self.dataloader_val = StubAugmenter(), StubAugmenter()

    def on_train_start(self):
        if self.fails_in == "on_train_start":
            raise ValueError("broken hook")

    def on_epoch_start(self):
        pass

    def on_train_epoch_start(self):
        pass

    def train_step(self, batch):
        raise AttributeError("'numpy.ndarray' object has no attribute 'to'")


@pytest.mark.parametrize("fails_in, error", [("train_step", AttributeError), ("on_train_start", ValueError)])
def test_a_crash_stops_the_augmentation_workers_and_keeps_its_exception(fails_in, error):
    trainer = _CrashingTrainer(fails_in)
    with pytest.raises(error):
        _loop.run_training(trainer)
    assert trainer.dataloader_train.killed == 1 and trainer.dataloader_val.killed == 1


def test_a_failure_while_stopping_the_workers_does_not_hide_the_crash():
    trainer = _CrashingTrainer("train_step")

    def broken_kill():
        raise OSError("the worker is gone already")

    trainer.dataloader_train._kill_workers = broken_kill
    with pytest.raises(AttributeError, match="numpy.ndarray"):
        _loop.run_training(trainer)
