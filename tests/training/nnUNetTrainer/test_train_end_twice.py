"""Two runs of the same fold (a rerun started while the first still trains) end at the same moment: the second must
not fail with FileNotFoundError (before its validation) because the first removed checkpoint_latest.pth between the
second's check and its removal. Drop into tests/training/."""
import os
from types import SimpleNamespace

import torch

import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def _fake_trainer(folder):
    logged = []
    return SimpleNamespace(current_epoch=3, local_rank=0, output_folder=str(folder), dataloader_train=None,
                           dataloader_val=None, device=torch.device('cpu'),
                           save_checkpoint=lambda f: open(f, 'wb').close(),
                           print_to_log_file=lambda *a, **k: logged.append(a)), logged


def test_checkpoint_latest_removed_by_the_other_run_in_between(tmp_path, monkeypatch):
    t, logged = _fake_trainer(tmp_path)
    # the other run removed checkpoint_latest.pth right after this run saw it
    monkeypatch.setattr(trainer_module, 'isfile', lambda p: True, raising=False)
    nnUNetTrainer.on_train_end(t)  # was: FileNotFoundError
    assert os.listdir(tmp_path) == ['checkpoint_final.pth']
    assert t.current_epoch == 3 and logged and logged[-1] == ('Training done.',)


def test_checkpoint_latest_is_removed(tmp_path):
    t, _ = _fake_trainer(tmp_path)
    (tmp_path / 'checkpoint_latest.pth').write_bytes(b'x')
    nnUNetTrainer.on_train_end(t)
    assert os.listdir(tmp_path) == ['checkpoint_final.pth']
