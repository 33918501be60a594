"""Bad inputs to nnUNetv2_train give one-line UserErrors (and the console script exits 1 with one line)."""
from __future__ import annotations

import sys

import pytest
import torch

from nnunetv2.errors import UserError
from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint, run_training, \
    run_training_entry

CPU = torch.device("cpu")


def _cli(monkeypatch, capsys, *argv) -> str:
    monkeypatch.setattr(sys, "argv", ["nnUNetv2_train", *argv])
    with pytest.raises(SystemExit) as e:
        run_training_entry()
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nnU-Net error: ")
    return err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda(t2, monkeypatch, capsys):
    line = _cli(monkeypatch, capsys, "321", "3d_fullres", "0")
    assert "CUDA" in line and "-device cpu" in line
    # the refused run leaves no fold folder with a training log, as if a training had started
    assert list(t2.env["results"].iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_keeps_what_was_there(t2, monkeypatch, capsys):
    fold_0 = t2.fold_folder(t2.env["results"], "nnUNetTrainer")
    fold_0.mkdir(parents=True)
    (fold_0 / "training_log_earlier.txt").write_text("earlier run\n")
    _cli(monkeypatch, capsys, "321", "3d_fullres", "0")
    assert [p.name for p in fold_0.iterdir()] == ["training_log_earlier.txt"]
    assert (fold_0 / "training_log_earlier.txt").read_text() == "earlier run\n"


@pytest.mark.parametrize("fold, what", [("-1", "0 or larger"), ("x", "integer")])
def test_bad_fold(t2, fold, what):
    with pytest.raises(UserError, match=what):
        run_training("321", "3d_fullres", fold, device=CPU)


def test_bad_device_name(t2, monkeypatch, capsys):
    assert "cpu, cuda or mps" in _cli(monkeypatch, capsys, "321", "3d_fullres", "0", "-device", "gpu")


def test_configuration_not_in_plans(t2):
    with pytest.raises(UserError, match=r"3d_lowres.*Available configurations: \['2d', '3d_fullres'\]"):
        get_trainer_from_args("321", "3d_lowres", 0, device=CPU)


def test_plans_missing(t2):
    with pytest.raises(UserError, match=r"nnUNetResEncUNetMPlans\.json.*nnUNetv2_plan_and_preprocess"):
        get_trainer_from_args("321", "3d_fullres", 0, plans_identifier="nnUNetResEncUNetMPlans", device=CPU)


def test_preprocessed_data_missing(t2):
    # 2d is planned but was never preprocessed
    trainer = get_trainer_from_args("321", "2d", 0, device=CPU)
    with pytest.raises(UserError, match=r"No preprocessed data.*nnUNetv2_preprocess -d 321 .*-c 2d"):
        trainer.initialize()


def test_unknown_trainer_lists_close_matches(t2):
    with pytest.raises(UserError, match="nnUNetTrainer_5epochs"):
        get_trainer_from_args("321", "3d_fullres", 0, "nnUNetTrainer_5epoch", device=CPU)


def test_pretrained_weights_missing_and_mismatched(t2, tmp_path):
    trainer = get_trainer_from_args("321", "3d_fullres", 0, device=CPU)
    with pytest.raises(UserError, match="Pretrained weights file not found"):
        maybe_load_checkpoint(trainer, False, False, str(tmp_path / "nope.pth"))
    trainer.initialize()
    weights = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    wrong = "encoder.stages.1.0.convs.0.conv.weight"
    weights[wrong] = torch.zeros(3, 3, 3)
    weights.pop("encoder.stages.0.0.convs.0.conv.bias")
    torch.save({"network_weights": weights}, tmp_path / "other_arch.pth")
    with pytest.raises(UserError) as e:
        maybe_load_checkpoint(trainer, False, False, str(tmp_path / "other_arch.pth"))
    assert wrong in str(e.value) and "encoder.stages.0.0.convs.0.conv.bias missing" in str(e.value)


def test_pretrained_weights_are_loaded_except_seg_layers(t2, tmp_path):
    source = get_trainer_from_args("321", "3d_fullres", 0, device=CPU)
    source.initialize()
    torch.save({"network_weights": source.network.state_dict()}, tmp_path / "w.pth")
    target = get_trainer_from_args("321", "3d_fullres", 0, device=CPU)
    maybe_load_checkpoint(target, False, False, str(tmp_path / "w.pth"))
    src, dst = source.network.state_dict(), target.network.state_dict()
    assert all(torch.equal(src[k], dst[k]) for k in src if ".seg_layers." not in k)
    # segmentation heads keep their own (random) initialisation
    assert not torch.equal(src["decoder.seg_layers.0.weight"], dst["decoder.seg_layers.0.weight"])


def test_continue_with_corrupt_checkpoint(t2):
    trainer = get_trainer_from_args("321", "3d_fullres", 0, device=CPU)
    import os
    with open(os.path.join(trainer.output_folder, "checkpoint_latest.pth"), "wb") as f:
        f.write(b"this is not a checkpoint")
    with pytest.raises(UserError, match=r"checkpoint_latest\.pth is not a readable PyTorch checkpoint"):
        run_training("321", "3d_fullres", 0, continue_training=True, device=CPU)


def test_flag_conflicts(t2, tmp_path):
    trainer = get_trainer_from_args("321", "3d_fullres", 0, device=CPU)
    with pytest.raises(UserError, match="--c"):
        maybe_load_checkpoint(trainer, True, False, str(tmp_path / "w.pth"))
    with pytest.raises(UserError, match="training is not finished"):
        maybe_load_checkpoint(trainer, False, True)
    with pytest.raises(UserError, match="--val_best"):
        run_training("321", "3d_fullres", 0, val_with_best=True, disable_checkpointing=True, device=CPU)


@pytest.mark.parametrize("patch_size, warned", [([32, 64, 64], True), ([64, 64], False)])
def test_training_names_a_torch_release_with_slow_3d_convolutions(monkeypatch, caplog, tmp_path, patch_size, warned):
    """Training a 3-D network on CUDA under torch 2.9.0 logs one warning naming the release before it starts."""
    import logging
    from types import SimpleNamespace
    from nnunetv2.run import run_training as module
    from nnunetv2.utilities import slow_torch_releases
    monkeypatch.setattr(slow_torch_releases, "_warned", False)
    monkeypatch.setattr(slow_torch_releases.torch, "__version__", "2.9.0+cu128")
    monkeypatch.setattr(slow_torch_releases.torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(slow_torch_releases.torch.backends.cudnn, "version", lambda: 91002)
    steps = []
    trainer = SimpleNamespace(device=torch.device("cuda", 0), output_folder=str(tmp_path),
                              configuration_manager=SimpleNamespace(patch_size=patch_size),
                              run_training=lambda: steps.append("train"),
                              perform_actual_validation=lambda export: steps.append("validate"))
    with caplog.at_level(logging.WARNING, logger=slow_torch_releases.__name__):
        module._train_in_this_process(trainer, False, False, None, False, False, False)
    messages = [r.getMessage() for r in caplog.records if r.name == slow_torch_releases.__name__]
    assert steps == ["train", "validate"]
    assert len(messages) == int(warned) and all("PyTorch 2.9.0+cu128" in m for m in messages)
