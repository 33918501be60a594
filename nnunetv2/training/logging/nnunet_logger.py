"""Per-epoch training bookkeeping: local lists of metrics, progress plot, optional Weights & Biases.

``MetaLogger`` is what the trainer uses. ``LocalLogger`` holds the eight per-epoch lists that go into checkpoints.
``nnUNetLogger`` is the pre-2.6 name of the local logger (still imported by MONAI); it computes the EMA itself.
"""
from __future__ import annotations

import logging
import os
import shutil
from glob import glob
from typing import Any, Dict, List, Optional

import numpy as np

logger = logging.getLogger(__name__)

LOCAL_KEYS = ('mean_fg_dice', 'ema_fg_dice', 'dice_per_class_or_region', 'train_losses', 'val_losses', 'lrs',
              'epoch_start_timestamps', 'epoch_end_timestamps')

_TRUE_VALUES = ('1', 'True', 'true')
_FALSE_VALUES = ('0', 'False', 'false')


def get_cluster_job_id() -> Optional[str]:
    """Job id of the batch system this runs under (SLURM or LSF), else ``None``; recorded in the W&B config."""
    for var in ('SLURM_JOB_ID', 'LSB_JOBID'):
        if os.environ.get(var):
            return os.environ[var]
    return None


def _next_ema(previous: Any, value: Any) -> Any:
    if isinstance(value, np.floating) and isinstance(previous, float) and not isinstance(previous, np.floating):
        # a resumed EMA comes from a checkpoint as a Python float: back to the NumPy type it was logged as, so that
        # the next step rounds as without the interruption. That is the value's type (float32) where the float
        # equals one; NumPy < 2 widens float32 * 0.9 to float64, so from the second epoch on it may be a float64
        narrow = value.dtype.type(previous)
        previous = narrow if float(narrow) == previous or np.isnan(previous) else np.float64(previous)
    return previous * 0.9 + 0.1 * value


def _ema_for(emas: List[Any], value: Any, step: int) -> Any:
    """The moving average to log with a pseudo Dice for ``step``, with the reference's indexing: the first one
    starts it, later ones continue from ``emas[step - 1]``. So rewriting epoch 0 averages with the entry it
    replaces (index -1), and a step after a gap in the list raises IndexError, as in the reference."""
    return _next_ema(emas[step - 1], value) if len(emas) > 0 else value


class LocalLogger(object):
    """The eight per-epoch lists (one entry per epoch) that are stored in checkpoints and plotted."""

    def __init__(self, verbose: bool = False):
        self.my_fantastic_logging: Dict[str, List[Any]] = {k: [] for k in LOCAL_KEYS}
        self.verbose = verbose

    def log(self, key, value, epoch: int):
        """Set ``key`` for ``epoch``: append if the list is one short, overwrite (with a warning) if it is full."""
        if key not in self.my_fantastic_logging or not isinstance(self.my_fantastic_logging[key], list):
            raise KeyError(f"unknown logging key {key!r}; known keys: {sorted(self.my_fantastic_logging)}")
        values = self.my_fantastic_logging[key]
        if self.verbose:
            print(f'logging {key}: {value} for epoch {epoch}')
        if len(values) < (epoch + 1):
            values.append(value)
        else:
            if len(values) != epoch + 1:
                raise RuntimeError(f"logging {key!r} for epoch {epoch}, but the log already holds {len(values)} "
                                   f"entries; epochs must be logged in order")
            print(f'maybe some logging issue!? logging {key} and {value}')
            values[epoch] = value

    def get_value(self, key, step):
        if step is None:
            return self.my_fantastic_logging[key]
        return self.my_fantastic_logging[key][step]

    def plot_progress_png(self, output_folder):
        from nnunetv2.training.logging.progress_plot import plot_progress_png
        plot_progress_png(self.my_fantastic_logging, output_folder)

    def get_checkpoint(self):
        return self.my_fantastic_logging

    def load_checkpoint(self, checkpoint: dict):
        self.my_fantastic_logging = checkpoint


