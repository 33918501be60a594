"""Per-step and per-epoch computations of nnUNetTrainer, as plain functions."""
from __future__ import annotations

import subprocess
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import distributed as dist

from nnunetv2.errors import UserError
from nnunetv2.utilities.collate_outputs import collate_outputs


def to_device(x: Union[torch.Tensor, List[torch.Tensor]], device: torch.device):
    if isinstance(x, list):
        return [i.to(device, non_blocking=True) for i in x]
    return x.to(device, non_blocking=True)


def hard_tp_fp_fn(output: torch.Tensor, target: torch.Tensor, has_regions: bool,
                  ignore_label: Optional[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP/FP/FN per class (background dropped for labels) of the hard prediction, summed over batch and space."""
    from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
    axes = [0] + list(range(2, output.ndim))
    if has_regions:
        predicted_segmentation_onehot = (torch.sigmoid(output) > 0.5).long()
    else:
        output_seg = output.argmax(1)[:, None]
        predicted_segmentation_onehot = torch.zeros(output.shape, device=output.device, dtype=torch.float16)
        predicted_segmentation_onehot.scatter_(1, output_seg, 1)
        del output_seg

    if ignore_label is not None:
        if not has_regions:
            mask = (target != ignore_label).float()
            # CAREFUL that we don't overwrite target: the loss may still need it
            target = target.clone()
            target[target == ignore_label] = 0
        else:
            if target.dtype == torch.bool:
                mask = ~target[:, -1:]
            else:
                mask = 1 - target[:, -1:]
            target = target[:, :-1]
    else:
        mask = None

    tp, fp, fn, _ = get_tp_fp_fn_tn(predicted_segmentation_onehot, target, axes=axes, mask=mask)
    tp_hard, fp_hard, fn_hard = (t.detach().cpu().numpy() for t in (tp, fp, fn))
    if not has_regions:
        # background is not interesting for the pseudo Dice
        tp_hard, fp_hard, fn_hard = tp_hard[1:], fp_hard[1:], fn_hard[1:]
    return tp_hard, fp_hard, fn_hard


def _gather(value, world_size: int) -> list:
    gathered = [None for _ in range(world_size)]
    dist.all_gather_object(gathered, value)
    return gathered


def mean_train_loss(train_outputs: List[dict], is_ddp: bool) -> float:
    outputs = collate_outputs(train_outputs)
    if is_ddp:
        losses = _gather(outputs["loss"], dist.get_world_size())
        return np.vstack(losses).mean()
    return np.mean(outputs["loss"])


def validation_summary(val_outputs: List[dict], is_ddp: bool) -> Tuple[np.floating, List[float], float]:
    """(mean foreground pseudo Dice, per class/region pseudo Dice, mean validation loss)."""
    outputs = collate_outputs(val_outputs)
    tp, fp, fn = (np.sum(outputs[k], 0) for k in ("tp_hard", "fp_hard", "fn_hard"))
    if is_ddp:
        world_size = dist.get_world_size()
        tp, fp, fn = (np.vstack([i[None] for i in _gather(t, world_size)]).sum(0) for t in (tp, fp, fn))
        loss_here = np.vstack(_gather(outputs["loss"], world_size)).mean()
    else:
        loss_here = np.mean(outputs["loss"])
    with np.errstate(divide="ignore", invalid="ignore"):
        # in the counts' precision (float32): 0 / 0 (a class in neither prediction nor target) is NaN
        dice = [2 * i / (2 * i + j + k) for i, j, k in zip(tp, fp, fn)]
    # the mean (and the moving average the logger derives from it, which picks checkpoint_best.pth) stays a NumPy
    # scalar of that precision, as in the reference: averaging the widened values gives other last digits
    mean_fg_dice = np.nanmean(dice) if len(dice) and not np.all(np.isnan(dice)) else np.float32("nan")
    return mean_fg_dice, [float(d) for d in dice], loss_here


def log_epoch_summary(get_value, log) -> None:
    """The reference's four end-of-epoch log lines (losses, pseudo Dice, epoch time) from the logger's last values."""
    log('train_loss', np.round(get_value('train_losses', step=-1), decimals=4))
    log('val_loss', np.round(get_value('val_losses', step=-1), decimals=4))
    log('Pseudo dice', [float(np.round(i, decimals=4)) for i in get_value('dice_per_class_or_region', step=-1)])
    seconds = get_value('epoch_end_timestamps', step=-1) - get_value('epoch_start_timestamps', step=-1)
    log(f"Epoch time: {np.round(seconds, decimals=2)} s")


def debug_information(trainer) -> Dict[str, str]:
    """Contents of debug.json: every non-callable attribute as text plus a few environment facts."""
    dct = {}
    for k in trainer.__dir__():
        if k.startswith("__"):
            continue
        try:
            value = getattr(trainer, k)
        except Exception:  # a property that cannot be computed yet
            continue
        if callable(value):
            continue
        dct[k] = str(value)
    dct["loss"] = str(trainer.loss)
    dct["network"] = trainer.network.__class__.__name__ if trainer.network is not None else "None"
    for key in ("dataloader_train", "dataloader_val"):
        augmenter = getattr(trainer, key, None)
        if augmenter is None:
            continue
        if hasattr(augmenter, "generator"):
            dct[key + ".generator"] = str(augmenter.generator)
            try:
                dct[key + ".generator.transforms"] = str(augmenter.generator.transforms)
            except Exception as e:  # some transform reprs fail; record why
                dct[key + ".generator.transforms"] = f"could not stringify: {e}"
        if hasattr(augmenter, "num_processes"):
            dct[key + ".num_processes"] = str(augmenter.num_processes)
        if hasattr(augmenter, "transform"):
            dct[key + ".transform"] = str(augmenter.transform)
    try:
        hostname = subprocess.getoutput(["hostname"])
    except Exception:
        hostname = "unknown"
    dct["hostname"] = hostname
    torch_version = torch.__version__
    if trainer.device.type == "cuda":
        dct["gpu_name"] = torch.cuda.get_device_name()
        dct["cudnn_version"] = torch.backends.cudnn.version()
    else:
        dct["cudnn_version"] = "None"
    dct["device"] = str(trainer.device)
    dct["torch_version"] = torch_version
    return dct


def weights_are_finite(network: torch.nn.Module) -> bool:
    """Whether every parameter of ``network`` is finite (one device synchronisation)."""
    finite = [torch.isfinite(p).all() for p in network.parameters()]
    return not finite or bool(torch.stack(finite).all())


def check_weights_finite(network: torch.nn.Module, epoch: int) -> None:
    """UserError when the network's weights are no longer finite after a training epoch: training diverged, and SGD
    never brings NaN weights back, so every later epoch (and checkpoint) would be wasted; the reference trains on
    until the last epoch. Checked before the epoch's checkpoints are written, so those of earlier epochs stay as they
    are (the training loop writes no time-based checkpoint of such weights). One device synchronisation per epoch.
    (With mixed precision on a GPU, steps with inf/NaN gradients are skipped by the gradient scaler and leave the
    weights finite: a NaN loss there is no divergence by itself.)"""
    if weights_are_finite(network):
        return
    raise UserError(f"Training diverged in epoch {epoch}: the network's weights are no longer finite (NaN or inf), so "
                    f"no later epoch could learn anything. No checkpoint was written with them; those written before "
                    f"are kept.",
                    "Train with a lower learning rate (a trainer subclass with a smaller initial_lr) and check the "
                    "images for extreme intensities; nnUNetv2_train --c continues from checkpoint_latest.pth.")
