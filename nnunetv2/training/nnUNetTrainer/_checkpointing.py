"""Checkpoint dict, atomic save and restore for nnUNetTrainer.

The dict has exactly the reference's keys, and only builtin and torch types, so checkpoints load in both
implementations and also with plain ``torch.load`` (``weights_only=True``, torch's default since 2.6): the NumPy
scalars the logger and the EMA hold are stored as the Python numbers they equal. The reference stores them as NumPy
scalars, which that default refuses. A checkpoint_latest.pth written in the middle of an epoch (see _preemption) has
one more key, RESUME_KEY, which the reference's load_checkpoint does not read. Writing goes to a temporary sibling
first, which is flushed to disk before it takes the final name, so a crash never leaves a truncated ``.pth``.
"""
from __future__ import annotations

import os
from typing import Any, Dict

import numpy as np
import torch

from nnunetv2.errors import UserError
from nnunetv2.file_io import atomic_path, os_error_behind, raise_if_disk_full

CHECKPOINT_KEYS = ("network_weights", "optimizer_state", "grad_scaler_state", "logging", "_best_ema",
                   "current_epoch", "init_args", "trainer_name", "inference_allowed_mirroring_axes")
# the position in an interrupted epoch (mid-epoch checkpoint_latest.pth only)
RESUME_KEY = "nnunet_resume_in_epoch"


def build_checkpoint(trainer, network: torch.nn.Module) -> Dict[str, Any]:
    """The checkpoint dict; ``current_epoch`` is the number of completed epochs (= the epoch to resume at)."""
    everything_but_weights = {
        "optimizer_state": trainer.optimizer.state_dict(),
        "grad_scaler_state": trainer.grad_scaler.state_dict() if trainer.grad_scaler is not None else None,
        "logging": trainer.logger.get_checkpoint(),
        "_best_ema": trainer._best_ema,
        "current_epoch": trainer.current_epoch + 1,
        "init_args": trainer.my_init_kwargs,
        "trainer_name": trainer.__class__.__name__,
        "inference_allowed_mirroring_axes": trainer.inference_allowed_mirroring_axes,
    }
    return {"network_weights": network.state_dict(), **numpy_scalars_as_python(everything_but_weights)}


def numpy_scalars_as_python(value: Any) -> Any:
    """``value`` with every NumPy scalar inside dicts, lists and tuples replaced by the Python number it equals
    (np.float32 widens to float exactly); containers keep their type, tensors and everything else are kept."""
    if isinstance(value, np.generic):
        return value.item()
    if type(value) is dict:
        return {k: numpy_scalars_as_python(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(numpy_scalars_as_python(v) for v in value)
    return value


def save_checkpoint_atomically(checkpoint: Dict[str, Any], filename: str) -> None:
    with atomic_path(filename) as tmp:
        with open(tmp, "wb") as f:
            try:
                torch.save(checkpoint, f)
            except RuntimeError as e:
                # a full disk: the OSError of write() is hidden behind torch's "[enforce fail at
                # inline_container.cc] unexpected pos"; report it (atomic_path then names the final file)
                os_error = os_error_behind(e)
                if os_error is None:
                    raise_if_disk_full(tmp)
                    raise
                raise OSError(os_error.errno, os_error.strerror) from e
            f.flush()
            # on disk before the rename: a node that goes down right after must not leave an empty final file
            os.fsync(f.fileno())


def read_checkpoint(filename: str, device: torch.device) -> Dict[str, Any]:
    """Load a training checkpoint safely; a missing, corrupt or foreign file gives a one-line UserError."""
    from nnunetv2.utilities.checkpoint_io import load_checkpoint, require_keys
    if not os.path.isfile(filename):
        raise UserError(f"Checkpoint file not found: {filename}.")
    checkpoint = load_checkpoint(filename, map_location=device)
    require_keys(checkpoint, filename, ("network_weights", "optimizer_state", "current_epoch", "logging"))
    return checkpoint


def fix_state_dict_keys(saved: Dict[str, Any], current_keys) -> Dict[str, Any]:
    """Strip a ``module.`` prefix (DDP) from saved keys that the current network does not know."""
    current_keys = set(current_keys)
    out = {}
    for key, value in saved.items():
        if key not in current_keys and key.startswith("module."):
            key = key[7:]
        out[key] = value
    return out


def restore(trainer, checkpoint: Dict[str, Any], network: torch.nn.Module, source: str = "checkpoint") -> None:
    """Put the state of ``checkpoint`` into ``trainer`` (which must be initialised); ``network`` is unwrapped."""
    restore_weights_and_bookkeeping(trainer, checkpoint, network, source)
    restore_optimizer(trainer, checkpoint)


def restore_weights_and_bookkeeping(trainer, checkpoint: Dict[str, Any], network: torch.nn.Module,
                                    source: str = "checkpoint") -> None:
    """Epoch counter, logger, best EMA, mirroring axes, init args and the network weights."""
    weights = fix_state_dict_keys(checkpoint["network_weights"], network.state_dict().keys())
    trainer.my_init_kwargs = checkpoint.get("init_args", trainer.my_init_kwargs)
    trainer.current_epoch = checkpoint["current_epoch"]
    trainer.logger.load_checkpoint(checkpoint["logging"])
    trainer._best_ema = checkpoint.get("_best_ema")
    resume = checkpoint.get(RESUME_KEY)
    # the optimizer state goes along: on_train_epoch_start may replace the optimizer before the epoch continues
    trainer._resume_in_epoch = dict(resume, optimizer_state=checkpoint.get("optimizer_state")) \
        if isinstance(resume, dict) else None
    trainer.inference_allowed_mirroring_axes = checkpoint.get("inference_allowed_mirroring_axes",
                                                              trainer.inference_allowed_mirroring_axes)
    try:
        network.load_state_dict(weights)
    except RuntimeError as e:
        raise UserError(f"The network weights in {source} do not fit this trainer's network "
                        f"({' '.join(str(e).split())[:300]}).",
                        "Was it trained with another plans file, configuration or trainer?") from e


def restore_optimizer(trainer, checkpoint: Dict[str, Any]) -> None:
    trainer.optimizer.load_state_dict(checkpoint["optimizer_state"])
    if trainer.grad_scaler is not None and checkpoint.get("grad_scaler_state") is not None:
        trainer.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])
