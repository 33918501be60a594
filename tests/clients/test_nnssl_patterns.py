"""nnssl's way of handing self-supervised pretrained networks to nnU-Net v2 (read from the public repositories, no
client code copied here).

Sources read: MIC-DKFZ/nnssl (``src/nnssl/training/nnsslTrainer/AbstractTrainer.py`` @19b1066,
``src/nnssl/adaptation_planning/adaptation_plan.py`` @236091b and the later form in toufiqmusah/nnssl @86f70d0,
``documentation/Getting_started_OpenMind.md`` @31eb662); the fine-tuning side it points to, TaWald/nnUNet
(``documentation/nnssl_pretrain_adaptation.md``, ``nnunetv2/training/nnUNetTrainer/pretraining/pretrainedTrainer.py``
@0367754, ``nnunetv2/experiment_planning/like_nnssl.py`` @1c8d884, ``nnunetv2/run/run_training_from_pretrained.py``
@269a0c4, ``~/tmp/AnonRes_ResEncL-OpenMind-VoCo/adaptation_plan.json``); a downstream benchmark driver built on both,
taotianli/nnssl ``scripts/openmind_downstream_benchmark.py`` @206dab7.

nnssl itself does not import nnunetv2 (it carries its own copies of nnU-Net's planning/preprocessing code). What it
hands over is a checkpoint:

* ``checkpoint_final.pth`` = ``{"network_weights": <full state_dict of the pretraining network>, "optimizer_state",
  "grad_scaler_state", "logging", "_best_ema", "current_epoch", "init_args" (plain dicts, a ``torch.device``),
  "trainer_name", "nnssl_adaptation_plan": {...}}``; released checkpoints keep only ``network_weights``, ``citations``
  and ``nnssl_adaptation_plan``. NumPy values are converted beforehand so that the file loads with
  ``weights_only=True``. ``adaptation_plan.json`` (the same dict) is written next to the fold folders.
* For ResEnc-L the network is a dynamic_network_architectures ``ResidualEncoderUNet`` with the reconstruction head as
  its ``decoder.seg_layers`` (one output channel) and the encoder aliased under ``decoder.encoder.*``; the adaptation
  plan names ``architecture_plans.arch_class_name`` ("ResEncL", "PrimusM", ... or the short dynamic names
  "ResidualEncoderUNet"/"PlainConvUNet" with serialized ``arch_kwargs`` whose ops are dotted strings and
  ``arch_kwargs_requiring_import``), ``key_to_encoder`` "encoder.stages", ``key_to_stem`` "encoder.stem",
  ``keys_to_in_proj``, ``key_to_lpe``, ``pretrain_num_input_channels``, ``recommended_downstream_patchsize`` and the
  pretraining plan (spacing, patch size).

How that reaches nnunetv2:

1. Stock route: ``nnUNetv2_train ... -pretrained_weights checkpoint_final.pth`` with plans whose architecture equals
   the pretraining one -> ``maybe_load_checkpoint(trainer, False, False, path)`` -> ``trainer.initialize()`` and
   ``load_pretrained_weights(network, path, verbose=True)``: every key but ``.seg_layers.`` must exist with the same
   shape; extra checkpoint keys are ignored. A one-channel stem into a multi-channel network, or an encoder-only
   state dict, is rejected by the reference with an ``AssertionError`` before anything is loaded.
2. Adaptation route (nnUNetv2_preprocess_like_nnssl / nnUNetv2_train_pretrained of the fork, which users also drop
   into a stock install as external trainers): ``PlansManager(plans_file)``, ``deepcopy`` of it,
   ``get_configuration('3d_fullres')`` and in-place edits of ``.configuration`` (spacing, normalization_schemes,
   data_identifier, preprocessor_name, architecture = {network_class_name, arch_kwargs, _kw_requires_import},
   patch_size) read back through the properties and ``.preprocessor_class``; an extra top-level ``pretrain_info``
   block in the plans read as ``trainer.plans_manager.plans['pretrain_info']``; a trainer subclass whose ``__init__``
   adds ``use_pretrained_weights`` between ``dataset_json`` and ``device``, overrides ``initialize`` (calling
   ``_set_batch_size_and_oversample``, ``determine_num_input_channels``, its own static
   ``build_network_architecture(..., input_patch_size=..., ...)`` built on ``get_network_from_plans``,
   ``configure_optimizers``, ``_build_loss``, ``infer_dataset_class``), ``configure_optimizers(stage)`` with
   ``Lin_incr_LRScheduler``/``PolyLRScheduler_offset`` switched in ``on_train_epoch_start`` before calling the base,
   ``set_deep_supervision_enabled`` as a no-op, and ``load_checkpoint`` reading ``save_checkpoint``'s keys itself;
   plus ``recursive_find_python_class``, ``maybe_convert_to_dataset_name``, ``maybe_load_checkpoint(trainer, c, val,
   None)``.
3. The benchmark driver sets ``trainer.configuration_manager.configuration['batch_size']`` after construction and
   monkey-patches ``nnUNetDataLoader.get_bbox`` (adds a class column to (z, y, x) foreground locations),
   ``nnUNetDataLoader.generate_train_batch`` (remaps sparse labels via ``annotated_classes_key``) and
   ``LabelManager.convert_probabilities_to_segmentation`` (maps contiguous predictions back to the sparse labels
   through ``all_labels``/``has_regions``).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from os.path import join

import numpy as np
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

import nnunetv2
from _tiny_plans import tiny_unet_plans
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

CPU = torch.device("cpu")
DATASET = "Dataset981_NnsslFinetune"
DATASET_JSON = {"channel_names": {"0": "T1"}, "labels": {"background": 0, "tumor": 1, "edema": 2},
                "numTraining": 2, "file_ending": ".nii.gz"}

# a three-stage stand-in for nnssl's ResEnc-L (same class and layout, fewer features)
_RESENC_KWARGS = dict(n_stages=3, features_per_stage=[4, 8, 16], conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * 3,
                      strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_blocks_per_stage=[1, 1, 2],
                      n_conv_per_stage_decoder=[1, 1], conv_bias=True, norm_op=nn.InstanceNorm3d,
                      norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                      nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})


def _serialized_arch_kwargs() -> dict:
    """The kwargs as nnssl's adaptation plan serializes them: ops as dotted names."""
    kw = copy.deepcopy({k: v for k, v in _RESENC_KWARGS.items() if k not in ("conv_op", "norm_op", "nonlin")})
    kw.update(conv_op="torch.nn.modules.conv.Conv3d", norm_op="torch.nn.modules.instancenorm.InstanceNorm3d",
              nonlin="torch.nn.modules.activation.LeakyReLU")
    return kw


