"""Adam / AdamW optimisers with the default poly schedule."""
import torch
from torch.optim import Adam, AdamW

from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerAdam(nnUNetTrainer):
    def configure_optimizers(self):
        optimizer = AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay,
                          amsgrad=True)
        lr_scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
        return optimizer, lr_scheduler


class nnUNetTrainerVanillaAdam(nnUNetTrainer):
    def configure_optimizers(self):
        optimizer = Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        lr_scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
        return optimizer, lr_scheduler


def _with_lr(base, lr: float, name: str):
    """A subclass of ``base`` whose constructor sets ``initial_lr``."""
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        base.__init__(self, plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.initial_lr = lr
    return type(name, (base,), {"__init__": __init__, "__module__": __name__})


nnUNetTrainerVanillaAdam1en3 = _with_lr(nnUNetTrainerVanillaAdam, 1e-3, "nnUNetTrainerVanillaAdam1en3")
nnUNetTrainerVanillaAdam3en4 = _with_lr(nnUNetTrainerVanillaAdam, 3e-4, "nnUNetTrainerVanillaAdam3en4")
nnUNetTrainerAdam1en3 = _with_lr(nnUNetTrainerAdam, 1e-3, "nnUNetTrainerAdam1en3")
nnUNetTrainerAdam3en4 = _with_lr(nnUNetTrainerAdam, 3e-4, "nnUNetTrainerAdam3en4")
