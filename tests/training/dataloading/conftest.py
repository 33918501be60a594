"""Small preprocessed folders written with our own storage code, for the dataset / data loader tests."""
import numpy as np
import pytest

from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetNumpy
from nnunetv2.utilities.blosc2_storage import save_case


def make_case(rs, shape, n_channels=2, with_ignore=False):
    data = rs.randn(n_channels, *shape).astype(np.float32)
    seg = np.zeros((1, *shape), np.int16)
    x, y, z = shape
    seg[0, x // 4:x // 4 + 2, y // 4:y // 4 + 3, z // 4:z // 4 + 2] = 1  # small objects
    seg[0, -3:-1, -4:-1, -3:-1] = 2
    seg[0, 0, 0, :2] = -1  # outside the nonzero mask
    if with_ignore:
        ign = rs.rand(*shape) < 0.7
        seg[0][ign & (seg[0] == 0)] = 3
    class_locations = {c: np.argwhere(seg == c) for c in (1, 2)}
    if with_ignore:
        class_locations[(-1, 0, 1, 2)] = np.argwhere((seg != 3) & (seg >= 0))
    props = {'class_locations': class_locations, 'spacing': [1.0, 1.0, 1.0], 'shape_before_cropping': shape}
    return data, seg, props


@pytest.fixture
def blosc2_folder(tmp_path):
    rs = np.random.RandomState(0)
    folder = tmp_path / 'nnUNetPlans_3d_fullres'
    folder.mkdir()
    cases = {}
    for i, shape in enumerate([(12, 20, 18), (14, 22, 16), (10, 18, 20)]):
        data, seg, props = make_case(rs, shape)
        save_case(data, seg, props, str(folder / f'case_{i:03d}'), patch_size=(8, 16, 16))
        cases[f'case_{i:03d}'] = (data, seg, props)
    return folder, cases


@pytest.fixture
def npz_folder(tmp_path):
    rs = np.random.RandomState(1)
    folder = tmp_path / 'legacy'
    folder.mkdir()
    cases = {}
    for i, shape in enumerate([(12, 20, 18), (14, 22, 16)]):
        data, seg, props = make_case(rs, shape)
        nnUNetDatasetNumpy.save_case(data, seg, props, str(folder / f'case_{i:03d}'))
        cases[f'case_{i:03d}'] = (data, seg, props)
    return folder, cases