def _adaptation_plan() -> dict:
    return {"architecture_plans": {"arch_class_name": "ResidualEncoderUNet", "arch_kwargs": _serialized_arch_kwargs(),
                                   "arch_kwargs_requiring_import": ["conv_op", "norm_op", "nonlin"]},
            "pretrain_plan": {"dataset_name": "Dataset745_OpenMind", "plans_name": "nnsslPlans",
                              "configurations": {"onemmiso": {"spacing": [1, 1, 1], "patch_size": [16, 16, 16]}}},
            "pretrain_num_input_channels": 1, "recommended_downstream_patchsize": [16, 16, 16],
            "key_to_encoder": "encoder.stages", "key_to_stem": "encoder.stem",
            "keys_to_in_proj": ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"],
            "key_to_lpe": None}


def _pretraining_network(seed: int = 0) -> ResidualEncoderUNet:
    """The network an nnssl MAE run ends with: one input channel, a one-channel reconstruction head, no deep
    supervision; one optimizer step so that nothing is at its initial value."""
    torch.manual_seed(seed)
    net = ResidualEncoderUNet(1, num_classes=1, deep_supervision=False, **_RESENC_KWARGS)
    opt = torch.optim.SGD(net.parameters(), 0.01, momentum=0.99, nesterov=True)
    net(torch.randn(1, 1, 16, 16, 16)).square().mean().backward()
    opt.step()
    return net, opt


def _write_nnssl_checkpoint(path, released: bool = False, network_weights=None):
    net, opt = _pretraining_network()
    weights = net.state_dict() if network_weights is None else network_weights
    if released:
        ckpt = {"network_weights": weights, "nnssl_adaptation_plan": _adaptation_plan(),
                "citations": [{"type": "Framework", "name": "nnssl", "apa_citations": ["Wald et al. (2024)"]}]}
    else:
        ckpt = {"network_weights": weights, "optimizer_state": opt.state_dict(), "grad_scaler_state": None,
                "logging": {"train_losses": [0.9, 0.7], "val_losses": [0.8, 0.75], "lrs": [0.01, 0.0099],
                            "epoch_start_timestamps": [1.0, 2.0], "epoch_end_timestamps": [1.5, 2.5]},
                "_best_ema": 0.75, "current_epoch": 2, "trainer_name": "BaseMAETrainer",
                "init_args": {"plan": {"dataset_name": "Dataset745_OpenMind", "plans_name": "nnsslPlans"},
                              "configuration_name": "onemmiso", "fold": "all", "pretrain_json": {"collection": "x"},
                              "device": torch.device("cpu")},
                "nnssl_adaptation_plan": _adaptation_plan()}
    torch.save(ckpt, str(path))
    return net


