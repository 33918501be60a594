"""The CUDA paths of training on a tiny dataset (skipped without a GPU; benchmarks/gpu_check.py runs them):
AMP train_step with the gradient scaler, torch.compile'd checkpoints without ``_orig_mod.``, deep supervision
switched on compiled and DDP-wrapped networks, and pinned batches from our worker augmenter.

The dataset is written as .tif (Tiff3DIO), so these tests also run where SimpleITK is not installed (the GPU
machine of the check gets its missing packages as carried wheels, and SimpleITK's is too large to carry)."""
from __future__ import annotations

import gc
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.nnUNetTrainer._training_data import shut_down_augmenters
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

pytestmark = pytest.mark.cuda

DEVICE = torch.device('cuda')
DATASET_ID, DATASET_NAME = 322, "Dataset322_CudaTiny"


@pytest.fixture(scope="module")
def tiny_tif(tmp_path_factory):
    """nnUNet_preprocessed with a 6-case .tif dataset, 3d_fullres planned with a small network and preprocessed."""
    base = tmp_path_factory.mktemp("cuda_tiny")
    raw, pp = base / "raw", base / "preprocessed"
    with pytest.MonkeyPatch.context() as mp:
        for name, folder in (("nnUNet_raw", raw), ("nnUNet_preprocessed", pp), ("nnUNet_results", base / "r")):
            folder.mkdir()
            mp.setenv(name, str(folder))
        from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                         plan_experiment_dataset,
                                                                         preprocess_dataset)
        make_synthetic_dataset(str(raw), DATASET_ID, "CudaTiny", num_train=6, num_test=0, shape=(12, 24, 24),
                               file_ending=".tif")
        extract_fingerprint_dataset(DATASET_ID, num_processes=1, verbose=False, show_progress_bar=False)
        plan_experiment_dataset(DATASET_ID)
        plans_file = pp / DATASET_NAME / "nnUNetPlans.json"
        plans = json.loads(plans_file.read_text())
        arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
        n = arch["n_stages"]
        arch["features_per_stage"] = [min(8 * 2 ** i, 64) for i in range(n)]
        arch["n_conv_per_stage"] = [1] * n
        arch["n_conv_per_stage_decoder"] = [1] * (n - 1)
        plans_file.write_text(json.dumps(plans, indent=4))
        preprocess_dataset(DATASET_ID, configurations=["3d_fullres"], num_processes=1, show_progress_bar=False)
    return pp


@pytest.fixture
def tiny(tiny_tif, tmp_path, monkeypatch):
    """Environment of one test: the tiny dataset, a fresh nnUNet_results, augmentation in this process."""
    monkeypatch.setenv("nnUNet_preprocessed", str(tiny_tif))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.delenv("nnUNet_compile", raising=False)
    return SimpleNamespace(env={"preprocessed": tiny_tif / DATASET_NAME})


def _trainer(tiny) -> nnUNetTrainer:
    folder = tiny.env["preprocessed"]
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())
    return nnUNetTrainer(plans, "3d_fullres", 0, dataset_json, device=DEVICE)


def _batch(trainer: nnUNetTrainer) -> dict:
    """One augmented training batch (augmentation in this process: nnUNet_n_proc_DA=0)."""
    dl_train, dl_val = trainer.get_dataloaders()
    try:
        return next(dl_train)
    finally:
        shut_down_augmenters(dl_train, dl_val)


def test_amp_train_step(tiny, monkeypatch):
    monkeypatch.setenv("nnUNet_compile", "false")
    trainer = _trainer(tiny)
    trainer.initialize()
    assert trainer.grad_scaler is not None
    batch = _batch(trainer)
    output_dtypes = []
    hook = trainer.network.decoder.seg_layers[-1].register_forward_hook(
        lambda module, args, out: output_dtypes.append(out.dtype))
    before = [p.detach().clone() for p in trainer.network.parameters()]
    try:
        losses = [float(trainer.train_step(batch)["loss"]) for _ in range(3)]
    finally:
        hook.remove()
    assert all(math.isfinite(v) for v in losses)
    assert output_dtypes == [torch.float16] * 3  # autocast ran the convolutions in half precision
    assert all(p.dtype == torch.float32 for p in trainer.network.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters()))
    assert trainer.grad_scaler.get_scale() > 0
    result = trainer.validation_step(batch)
    assert math.isfinite(float(result["loss"])) and len(result["tp_hard"]) == len(result["fp_hard"])


