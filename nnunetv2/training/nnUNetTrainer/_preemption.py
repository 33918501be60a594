"""Preemption-safe training: stop between two iterations when asked, write checkpoint_latest.pth, resume there.

Clusters end jobs with a signal (SLURM: SIGTERM, or SIGUSR1 with ``--signal``), users with Ctrl-C (SIGINT). While
the training loop runs, these signals only set a flag: the loop finishes the iteration in progress, writes
``checkpoint_latest.pth`` with everything needed to continue at the next iteration, and the process ends with status
128 + signal number (143 SIGTERM, 138 SIGUSR1, 130 SIGINT). ``nnUNetv2_train ... --c`` continues from there. The
same checkpoint is also written every ``nnUNet_checkpoint_minutes`` minutes (default 30), so that a crash or a
SIGKILL loses at most that much training.

Such a mid-epoch checkpoint has the reference's keys, with ``current_epoch`` = the completed epochs and the logging
of those epochs only, plus RESUME_KEY: the position in the interrupted epoch, the losses of its iterations so far,
the learning-rate scheduler and the random number generators. The reference ignores that key and repeats the
interrupted epoch; we continue it.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from contextlib import contextmanager
from copy import deepcopy
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from nnunetv2.training.nnUNetTrainer import _checkpointing

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
CHECKPOINT_MINUTES_ENV = "nnUNet_checkpoint_minutes"
DEFAULT_CHECKPOINT_MINUTES = 30.0
# a second Ctrl-C this long after the first aborts at once; closer ones are one signal delivered twice (a launcher
# forwarding what the terminal already sent to the whole process group)
_REPEAT_SIGINT_S = 1.0
# how long a failed batch fetch waits for the signal that may have caused it to be handled in this process
_SIGNAL_GRACE_S = 0.5


def exit_status(signum: int) -> int:
    """The shell's convention for 'ended by this signal': 128 + signal number."""
    return 128 + int(signum)


def stop_signal_of_exit_status(code: Optional[int]) -> Optional[int]:
    """The stop signal behind a process exit code (128 + signum, or -signum for a process killed by it), if any."""
    if code is None:
        return None
    for signum in STOP_SIGNALS:
        if code in (exit_status(signum), -int(signum)):
            return int(signum)
    return None


class TrainingInterrupted(SystemExit):
    """Training stopped because of a stop signal, after writing checkpoint_latest.pth (unless checkpointing is
    disabled). Uncaught, it ends the interpreter silently with status 128 + signal number."""

    def __init__(self, signum: int):
        super().__init__(exit_status(signum))
        self.signum = int(signum)


class StopRequest:
    """While entered (in the main thread), the stop signals set ``signum`` instead of ending the process.

    Forked children (data-augmentation workers) inherit the handler; in them it hands the signal to the previous
    handler, so they behave as if it had never been installed. Outside the main thread nothing is installed.

    A signal this process ignores (SIG_IGN; e.g. SIGINT for a command started in the background by a shell script,
    which is how the shell keeps a Ctrl-C meant for the foreground away from it) stays ignored: the training then
    goes on as every other phase of the command (and Python itself, which installs no KeyboardInterrupt then) does.
    """

    def __init__(self):
        self.signum: Optional[int] = None
        self._first_at = 0.0
        self._pid = os.getpid()
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            for signum in STOP_SIGNALS:
                previous = signal.getsignal(signum)
                if previous == signal.SIG_IGN:
                    continue
                self._previous[signum] = previous
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        # no logging or printing here: the main thread may be inside a write to the same stream
        if os.getpid() != self._pid:
            previous = self._previous.get(signum)
            previous = signal.SIG_DFL if previous is None else previous
            signal.signal(signum, previous)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
            return
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._first_at = int(signum), now
        elif signum == signal.SIGINT and now - self._first_at > _REPEAT_SIGINT_S:
            raise KeyboardInterrupt


@contextmanager
def forward_stop_signals(pids: Sequence[int]) -> Iterator[None]:
    """In a launcher process (``-num_gpus``): pass stop signals on to the training processes instead of dying
    (a batch script's trap may signal only the process it started)."""
    def forward(signum, frame):
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, forward)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def next_batch_unless_stopping(dataloader, stop: StopRequest):
    """The next batch, or None when a stop was requested. The signal that stops the training often stops the
    augmentation workers too (SLURM signals every process of the job, Ctrl-C the whole foreground process group):
    their failure is then part of the stop, not an error."""
    if stop.signum is not None:
        return None
    try:
        return next(dataloader)
    except Exception:
        if stop.signum is None:
            time.sleep(_SIGNAL_GRACE_S)
        if stop.signum is not None:
            return None
        raise