def _downstream_network(in_channels: int = 1, seed: int = 1) -> ResidualEncoderUNet:
    torch.manual_seed(seed)
    return ResidualEncoderUNet(in_channels, num_classes=3, deep_supervision=True, **_RESENC_KWARGS)


def _snapshot(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------------
# 1. -pretrained_weights with an nnssl checkpoint
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("released", [False, True], ids=["training_checkpoint", "released_checkpoint"])
def test_nnssl_checkpoint_fills_everything_but_the_segmentation_heads(tmp_path, capsys, released):
    path = tmp_path / "checkpoint_final.pth"
    source = _write_nnssl_checkpoint(path, released=released).state_dict()
    target = _downstream_network()
    before = _snapshot(target)

    load_pretrained_weights(target, str(path), verbose=True)

    after = target.state_dict()
    heads = sorted(k for k in after if ".seg_layers." in k)
    assert heads == ["decoder.seg_layers.0.bias", "decoder.seg_layers.0.weight", "decoder.seg_layers.1.bias",
                     "decoder.seg_layers.1.weight"]
    for key, value in after.items():
        if key in heads:  # the 3-class heads keep their fresh initialisation (the 1-channel MAE head never fits)
            assert torch.equal(value, before[key]), key
        else:  # encoder, decoder and the decoder's alias of the encoder all come from the checkpoint
            assert torch.equal(value, source[key]), key
    assert any(k.startswith("decoder.encoder.") for k in after)
    out = capsys.readouterr().out
    assert f"Loading pretrained weights from file  {path}" in out
    listed = [line.split(" shape ")[0] for line in out.splitlines() if " shape " in line]
    assert listed == [k for k in after if ".seg_layers." not in k]  # verbose: every transferred key, in order
    assert "nnssl_adaptation_plan" in torch.load(str(path), weights_only=False)  # the file is left as it was


def _stem_mismatch(tmp_path):
    path = tmp_path / "ckpt.pth"
    _write_nnssl_checkpoint(path, released=True)
    return path, _downstream_network(in_channels=2)  # multi-modal downstream, one-channel pretraining


def _encoder_only(tmp_path):
    net, _ = _pretraining_network()
    path = tmp_path / "encoder_only.pth"
    _write_nnssl_checkpoint(path, released=True,
                            network_weights={k: v for k, v in net.state_dict().items() if k.startswith("encoder.")})
    return path, _downstream_network()


@pytest.mark.parametrize("case", [_stem_mismatch, _encoder_only], ids=["one_channel_stem", "encoder_only"])
def test_incompatible_nnssl_checkpoint_is_refused_before_anything_is_loaded(tmp_path, case):
    path, target = case(tmp_path)
    before = _snapshot(target)
    with pytest.raises(Exception, match="encoder.stem.convs.0|decoder.encoder"):
        load_pretrained_weights(target, str(path), verbose=True)
    after = target.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in after)


def test_incompatible_checkpoint_raises_an_assertion_error_like_the_reference(tmp_path):
    """The reference asserts (spec 03 §11: ``AssertionError``); code that guards the stock loader with
    ``except AssertionError`` and then falls back to nnssl's encoder-only adaptation relies on that type."""
    from nnunetv2.errors import UserError
    path, target = _stem_mismatch(tmp_path)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(AssertionError) as caught:
        load_pretrained_weights(target, str(path))
    assert isinstance(caught.value, UserError)  # still one clear line on the command line
    assert "encoder.stem" in str(caught.value)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing loaded


def _nnssl_plans(**extra) -> dict:
    """Downstream plans whose architecture is the pretraining one, as nnssl's adaptation plan describes it (short
    dynamic class name, serialized kwargs)."""
    plans = tiny_unet_plans(DATASET, spacing=(1.0, 1.0, 1.0))
    plans["configurations"]["3d_fullres"]["architecture"] = {
        "network_class_name": "ResidualEncoderUNet", "arch_kwargs": _serialized_arch_kwargs(),
        "_kw_requires_import": ["conv_op", "norm_op", "nonlin"]}
    plans.update(extra)
    return plans


