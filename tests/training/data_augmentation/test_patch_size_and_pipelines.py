"""get_patch_size values from the spec (03 §2.4.6, §3.2) and the composition of the pipelines (§3.3, §3.5)."""
import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.data_augmentation.pipelines import build_training_transforms, build_validation_transforms

DEG = np.pi / 180


@pytest.mark.parametrize('patch,rot,expected', [
    ((128, 128, 128), 30, (205, 205, 205)),
    ((80, 192, 160), 30, (194, 289, 210)),
    ((512, 512), 180, (602, 602)),
    ((256, 128), 15, (329, 150)),
    ((40, 40), 180, (47, 47)),
])
def test_get_patch_size_spec_examples(patch, rot, expected):
    r = (-rot * DEG, rot * DEG)
    out = get_patch_size(patch, r, r, r, (0.85, 1.25))
    assert tuple(out) == expected
    assert out.dtype.kind == 'i'


def test_get_patch_size_dummy_2d_and_scalars():
    r = (-np.pi, np.pi)
    out = get_patch_size((20, 256, 256), r, r, r, (0.85, 1.25))
    out[0] = 20  # the trainer keeps the out-of-plane size for dummy 2D
    assert tuple(out) == (20, 301, 301)
    # scalars are used as given, lists/ranges by their largest magnitude
    assert tuple(get_patch_size([20, 256, 256], 0.3, -0.2, [0.5], (0.85, 1.25))) == (165, 376, 301)
    # no rotation, no scaling: unchanged
    assert tuple(get_patch_size((10, 20, 30), 0, 0, 0, (1, 1))) == (10, 20, 30)


def _names(t):
    return [type(x.transform).__name__ + f'@{x.apply_probability}' if isinstance(x, RandomTransform)
            else type(x).__name__ for x in t.transforms]


def test_default_training_pipeline_order():
    t = build_training_transforms((32, 32, 32), (-0.5, 0.5), [[1, 1, 1], [0.5, 0.5, 0.5]], (0, 1, 2), False,
                                  use_mask_for_norm=[False], foreground_labels=[1, 2])
    assert isinstance(t, ComposeTransforms)
    assert _names(t) == ['SpatialTransform', 'GaussianNoiseTransform@0.1', 'GaussianBlurTransform@0.2',
                         'MultiplicativeBrightnessTransform@0.15', 'ContrastTransform@0.15',
                         'SimulateLowResolutionTransform@0.25', 'GammaTransform@0.1', 'GammaTransform@0.3',
                         'MirrorTransform', 'RemoveLabelTransform', 'DownsampleSegForDSTransform']
    spatial = t.transforms[0]
    assert spatial.patch_size == (32, 32, 32) and spatial.padding_value_seg == -1
    assert spatial.p_rotation == 0.2 and spatial.p_scaling == 0.2 and spatial.scaling == (0.7, 1.4)


def test_dummy_2d_cascade_regions_mask():
    t = build_training_transforms((8, 32, 32), (-np.pi, np.pi), None, (1, 2), True, use_mask_for_norm=[True, False],
                                  is_cascaded=True, foreground_labels=[1, 2, 3], regions=[(1, 2, 3), (2, 3), 3],
                                  ignore_label=4)
    names = _names(t)
    assert names[0] == 'Convert3DTo2DTransform' and names[2] == 'Convert2DTo3DTransform'
    assert t.transforms[1].patch_size == (32, 32)
    lowres = t.transforms[7].transform
    assert lowres.ignore_axes == (0,)
    assert names[-6:] == ['MaskImageTransform', 'RemoveLabelTransform', 'MoveSegAsOneHotToDataTransform',
                          'ApplyRandomBinaryOperatorTransform@0.4',
                          'RemoveRandomConnectedComponentFromOneHotEncodingTransform@0.2',
                          'ConvertSegmentationToRegionsTransform']
    assert t.transforms[-6].apply_to_channels == [0]
    assert t.transforms[-3].transform.channel_idx == [-3, -2, -1]
    assert len(t.transforms[-1].regions) == 4  # ignore label appended as the last region
    with pytest.raises(ValueError):
        build_training_transforms((8, 8, 8), 0, None, (), False, is_cascaded=True)


def test_validation_pipeline():
    assert _names(build_validation_transforms(None)) == ['RemoveLabelTransform']
    v = build_validation_transforms([[1, 1], [0.5, 0.5]], True, [1, 2], [(1, 2), 2], None)
    assert _names(v) == ['RemoveLabelTransform', 'MoveSegAsOneHotToDataTransform',
                         'ConvertSegmentationToRegionsTransform', 'DownsampleSegForDSTransform']


def test_training_pipeline_on_a_sample():
    torch.manual_seed(0)
    np.random.seed(0)
    t = build_training_transforms((16, 16), (-np.pi, np.pi), [[1, 1], [0.5, 0.5], [0.25, 0.25]], (0, 1), False)
    img = torch.randn(2, 24, 24)
    seg = torch.randint(-1, 3, (1, 24, 24)).to(torch.int16)
    for _ in range(5):
        out = t(image=img.clone(), segmentation=seg.clone())
        assert out['image'].shape == (2, 16, 16)
        assert [tuple(s.shape) for s in out['segmentation']] == [(1, 16, 16), (1, 8, 8), (1, 4, 4)]
        assert out['segmentation'][0].min() >= 0 and out['segmentation'][0].dtype == torch.int16