# ---------------------------------------------------------------- periodic checkpoints
def checkpoint_interval_s(environ=os.environ) -> Optional[float]:
    """Seconds between time-based checkpoints (``nnUNet_checkpoint_minutes``); None when switched off (<= 0)."""
    value = environ.get(CHECKPOINT_MINUTES_ENV)
    minutes = DEFAULT_CHECKPOINT_MINUTES
    if value is not None and value.strip():
        try:
            minutes = float(value)
            if minutes != minutes:  # NaN
                raise ValueError
        except ValueError:
            logger.warning("Environment variable %s=%r is not a number of minutes; using %g.",
                           CHECKPOINT_MINUTES_ENV, value, DEFAULT_CHECKPOINT_MINUTES)
            minutes = DEFAULT_CHECKPOINT_MINUTES
    return minutes * 60 if minutes > 0 else None


class CheckpointClock:
    """Says when the next time-based checkpoint is due (``interval_s`` None: never)."""

    def __init__(self, interval_s: Optional[float], now: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self._now = now
        self._last = now()

    def due(self) -> bool:
        return self.interval_s is not None and self._now() - self._last >= self.interval_s

    def restart(self) -> None:
        self._last = self._now()


# ---------------------------------------------------------------- the resume state
def rng_state(device: torch.device) -> Dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def scheduler_state(lr_scheduler) -> Optional[Dict[str, Any]]:
    state_dict = getattr(lr_scheduler, "state_dict", None)
    return deepcopy(state_dict()) if callable(state_dict) else None


def build_resume_checkpoint(trainer, iteration: int, train_outputs: List[dict],
                            lr_scheduler_state: Optional[Dict[str, Any]], rng: Dict[str, Any]) -> Dict[str, Any]:
    """The checkpoint of a training stopped in epoch ``trainer.current_epoch`` after ``iteration`` training
    iterations (``num_iterations_per_epoch``: training done, validation not)."""
    from nnunetv2.training.nnUNetTrainer._setup import unwrap_network
    checkpoint = _checkpointing.build_checkpoint(trainer, unwrap_network(trainer.network))
    completed = trainer.current_epoch
    checkpoint["current_epoch"] = completed
    checkpoint["logging"] = {k: list(v[:completed]) if isinstance(v, list) else v
                             for k, v in checkpoint["logging"].items()}
    checkpoint[_checkpointing.RESUME_KEY] = {
        "epoch": completed, "iteration": int(iteration), "train_outputs": list(train_outputs),
        "lr_scheduler_state": lr_scheduler_state, "rng": rng}
    return checkpoint


def write_resume_checkpoint(trainer, iteration: int, train_outputs: List[dict],
                            lr_scheduler_state: Optional[Dict[str, Any]], rng: Dict[str, Any]) -> bool:
    """Write checkpoint_latest.pth (rank 0 only); False when nothing was written."""
    if trainer.local_rank != 0:
        return False
    if trainer.disable_checkpointing:
        trainer.print_to_log_file('No checkpoint written, checkpointing is disabled')
        return False
    checkpoint = build_resume_checkpoint(trainer, iteration, train_outputs, lr_scheduler_state, rng)
    _checkpointing.save_checkpoint_atomically(checkpoint, os.path.join(trainer.output_folder,
                                                                       "checkpoint_latest.pth"))
    return True


def restore_optimizer_and_scheduler(trainer, resume: Dict[str, Any]) -> None:
    """The optimizer and scheduler state of the interrupted epoch (the checkpoint's optimizer state was loaded by
    load_checkpoint already; on_train_epoch_start may since have built new ones)."""
    if resume.get("optimizer_state") is not None:
        trainer.optimizer.load_state_dict(resume["optimizer_state"])
    load = getattr(trainer.lr_scheduler, "load_state_dict", None)
    if resume.get("lr_scheduler_state") is not None and callable(load):
        load(resume["lr_scheduler_state"])


def take_resume_state(trainer) -> Optional[Dict[str, Any]]:
    """The position stored by load_checkpoint, if it belongs to the epoch the trainer is at (once)."""
    state = vars(trainer).pop("_resume_in_epoch", None)  # gone, not None: debug.json lists every attribute
    if not isinstance(state, dict) or state.get("epoch") != trainer.current_epoch:
        return None
    return state