def test_stock_trainer_takes_nnssl_weights_through_maybe_load_checkpoint(tmp_path, nnunet_dirs, capsys):
    from nnunetv2.run.run_training import maybe_load_checkpoint
    path = tmp_path / "checkpoint_final.pth"
    source = _write_nnssl_checkpoint(path).state_dict()
    _preprocessed_case(nnunet_dirs)  # initialize() looks at the preprocessed data's format
    trainer = nnUNetTrainer(_nnssl_plans(), "3d_fullres", 0, DATASET_JSON, CPU)

    maybe_load_checkpoint(trainer, False, False, None)  # the fork's runner: nothing to load, nothing initialised
    assert not trainer.was_initialized
    with pytest.raises(RuntimeError):
        maybe_load_checkpoint(trainer, True, False, str(path))  # --c together with -pretrained_weights

    maybe_load_checkpoint(trainer, False, False, str(path))
    assert trainer.was_initialized and type(trainer.network) is ResidualEncoderUNet
    sd = trainer.network.state_dict()
    transferred = [k for k in sd if torch.equal(sd[k], source[k])]
    assert sorted(set(sd) - set(transferred)) == ["decoder.seg_layers.0.bias", "decoder.seg_layers.0.weight",
                                                  "decoder.seg_layers.1.bias", "decoder.seg_layers.1.weight"]
    assert sd["decoder.seg_layers.1.weight"].shape[0] == 3
    assert capsys.readouterr().out.count(" shape ") == len(transferred)  # loaded verbosely
    # only the weights: optimizer, schedule and epoch counter start fresh
    assert trainer.current_epoch == 0 and trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)


# ---------------------------------------------------------------------------------------------------------------
# 2. plans written from an adaptation plan
# ---------------------------------------------------------------------------------------------------------------
def test_short_dynamic_class_name_and_serialized_kwargs_build_the_pretraining_network():
    plan = _adaptation_plan()["architecture_plans"]
    net = get_network_from_plans(plan["arch_class_name"], plan["arch_kwargs"], plan["arch_kwargs_requiring_import"],
                                 1, 2, allow_init=False, deep_supervision=False)
    assert type(net) is ResidualEncoderUNet
    pretraining, _ = _pretraining_network()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items() if ".seg_layers." not in k} == \
        {k: tuple(v.shape) for k, v in pretraining.state_dict().items() if ".seg_layers." not in k}
    for key in ("encoder.stages", "encoder.stem", "encoder.stem.convs.0.conv"):  # the plan's keys resolve
        assert isinstance(net.get_submodule(key), nn.Module)

    plain = {k: v for k, v in _serialized_arch_kwargs().items() if k != "n_blocks_per_stage"}
    plain["n_conv_per_stage"] = [1, 1, 1]
    net = get_network_from_plans("PlainConvUNet", plain, ["conv_op", "norm_op", "nonlin"], 2, 4,
                                 allow_init=True, deep_supervision=True)
    assert type(net) is PlainConvUNet
    assert [tuple(o.shape) for o in net(torch.zeros(1, 2, 16, 16, 16))] == [(1, 4, 16, 16, 16), (1, 4, 8, 8, 8)]


