"""A stop signal that reaches the training loop at its very end (after on_train_end, while its signal handlers are
still in place) ends the command before the final validation, as one a moment earlier does. The loop once looked
at its stop flag for the last time before that moment: such a Ctrl-C or SIGTERM was only noted, and nnUNetv2_train
ran the whole final validation and ended with status 0 (found by sending SIGINT the moment "Training done." was
printed)."""
from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
import torch

from nnunetv2.training.nnUNetTrainer import _loop, _preemption


def _trainer(log: list):
    return SimpleNamespace(current_epoch=0, num_epochs=0, is_ddp=False, device=torch.device('cpu'),
                           on_train_start=lambda: None, on_train_end=lambda: log.append('on_train_end'),
                           print_to_log_file=lambda *a, **k: log.append(' '.join(map(str, a))))


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_as_the_loop_leaves_its_handlers_stops_before_the_validation(monkeypatch, signum):
    before = {s: signal.getsignal(s) for s in _preemption.STOP_SIGNALS}
    leave = _preemption.StopRequest.__exit__

    def signal_then_leave(self, *exc):
        os.kill(os.getpid(), signum)  # still this block's handler: only noted
        assert self.signum == signum
        return leave(self, *exc)
    monkeypatch.setattr(_preemption.StopRequest, '__exit__', signal_then_leave)
    log: list = []
    with pytest.raises(_preemption.TrainingInterrupted) as stopped:
        _loop._run_epochs(_trainer(log))
    assert stopped.value.code == 128 + signum
    assert log[0] == 'on_train_end' and 'at the end of the training: skipping the final validation' in log[-1]
    assert {s: signal.getsignal(s) for s in _preemption.STOP_SIGNALS} == before


def test_no_signal_no_stop():
    log: list = []
    _loop._run_epochs(_trainer(log))
    assert log == ['on_train_end']
