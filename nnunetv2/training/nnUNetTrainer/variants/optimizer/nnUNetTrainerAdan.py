"""Adan optimiser (optional ``adan_pytorch`` package)."""
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR

from nnunetv2.errors import UserError
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

try:
    from adan_pytorch import Adan
except ImportError:
    Adan = None


def _adan(trainer):
    if Adan is None:
        raise UserError(f"{trainer.__class__.__name__} needs the optional package adan_pytorch.",
                        "Install it with 'pip install adan-pytorch'.")
    return Adan(trainer.network.parameters(), lr=trainer.initial_lr, weight_decay=trainer.weight_decay)


class nnUNetTrainerAdan(nnUNetTrainer):
    def configure_optimizers(self):
        optimizer = _adan(self)
        lr_scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
        return optimizer, lr_scheduler


class nnUNetTrainerAdanCosAnneal(nnUNetTrainerAdan):
    def configure_optimizers(self):
        optimizer = _adan(self)
        lr_scheduler = CosineAnnealingLR(optimizer, T_max=self.num_epochs)
        return optimizer, lr_scheduler


def _with_lr(base, lr: float, name: str):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        base.__init__(self, plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.initial_lr = lr
    return type(name, (base,), {"__init__": __init__, "__module__": __name__})


nnUNetTrainerAdan1en3 = _with_lr(nnUNetTrainerAdan, 1e-3, "nnUNetTrainerAdan1en3")
nnUNetTrainerAdan3en4 = _with_lr(nnUNetTrainerAdan, 3e-4, "nnUNetTrainerAdan3en4")
nnUNetTrainerAdan1en1 = _with_lr(nnUNetTrainerAdan, 1e-1, "nnUNetTrainerAdan1en1")