def test_compiled_network_checkpoint_and_deep_supervision(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_compile", "true")
    trainer = _trainer(tiny)
    trainer.initialize()
    assert hasattr(trainer.network, "_orig_mod")
    batch = _batch(trainer)
    assert math.isfinite(float(trainer.train_step(batch)["loss"]))

    path = str(tmp_path / "checkpoint.pth")
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert not [k for k in saved["network_weights"] if k.startswith("_orig_mod.") or k.startswith("module.")]
    plain = _setup.unwrap_network(trainer.network)
    assert set(saved["network_weights"]) == set(plain.state_dict())
    # the saved weights load into a plain (uncompiled) network and into a compiled trainer
    fresh = nnUNetTrainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager,
                                                     trainer.num_input_channels,
                                                     trainer.label_manager.num_segmentation_heads, True)
    fresh.load_state_dict(saved["network_weights"])
    other = _trainer(tiny)
    other.load_checkpoint(path)
    for name, value in _setup.unwrap_network(other.network).state_dict().items():
        assert torch.equal(value.cpu(), saved["network_weights"][name]), name

    data = batch["data"][:1].to(DEVICE)
    with torch.no_grad(), torch.autocast("cuda"):
        trainer.set_deep_supervision_enabled(False)
        trainer.network.eval()
        single = trainer.network(data)
        trainer.set_deep_supervision_enabled(True)
        several = trainer.network(data)
    assert isinstance(single, torch.Tensor) and isinstance(several, (list, tuple)) and len(several) > 1
    assert single.shape == several[0].shape


def test_deep_supervision_switch_reaches_the_network_under_ddp(tiny, monkeypatch, tmp_path):
    """One-rank NCCL group: DDP around the compiled network, as the trainer builds it for -num_gpus."""
    monkeypatch.setenv("nnUNet_compile", "true")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        trainer = _trainer(tiny)
        assert trainer.is_ddp and trainer.device == torch.device("cuda", 0)
        trainer.initialize()
        assert isinstance(trainer.network, torch.nn.parallel.DistributedDataParallel)
        batch = _batch(trainer)
        assert math.isfinite(float(trainer.train_step(batch)["loss"]))
        data = batch["data"][:1].to(trainer.device)
        trainer.set_deep_supervision_enabled(False)
        assert _setup.unwrap_network(trainer.network).decoder.deep_supervision is False
        trainer.network.eval()
        with torch.no_grad(), torch.autocast("cuda"):
            out = trainer.network(data)
        assert isinstance(out, torch.Tensor)
        del trainer  # its DDP reducer holds the process group
        gc.collect()
    finally:
        dist.destroy_process_group()


def test_worker_augmenter_delivers_pinned_batches(tiny, monkeypatch):
    monkeypatch.setenv("nnUNet_n_proc_DA", "2")
    monkeypatch.setenv("nnUNet_compile", "false")
    trainer = _trainer(tiny)
    trainer.initialize()
    dl_train, dl_val = trainer.get_dataloaders()
    try:
        for _ in range(3):
            batch = next(dl_train)
            targets = batch["target"] if isinstance(batch["target"], (list, tuple)) else [batch["target"]]
            assert batch["data"].is_pinned() and all(t.is_pinned() for t in targets)
            assert math.isfinite(float(trainer.train_step(batch)["loss"]))
        assert next(dl_val)["data"].is_pinned()
    finally:
        shut_down_augmenters(dl_train, dl_val)
