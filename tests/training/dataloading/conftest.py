"""Small preprocessed folders written with our own storage code, for the dataset / data loader tests."""
import numpy as np
import pytest

from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetNumpy
from nnunetv2.utilities.blosc2_storage import save_case
from tests_training_helpers import make_case  # noqa: E402 (this folder is on sys.path)


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

