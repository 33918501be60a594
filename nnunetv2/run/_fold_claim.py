"""One run per fold at a time: ``nnUNetv2_train`` claims the folder of the fold it trains or validates.

Two runs of the same fold (a loop started twice, two GPUs given the same fold) would write the same checkpoints, log
and validation files, the last writer winning. The claim is an advisory lock on the folder (``file_io.folder_lock``)
held by the process that writes the files, so it ends with that process, however it ends. A run refused right after
its trainer was built takes the fold folder and log the trainer made away again (``ResultsFolderSnapshot``).
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Optional

import torch
import torch.distributed as dist

from nnunetv2.errors import UserError
from nnunetv2.file_io import folder_lock
from nnunetv2.paths import nnUNet_results
from nnunetv2.training.nnUNetTrainer import _ddp_sync

_CLAIM_TRIES = 5
_CLAIM_RETRY_S = 0.1


def claim_fold_folder(fold_folder: Optional[str], held: contextlib.ExitStack,
                      ddp_device: Optional[torch.device] = None) -> None:
    """Refuse to train or validate a fold that another run is training or validating right now: both would write
    the same checkpoints, log and validation files, the last writer winning.

    The process that writes the files (rank 0 under DDP) takes an advisory lock on the fold's folder into ``held``,
    for the whole run; the kernel drops it when the process ends, however it ends. Under DDP (``ddp_device``: this
    rank's device) every rank learns rank 0's answer, so that none is left waiting for the others. A folder that does
    not exist yet is not claimed, nor is anything where the file system has no such locks. Re-entrant in a thread."""
    busy = False
    if fold_folder is not None and os.path.isdir(fold_folder) and (ddp_device is None or dist.get_rank() == 0):
        busy = not _try_to_claim(fold_folder, held)
    if ddp_device is not None:
        busy = bool(_ddp_sync.max_over_ranks(int(busy), ddp_device))
    if busy:
        raise UserError(f"Another nnU-Net process is training or validating this fold right now: {fold_folder}.",
                        "Wait for it to end (or stop it) first: two runs of one fold overwrite each other's "
                        "checkpoints and results. Runs of other folds, trainers or plans can go in parallel.")


def _try_to_claim(fold_folder: str, held: contextlib.ExitStack) -> bool:
    """Take the fold's lock into ``held``; False if another process keeps it. Commands that merge the folds' results
    take the lock for an instant to see whether a training holds it: a few tries apart tell them from a training."""
    for attempt in range(_CLAIM_TRIES):
        try:
            held.enter_context(folder_lock(fold_folder, 'training or validating this fold', wait=False))
            return True
        except BlockingIOError:
            if attempt + 1 < _CLAIM_TRIES:
                time.sleep(_CLAIM_RETRY_S)
    return False


def expected_fold_folder(dataset_name: str, trainer_class_name: str, plans_identifier: str, configuration: str,
                         fold) -> Optional[str]:
    """Where the trainer will write, known before it is built (claimed early, so that a refused run leaves no log
    file behind); the trainer's own ``output_folder`` is claimed again once it exists."""
    results = nnUNet_results.get()
    if results is None:
        return None
    return os.path.join(results, dataset_name, f"{trainer_class_name}__{plans_identifier}__{configuration}",
                        f"fold_{fold}")


class ResultsFolderSnapshot:
    """Which of a fold folder and its parents exist before the trainer is built: its constructor already creates
    them and writes the citation into a new training log. A run refused right after (no such device) takes these
    away again, so that it leaves no fold folder that looks like a started training."""

    def __init__(self, fold_folder: Optional[str]):
        self.folders = [] if fold_folder is None else [fold_folder, os.path.dirname(fold_folder),
                                                       os.path.dirname(os.path.dirname(fold_folder))]
        self.missing = [f for f in self.folders if not os.path.isdir(f)]
        self.files = set(os.listdir(fold_folder)) if fold_folder is not None and os.path.isdir(fold_folder) else set()

    def remove_what_the_trainer_added(self, log_file: Optional[str]) -> None:
        if log_file is not None and self.folders and os.path.dirname(os.path.abspath(log_file)) == \
                os.path.abspath(self.folders[0]) and os.path.basename(log_file) not in self.files:
            with contextlib.suppress(OSError):
                os.remove(log_file)
        for folder in self.missing:  # deepest first; a folder something else wrote into stays
            with contextlib.suppress(OSError):
                os.rmdir(folder)
