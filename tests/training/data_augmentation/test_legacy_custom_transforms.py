"""The batchgenerators (v1) style transforms kept for older custom trainers."""
import numpy as np

from nnunetv2.training.data_augmentation.custom_transforms.cascade_transforms import (
    ApplyRandomBinaryOperatorTransform, MoveSegAsOneHotToData,
    RemoveRandomConnectedComponentFromOneHotEncodingTransform)
from nnunetv2.training.data_augmentation.custom_transforms.deep_supervision_donwsampling import \
    DownsampleSegForDSTransform2
from nnunetv2.training.data_augmentation.custom_transforms.masking import MaskTransform
from nnunetv2.training.data_augmentation.custom_transforms.region_based_training import \
    ConvertSegmentationToRegionsTransform
from nnunetv2.training.data_augmentation.custom_transforms.transforms_for_dummy_2d import (
    Convert2DTo3DTransform, Convert3DTo2DTransform)


def test_one_hot_mask_regions_dummy2d_and_ds():
    np.random.seed(0)
    seg = np.random.randint(-1, 3, (2, 2, 6, 8, 8)).astype(np.int16)
    d = {'data': np.random.rand(2, 1, 6, 8, 8).astype(np.float32) + 1, 'seg': seg.copy()}
    d = MoveSegAsOneHotToData(1, [1, 2])(**d)
    assert d['data'].shape == (2, 3, 6, 8, 8) and d['seg'].shape == (2, 1, 6, 8, 8)
    np.testing.assert_array_equal(d['data'][:, 1], seg[:, 1] == 1)
    np.testing.assert_array_equal(d['data'][:, 2], seg[:, 1] == 2)
    d = ApplyRandomBinaryOperatorTransform([1, 2], p_per_sample=1)(**d)
    d = RemoveRandomConnectedComponentFromOneHotEncodingTransform([1, 2], p_per_sample=1)(**d)
    assert (d['data'][:, 1] * d['data'][:, 2]).max() == 0  # one-hot channels stay exclusive
    d = MaskTransform([0])(**d)
    assert (d['data'][:, 0][d['seg'][:, 0] < 0] == 0).all() and (d['data'][:, 0][d['seg'][:, 0] >= 0] > 0).all()
    d = Convert3DTo2DTransform()(**d)
    assert d['data'].shape == (2, 18, 8, 8) and d['seg'].shape == (2, 6, 8, 8)
    d = Convert2DTo3DTransform()(**d)
    assert d['data'].shape == (2, 3, 6, 8, 8)
    regions = ConvertSegmentationToRegionsTransform([(1, 2), 2])(**{'seg': seg})['seg']
    np.testing.assert_array_equal(regions[:, 0], np.isin(seg[:, 0], [1, 2]))
    np.testing.assert_array_equal(regions[:, 1], seg[:, 0] == 2)
    out = DownsampleSegForDSTransform2([[1, 1, 1], [0.5, 0.5, 0.5]])(**{'seg': seg})['seg']
    assert out[0] is seg and out[1].shape == (2, 2, 3, 4, 4)
    assert set(np.unique(out[1])) <= set(np.unique(seg)) and out[1].dtype == seg.dtype  # order 0: no new labels
