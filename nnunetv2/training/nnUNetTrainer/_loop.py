"""The training loop behind ``nnUNetTrainer.run_training``: epochs of training and validation iterations, all
through the trainer's hooks, that a stop signal ends between two iterations (see _preemption).

Under DDP the ranks vote before every iteration (the largest stop signal of all ranks wins), so that all of them
stop at the same iteration; only rank 0 writes the checkpoint, and no rank leaves before it is written.
"""
from __future__ import annotations

import logging
import signal
from typing import List, Optional

import torch

from nnunetv2.training.nnUNetTrainer import _ddp_sync, _epoch, _preemption, _training_data


def run_training(trainer) -> None:
    try:
        _run_epochs(trainer)
    except Exception:  # (a stop signal is a SystemExit: its path stops the workers itself)
        # a crash (a bug in a hook, a batch the network cannot take) must not leave the augmentation workers
        # behind: workers of augmenters a trainer built itself can keep the process from ever exiting
        try:
            _training_data.stop_augmenters_now(getattr(trainer, "dataloader_train", None),
                                               getattr(trainer, "dataloader_val", None))
        except Exception:  # the crash is what the user must see, not a failure while cleaning up after it
            logging.getLogger(__name__).debug("stopping the augmentation workers after a crash failed",
                                              exc_info=True)
        raise


def _run_epochs(trainer) -> None:
    resume = _preemption.take_resume_state(trainer)  # taken first: debug.json (on_train_start) shows attributes
    trainer.on_train_start()
    clock = _preemption.CheckpointClock(_preemption.checkpoint_interval_s())
    with _preemption.StopRequest() as stop:
        if resume is not None and not trainer.is_ddp:  # one rank's streams cannot stand in for another's
            _preemption.restore_rng(resume["rng"], trainer.device)
        for epoch in range(trainer.current_epoch, trainer.num_epochs):
            trainer.on_epoch_start()
            trainer.on_train_epoch_start()
            train_outputs: List[dict] = []
            first = 0
            if resume is not None:
                # after the hook, which may have replaced the optimizer or scheduler (warm-up trainers do)
                _preemption.restore_optimizer_and_scheduler(trainer, resume)
                train_outputs, first = list(resume["train_outputs"]), int(resume["iteration"])
                trainer.print_to_log_file(f"Continuing epoch {epoch} after training iteration {first}")
                resume = None
            lr_state = _preemption.scheduler_state(trainer.lr_scheduler)

            for iteration in range(first, trainer.num_iterations_per_epoch):
                batch, signum = _next_batch_or_vote(trainer, trainer.dataloader_train, stop)
                if signum:
                    _stop(trainer, iteration, train_outputs, lr_state, signum)
                train_outputs.append(trainer.train_step(batch))
                if clock.due():
                    # no checkpoint of diverged weights; the epoch's end stops the training (all ranks at once: the
                    # clocks of DDP ranks need not agree on the iteration)
                    if _epoch.weights_are_finite(trainer.network):
                        _preemption.write_resume_checkpoint(trainer, iteration + 1, train_outputs, lr_state,
                                                            _preemption.rng_state(trainer.device))
                    clock.restart()
            trainer.on_train_epoch_end(train_outputs)
            _epoch.check_weights_finite(trainer.network, epoch)  # diverged: stop before any checkpoint of them

            # a stop during validation resumes at its start, with the random state it had then
            rng_after_training = _preemption.rng_state(trainer.device)
            with torch.no_grad():
                trainer.on_validation_epoch_start()
                val_outputs = []
                for _ in range(trainer.num_val_iterations_per_epoch):
                    batch, signum = _next_batch_or_vote(trainer, trainer.dataloader_val, stop)
                    if signum:
                        _stop(trainer, trainer.num_iterations_per_epoch, train_outputs, lr_state, signum,
                              rng_after_training)
                    val_outputs.append(trainer.validation_step(batch))
                trainer.on_validation_epoch_end(val_outputs)
            trainer.on_epoch_end()
        trainer.on_train_end()
    # a stop after the last iteration: training is complete (checkpoint_final.pth), the final validation is not.
    # Looked at once the handlers are back: a signal noted later than this look, inside the block, would be lost
    # (the command would run the whole final validation and end with status 0); one that comes now acts as without
    # the block (Ctrl-C: interrupted; SIGTERM: ended)
    signum = _vote(trainer, stop.signum or 0)
    if signum:
        trainer.print_to_log_file(f"Received {signal.Signals(signum).name} at the end of the training: "
                                  f"skipping the final validation (run it with --val, or --c).")
        raise _preemption.TrainingInterrupted(signum)


def _vote(trainer, signum: int) -> int:
    return _ddp_sync.max_over_ranks(signum, trainer.device) if trainer.is_ddp else signum


def _next_batch_or_vote(trainer, dataloader, stop: _preemption.StopRequest):
    """(batch, 0) to go on, or (None, signal number) when any rank was asked to stop."""
    batch = _preemption.next_batch_unless_stopping(dataloader, stop)
    signum = _vote(trainer, stop.signum or 0)
    return (None, signum) if signum else (batch, 0)


def _stop(trainer, iteration: int, train_outputs: List[dict], lr_state: Optional[dict], signum: int,
          rng: Optional[dict] = None) -> None:
    """Write checkpoint_latest.pth for this position, wait until it is written, end with TrainingInterrupted."""
    rng = rng if rng is not None else _preemption.rng_state(trainer.device)
    written = _preemption.write_resume_checkpoint(trainer, iteration, train_outputs, lr_state, rng)
    if trainer.is_ddp:  # a rank that ended early would get the others killed by the launcher while rank 0 writes
        _ddp_sync.wait_for_all_ranks()
    where = f"epoch {trainer.current_epoch} after {iteration} of {trainer.num_iterations_per_epoch} training " \
            f"iterations"
    saved = "checkpoint_latest.pth written; continue with --c" if written else \
        "checkpoint_latest.pth written by rank 0" if trainer.local_rank != 0 and not trainer.disable_checkpointing \
        else "no checkpoint written"
    trainer.print_to_log_file(f"Received {signal.Signals(signum).name}: stopped in {where} ({saved}). Exit status "
                              f"{_preemption.exit_status(signum)}.")
    _training_data.stop_augmenters_now(trainer.dataloader_train, trainer.dataloader_val)
    raise _preemption.TrainingInterrupted(signum)
