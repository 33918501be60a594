"""Trainer of the AortaSeg24 challenge entry: DA5 augmentation with mirroring only along axes 0 and 1."""
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import \
    nnUNetTrainer_onlyMirror01


class nnUNetTrainer_onlyMirror01_DA5(nnUNetTrainer_onlyMirror01, nnUNetTrainerDA5):
    """onlyMirror01's override runs first and calls DA5's (DA5 initial patch size), then restricts mirroring."""
