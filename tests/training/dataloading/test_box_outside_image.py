"""Patches whose box misses the image along an axis (extra ``pad_sides`` make that possible): all zeros, as the
reference's crop returns them, in the segmentation too (not the -1 padding of a partly outside box)."""
import numpy as np
import pytest
import torch

from nnunetv2.training.dataloading.data_loader import crop_and_pad, nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from nnunetv2.utilities.blosc2_storage import save_case
from tests_training_helpers import make_case  # noqa: E402 (this folder is on sys.path)


@pytest.mark.parametrize('lbs,ubs', [([-3, 1], [-1, 4]), ([1, 5], [3, 8]), ([-2, 9], [0, 12])])
def test_box_outside_gives_zeros(lbs, ubs):
    arr = np.arange(1, 2 * 4 * 5 + 1, dtype=np.int8).reshape(2, 4, 5)
    for pad, dtype in ((-1, np.int16), (0, np.float32), (-1, None)):
        out = crop_and_pad(arr, lbs, ubs, pad, dtype)
        assert out.shape == (2, ubs[0] - lbs[0], ubs[1] - lbs[1])
        assert out.dtype == (dtype or arr.dtype)
        assert not out.any()
        assert out.flags.writeable


def test_loader_with_pad_sides_draws_zero_patches(tmp_path):
    # a 2-voxel wide patch with 3 voxels of extra padding per side can lie entirely beside the image
    rs = np.random.RandomState(0)
    data, seg, props = make_case(rs, (1, 6, 5), n_channels=1)
    save_case(data, seg, props, str(tmp_path / 'c0'), patch_size=(6, 5))
    dl = nnUNetDataLoader(nnUNetDatasetBlosc2(str(tmp_path)), 1, (2, 2), (2, 2),
                          LabelManager({'background': 0, 'a': 1, 'b': 2}, None), pad_sides=(3, 3))
    seen_outside = False
    np.random.seed(1)
    for _ in range(60):
        lbs, ubs = dl.get_bbox((1, 6, 5), False, props['class_locations'])
        outside = any(hi <= 0 or lo >= s for lo, hi, s in zip(lbs, ubs, (1, 6, 5)))
        image, target = dl._crop_sample(data, seg, None, lbs, ubs)
        if outside:
            seen_outside = True
            assert not image.any() and not target.any() and target.dtype == torch.int16
    assert seen_outside
