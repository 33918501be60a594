"""Never use dummy-2D augmentation; 3D data always gets ±30° rotations."""
import numpy as np

from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_noDummy2DDA(nnUNetTrainer):
    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        patch_size = self.configuration_manager.patch_size
        if len(patch_size) == 3:
            do_dummy_2d_data_aug = False
            rotation_for_DA = (-30. / 360 * 2. * np.pi, 30. / 360 * 2. * np.pi)
            initial_patch_size = get_patch_size(patch_size, *([rotation_for_DA] * 3), (0.85, 1.25))
        self.print_to_log_file(f'do_dummy_2d_data_aug (overridden): {do_dummy_2d_data_aug}')
        return rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes
