"""A custom trainer written the way the tutorials show (star import, own optimiser and train_step), dropped into the
trainer package, is found by -tr and trains."""
from __future__ import annotations

import os
import sys
import textwrap
import uuid

import torch

import nnunetv2
from nnunetv2.run.run_training import get_trainer_from_args

TUTORIAL_TRAINER = '''
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import *

STEPS = []


class {name}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        lr_scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
        return optimizer, lr_scheduler

    def train_step(self, batch: dict) -> dict:
        data = batch['data'].to(self.device, non_blocking=True)
        target = [i.to(self.device, non_blocking=True) for i in batch['target']]
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context():
            output = self.network(data)
            l = self.loss(output, target)
        l.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
        self.optimizer.step()
        STEPS.append(float(l.detach().cpu()))
        return {{'loss': l.detach().cpu().numpy()}}
'''


def test_tutorial_trainer_in_package_is_found_and_trains(t2):
    name = f"T2TutorialTrainer_{uuid.uuid4().hex[:8]}"
    module_file = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer", f"{name.lower()}.py")
    module_name = f"nnunetv2.training.nnUNetTrainer.{name.lower()}"
    with open(module_file, "w") as f:
        f.write(textwrap.dedent(TUTORIAL_TRAINER.format(name=name)))
    try:
        trainer = get_trainer_from_args("321", "3d_fullres", "all", name, device=torch.device("cpu"))
        assert type(trainer).__name__ == name and type(trainer).__module__ == module_name
        trainer.run_training()
        assert isinstance(trainer.optimizer, torch.optim.Adam)
        assert len(sys.modules[module_name].STEPS) == 4  # 2 epochs x 2 iterations through the override
        out = t2.fold_folder(t2.env["results"], name, fold="all")
        ckpt = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        assert ckpt["trainer_name"] == name and ckpt["current_epoch"] == 2
        assert "Adam" in str(ckpt["optimizer_state"]["param_groups"][0].keys()) or \
            "amsgrad" in ckpt["optimizer_state"]["param_groups"][0]
    finally:
        os.remove(module_file)
        sys.modules.pop(module_name, None)
        cache = os.path.join(os.path.dirname(module_file), "__pycache__")
        for f in os.listdir(cache) if os.path.isdir(cache) else []:
            if f.startswith(name.lower() + "."):
                os.remove(os.path.join(cache, f))
