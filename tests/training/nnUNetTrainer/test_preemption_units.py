"""The pieces of preemption-safe training, without a training: signal handling, the checkpoint clock and its
environment variable, exit statuses, and a checkpoint write that is interrupted."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal

import pytest
import torch

from nnunetv2.training.nnUNetTrainer import _checkpointing, _preemption
from nnunetv2.training.nnUNetTrainer._preemption import (CheckpointClock, StopRequest, checkpoint_interval_s,
                                                         stop_signal_of_exit_status)


@pytest.mark.parametrize("signum", _preemption.STOP_SIGNALS)
def test_a_stop_signal_only_sets_the_flag_and_handlers_come_back(signum):
    before = {s: signal.getsignal(s) for s in _preemption.STOP_SIGNALS}
    with StopRequest() as stop:
        os.kill(os.getpid(), signum)
        assert stop.signum == signum  # and this process is still alive
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signum  # the first signal counts
    assert {s: signal.getsignal(s) for s in _preemption.STOP_SIGNALS} == before


@pytest.mark.parametrize("signum", _preemption.STOP_SIGNALS)
def test_a_stop_signal_this_process_ignores_stays_ignored(signum):
    # a command started in the background by a shell script ignores SIGINT (the shell keeps the terminal's Ctrl-C
    # away from it that way); the training must not take it up while every other phase of the command ignores it
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        with StopRequest() as stop:
            assert signal.getsignal(signum) == signal.SIG_IGN
            os.kill(os.getpid(), signum)
            assert stop.signum is None  # and this process is still alive
            os.kill(os.getpid(), signal.SIGUSR1 if signum != signal.SIGUSR1 else signal.SIGTERM)
            assert stop.signum in (signal.SIGUSR1, signal.SIGTERM)  # the others still stop the training
        assert signal.getsignal(signum) == signal.SIG_IGN
    finally:
        signal.signal(signum, previous)


def test_a_second_ctrl_c_aborts_unless_it_is_the_same_one_delivered_twice(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(_preemption.time, "monotonic", lambda: now[0])
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        now[0] += 0.1  # e.g. the terminal's and a launcher's copy of one Ctrl-C
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        now[0] += 5
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def _terminate_myself():
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(0)  # not reached when SIGTERM ends the process as usual


def test_forked_children_keep_the_usual_signal_behaviour():
    # data-augmentation workers are forked and inherit the handler; they must still die of SIGTERM (the parent's
    # shutdown terminates them that way)
    with StopRequest() as stop:
        child = multiprocessing.get_context("fork").Process(target=_terminate_myself)
        child.start()
        child.join(timeout=60)
    assert child.exitcode == -signal.SIGTERM and stop.signum is None


def test_exit_statuses():
    assert [_preemption.exit_status(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)] == [143, 138, 130]
    assert stop_signal_of_exit_status(143) == signal.SIGTERM
    assert stop_signal_of_exit_status(-signal.SIGUSR1) == signal.SIGUSR1
    assert [stop_signal_of_exit_status(c) for c in (0, 1, 137, -9, None)] == [None] * 5
    e = _preemption.TrainingInterrupted(signal.SIGUSR1)
    assert isinstance(e, SystemExit) and e.code == 138


@pytest.mark.parametrize("value, expected", [(None, 30 * 60), ("", 30 * 60), ("1.5", 90), ("0", None),
                                             ("-1", None), ("10", 600)])
def test_checkpoint_minutes_from_the_environment(value, expected):
    environ = {} if value is None else {_preemption.CHECKPOINT_MINUTES_ENV: value}
    assert checkpoint_interval_s(environ) == expected


@pytest.mark.parametrize("value", ["ten", "nan"])
def test_a_bad_checkpoint_minutes_value_warns_and_uses_the_default(value, caplog):
    with caplog.at_level(logging.WARNING):
        assert checkpoint_interval_s({_preemption.CHECKPOINT_MINUTES_ENV: value}) == 30 * 60
    assert f"nnUNet_checkpoint_minutes={value!r} is not a number of minutes" in caplog.text


def test_checkpoint_clock():
    now = [0.0]
    clock = CheckpointClock(60.0, now=lambda: now[0])
    now[0] = 59.9
    assert not clock.due()
    now[0] = 60.0
    assert clock.due()
    clock.restart()
    assert not clock.due()
    now[0] = 1e9
    assert not CheckpointClock(None, now=lambda: now[0]).due()


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_an_interrupted_checkpoint_write_leaves_the_previous_file_and_nothing_else(tmp_path, monkeypatch,
                                                                                    interruption):
    target = tmp_path / "checkpoint_latest.pth"
    _checkpointing.save_checkpoint_atomically({"current_epoch": 3}, str(target))
    before = target.read_bytes()
    real_save = torch.save

    def save_half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(10)  # a half-written file...
        raise interruption(28, "No space left on device") if interruption is OSError else interruption()

    monkeypatch.setattr(_checkpointing.torch, "save", save_half_then_fail)
    with pytest.raises(interruption):
        _checkpointing.save_checkpoint_atomically({"current_epoch": 4}, str(target))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pth"]
