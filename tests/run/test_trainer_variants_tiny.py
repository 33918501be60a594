"""Trainer variants and legacy subclasses set up correctly on the tiny dataset (no training)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunetv2.run.run_training import get_trainer_from_args
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

CPU = torch.device("cpu")


def _initialized(name, fold=0):
    trainer = get_trainer_from_args("321", "3d_fullres", fold, name, device=CPU)
    trainer.initialize()
    return trainer


def test_pre_26_subclass_passing_unpack_dataset(t2):
    from nnunetv2.file_io import load_json

    class OldStyle(nnUNetTrainer):
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     unpack_dataset: bool = True, device: torch.device = torch.device('cuda')):
            super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)

    pp = t2.env["preprocessed"]
    plans = load_json(str(pp / "nnUNetPlans.json"))
    trainer = OldStyle(plans, "3d_fullres", 0, load_json(str(pp / "dataset.json")), True, CPU)
    assert trainer.device == CPU and set(trainer.my_init_kwargs) == {"plans", "configuration", "fold",
                                                                     "dataset_json", "device"}
    assert nnUNetTrainer(plans, "3d_fullres", 0, load_json(str(pp / "dataset.json")), CPU,
                         unpack_dataset=False).device == CPU


def test_variants_configure_what_they_promise(t2):
    t = _initialized("nnUNetTrainerNoMirroring")
    assert t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] is None
    assert t.inference_allowed_mirroring_axes is None

    t = _initialized("nnUNetTrainer_onlyMirror01")
    assert t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == (0, 1)

    t = _initialized("nnUNetTrainerNoDeepSupervision")
    assert not isinstance(t.loss, DeepSupervisionWrapper) and t._get_deep_supervision_scales() is None
    assert t.network.decoder.deep_supervision is False

    t = _initialized("nnUNetTrainerDiceTopK10Loss")
    assert type(t.loss.loss).__name__ == "DC_and_topk_loss" and t.loss.loss.ce.k == 10
    assert np.allclose(t.loss.weight_factors, [1, 0])  # 3 stages -> 2 outputs, the lowest gets 0

    t = _initialized("nnUNetTrainerCELoss")
    assert type(t.loss.loss).__name__ == "RobustCrossEntropyLoss"

    t = _initialized("nnUNetTrainer_5epochs")
    assert t.num_epochs == 5

    t = _initialized("nnUNetTrainerAdam3en4")
    assert isinstance(t.optimizer, torch.optim.AdamW) and t.optimizer.param_groups[0]["amsgrad"]
    assert t.initial_lr == 3e-4

    t = _initialized("nnUNetTrainerBN")
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in t.network.modules())
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in t.network.modules())

    t = _initialized("nnUNetTrainer_probabilisticOversampling")
    assert t.probabilistic_oversampling and t.oversample_foreground_percent == 0.5  # batch size 2

    t = _initialized("nnUNetTrainerCosAnneal")
    lrs = []
    for e in (0, t.num_epochs // 2):
        t.lr_scheduler.step(e)
        lrs.append(t.optimizer.param_groups[0]["lr"])
    assert np.allclose(lrs, [0.01, 0.005])


def test_warmup_schedule_and_stage_switch(t2):
    t = _initialized("nnUNetTrainer_warmup")
    assert t.training_stage == "warmup_all"
    t.on_train_epoch_start()
    assert np.isclose(t.optimizer.param_groups[0]["lr"], 0.01 / 50)
    optimizer = t.optimizer
    t.current_epoch = 50
    t.on_train_epoch_start()
    assert t.training_stage == "train" and t.optimizer is optimizer  # momentum kept
    assert np.isclose(t.optimizer.param_groups[0]["lr"], 0.01)
    t.current_epoch = 525
    t.on_train_epoch_start()
    assert np.isclose(t.optimizer.param_groups[0]["lr"], 0.01 * (1 - 475 / 950) ** 0.9)


def test_checkpoint_round_trip_in_memory(t2, tmp_path):
    t = _initialized("nnUNetTrainer")
    t.current_epoch = 6
    t._best_ema = np.float32(0.5)
    t.inference_allowed_mirroring_axes = (0, 1)
    for key in t.logger.get_checkpoint():
        if key == "ema_fg_dice":  # logged automatically with mean_fg_dice
            continue
        for e in range(7):
            t.logger.log(key, [0.1, 0.2] if key == "dice_per_class_or_region" else 0.1 * e, e)
    t.save_checkpoint(str(tmp_path / "c.pth"))
    u = _initialized("nnUNetTrainer", fold=1)
    u.load_checkpoint(str(tmp_path / "c.pth"))
    assert u.current_epoch == 7 and u._best_ema == np.float32(0.5) and u.inference_allowed_mirroring_axes == (0, 1)
    assert u.my_init_kwargs["fold"] == 0  # init args come from the checkpoint
    for a, b in zip(t.network.state_dict().values(), u.network.state_dict().values()):
        assert torch.equal(a, b)
    # a dict works as well (the reference raised UnboundLocalError there)
    v = _initialized("nnUNetTrainer")
    v.load_checkpoint(torch.load(tmp_path / "c.pth", weights_only=False))
    assert v.current_epoch == 7


def test_checkpoint_of_another_architecture_is_a_user_error(t2, tmp_path):
    from nnunetv2.errors import UserError
    t = _initialized("nnUNetTrainerBN")
    t.save_checkpoint(str(tmp_path / "bn.pth"))
    u = _initialized("nnUNetTrainer")
    with pytest.raises(UserError, match="do not fit this trainer's network"):
        u.load_checkpoint(str(tmp_path / "bn.pth"))


@pytest.mark.parametrize("name", ["nnUNetTrainerDA5", "nnUNetTrainer_onlyMirror01_DA5", "nnUNetTrainerNoDA",
                                  "nnUNetTrainer_DASegOrd0", "nnUNetTrainer_noDummy2DDA"])
def test_augmentation_variants_produce_batches(t2, name):
    t = _initialized(name)
    train, val = t.get_dataloaders()
    batch = next(train)
    assert tuple(batch["data"].shape) == (2, 1, 12, 24, 24)
    assert [tuple(x.shape[2:]) for x in batch["target"]] == [(12, 24, 24), (12, 12, 12)]
    if name == "nnUNetTrainer_onlyMirror01_DA5":
        assert t.inference_allowed_mirroring_axes == (0, 1)
    if name == "nnUNetTrainer_DASegOrd0":
        from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
        loader = getattr(train, "generator", None) or train.data_loader  # nnUNet_n_proc_DA=0: single-threaded
        spatial = [x for x in loader.transforms.transforms if isinstance(x, SpatialTransform)]
        assert len(spatial) == 1 and spatial[0].mode_seg == "nearest"


def test_primus_needs_patch_divisible_by_8(t2):
    from nnunetv2.errors import UserError
    trainer = get_trainer_from_args("321", "3d_fullres", 0, "nnUNet_PrimusV2S_Trainer", device=CPU)
    assert trainer.initial_lr == 3e-4 and trainer.enable_deep_supervision is False
    with pytest.raises(UserError, match="divisible by 8"):
        trainer.initialize()


def test_primus_warmup_then_poly_keeps_its_adamw(t2):
    from nnunetv2.training.lr_scheduler.warmup import Lin_incr_LRScheduler, PolyLRScheduler_offset
    trainer = get_trainer_from_args("321", "3d_fullres", 0, "nnUNet_PrimusV2S_Trainer", device=CPU)
    trainer.network = torch.nn.Linear(2, 2)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers("warmup_all")
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert isinstance(trainer.lr_scheduler, Lin_incr_LRScheduler) and trainer.training_stage == "warmup_all"
    warmup_optimizer = trainer.optimizer
    optimizer, scheduler = trainer.configure_optimizers("train")
    assert optimizer is warmup_optimizer and isinstance(scheduler, PolyLRScheduler_offset)
    assert trainer.configure_optimizers("train") == (trainer.optimizer, trainer.lr_scheduler)
    with pytest.raises(ValueError):
        trainer.configure_optimizers("later")
