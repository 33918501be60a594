"""The fast regions transform is a drop-in for batchgeneratorsv2's: same class name, a subclass, same output."""
import pytest
import torch
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform as BGRegions

from nnunetv2.training.data_augmentation._fast_label_transforms import ConvertSegmentationToRegionsTransform


@pytest.mark.parametrize('regions', [[[1, 2, 3], [2, 3], 3], [(1, 2), 2, [3], (4, 5, 6, 7)],
                                     [1, [2.5], 70000, [-1, 0], [300, 5]]])
@pytest.mark.parametrize('dtype', [torch.int16, torch.int32, torch.int64, torch.uint8, torch.int8, torch.float32])
def test_regions_identical_to_batchgeneratorsv2(regions, dtype):
    g = torch.Generator().manual_seed(0)
    seg = torch.randint(0 if dtype == torch.uint8 else -1, 8, (2, 9, 10, 11), generator=g).to(dtype)
    expected = BGRegions(regions, channel_in_seg=1)(segmentation=seg.clone())['segmentation']
    fast = ConvertSegmentationToRegionsTransform(regions, channel_in_seg=1)
    got = fast(segmentation=seg.clone())['segmentation']
    assert isinstance(fast, BGRegions) and type(fast).__name__ == BGRegions.__name__
    assert got.dtype == expected.dtype == torch.bool and got.shape == expected.shape == (len(regions), 9, 10, 11)
    assert torch.equal(got, expected)
