"""Top-k cross-entropy losses."""
from nnunetv2.errors import UserError
from nnunetv2.training.loss.compound_losses import DC_and_topk_loss
from nnunetv2.training.loss.robust_ce_loss import TopKLoss
from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _no_regions(trainer) -> None:
    if trainer.label_manager.has_regions:
        raise UserError(f"{trainer.__class__.__name__} does not support region-based training (the dataset defines "
                        f"regions).", "Use nnUNetTrainer instead.")


def _ignore_index(trainer) -> int:
    return trainer.label_manager.ignore_label if trainer.label_manager.has_ignore_label else -100


class nnUNetTrainerTopk10Loss(nnUNetTrainer):
    def _build_loss(self):
        _no_regions(self)
        loss = TopKLoss(ignore_index=_ignore_index(self), k=10)
        return _setup.maybe_wrap_deep_supervision(self, loss)


class nnUNetTrainerTopk10LossLS01(nnUNetTrainer):
    def _build_loss(self):
        _no_regions(self)
        loss = TopKLoss(ignore_index=_ignore_index(self), k=10, label_smoothing=0.1)
        return _setup.maybe_wrap_deep_supervision(self, loss)


class nnUNetTrainerDiceTopK10Loss(nnUNetTrainer):
    def _build_loss(self):
        _no_regions(self)
        loss = DC_and_topk_loss({'batch_dice': self.configuration_manager.batch_dice, 'smooth': 1e-5,
                                 'do_bg': False, 'ddp': self.is_ddp},
                                {'k': 10, 'label_smoothing': 0.0}, weight_ce=1, weight_dice=1,
                                ignore_label=self.label_manager.ignore_label)
        return _setup.maybe_wrap_deep_supervision(self, loss)