def test_plans_adapted_like_nnssl_are_read_back_through_the_managers(tmp_path):
    downstream = tiny_unet_plans(DATASET, spacing=(3.0, 0.7, 0.7))
    plans_file = tmp_path / "nnUNetPlans.json"
    plans_file.write_text(json.dumps(downstream))
    manager = PlansManager(str(plans_file))
    adaptation = _adaptation_plan()

    adapted = copy.deepcopy(manager)
    adapted.plans["pretrain_info"] = {"checkpoint_path": "pretrained/checkpoint_final.pth",
                                      "checkpoint_name": "MAE_run", "key_to_encoder": adaptation["key_to_encoder"],
                                      "key_to_stem": adaptation["key_to_stem"],
                                      "keys_to_in_proj": adaptation["keys_to_in_proj"], "key_to_lpe": None,
                                      "pt_num_in_channels": 1, "pt_used_patchsize": [16, 16, 16],
                                      "pt_recommended_downstream_patchsize": [16, 16, 16], "citations": []}
    config = adapted.get_configuration("3d_fullres")
    assert config.spacing == [3.0, 0.7, 0.7]
    config.configuration["spacing"] = [1.0, 1.0, 1.0]
    config.configuration["normalization_schemes"] = ["ZScoreNormalization" for _ in config.normalization_schemes]
    config.configuration["data_identifier"] = "Spacing__1.00_1.00_1.00___Norm__Z"
    config.configuration["preprocessor_name"] = "DefaultPreprocessor"
    config.configuration["architecture"] = {"network_class_name": "ResEncL", "arch_kwargs": None,
                                            "_kw_requires_import": None}
    config.configuration["patch_size"] = [32, 32, 32]
    config.configuration["batch_size"] = 4
    assert config.spacing == [1.0, 1.0, 1.0] and config.patch_size == [32, 32, 32] and config.batch_size == 4
    assert config.data_identifier == "Spacing__1.00_1.00_1.00___Norm__Z"
    assert config.normalization_schemes == ["ZScoreNormalization"]
    assert config.preprocessor_class.__name__ == "DefaultPreprocessor"
    assert config.network_arch_class_name == "ResEncL"
    assert config.network_arch_init_kwargs is None and config.network_arch_init_kwargs_req_import is None
    # the deep copy leaves the downstream plans alone
    assert manager.get_configuration("3d_fullres").spacing == [3.0, 0.7, 0.7] and "pretrain_info" not in manager.plans

    adapted.plans["configurations"] = {"3d_fullres": config.configuration}
    adapted.plans["plans_name"] = "ptPlans__MAE_run____Spacing__1.00_1.00_1.00___Norm__Z"
    out = tmp_path / (adapted.plans["plans_name"] + ".json")
    out.write_text(json.dumps(adapted.plans))
    reread = PlansManager(str(out))
    assert reread.plans_name == "ptPlans__MAE_run____Spacing__1.00_1.00_1.00___Norm__Z"
    assert reread.plans["pretrain_info"]["key_to_encoder"] == "encoder.stages"
    assert reread.get_configuration("3d_fullres").patch_size == [32, 32, 32]
    assert reread.available_configurations == ["3d_fullres"]