class nnUNetLogger(LocalLogger):
    """Pre-2.6 local logger API: logging ``mean_fg_dice`` also logs its moving average ``ema_fg_dice``."""

    def log(self, key, value, epoch: int):
        super().log(key, value, epoch)
        if key == 'mean_fg_dice':
            super().log('ema_fg_dice', _ema_for(self.my_fantastic_logging['ema_fg_dice'], value, epoch), epoch)


class WandbLogger(object):
    """Forwards scalars to Weights & Biases; ``wandb`` is imported only when this logger is enabled."""

    def __init__(self, output_folder, resume):
        try:
            import wandb
        except ImportError as e:
            from nnunetv2.errors import UserError
            raise UserError("nnUNet_wandb_enabled is set but the package 'wandb' is not installed",
                            hint="pip install wandb, or unset nnUNet_wandb_enabled") from e
        self.wandb = wandb
        self.output_folder = output_folder
        self.resume = resume
        wandb_dir = os.path.join(output_folder, 'wandb')
        run_id = None
        if resume:
            run_files = glob(os.path.join(wandb_dir, 'latest-run', '*.wandb'))
            if run_files:
                # the run file is named run-<id>.wandb
                run_id = os.path.basename(run_files[0])[len('run-'):-len('.wandb')]
        elif os.path.isdir(wandb_dir):
            shutil.rmtree(wandb_dir)
        os.makedirs(wandb_dir, exist_ok=True)
        self.run = wandb.init(project=os.environ.get('nnUNet_wandb_project', 'nnunet'),
                              mode=os.environ.get('nnUNet_wandb_mode', 'online'),
                              dir=output_folder, id=run_id, resume='allow' if run_id is not None else None)

    def update_config(self, config: dict):
        self.run.config.update(config, allow_val_change=True)

    def log(self, key, value, step: int):
        if isinstance(value, (list, tuple, np.ndarray)):
            payload = {f'{key}/class_{i + 1}': v for i, v in enumerate(value)}
        else:
            payload = {key: value}
        self.run.log(payload, step=step)

    def log_summary(self, key, value):
        self.run.summary[key] = value


class MetaLogger(object):
    """The trainer's logger: always a :class:`LocalLogger`, plus W&B if ``nnUNet_wandb_enabled`` is true."""

    def __init__(self, output_folder, resume, verbose: bool = False):
        self.output_folder = output_folder
        self.resume = resume
        self.loggers = []
        self.local_logger = LocalLogger(verbose)
        if self._is_logger_enabled('nnUNet_wandb_enabled'):
            self.loggers.append(WandbLogger(output_folder, resume))

    def update_config(self, config: dict):
        for lg in self.loggers:
            lg.update_config(config)

    def log(self, key: str, value: Any, step: int):
        self.local_logger.log(key, value, step)
        for lg in self.loggers:
            lg.log(key, value, step)
        if key == 'mean_fg_dice':
            self.log('ema_fg_dice', _ema_for(self.local_logger.get_value('ema_fg_dice', None), value, step), step)

    def log_summary(self, key: str, value: Any):
        for lg in self.loggers:
            lg.log_summary(key, value)

    def get_value(self, key: str, step: Any):
        return self.local_logger.get_value(key, step)

    def plot_progress_png(self, output_folder: str):
        self.local_logger.plot_progress_png(output_folder)

    def get_checkpoint(self):
        return self.local_logger.get_checkpoint()

    def load_checkpoint(self, checkpoint: dict):
        self.local_logger.load_checkpoint(checkpoint)

    def _is_logger_enabled(self, env_var):
        value = os.environ.get(env_var, '0')
        if value in _TRUE_VALUES:
            return True
        if value in _FALSE_VALUES:
            return False
        from nnunetv2.errors import UserError  # a RuntimeError, as the reference raised
        raise UserError(f"Environment variable {env_var}={value!r} is not valid.",
                        hint="Use one of 0/False/false (off) or 1/True/true (on), or unset it.")
