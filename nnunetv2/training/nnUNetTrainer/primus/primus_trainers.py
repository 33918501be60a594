"""Primus (vision-transformer) trainers.

All use AdamW with the warm-up/poly two-stage schedule of nnUNetTrainer_warmup, no deep supervision and gradient
clipping at norm 1. The networks need a patch size divisible by 8 (8x8x8 patch embedding).
"""
from abc import abstractmethod
from typing import Callable, Optional

import torch
from torch import nn

from nnunetv2.errors import UserError
from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.lr_schedule.nnUNetTrainer_warmup import (configure_warmup_stage,
                                                                                      nnUNetTrainer_warmup)
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

_COMMON = dict(drop_path_rate=0.2, scale_attn_inner=True, init_values=0.1)
_NETWORK_NAMES = ('Primus', 'PrimusV2S', 'PrimusV2B', 'PrimusV2M', 'PrimusV2L',
                  'PrimusV3S', 'PrimusV3B', 'PrimusV3M', 'PrimusV3L')


def _network_class(name: str) -> Optional[Callable]:
    # imported on use: the primus module pulls in timm and torchvision (~5 s of CPU), and every trainer lookup by
    # name imports this module; None where the installed dynamic_network_architectures lacks the class
    from dynamic_network_architectures.architectures import primus
    return getattr(primus, name, None)


def __getattr__(name: str):
    if name in _NETWORK_NAMES:
        return _network_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_patch_size(patch_size) -> None:
    if any(int(p) % 8 for p in patch_size):
        raise UserError(f"Primus networks need a patch size divisible by 8, the plans have {list(patch_size)}.",
                        "Edit the patch size in the plans (or use a _96_BS1 / _48_BS1 trainer).")


def _primus_v1(embed_dim: int, depth: int, heads: int) -> staticmethod:
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        _check_patch_size(configuration_manager.patch_size)
        return _network_class('Primus')(num_input_channels, embed_dim, (8, 8, 8), num_output_channels, depth, heads,
                                        configuration_manager.patch_size, **_COMMON)
    return staticmethod(build_network_architecture)


def _primus_preset(name: str) -> staticmethod:
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        network_class = _network_class(name)
        if network_class is None:
            raise UserError(f"{name} is not available in the installed dynamic_network_architectures.",
                            "Upgrade it: pip install -U dynamic_network_architectures.")
        _check_patch_size(configuration_manager.patch_size)
        return network_class(num_input_channels, num_output_channels, patch_embed_size=(8, 8, 8),
                             input_shape=configuration_manager.patch_size, **_COMMON)
    return staticmethod(build_network_architecture)


class AbstractPrimus(nnUNetTrainer_warmup):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.initial_lr = 3e-4
        self.weight_decay = 5e-2
        self.enable_deep_supervision = False

    @staticmethod
    @abstractmethod
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        raise NotImplementedError()

    def _new_adamw(self):
        return torch.optim.AdamW(_setup.unwrap_ddp_only(self.network).parameters(), self.initial_lr,
                                 weight_decay=self.weight_decay, amsgrad=False, betas=(0.9, 0.98),
                                 fused=self.device.type == "cuda")

    def configure_optimizers(self, stage: str = "warmup_all"):
        return configure_warmup_stage(self, stage, self._new_adamw)

    def train_step(self, batch: dict) -> dict:
        from nnunetv2.training.nnUNetTrainer._epoch import to_device
        data, target = to_device(batch["data"], self.device), to_device(batch["target"], self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            l = self.loss(output, target)
        # transformers need the tighter clipping (norm 1 instead of 12)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(l).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 1)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            l.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 1)
            self.optimizer.step()
        return {"loss": l.detach().cpu().numpy()}

    def set_deep_supervision_enabled(self, enabled: bool):
        # Primus has a single output
        pass


class nnUNet_Primus_S_Trainer(AbstractPrimus):
    build_network_architecture = _primus_v1(396, 12, 6)


class nnUNet_Primus_B_Trainer(AbstractPrimus):
    build_network_architecture = _primus_v1(792, 12, 12)


class nnUNet_Primus_M_Trainer(AbstractPrimus):
    build_network_architecture = _primus_v1(864, 16, 12)


class nnUNet_Primus_L_Trainer(AbstractPrimus):
    build_network_architecture = _primus_v1(1056, 24, 16)


class nnUNet_Primus_M_Trainer_BS8(nnUNet_Primus_M_Trainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        # the configuration manager is cached per plans manager, so this edit is what initialize() sees
        self.configuration_manager.configuration["batch_size"] = 8


class nnUNet_Primus_M_Trainer_BS8_2e4(nnUNet_Primus_M_Trainer_BS8):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.initial_lr = 2e-4


class nnUNet_Trainer_BS8(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
        self.configuration_manager.configuration["batch_size"] = 8


class nnUNet_PrimusV2S_Trainer(AbstractPrimus):
    build_network_architecture = _primus_preset("PrimusV2S")


class nnUNet_PrimusV2B_Trainer(AbstractPrimus):
    build_network_architecture = _primus_preset("PrimusV2B")


class nnUNet_PrimusV2M_Trainer(AbstractPrimus):
    build_network_architecture = _primus_preset("PrimusV2M")


class nnUNet_PrimusV2L_Trainer(AbstractPrimus):
    build_network_architecture = _primus_preset("PrimusV2L")


class nnUNet_PrimusV3S_Trainer(AbstractPrimus):
    build_network_architecture = _primus_preset("PrimusV3S")


class nnUNet_PrimusV3B_Trainer(AbstractPrimus):
    build_network_architecture = _primus_preset("PrimusV3B")


class nnUNet_PrimusV3M_Trainer(AbstractPrimus):
    build_network_architecture = _primus_preset("PrimusV3M")


class nnUNet_PrimusV3L_Trainer(AbstractPrimus):
    build_network_architecture = _primus_preset("PrimusV3L")


def _force_patch_and_batch(plans: dict, configuration: str, patch_size) -> None:
    """Fixed patch size and batch size 1, written into the plans before the trainer reads them."""
    plans["configurations"][configuration]["patch_size"] = tuple(patch_size)
    plans["configurations"][configuration]["batch_size"] = 1


class _Primus_S_96_BS1(nnUNet_Primus_S_Trainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        _force_patch_and_batch(plans, configuration, (96, 96, 96))
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)


class _Primus_B_96_BS1(nnUNet_Primus_B_Trainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        _force_patch_and_batch(plans, configuration, (96, 96, 96))
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)


class _Primus_M_96_BS1(nnUNet_Primus_M_Trainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        _force_patch_and_batch(plans, configuration, (96, 96, 96))
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)


class _Primus_L_48_BS1(nnUNet_Primus_L_Trainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda"), unpack_dataset: bool = None):
        _force_patch_and_batch(plans, configuration, (48, 48, 48))
        super().__init__(plans, configuration, fold, dataset_json, device, unpack_dataset)
