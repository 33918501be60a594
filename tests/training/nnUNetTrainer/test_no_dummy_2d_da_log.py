"""nnUNetTrainer_noDummy2DDA logs one line, 'do_dummy_2d_data_aug: False', as the reference does; it used to log the
base class's 'do_dummy_2d_data_aug: True' for anisotropic patches first and then an extra '(overridden): False'."""
from types import SimpleNamespace

import numpy as np
import pytest

from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainer_noDummy2DDA import \
    nnUNetTrainer_noDummy2DDA


def _configure(patch_size):
    trainer = object.__new__(nnUNetTrainer_noDummy2DDA)  # only what the hook reads
    lines = []
    trainer.configuration_manager = SimpleNamespace(patch_size=patch_size)
    trainer.print_to_log_file = lambda *args, **kwargs: lines.append(' '.join(str(a) for a in args))
    return trainer, trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(), lines


@pytest.mark.parametrize('patch_size, rotation_deg, mirror_axes', [
    ([8, 48, 48], 30, (0, 1, 2)),  # anisotropic: the base class would use dummy 2D DA
    ([32, 32, 32], 30, (0, 1, 2)),
    ([64, 64], 180, (0, 1)),
    ([64, 128], 15, (0, 1)),
])
def test_one_log_line_and_the_reference_values(patch_size, rotation_deg, mirror_axes):
    trainer, (rotation, dummy_2d, initial_patch_size, mirror), lines = _configure(patch_size)
    assert lines == ['do_dummy_2d_data_aug: False']
    assert dummy_2d is False
    assert rotation == pytest.approx((-rotation_deg / 180 * np.pi, rotation_deg / 180 * np.pi))
    assert tuple(mirror) == mirror_axes and tuple(trainer.inference_allowed_mirroring_axes) == mirror_axes
    expected = get_patch_size(patch_size, *([rotation] * 3), (0.85, 1.25))
    assert [int(i) for i in initial_patch_size] == [int(i) for i in expected]
    if patch_size == [8, 48, 48]:
        assert [int(i) for i in initial_patch_size] == [36, 77, 56]  # 3D box of nnU-Net 2.8.1; first axis not kept at 8