# ---------------------------------------------------------------------------------------------------------------
# 3. the fine-tuning trainer, written against nnUNetTrainer's hooks
# ---------------------------------------------------------------------------------------------------------------
class _PretrainedLikeTrainer(nnUNetTrainer):
    """Shaped like the fork's PretrainedTrainer: an extra init argument, its own initialize/build/optimizer
    schedule (linear warm-up, then polynomial decay with an offset)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 use_pretrained_weights: bool = True, device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3
        self.enable_deep_supervision = False
        self.warmup_duration_whole_net = 2
        self.use_pretrained_weights = use_pretrained_weights
        self.adaptation_info = self.plans_manager.plans["pretrain_info"]
        self.training_stage = None
        self.build_calls = []

    def initialize(self):
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        self._set_batch_size_and_oversample()
        self.num_input_channels = determine_num_input_channels(self.plans_manager, self.configuration_manager,
                                                               self.dataset_json)
        cm = self.configuration_manager
        self.network = self.build_network_architecture(
            architecture_class_name=cm.network_arch_class_name, arch_init_kwargs=cm.network_arch_init_kwargs,
            arch_init_kwargs_req_import=cm.network_arch_init_kwargs_req_import, input_patch_size=cm.patch_size,
            num_input_channels=self.num_input_channels,
            num_output_channels=self.label_manager.num_segmentation_heads, enable_deep_supervision=False,
        ).to(self.device)
        self.build_calls.append(tuple(cm.patch_size))
        if self._do_i_compile():
            self.network = torch.compile(self.network)
        self.optimizer, self.lr_scheduler = self.configure_optimizers()
        self.loss = self._build_loss()
        self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        self.was_initialized = True

    @staticmethod
    def build_network_architecture(architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import,
                                   input_patch_size, num_input_channels, num_output_channels,
                                   enable_deep_supervision=True):
        return get_network_from_plans(architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)

    def configure_optimizers(self, stage: str = "warmup_all"):
        from nnunetv2.training.lr_scheduler.warmup import Lin_incr_LRScheduler, PolyLRScheduler_offset
        from nnunetv2.utilities.helpers import empty_cache
        if self.training_stage == stage:
            return self.optimizer, self.lr_scheduler
        if stage == "warmup_all":
            optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                        momentum=0.99, nesterov=True)
            scheduler = Lin_incr_LRScheduler(optimizer, self.initial_lr, self.warmup_duration_whole_net)
        else:
            optimizer = self.optimizer  # keeps the momentum gathered during the warm-up
            scheduler = PolyLRScheduler_offset(optimizer, self.initial_lr, self.num_epochs,
                                               self.warmup_duration_whole_net)
        self.training_stage = stage
        empty_cache(self.device)
        return optimizer, scheduler

    def set_deep_supervision_enabled(self, enabled: bool):
        pass

    def on_train_epoch_start(self):
        if self.current_epoch == 0:
            self.optimizer, self.lr_scheduler = self.configure_optimizers("warmup_all")
        elif self.current_epoch == self.warmup_duration_whole_net:
            self.optimizer, self.lr_scheduler = self.configure_optimizers("train")
        super().on_train_epoch_start()


def _pretrained_plans(tmp_path) -> dict:
    return _nnssl_plans(pretrain_info={"checkpoint_path": str(tmp_path / "checkpoint_final.pth"),
                                       "key_to_encoder": "encoder.stages", "key_to_stem": "encoder.stem",
                                       "keys_to_in_proj": ["encoder.stem.convs.0.conv"], "key_to_lpe": None,
                                       "pt_num_in_channels": 1, "pt_used_patchsize": [16, 16, 16],
                                       "pt_recommended_downstream_patchsize": [16, 16, 16],
                                       "citations": [{"type": "Framework", "name": "nnssl",
                                                      "apa_citations": ["Wald et al. (2024)"]}]})


def _preprocessed_case(nnunet_dirs):
    folder = nnunet_dirs["nnUNet_preprocessed"] / DATASET / "nnUNetPlans_3d_fullres"
    folder.mkdir(parents=True)
    (folder / "case_0.b2nd").write_bytes(b"")
    (folder / "case_0.pkl").write_bytes(b"")


def test_trainer_with_an_extra_init_argument_and_pretrain_info(tmp_path, nnunet_dirs):
    # (the reference 2.8.1 records init kwargs from its own locals and fails here with KeyError
    # 'use_pretrained_weights'; the fork changed that. Accepting it is the drop-in's choice, not a reference value.)
    _preprocessed_case(nnunet_dirs)
    trainer = _PretrainedLikeTrainer(plans=_pretrained_plans(tmp_path), configuration="3d_fullres", fold=0,
                                     dataset_json=DATASET_JSON, use_pretrained_weights=False, device=CPU)
    assert trainer.use_pretrained_weights is False and trainer.device == CPU
    assert trainer.my_init_kwargs["fold"] == 0 and trainer.my_init_kwargs["configuration"] == "3d_fullres"
    assert trainer.adaptation_info["key_to_encoder"] == "encoder.stages"
    assert trainer.plans_manager.plans["pretrain_info"]["citations"][0]["name"] == "nnssl"
    assert trainer.output_folder == join(str(nnunet_dirs["nnUNet_results"]), DATASET,
                                         "_PretrainedLikeTrainer__nnUNetPlans__3d_fullres", "fold_0")

    trainer.configuration_manager.configuration["batch_size"] = 1  # the benchmark driver's override
    trainer.initialize()
    assert trainer.batch_size == 1 and trainer.num_input_channels == 1
    assert type(trainer.network) is ResidualEncoderUNet and trainer.build_calls == [(16, 16, 16)]
    assert trainer.dataset_class.__name__ == "nnUNetDatasetBlosc2"
    assert type(trainer.loss).__name__ == "DC_and_CE_loss"  # no deep-supervision wrapper
    out = trainer.network(torch.zeros(1, 1, 16, 16, 16))
    assert torch.is_tensor(out) and tuple(out.shape) == (1, 3, 16, 16, 16)


def test_warmup_then_poly_schedule_switched_in_on_train_epoch_start(tmp_path, nnunet_dirs):
    _preprocessed_case(nnunet_dirs)
    trainer = _PretrainedLikeTrainer(_pretrained_plans(tmp_path), "3d_fullres", 0, DATASET_JSON, True, CPU)
    trainer.num_epochs = 6
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.initialize()
        warmup_optimizer = trainer.optimizer
        lrs = []
        for epoch in range(5):
            trainer.current_epoch = epoch
            trainer.on_train_epoch_start()
            lrs.append(trainer.optimizer.param_groups[0]["lr"])
    # linear warm-up over 2 epochs, then (1 - (epoch - 2) / (6 - 2)) ** 0.9 of the initial lr
    expected = [1e-3 * 1 / 2, 1e-3 * 2 / 2] + [1e-3 * (1 - (e - 2) / 4) ** 0.9 for e in (2, 3, 4)]
    assert lrs == pytest.approx(expected)
    assert trainer.optimizer is warmup_optimizer and trainer.training_stage == "train"
    assert type(trainer.lr_scheduler).__name__ == "PolyLRScheduler_offset"
    assert trainer.network.training
    assert trainer.logger.local_logger.my_fantastic_logging["lrs"] == pytest.approx(expected)


def test_own_load_checkpoint_reads_what_save_checkpoint_writes(tmp_path, nnunet_dirs):
    _preprocessed_case(nnunet_dirs)
    trainer = _PretrainedLikeTrainer(_pretrained_plans(tmp_path), "3d_fullres", 0, DATASET_JSON, True, CPU)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.initialize()
        for key, value in (("train_losses", 0.5), ("val_losses", 0.4), ("mean_fg_dice", 0.3), ("ema_fg_dice", 0.3),
                           ("dice_per_class_or_region", [0.3, 0.3]), ("lrs", 1e-3),
                           ("epoch_start_timestamps", 1.0), ("epoch_end_timestamps", 2.0)):
            trainer.logger.log(key, value, 0)
        trainer._best_ema = 0.3
        trainer.save_checkpoint(str(tmp_path / "checkpoint_latest.pth"))

    checkpoint = torch.load(str(tmp_path / "checkpoint_latest.pth"), map_location=CPU, weights_only=False)
    assert {"network_weights", "init_args", "current_epoch", "logging", "_best_ema", "optimizer_state",
            "grad_scaler_state", "inference_allowed_mirroring_axes", "trainer_name"} <= set(checkpoint)
    assert checkpoint["trainer_name"] == "_PretrainedLikeTrainer" and checkpoint["current_epoch"] == 1
    assert checkpoint["init_args"]["plans"]["pretrain_info"]["key_to_stem"] == "encoder.stem"

    resumed = _PretrainedLikeTrainer(_pretrained_plans(tmp_path), "3d_fullres", 0, DATASET_JSON, False, CPU)
    with contextlib.redirect_stdout(io.StringIO()):
        resumed.initialize()
    state = {(k[7:] if k.startswith("module.") and k not in resumed.network.state_dict() else k): v
             for k, v in checkpoint["network_weights"].items()}
    resumed.my_init_kwargs = checkpoint["init_args"]
    resumed.current_epoch = checkpoint["current_epoch"]
    resumed.logger.load_checkpoint(checkpoint["logging"])
    resumed._best_ema = checkpoint["_best_ema"]
    resumed.inference_allowed_mirroring_axes = checkpoint.get("inference_allowed_mirroring_axes",
                                                              resumed.inference_allowed_mirroring_axes)
    resumed.network.load_state_dict(state)
    resumed.optimizer.load_state_dict(checkpoint["optimizer_state"])
    assert resumed.current_epoch == 1 and resumed._best_ema == pytest.approx(0.3)
    assert resumed.logger.local_logger.my_fantastic_logging["train_losses"] == [0.5]
    assert all(torch.equal(a, b) for a, b in zip(resumed.network.state_dict().values(),
                                                  trainer.network.state_dict().values()))


def test_fork_runner_lookups(nnunet_dirs):
    from nnunetv2.run.run_training import find_free_network_port, maybe_load_checkpoint, run_ddp  # noqa: F401
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name, \
        maybe_convert_to_dataset_name
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    with contextlib.redirect_stdout(io.StringIO()):
        found = recursive_find_python_class(join(nnunetv2.__path__[0], "training", "nnUNetTrainer"),
                                            "nnUNetTrainer_5epochs", "nnunetv2.training.nnUNetTrainer")
    assert found is not None and found.__name__ == "nnUNetTrainer_5epochs" and issubclass(found, nnUNetTrainer)
    (nnunet_dirs["nnUNet_preprocessed"] / DATASET).mkdir()
    assert convert_id_to_dataset_name(981) == DATASET
    assert maybe_convert_to_dataset_name("981") == DATASET and maybe_convert_to_dataset_name(DATASET) == DATASET
    assert isinstance(find_free_network_port(), int)


# ---------------------------------------------------------------------------------------------------------------
# 4. the benchmark driver's monkey patches (sparse labels, (z, y, x) foreground locations)
# ---------------------------------------------------------------------------------------------------------------
class _SparseLabelDataset:
    identifiers = ["case_a", "case_b"]

    def load_case(self, key):
        data = np.random.rand(1, 20, 20, 20).astype(np.float32)
        seg = np.zeros((1, 20, 20, 20), np.int16)
        seg[0, 1, 1, 1] = 1
        seg[0, 17, 18, 2] = 5
        # the released downstream data store foreground locations without the class column
        return data, seg, None, {"class_locations": {1: np.array([[1, 1, 1]]), 5: np.array([[17, 18, 2]])}}


def test_patched_loader_adds_class_column_and_remaps_sparse_labels(monkeypatch):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    original_bbox, original_batch = nnUNetDataLoader.get_bbox, nnUNetDataLoader.generate_train_batch
    seen = []

    def get_bbox(self, data_shape, force_fg, class_locations, *args, **kwargs):
        if class_locations is not None:
            fixed = {}
            for label, locations in class_locations.items():
                locations = np.asarray(locations)
                if locations.ndim == 2 and locations.shape[1] == len(data_shape):
                    locations = np.concatenate((np.zeros((len(locations), 1), locations.dtype), locations), 1)
                fixed[label] = locations
            class_locations = fixed
        lbs, ubs = original_bbox(self, data_shape, force_fg, class_locations, *args, **kwargs)
        seen.append((force_fg, list(lbs), list(ubs)))
        return lbs, ubs

    def generate_train_batch(self):
        batch = original_batch(self)
        mapping = {int(label): i for i, label in enumerate(self.annotated_classes_key[1:]) if int(label) != i}
        source = batch["target"].clone()
        for label, train_id in mapping.items():
            batch["target"][source == label] = train_id
        return batch

    monkeypatch.setattr(nnUNetDataLoader, "get_bbox", get_bbox)
    monkeypatch.setattr(nnUNetDataLoader, "generate_train_batch", generate_train_batch)
    label_manager = LabelManager({"background": 0, "ICA": 1, "BA": 5}, regions_class_order=None)
    np.random.seed(0)
    loader = nnUNetDataLoader(_SparseLabelDataset(), 2, (8, 8, 8), (8, 8, 8), label_manager,
                              oversample_foreground_percent=1.0)
    assert [int(i) for i in loader.annotated_classes_key[1:]] == [0, 1, 5]
    values = set()
    for _ in range(6):
        batch = next(loader)
        assert tuple(batch["data"].shape) == (2, 1, 8, 8, 8) and tuple(batch["target"].shape) == (2, 1, 8, 8, 8)
        values |= set(torch.unique(batch["target"]).tolist())
    assert 5 not in values and 2 in values and values <= {-1, 0, 1, 2}
    assert len(seen) == 12 and all(force_fg for force_fg, _, _ in seen)
    for _, lbs, ubs in seen:  # every forced-foreground patch holds one of the two labelled voxels
        assert any(all(lo <= c < hi for lo, hi, c in zip(lbs, ubs, voxel)) for voxel in ((1, 1, 1), (17, 18, 2)))


def test_patched_segmentation_conversion_maps_predictions_back_to_sparse_labels(monkeypatch):
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    original = LabelManager.convert_probabilities_to_segmentation

    def to_source_labels(self, predicted_probabilities):
        segmentation = original(self, predicted_probabilities)
        labels = list(self.all_labels)
        if not self.has_regions and labels != list(range(len(labels))):
            source = segmentation.clone() if torch.is_tensor(segmentation) else segmentation.copy()
            for train_id, label in enumerate(labels):
                segmentation[source == train_id] = label
        return segmentation

    monkeypatch.setattr(LabelManager, "convert_probabilities_to_segmentation", to_source_labels)
    plans_manager = PlansManager(tiny_unet_plans(DATASET, spacing=(2.0, 2.0, 2.0)))
    label_manager = plans_manager.get_label_manager({"labels": {"background": 0, "ICA": 1, "BA": 5},
                                                     "channel_names": {"0": "MRA"}, "file_ending": ".nii.gz"})
    properties = {"shape_before_cropping": (6, 6, 6), "bbox_used_for_cropping": [[0, 6], [0, 6], [0, 6]],
                  "shape_after_cropping_and_before_resampling": (6, 6, 6), "spacing": [2.0, 2.0, 2.0]}
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 6, 6)
    expected = np.array([0, 1, 5])[logits.argmax(0).numpy()]
    # (validation without --npz; the reference runs this branch inside inference mode, so the in-place remap of a
    # torch result works there too. With probabilities requested, the reference hands the patch an inference tensor
    # outside inference mode and the driver's in-place remap fails; that branch is not checked here.)
    for given in (logits.clone(), logits.numpy().copy()):
        segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
            given, plans_manager, plans_manager.get_configuration("3d_fullres"), label_manager, properties,
            return_probabilities=False)
        np.testing.assert_array_equal(np.asarray(segmentation), expected)
