"""Linear warm-up of the whole network, then poly decay."""
from typing import Union

import torch

from nnunetv2.training.lr_scheduler.warmup import Lin_incr_LRScheduler, PolyLRScheduler_offset
from nnunetv2.training.nnUNetTrainer import _checkpointing, _setup
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import empty_cache


def configure_warmup_stage(trainer: nnUNetTrainer, stage: str, new_optimizer):
    """Optimizer and lr scheduler for ``stage`` of a warm-up-then-poly schedule ('warmup_all': linear rise to
    initial_lr over ``warmup_duration_whole_net`` epochs; 'train': poly decay afterwards). The warm-up optimizer is
    kept across the switch: its momentum already points somewhere useful."""
    if stage not in ("warmup_all", "train"):
        raise ValueError(f"stage must be 'warmup_all' or 'train', got {stage!r}")
    if stage == trainer.training_stage:
        return trainer.optimizer, trainer.lr_scheduler
    if stage == "warmup_all":
        trainer.print_to_log_file("train whole net, warmup")
        optimizer = new_optimizer()
        lr_scheduler = Lin_incr_LRScheduler(optimizer, trainer.initial_lr, trainer.warmup_duration_whole_net)
    else:
        trainer.print_to_log_file("train whole net, default schedule")
        optimizer = trainer.optimizer if trainer.training_stage == "warmup_all" else new_optimizer()
        lr_scheduler = PolyLRScheduler_offset(optimizer, trainer.initial_lr, trainer.num_epochs,
                                              trainer.warmup_duration_whole_net)
    trainer.print_to_log_file(f"Initialized {stage} optimizer and lr_scheduler at epoch {trainer.current_epoch}")
    trainer.training_stage = stage
    empty_cache(trainer.device)
    return optimizer, lr_scheduler


class nnUNetTrainer_warmup(nnUNetTrainer):
    """Epochs 0..warmup-1: lr rises linearly to initial_lr; afterwards poly decay over the remaining epochs. The SGD
    optimiser (and its momentum) is kept across the switch."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.warmup_duration_whole_net = 50
        self.num_epochs = 1000
        self.training_stage = None  # None, 'warmup_all' or 'train'

    def _new_sgd(self):
        params = _setup.unwrap_ddp_only(self.network).parameters()
        return torch.optim.SGD(params, self.initial_lr, weight_decay=self.weight_decay, momentum=0.99,
                               nesterov=True)

    def configure_optimizers(self, stage: str = "warmup_all"):
        return configure_warmup_stage(self, stage, self._new_sgd)

    def _stage_for_epoch(self) -> str:
        return "warmup_all" if self.current_epoch < self.warmup_duration_whole_net else "train"

    def on_train_epoch_start(self):
        if self.current_epoch == 0:
            self.optimizer, self.lr_scheduler = self.configure_optimizers("warmup_all")
        elif self.current_epoch == self.warmup_duration_whole_net:
            self.optimizer, self.lr_scheduler = self.configure_optimizers("train")
        super().on_train_epoch_start()

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        # the optimizer of the checkpoint's stage must exist before its state is loaded
        if not self.was_initialized:
            self.initialize()
        source = filename_or_checkpoint if isinstance(filename_or_checkpoint, str) else "the checkpoint dict"
        checkpoint = _checkpointing.read_checkpoint(filename_or_checkpoint, self.device) \
            if isinstance(filename_or_checkpoint, str) else filename_or_checkpoint
        _checkpointing.restore_weights_and_bookkeeping(self, checkpoint, _setup.unwrap_network(self.network), source)
        self.optimizer, self.lr_scheduler = self.configure_optimizers(self._stage_for_epoch())
        _checkpointing.restore_optimizer(self, checkpoint)
