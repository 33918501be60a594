"""configure_rotation_dummyDA_mirroring_and_inital_patch_size returns the initial patch size as the integer NumPy
array get_patch_size makes, in the base trainer and in the variants that compute it themselves, as nnU-Net 2.8.1 does:
a subclass that calls super() and does arithmetic on it (``initial_patch_size * 2``, ``+ 16``) gets the same result
with either package (a list would be repeated or concatenated)."""
from types import SimpleNamespace

import numpy as np
import pytest

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainer_noDummy2DDA import \
    nnUNetTrainer_noDummy2DDA
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5


@pytest.mark.parametrize('trainer_class', [nnUNetTrainer, nnUNetTrainer_noDummy2DDA, nnUNetTrainerDA5])
@pytest.mark.parametrize('patch_size', [[8, 48, 48], [32, 32, 32], [64, 64]])
def test_initial_patch_size_is_an_integer_array(trainer_class, patch_size):
    trainer = object.__new__(trainer_class)  # only what the hook reads
    trainer.configuration_manager = SimpleNamespace(patch_size=patch_size)
    trainer.print_to_log_file = lambda *args, **kwargs: None
    _, dummy_2d, initial_patch_size, _ = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert isinstance(initial_patch_size, np.ndarray) and initial_patch_size.dtype.kind == 'i'
    assert len(initial_patch_size) == len(patch_size)
    if dummy_2d:
        assert initial_patch_size[0] == patch_size[0]
