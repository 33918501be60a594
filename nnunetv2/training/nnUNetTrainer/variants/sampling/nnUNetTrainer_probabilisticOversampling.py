"""Foreground oversampling drawn per sample instead of forcing the last samples of a batch."""
import numpy as np
import torch
from torch import distributed as dist

from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_probabilisticOversampling(nnUNetTrainer):
    """By default the probability equals the fraction the deterministic rule forces for the plans' batch size
    (batch 2 -> 0.5), so the expected amount of oversampling is unchanged."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.probabilistic_oversampling = True
        batch_size = self.configuration_manager.batch_size
        first_forced = round(batch_size * (1 - self.oversample_foreground_percent))
        self.oversample_foreground_percent = float(np.mean([i >= first_forced for i in range(batch_size)]))
        self.print_to_log_file(f"self.oversample_foreground_percent {self.oversample_foreground_percent}")

    def _set_batch_size_and_oversample(self):
        # each sample is drawn independently, so under DDP only the batch size is split
        if not self.is_ddp:
            self.batch_size = self.configuration_manager.batch_size
            return
        self.batch_size, _ = _setup.ddp_batch_size_and_oversampling(
            self.configuration_manager.batch_size, dist.get_world_size(), dist.get_rank(),
            self.oversample_foreground_percent)
        print("worker", dist.get_rank(), "batch_size", self.batch_size)


class nnUNetTrainer_probabilisticOversampling_033(nnUNetTrainer_probabilisticOversampling):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.oversample_foreground_percent = 0.33


class nnUNetTrainer_probabilisticOversampling_010(nnUNetTrainer_probabilisticOversampling):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.oversample_foreground_percent = 0.1
