"""With an ignore label, unforced patches are centred on annotated voxels: foreground locations without that entry
(data preprocessed before the ignore label was added) are refused, as the reference fails there too, rather than
sampled anywhere; an entry without voxels still falls back to a random patch."""
import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from tests_training_helpers import make_ignore_folder  # noqa: E402 (this folder is on sys.path)

LM = LabelManager({'background': 0, 'a': 1, 'b': 2, 'ignore': 3}, None)


@pytest.fixture
def loader(tmp_path):
    return nnUNetDataLoader(nnUNetDatasetBlosc2(str(make_ignore_folder(tmp_path))), 2, (8, 8, 8), (8, 8, 8), LM)


@pytest.mark.parametrize('class_locations', [None, {}, {1: np.array([[0, 3, 3, 3]]), 2: []}])
def test_locations_without_annotated_entry_refused(loader, class_locations):
    with pytest.raises(UserError, match='preprocessed without the ignore label'):
        loader.get_bbox((14, 14, 14), False, class_locations)


def test_annotated_entry_without_voxels_falls_back_to_random(loader):
    np.random.seed(0)
    with pytest.warns(UserWarning, match='No annotated pixels'):
        lbs, ubs = loader.get_bbox((14, 14, 14), False, {(-1, 0, 1, 2): [], 1: []})
    assert [u - l for l, u in zip(lbs, ubs)] == [8, 8, 8]
