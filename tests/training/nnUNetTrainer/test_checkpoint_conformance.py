"""A checkpoint written by the reference (2.8.1) loads into our trainer, and ours has the same structure."""
from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import torch

from nnunetv2.file_io import load_json
from nnunetv2.training.nnUNetTrainer import _checkpointing, _setup

MODEL_ZIP = "reference/models/Dataset903_SynthNatural2D/" \
            "Dataset903_SynthNatural2D_nnUNetTrainer_5epochs__nnUNetPlansTiny__2d_fold0.zip"
INNER = "Dataset903_SynthNatural2D/nnUNetTrainer_5epochs__nnUNetPlansTiny__2d"


def test_reference_checkpoint_restores_and_round_trips(shared_dir, nnunet_dirs, tmp_path):
    from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs import \
        nnUNetTrainer_5epochs
    with zipfile.ZipFile(shared_dir / MODEL_ZIP) as z:
        z.extractall(tmp_path)
    folder = tmp_path / INNER
    reference = _checkpointing.read_checkpoint(str(folder / "fold_0" / "checkpoint_final.pth"), torch.device("cpu"))
    assert set(reference) == set(_checkpointing.CHECKPOINT_KEYS)

    plans = load_json(str(folder / "plans.json"))
    trainer = nnUNetTrainer_5epochs(plans, "2d", 0, load_json(str(folder / "dataset.json")), torch.device("cpu"))
    trainer.num_input_channels = 3
    trainer.network = _setup.build_network(trainer)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    _checkpointing.restore(trainer, reference, trainer.network)
    assert trainer.current_epoch == reference["current_epoch"] == 5
    assert trainer.inference_allowed_mirroring_axes == (0, 1)
    for k, v in trainer.network.state_dict().items():
        assert torch.equal(v, reference["network_weights"][k]), k

    # our checkpoint of that state: same keys and nested structure; NumPy scalars stored as the Python numbers
    # they equal
    ours = _checkpointing.build_checkpoint(trainer, trainer.network)
    ours["current_epoch"] -= 1  # build_checkpoint stores current_epoch + 1 (as on_train_end arranges)
    assert set(ours) == set(reference)
    assert set(ours["init_args"]) == set(reference["init_args"])
    assert set(ours["logging"]) == set(reference["logging"])
    assert all(len(ours["logging"][k]) == len(reference["logging"][k]) for k in reference["logging"])
    assert type(reference["_best_ema"]) is np.float32 and type(ours["_best_ema"]) is float
    assert ours["_best_ema"] == reference["_best_ema"]
    for k in reference["logging"]:
        assert ours["logging"][k] == reference["logging"][k], k
        assert not any(isinstance(v, np.generic) for v in ours["logging"][k]), k
    assert ours["trainer_name"] == reference["trainer_name"] == "nnUNetTrainer_5epochs"
    assert ours["optimizer_state"]["param_groups"][0].keys() == reference["optimizer_state"]["param_groups"][0].keys()
    # and it can be read back with the safe loader
    _checkpointing.save_checkpoint_atomically(ours, str(tmp_path / "ours.pth"))
    again = _checkpointing.read_checkpoint(str(tmp_path / "ours.pth"), torch.device("cpu"))
    assert again["init_args"]["configuration"] == "2d"
    # and with torch's default loader, which refuses the reference's NumPy scalars
    plain = torch.load(str(tmp_path / "ours.pth"), weights_only=True)
    assert plain["logging"] == ours["logging"] and plain["_best_ema"] == ours["_best_ema"]
    assert plain["inference_allowed_mirroring_axes"] == (0, 1)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(folder / "fold_0" / "checkpoint_final.pth"), weights_only=True)
