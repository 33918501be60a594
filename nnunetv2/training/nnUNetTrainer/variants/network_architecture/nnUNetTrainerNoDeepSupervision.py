"""nnUNetTrainer without deep supervision: one network output, no downsampled targets."""
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerNoDeepSupervision(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.enable_deep_supervision = False
