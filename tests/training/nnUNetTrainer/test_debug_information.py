"""debug.json: every plain attribute of the trainer as text, the augmenters among them (as the reference writes
them), plus what their pipelines are made of."""
from __future__ import annotations

import torch

from nnunetv2.training.nnUNetTrainer._epoch import debug_information


class _Augmenter:
    num_processes = 3

    def __init__(self):
        self.generator = 'the loader'
        self.transform = 'the pipeline'


class _Trainer:
    def __init__(self):
        self.device = torch.device('cpu')
        self.loss = torch.nn.MSELoss()
        self.network = torch.nn.Identity()
        self.batch_size = 2
        self.dataloader_train = _Augmenter()
        self.dataloader_val = None

    def on_train_start(self):
        pass


def test_debug_information_keys():
    info = debug_information(_Trainer())
    assert info['batch_size'] == '2'
    assert info['dataloader_train'].startswith('<') and '_Augmenter' in info['dataloader_train']
    assert info['dataloader_val'] == 'None'
    assert info['dataloader_train.generator'] == 'the loader'
    assert info['dataloader_train.num_processes'] == '3'
    assert info['dataloader_train.transform'] == 'the pipeline'
    assert 'dataloader_val.generator' not in info
    assert 'on_train_start' not in info
    assert info['network'] == 'Identity' and info['device'] == 'cpu' and info['cudnn_version'] == 'None'


def test_taken_resume_state_leaves_no_private_attribute():
    """The mid-epoch resume position is taken before debug.json is written; it leaves no attribute behind (the
    reference's debug.json has no such key)."""
    from nnunetv2.training.nnUNetTrainer._preemption import take_resume_state
    for stored in (None, {'epoch': 0}):
        trainer = _Trainer()
        trainer.current_epoch = 0
        trainer._resume_in_epoch = stored
        assert take_resume_state(trainer) == stored
        assert '_resume_in_epoch' not in debug_information(trainer)
        assert take_resume_state(trainer) is None  # once
