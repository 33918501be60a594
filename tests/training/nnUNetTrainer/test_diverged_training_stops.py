"""A training whose weights became NaN (too high a learning rate, extreme intensities) went on in the reference
until its last epoch, writing checkpoints of NaN weights. The loop now stops after the epoch in which it happened,
with one line, before that epoch's checkpoints; earlier epochs ran (and saved) as usual."""
from __future__ import annotations

import pytest
import torch

from nnunetv2.errors import UserError
from _stub_augmenter import StubAugmenter
from nnunetv2.training.nnUNetTrainer import _loop
from nnunetv2.training.nnUNetTrainer._epoch import check_weights_finite


class _DivergingTrainer:
    is_ddp = False
    current_epoch = 0
    num_epochs = 5
    num_iterations_per_epoch = 2
    num_val_iterations_per_epoch = 1
    lr_scheduler = None
    optimizer = None
    device = torch.device("cpu")

    def __init__(self, diverges_in_epoch: int):
        self.diverges_in_epoch = diverges_in_epoch
        self.network = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
        self.dataloader_train, self.dataloader_val = StubAugmenter(), StubAugmenter()
        self.epochs_ended = []

    def on_train_start(self):
        pass

    def on_epoch_start(self):
        pass

    def on_train_epoch_start(self):
        pass

    def train_step(self, batch):
        if self.current_epoch == self.diverges_in_epoch:
            with torch.no_grad():
                self.network[1].weight[0, 0] = float("nan")
        return {"loss": 1.0}

    def on_train_epoch_end(self, outputs):
        pass

    def on_validation_epoch_start(self):
        pass

    def validation_step(self, batch):
        return {}

    def on_validation_epoch_end(self, outputs):
        pass

    def on_epoch_end(self):  # where the real trainer writes checkpoint_best / checkpoint_latest
        self.epochs_ended.append(self.current_epoch)
        self.current_epoch += 1


def test_training_stops_in_the_epoch_its_weights_became_nan():
    trainer = _DivergingTrainer(diverges_in_epoch=2)
    with pytest.raises(UserError) as e:
        _loop.run_training(trainer)
    assert e.value.one_line().startswith("Training diverged in epoch 2: the network's weights are no longer finite")
    assert trainer.epochs_ended == [0, 1]  # no on_epoch_end (no checkpoint) for the diverged epoch
    assert trainer.dataloader_train.killed == 1 and trainer.dataloader_val.killed == 1


def test_finite_weights_pass():
    network = torch.nn.Linear(4, 4)
    check_weights_finite(network, 0)
    check_weights_finite(torch.nn.ReLU(), 0)  # no parameters at all
    with torch.no_grad():
        network.bias[1] = float("inf")
    with pytest.raises(UserError, match="epoch 7"):
        check_weights_finite(network, 7)


def test_no_time_based_checkpoint_of_nan_weights(monkeypatch):
    """A time-based checkpoint due after the weights became NaN is not written; the epoch's end stops the training."""
    from nnunetv2.training.nnUNetTrainer import _preemption

    class AlwaysDue:
        def __init__(self, interval):
            pass

        def due(self):
            return True

        def restart(self):
            pass

    written = []
    monkeypatch.setattr(_preemption, "CheckpointClock", AlwaysDue)
    monkeypatch.setattr(_preemption, "write_resume_checkpoint",
                        lambda trainer, iteration, *args: written.append((trainer.current_epoch, iteration)))
    trainer = _DivergingTrainer(diverges_in_epoch=1)
    with pytest.raises(UserError, match="Training diverged in epoch 1"):
        _loop.run_training(trainer)
    assert written == [(0, 1), (0, 2)]  # epoch 0 only: from the first step of epoch 1 the weights are NaN
