"""Cross-entropy only."""
import torch

from nnunetv2.errors import UserError
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss
from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerCELoss(nnUNetTrainer):
    def _build_loss(self):
        if self.label_manager.has_regions:
            raise UserError("nnUNetTrainerCELoss does not support region-based training (the dataset defines "
                            "regions).", "Use nnUNetTrainer or nnUNetTrainerDiceLoss.")
        loss = RobustCrossEntropyLoss(
            weight=None, ignore_index=self.label_manager.ignore_label if self.label_manager.has_ignore_label else -100)
        # deep-supervision weights as for every other trainer: under DDP without torch.compile the lowest output
        # keeps a tiny weight, since a parameter without gradient stops DDP at the second iteration
        return _setup.maybe_wrap_deep_supervision(self, loss)


class nnUNetTrainerCELoss_5epochs(nnUNetTrainerCELoss):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.num_epochs = 5
