"""Client pattern: research code that plugs its own network into nnU-Net by subclassing nnUNetTrainer, as U-Mamba
(bowang-lab/U-Mamba: nnUNetTrainerUMambaBot/Enc/EncNoAMP, nnUNetTrainerSegResNet/SwinUNETR/UNETR) and STU-Net
(uni-medical/STU-Net, the trainers of its nnUNet-2.2 fork and its fine-tuning script) do. The trainers below are
small stand-ins of the same shape (a tiny conv net instead of Mamba / STU-Net blocks), run end to end on a tiny
preprocessed dataset: initialize, a few training iterations, checkpoints, final validation, and loading the trained
model for prediction, where nnUNetPredictor looks the trainer class up by the checkpoint's trainer_name.

What these clients rely on:
* static ``build_network_architecture(plans_manager, dataset_json, configuration_manager, num_input_channels,
  enable_deep_supervision)`` (the 2.1-2.2 form; the reference 2.8.1 binds it positionally and mis-binds it,
  ``configuration_manager`` gets the input channel count; spec 05 §3 asks us to bind by name), building the network
  from ``configuration_manager.{conv_kernel_sizes, pool_op_kernel_sizes, UNet_base_num_features,
  unet_max_num_features, patch_size}`` and ``plans_manager.get_label_manager(dataset_json).num_segmentation_heads``,
  with ``InitWeights_He`` and dynamic_network_architectures' ``convert_dim_to_conv_op`` /
  ``get_matching_instancenorm``;
* ``__init__(plans, configuration, fold, dataset_json, unpack_dataset=True, device=...)`` calling
  ``super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)``, also on
  ``nnUNetTrainerNoDeepSupervision`` (the reference 2.8.1 rejects both; spec 05 §3: accept them);
* ``network.decoder.deep_supervision`` toggled by the base ``set_deep_supervision_enabled``, outputs as a list or
  (STU-Net) a tuple, and (STU-Net) more deep-supervision outputs than the trainer's scales (zip truncates, as in the
  reference);
* overrides of ``train_step`` / ``validation_step`` (no autocast, gradient clipping, ``get_tp_fp_fn_tn``,
  ``self.label_manager.has_regions / has_ignore_label``), ``configure_optimizers`` (Adam + PolyLRScheduler, AdamW +
  torch's CosineAnnealingLR stepped with the epoch), ``set_deep_supervision_enabled`` as a no-op for a network
  without a ``decoder``; ``self.grad_scaler = None``; changing the patch size in ``__init__`` through
  ``configuration_manager.configuration`` and ``plans_manager.plans`` (it must reach the data loaders, the saved
  plans.json and prediction);
* STU-Net's fine-tuning: ``unittest.mock.patch("run_training.load_pretrained_weights", own_loader)`` around
  ``run_training_entry()`` of nnunetv2/run/run_training.py imported as the top-level module ``run_training``.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import textwrap
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dynamic_network_architectures.building_blocks.helper import convert_dim_to_conv_op, get_matching_instancenorm

import nnunetv2
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerNoDeepSupervision import \
    nnUNetTrainerNoDeepSupervision
from nnunetv2.utilities.network_initialization import InitWeights_He
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from _training_env import one_process_training_env

DATASET_ID = 324
DATASET_NAME = "Dataset324_CustomNetTrainers"
CPU = torch.device("cpu")

BUILD_CALLS = []   # (plans_manager, dataset_json, configuration_manager, num_input_channels, deep supervision)
STEPS = []         # what the train_step / validation_step overrides saw and returned


# ---------------------------------------------------------------------------------------------------------------
# a tiny network in the clients' style: own encoder/decoder, a parameterless ``decoder`` holding the DS flag
class _DeepSupervisionFlag(nn.Module):
    def __init__(self, enabled: bool):
        super().__init__()
        self.deep_supervision = enabled


class TinyCustomNet(nn.Module):
    def __init__(self, input_channels, num_classes, features, strides, conv_op, norm_op, deep_supervision,
                 outputs_as_tuple=False):
        super().__init__()
        self.stages = nn.ModuleList()
        prev = input_channels
        for f, s in zip(features, strides):
            self.stages.append(nn.Sequential(conv_op(prev, f, 3, stride=s, padding=1), norm_op(f, affine=True),
                                             nn.LeakyReLU(inplace=True)))
            prev = f
        self.lateral = nn.ModuleList([conv_op(features[i + 1], features[i], 1) for i in range(len(features) - 1)])
        self.seg_heads = nn.ModuleList([conv_op(features[i], num_classes, 1) for i in range(len(features) - 1)])
        self.decoder = _DeepSupervisionFlag(deep_supervision)
        self.outputs_as_tuple = outputs_as_tuple

    def forward(self, x):
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        outputs = []
        for i in reversed(range(len(self.lateral))):
            x = self.lateral[i](F.interpolate(x, size=skips[i].shape[2:], mode="nearest")) + skips[i]
            outputs.append(self.seg_heads[i](x))
        outputs = outputs[::-1]  # full resolution first
        if self.decoder.deep_supervision:
            return tuple(outputs) if self.outputs_as_tuple else outputs
        return outputs[0]


# ---------------------------------------------------------------------------------------------------------------
# U-Mamba shaped trainers
class UMambaShapedTrainer(nnUNetTrainer):
    """nnUNetTrainerUMambaEnc's shape: pre-2.6 constructor, 2.1 builder reading the pre-2.3 plans names."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, unpack_dataset: bool = True,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    @staticmethod
    def build_network_architecture(plans_manager: PlansManager,
                                   dataset_json,
                                   configuration_manager: ConfigurationManager,
                                   num_input_channels,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        BUILD_CALLS.append((plans_manager, dataset_json, configuration_manager, num_input_channels,
                            enable_deep_supervision))
        if len(configuration_manager.patch_size) != 3:
            raise NotImplementedError("only 3D here")
        num_stages = len(configuration_manager.conv_kernel_sizes)
        conv_op = convert_dim_to_conv_op(len(configuration_manager.conv_kernel_sizes[0]))
        features = [min(configuration_manager.UNet_base_num_features * 2 ** i,
                        configuration_manager.unet_max_num_features) for i in range(num_stages)]
        label_manager = plans_manager.get_label_manager(dataset_json)
        model = TinyCustomNet(num_input_channels, label_manager.num_segmentation_heads, features,
                              configuration_manager.pool_op_kernel_sizes, conv_op, get_matching_instancenorm(conv_op),
                              enable_deep_supervision)
        model.apply(InitWeights_He(1e-2))
        return model


class UMambaNoAMPShapedTrainer(UMambaShapedTrainer):
    """nnUNetTrainerUMambaEncNoAMP's shape: own train_step / validation_step without autocast."""

    def train_step(self, batch: dict) -> dict:
        data = batch['data'].to(self.device, non_blocking=True)
        target = batch['target']
        target = [i.to(self.device) for i in target] if isinstance(target, list) else target.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        output = self.network(data)
        loss = self.loss(output, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
        self.optimizer.step()
        STEPS.append(("train", tuple(data.shape), float(loss.detach())))
        return {'loss': loss.detach().cpu().numpy()}

    def validation_step(self, batch: dict) -> dict:
        data = batch['data'].to(self.device, non_blocking=True)
        target = batch['target']
        target = [i.to(self.device) for i in target] if isinstance(target, list) else target.to(self.device)
        output = self.network(data)
        loss = self.loss(output, target)
        if isinstance(output, (list, tuple)):
            output, target = output[0], target[0]
        axes = [0] + list(range(2, output.ndim))
        if self.label_manager.has_regions:
            onehot = (torch.sigmoid(output) > 0.5).long()
        else:
            onehot = torch.zeros(output.shape, device=output.device, dtype=torch.float32)
            onehot.scatter_(1, output.argmax(1)[:, None], 1)
        mask = None
        if self.label_manager.has_ignore_label:
            mask = (target != self.label_manager.ignore_label).float()
            target[target == self.label_manager.ignore_label] = 0
        tp, fp, fn, _ = get_tp_fp_fn_tn(onehot, target, axes=axes, mask=mask)
        tp, fp, fn = (x.detach().cpu().numpy() for x in (tp, fp, fn))
        if not self.label_manager.has_regions:
            tp, fp, fn = tp[1:], fp[1:], fn[1:]
        STEPS.append(("val", tuple(data.shape), float(loss.detach()), tp, fp, fn))
        return {'loss': loss.detach().cpu().numpy(), 'tp_hard': tp, 'fp_hard': fp, 'fn_hard': fn}


class SegResNetShapedTrainer(nnUNetTrainerNoDeepSupervision):
    """nnUNetTrainerSegResNet's constructor exactly: pre-2.6 arguments handed on to nnUNetTrainerNoDeepSupervision."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, unpack_dataset: bool = True,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
        self.grad_scaler = None
        self.initial_lr = 1e-4
        self.weight_decay = 1e-5


class _PlainHeadNet(nn.Module):
    """No ``decoder`` attribute at all (like MONAI's SegResNet / SwinUNETR): one output."""

    def __init__(self, input_channels, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(input_channels, 4, 3, padding=1), nn.LeakyReLU(inplace=True))
        self.out = nn.Conv3d(4, num_classes, 1)

    def forward(self, x):
        return self.out(self.body(x))


class SwinUNETRShapedTrainer(nnUNetTrainerNoDeepSupervision):
    """nnUNetTrainerSwinUNETR's shape (with the constructor ported to 2.6+): the patch size is changed in __init__
    through configuration_manager.configuration and plans_manager.plans; AdamW + torch's CosineAnnealingLR; own
    steps; set_deep_supervision_enabled a no-op for a network without a decoder."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        original_patch_size = self.configuration_manager.patch_size
        new_patch_size = [int(math.ceil(p / 12) * 12) for p in original_patch_size]  # 16 -> 24
        self.configuration_manager.configuration['patch_size'] = new_patch_size
        self.print_to_log_file("Patch size changed from {} to {}".format(original_patch_size, new_patch_size))
        self.plans_manager.plans['configurations'][self.configuration_name]['patch_size'] = new_patch_size
        self.grad_scaler = None
        self.initial_lr = 8e-4
        self.weight_decay = 0.01
        self.num_epochs = 2
        self.num_iterations_per_epoch = 1
        self.num_val_iterations_per_epoch = 1

    @staticmethod
    def build_network_architecture(plans_manager: PlansManager,
                                   dataset_json,
                                   configuration_manager: ConfigurationManager,
                                   num_input_channels,
                                   enable_deep_supervision: bool = False) -> nn.Module:
        BUILD_CALLS.append((plans_manager, dataset_json, configuration_manager, num_input_channels,
                            enable_deep_supervision))
        label_manager = plans_manager.get_label_manager(dataset_json)
        return _PlainHeadNet(num_input_channels, label_manager.num_segmentation_heads)

    train_step = UMambaNoAMPShapedTrainer.train_step
    validation_step = UMambaNoAMPShapedTrainer.validation_step

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay,
                                      eps=1e-5)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.num_epochs, eta_min=1e-6)
        self.print_to_log_file(f"Using optimizer {optimizer}")
        return optimizer, scheduler

    def set_deep_supervision_enabled(self, enabled: bool):
        pass


# ---------------------------------------------------------------------------------------------------------------
# STU-Net shaped trainers
class STUNetShapedTrainer(nnUNetTrainer):
    """STUNetTrainer's shape: 2.1 builder; a fixed number of stages, the plans' strides cut or padded with
    [1, 1, 1] (so more deep-supervision outputs than the trainer's scales), tuple outputs."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, unpack_dataset: bool = True,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
        self.num_epochs = 1
        self.initial_lr = 1e-2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    @staticmethod
    def build_network_architecture(plans_manager, dataset_json, configuration_manager, num_input_channels,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        BUILD_CALLS.append((plans_manager, dataset_json, configuration_manager, num_input_channels,
                            enable_deep_supervision))
        num_classes = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
        strides = configuration_manager.pool_op_kernel_sizes[1:]
        if len(strides) > 3:
            strides = strides[:3]
        while len(strides) < 3:
            strides.append([1, 1, 1])
        return TinyCustomNet(num_input_channels, num_classes, [4, 8, 8, 8], [[1, 1, 1]] + strides, nn.Conv3d,
                             nn.InstanceNorm3d, enable_deep_supervision, outputs_as_tuple=True)


class STUNetShapedTrainer_ft(STUNetShapedTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, unpack_dataset: bool = True,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
        self.initial_lr = 1e-3
        self.num_epochs = 1


# ---------------------------------------------------------------------------------------------------------------
# fixtures
@pytest.fixture(scope="module")
def custom_dataset(tmp_path_factory):
    """Four 12x24x24 synthetic cases preprocessed with tiny_unet_plans (3 stages, 4-8-16 features, patch 16^3), a
    one-fold split (3 training, 1 validation case)."""
    from _tiny_plans import tiny_unet_plans
    base = tmp_path_factory.mktemp("custom_net_trainers")
    raw, pp = base / "raw", base / "preprocessed"
    raw.mkdir()
    pp.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("nnUNet_raw", str(raw))
        mp.setenv("nnUNet_preprocessed", str(pp))
        mp.setenv("nnUNet_results", str(base / "unused_results"))
        from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
        from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, \
            preprocess_dataset
        make_synthetic_dataset(str(raw), DATASET_ID, DATASET_NAME.split("_", 1)[1], kind="3d", num_train=4,
                               num_test=0, shape=(12, 24, 24))
        extract_fingerprint_dataset(DATASET_ID, num_processes=1, verbose=False, show_progress_bar=False)
        (pp / DATASET_NAME / "dataset.json").write_text((raw / DATASET_NAME / "dataset.json").read_text())
        plans = tiny_unet_plans(DATASET_NAME, spacing=(3.0, 0.8, 0.8))
        (pp / DATASET_NAME / "nnUNetPlans.json").write_text(json.dumps(plans, indent=2))
        preprocess_dataset(DATASET_ID, configurations=["3d_fullres"], num_processes=1, show_progress_bar=False)
    (pp / DATASET_NAME / "splits_final.json").write_text(json.dumps(
        [{"train": ["case_000", "case_001", "case_002"], "val": ["case_003"]}]))
    return {"raw": raw, "preprocessed": pp}


@pytest.fixture
def env(custom_dataset, tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    BUILD_CALLS.clear()
    STEPS.clear()
    pp = custom_dataset["preprocessed"] / DATASET_NAME
    with one_process_training_env(monkeypatch, custom_dataset["raw"], custom_dataset["preprocessed"], results):
        yield {"results": results, "pp": pp, "raw": custom_dataset["raw"] / DATASET_NAME,
               "plans": json.loads((pp / "nnUNetPlans.json").read_text()),
               "dataset_json": json.loads((pp / "dataset.json").read_text())}


def _model_folder(results, trainer_name):
    return results / DATASET_NAME / f"{trainer_name}__nnUNetPlans__3d_fullres"


def _lookup_in_this_module(monkeypatch):
    """What a client does when its trainer lives outside nnunetv2/training/nnUNetTrainer: replace the predictor
    module's lookup (the reference resolves it at call time)."""
    import nnunetv2.inference.predict_from_raw_data as prd
    original = prd.recursive_find_trainer_class_by_name
    mine = {c.__name__: c for c in (UMambaShapedTrainer, UMambaNoAMPShapedTrainer, SwinUNETRShapedTrainer,
                                    STUNetShapedTrainer, STUNetShapedTrainer_ft)}
    monkeypatch.setattr(prd, "recursive_find_trainer_class_by_name",
                        lambda name, *a, **kw: mine[name] if name in mine else original(name, *a, **kw))


def _ext_trainer_folder(tmp_path, *classes):
    """An nnUNet_extTrainer folder whose module hands out this test module's classes."""
    folder = tmp_path / "ext_trainers"
    folder.mkdir()
    lines = ["import sys", f"_m = sys.modules[{__name__!r}]"] + [f"{c.__name__} = _m.{c.__name__}" for c in classes]
    (folder / f"ext_custom_net_trainers_{tmp_path.name[-8:].replace('-', '_')}.py").write_text("\n".join(lines) + "\n")
    return folder


def _read_raw_case(env, case):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    return SimpleITKIO().read_images([str(env["raw"] / "imagesTr" / f"{case}_0000.nii.gz")])


# ---------------------------------------------------------------------------------------------------------------
def test_umamba_shaped_trainer_trains_saves_and_predicts(env, monkeypatch):
    trainer = UMambaShapedTrainer(env["plans"], "3d_fullres", 0, env["dataset_json"], True, CPU)  # positionally
    assert trainer.device == CPU and trainer.enable_deep_supervision
    assert trainer.my_init_kwargs["configuration"] == "3d_fullres" and trainer.my_init_kwargs["fold"] == 0
    trainer.initialize()

    # the 2.1 builder gets its arguments by name: plans manager, dataset.json, configuration manager, channels
    (pm, dj, cm, n_in, ds), = BUILD_CALLS
    assert pm is trainer.plans_manager and cm is trainer.configuration_manager
    assert dj == env["dataset_json"] and n_in == 1 and ds is True
    net = trainer.network
    assert isinstance(net, TinyCustomNet)
    assert [s[0].out_channels for s in net.stages] == [4, 8, 16]  # UNet_base_num_features 4, max 16, 3 stages
    assert [list(s[0].stride) for s in net.stages] == [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    assert net.seg_heads[0].out_channels == 3
    assert all(torch.count_nonzero(m.bias) == 0 for m in net.modules() if isinstance(m, nn.Conv3d))  # He init
    # deep supervision: two outputs (16^3, 8^3), a loss weighting both
    out = net(torch.zeros(1, 1, 16, 16, 16))
    assert isinstance(out, list) and [tuple(o.shape[2:]) for o in out] == [(16, 16, 16), (8, 8, 8)]
    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    assert np.allclose(trainer.loss.weight_factors, [1.0, 0.0])  # nnU-Net: the lowest output gets weight 0
    assert trainer._get_deep_supervision_scales() == [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]

    trainer.run_training()
    folder = _model_folder(env["results"], "UMambaShapedTrainer")
    ckpt = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == "UMambaShapedTrainer" and ckpt["current_epoch"] == 1
    assert ckpt["init_args"]["configuration"] == "3d_fullres"
    assert set(ckpt["network_weights"]) == set(trainer.network.state_dict())
    assert np.isfinite(trainer.logger.get_value("train_losses", step=0))

    # prediction: the predictor finds the trainer by name and builds its network with deep supervision off
    _lookup_in_this_module(monkeypatch)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    BUILD_CALLS.clear()
    predictor = nnUNetPredictor(use_mirroring=False, device=CPU, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), (0,))
    (pm, dj, cm, n_in, ds), = BUILD_CALLS
    assert isinstance(pm, PlansManager) and dj == env["dataset_json"] and isinstance(cm, ConfigurationManager)
    assert n_in == 1 and ds is False
    assert isinstance(predictor.network, TinyCustomNet) and predictor.network.decoder.deep_supervision is False
    assert predictor.trainer_name == "UMambaShapedTrainer"
    for k, v in predictor.network.state_dict().items():
        assert torch.equal(v.cpu(), ckpt["network_weights"][k].cpu()), k

    image, props = _read_raw_case(env, "case_003")
    seg = predictor.predict_single_npy_array(image, props, None, None, False)
    assert seg.shape == image.shape[1:] and set(np.unique(seg)) <= {0, 1, 2}
    # the same result as the trained network in memory (deep supervision switched off the client's way)
    trainer.set_deep_supervision_enabled(False)
    assert trainer.network.decoder.deep_supervision is False
    in_memory = nnUNetPredictor(use_mirroring=False, device=CPU, allow_tqdm=False)
    in_memory.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                    [trainer.network.state_dict()], trainer.dataset_json, "UMambaShapedTrainer",
                                    trainer.inference_allowed_mirroring_axes)
    image, props = _read_raw_case(env, "case_003")
    assert np.array_equal(in_memory.predict_single_npy_array(image, props, None, None, False), seg)

    # continuing the training: a fresh instance of the custom trainer restores its own network's weights
    again = UMambaShapedTrainer(env["plans"], "3d_fullres", 0, env["dataset_json"], True, CPU)
    again.load_checkpoint(str(folder / "fold_0" / "checkpoint_final.pth"))
    assert again.current_epoch == 1 and isinstance(again.network, TinyCustomNet)
    for k, v in again.network.state_dict().items():
        assert torch.equal(v, ckpt["network_weights"][k]), k


def test_umamba_noamp_shaped_steps_feed_the_epoch_logs(env):
    trainer = UMambaNoAMPShapedTrainer(env["plans"], "3d_fullres", 0, env["dataset_json"], True, CPU)
    trainer.run_training()  # initializes itself
    train = [s for s in STEPS if s[0] == "train"]
    val = [s for s in STEPS if s[0] == "val"]
    assert len(train) == 2 and len(val) == 1
    assert all(s[1] == (2, 1, 16, 16, 16) for s in STEPS)  # batch size 2, the plans' patch size
    log = trainer.logger
    # the epoch's losses are the means of what the overrides returned
    assert np.isclose(log.get_value("train_losses", step=0), np.mean([s[2] for s in train]), rtol=1e-5)
    assert np.isclose(log.get_value("val_losses", step=0), val[0][2], rtol=1e-5)
    # the pseudo Dice comes from the override's tp/fp/fn, one value per foreground label
    _, _, _, tp, fp, fn = val[0]
    expected = [2 * t / (2 * t + p + n) if (2 * t + p + n) > 0 else float("nan") for t, p, n in zip(tp, fp, fn)]
    got = log.get_value("dice_per_class_or_region", step=0)
    assert len(got) == 2 and np.allclose(got, expected, equal_nan=True)


def test_segresnet_shaped_constructor_passing_unpack_dataset_to_no_ds_variant(env):
    """U-Mamba's nnUNetTrainerSegResNet / SwinUNETR / UNETR subclass nnUNetTrainerNoDeepSupervision and call
    ``super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)``. nnUNetTrainer accepts
    this pre-2.6 call (spec 05 §3); the variant must hand it on too."""
    trainer = SegResNetShapedTrainer(env["plans"], "3d_fullres", 0, env["dataset_json"], True, CPU)
    assert trainer.device == CPU and trainer.enable_deep_supervision is False
    assert trainer.grad_scaler is None and trainer.initial_lr == 1e-4
    assert trainer.my_init_kwargs["fold"] == 0 and "unpack_dataset" not in trainer.my_init_kwargs


def test_swinunetr_shaped_trainer_changes_patch_size_and_validates(env, tmp_path, monkeypatch):
    trainer = SwinUNETRShapedTrainer(env["plans"], "3d_fullres", 0, env["dataset_json"], CPU)
    assert trainer.configuration_manager.patch_size == [24, 24, 24]
    trainer.initialize()
    (_, dj, cm, n_in, ds), = BUILD_CALLS
    assert ds is False and n_in == 1 and cm.patch_size == [24, 24, 24]
    assert not isinstance(trainer.loss, DeepSupervisionWrapper) and trainer._get_deep_supervision_scales() is None
    assert isinstance(trainer.optimizer, torch.optim.AdamW)

    trainer.run_training()
    # the new patch size reached the data loaders, the output folder's plans.json and the checkpoint
    assert [s[1] for s in STEPS] == [(2, 1, 24, 24, 24)] * 4  # 2 epochs x (1 train + 1 val)
    folder = _model_folder(env["results"], "SwinUNETRShapedTrainer")
    saved = json.loads((folder / "plans.json").read_text())
    assert saved["configurations"]["3d_fullres"]["patch_size"] == [24, 24, 24]
    log_text = "".join(p.read_text() for p in (folder / "fold_0").glob("training_log_*.txt"))
    assert "Patch size changed from [16, 16, 16] to [24, 24, 24]" in log_text
    # torch's CosineAnnealingLR, stepped with the epoch by on_train_epoch_start
    lrs = [trainer.logger.get_value("lrs", step=e) for e in range(2)]
    assert np.allclose(lrs, [8e-4, 1e-6 + (8e-4 - 1e-6) * (1 + math.cos(math.pi / 2)) / 2])
    ckpt = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["grad_scaler_state"] is None and ckpt["current_epoch"] == 2

    # final validation with a network that has no decoder (set_deep_supervision_enabled is a no-op)
    trainer.perform_actual_validation(False)
    validation = folder / "fold_0" / "validation"
    summary = json.loads((validation / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    exported, _ = SimpleITKIO().read_seg(str(validation / "case_003.nii.gz"))

    # prediction finds the trainer through nnUNet_extTrainer, uses the changed patch size and gives the same
    # segmentation as the final validation
    monkeypatch.setenv("nnUNet_extTrainer", str(_ext_trainer_folder(tmp_path, SwinUNETRShapedTrainer)))
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    predictor = nnUNetPredictor(device=CPU, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), (0,))
    assert isinstance(predictor.network, _PlainHeadNet)
    assert predictor.configuration_manager.patch_size == [24, 24, 24]
    image, props = _read_raw_case(env, "case_003")
    seg = predictor.predict_single_npy_array(image, props, None, None, False)
    assert np.array_equal(seg, exported[0])


def test_stunet_shaped_trainer_and_finetuning_script(env, tmp_path, monkeypatch):
    trainer = STUNetShapedTrainer(env["plans"], "3d_fullres", 0, env["dataset_json"], True, CPU)
    trainer.initialize()
    # pool_op_kernel_sizes[1:] padded by the client: the plans themselves are untouched
    assert trainer.configuration_manager.pool_op_kernel_sizes == [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    out = trainer.network(torch.zeros(1, 1, 16, 16, 16))
    assert isinstance(out, tuple) and len(out) == 3  # three outputs ...
    assert len(trainer.loss.weight_factors) == 2     # ... for two deep-supervision scales: zip keeps the first two
    trainer.run_training()
    pretrained = _model_folder(env["results"], "STUNetShapedTrainer") / "fold_0" / "checkpoint_final.pth"
    assert np.isfinite(trainer.logger.get_value("train_losses", step=0))

    # run_finetuning_stunet.py: nnunetv2/run/run_training.py imported as the top-level module 'run_training', its
    # load_pretrained_weights patched, then run_training_entry() with -pretrained_weights
    loaded = []

    def load_stunet_pretrained_weights(network, fname, verbose=False):
        weights = torch.load(fname, map_location="cpu", weights_only=False)["network_weights"]
        mod = network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
        mod = getattr(mod, "_orig_mod", mod)
        own = mod.state_dict()
        for k in own:
            if "seg_heads" not in k:
                assert own[k].shape == weights[k].shape, k
        own.update({k: v for k, v in weights.items() if k in own and "seg_heads" not in k})
        mod.load_state_dict(own)
        loaded.append((type(mod).__name__, fname, {k: v.clone() for k, v in mod.state_dict().items()}))

    monkeypatch.setenv("nnUNet_extTrainer", str(_ext_trainer_folder(tmp_path, STUNetShapedTrainer_ft)))
    path = os.path.join(nnunetv2.__path__[0], "run", "run_training.py")
    spec = importlib.util.spec_from_file_location("run_training", path)
    run_training_module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_training", run_training_module)
    spec.loader.exec_module(run_training_module)
    argv = ["run_finetuning_stunet.py", str(DATASET_ID), "3d_fullres", "0", "-tr", "STUNetShapedTrainer_ft",
            "-pretrained_weights", str(pretrained), "-device", "cpu"]
    threads = torch.get_num_threads()
    try:
        with mock.patch("run_training.load_pretrained_weights", load_stunet_pretrained_weights), \
                mock.patch.object(sys, "argv", argv):
            run_training_module.run_training_entry()
    finally:
        torch.set_num_threads(threads)

    (name, fname, state), = loaded
    assert name == "TinyCustomNet" and fname == str(pretrained)
    source = torch.load(pretrained, map_location="cpu", weights_only=False)["network_weights"]
    assert all(torch.equal(state[k], source[k]) for k in state if "seg_heads" not in k)
    ft = _model_folder(env["results"], "STUNetShapedTrainer_ft") / "fold_0"
    ckpt = torch.load(ft / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == "STUNetShapedTrainer_ft" and ckpt["current_epoch"] == 1
    log_text = "".join(p.read_text() for p in ft.glob("training_log_*.txt"))
    assert "Current learning rate: 0.001" in log_text
    # the final validation ran with deep supervision switched off through network.decoder
    assert (ft / "validation" / "summary.json").is_file()

    # and the fine-tuned model loads for prediction (trainer looked up by name, tuple network, DS off)
    _lookup_in_this_module(monkeypatch)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    predictor = nnUNetPredictor(use_mirroring=False, device=CPU, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(ft.parent), (0,))
    assert isinstance(predictor.network, TinyCustomNet) and predictor.network.decoder.deep_supervision is False
    image, props = _read_raw_case(env, "case_000")
    seg = predictor.predict_single_npy_array(image, props, None, None, False)
    assert seg.shape == image.shape[1:] and set(np.unique(seg)) <= {0, 1, 2}
