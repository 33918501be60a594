"""Never use dummy-2D augmentation; 3D data always gets ±30° rotations."""
import numpy as np

from nnunetv2.configuration import ANISO_THRESHOLD
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer import _setup
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_noDummy2DDA(nnUNetTrainer):
    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        # computed here rather than by overriding the base class's result: that one logs its own (here wrong)
        # do_dummy_2d_data_aug line first
        patch_size = self.configuration_manager.patch_size
        rotation_for_DA, _, mirror_axes = _setup.rotation_dummy2d_mirroring(patch_size, ANISO_THRESHOLD)
        if len(patch_size) == 3:
            rotation_for_DA = (-30. / 360 * 2. * np.pi, 30. / 360 * 2. * np.pi)
        do_dummy_2d_data_aug = False
        initial_patch_size = get_patch_size(patch_size, *([rotation_for_DA] * 3), (0.85, 1.25))
        self.print_to_log_file(f'do_dummy_2d_data_aug: {do_dummy_2d_data_aug}')
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes
