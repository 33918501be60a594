"""nnUNetDataLoader: batch shapes, foreground oversampling, padding, cascade input (spec 03 §4.2-4.4)."""
import numpy as np
import pytest
import torch

from nnunetv2.training.data_augmentation.pipelines import build_training_transforms, build_validation_transforms
from nnunetv2.training.dataloading.data_loader import crop_and_pad, nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
from nnunetv2.utilities.label_handling.label_handling import LabelManager

LM = LabelManager({'background': 0, 'a': 1, 'b': 2}, None)


def test_crop_and_pad_pads_outside_and_copies():
    arr = np.arange(2 * 4 * 5, dtype=np.int16).reshape(2, 4, 5)
    out = crop_and_pad(arr, [-1, 3], [2, 7], -1)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out[:, 0], -1)
    np.testing.assert_array_equal(out[:, 1:, 2:], -1)
    np.testing.assert_array_equal(out[:, 1:, :2], arr[:, :2, 3:])
    inside = crop_and_pad(arr, [0, 0], [2, 2], 0)
    inside[:] = 99
    assert arr.max() < 99  # never a view into the source


@pytest.mark.parametrize('batch_size,expected', [(1, 0), (2, 1), (3, 1), (4, 1), (5, 2), (12, 4)])
def test_last_xx_percent_rule(blosc2_folder, batch_size, expected):
    ds = nnUNetDatasetBlosc2(str(blosc2_folder[0]))
    dl = nnUNetDataLoader(ds, batch_size, (8, 8, 8), (8, 8, 8), LM, oversample_foreground_percent=0.33)
    flags = [dl.get_do_oversample(j) for j in range(batch_size)]
    assert sum(flags) == expected
    assert flags == sorted(flags)  # the forced ones are the last ones


def test_3d_batch_shapes_and_forced_foreground(blosc2_folder):
    folder, cases = blosc2_folder
    ds = nnUNetDatasetBlosc2(str(folder))
    np.random.seed(0)
    dl = nnUNetDataLoader(ds, 4, (8, 8, 8), (8, 8, 8), LM, oversample_foreground_percent=1.0)
    for _ in range(10):
        batch = next(dl)
        assert batch['data'].shape == (4, 2, 8, 8, 8) and batch['data'].dtype == torch.float32
        assert batch['target'].shape == (4, 1, 8, 8, 8) and batch['target'].dtype == torch.int16
        assert isinstance(batch['keys'], np.ndarray) and set(batch['keys']) <= set(cases)
        # every patch is centred on a foreground voxel -> contains foreground
        assert all((batch['target'][j] > 0).any() for j in range(4))


def test_patches_match_source_arrays(blosc2_folder):
    folder, cases = blosc2_folder
    ds = nnUNetDatasetBlosc2(str(folder))
    dl = nnUNetDataLoader(ds, 1, (6, 7, 8), (6, 7, 8), LM)
    data, seg, _, props = ds.load_case('case_000')
    np.random.seed(3)
    lbs, ubs = dl.get_bbox(data.shape[1:], True, props['class_locations'], overwrite_class=2)
    img, s = dl._crop_sample(data, seg, None, lbs, ubs)
    ref_img = crop_and_pad(cases['case_000'][0], lbs, ubs, 0)
    ref_seg = crop_and_pad(cases['case_000'][1], lbs, ubs, -1)
    np.testing.assert_array_equal(img.numpy(), ref_img)
    np.testing.assert_array_equal(s.numpy(), ref_seg)
    assert (s == 2).any()


def test_get_bbox_centres_selected_voxel():
    class FakeDS:
        identifiers = ['a']
    dl = nnUNetDataLoader(FakeDS(), 1, (4, 6, 8), (4, 6, 8), LM)
    locs = {1: np.array([[0, 10, 10, 10]]), 2: np.zeros((0, 4), int)}
    lbs, ubs = dl.get_bbox((30, 30, 30), True, locs)
    assert lbs == [8, 7, 6] and ubs == [12, 13, 14]
    # near the lower border the box is clamped at lb, near the upper border it may stick out (padded later)
    lbs, _ = dl.get_bbox((30, 30, 30), True, {1: np.array([[0, 0, 29, 29]])})
    assert lbs == [0, 26, 25]
    # no foreground at all: random box inside
    for _ in range(20):
        lbs, ubs = dl.get_bbox((30, 30, 30), True, {1: np.zeros((0, 4), int)})
        assert all(0 <= lo and hi <= 30 for lo, hi in zip(lbs, ubs))


def test_small_case_is_padded_with_minus_one(blosc2_folder):
    folder, cases = blosc2_folder
    ds = nnUNetDatasetBlosc2(str(folder), ['case_000'])  # spatial shape (12, 20, 18)
    np.random.seed(1)
    dl = nnUNetDataLoader(ds, 2, (16, 24, 24), (16, 24, 24), LM)
    batch = next(dl)
    assert batch['data'].shape == (2, 2, 16, 24, 24)
    tgt = batch['target']
    # 4/4/6 voxels of padding per axis, split over both sides
    assert (tgt == -1).sum() >= 2 * (16 * 24 * 24 - 12 * 20 * 18)
    pad_mask = tgt[:, 0] == -1
    assert (batch['data'][:, 0][pad_mask & (batch['data'][:, 0] != 0)]).numel() <= 2 * 2  # only the -1 voxels of the case


def test_2d_patches(blosc2_folder):
    folder, _ = blosc2_folder
    ds = nnUNetDatasetBlosc2(str(folder))
    dl = nnUNetDataLoader(ds, 3, (16, 16), (16, 16), LM, oversample_foreground_percent=1.0)
    assert dl.patch_size_was_2d and tuple(dl.patch_size) == (1, 16, 16)
    np.random.seed(0)
    batch = next(dl)
    assert batch['data'].shape == (3, 2, 16, 16) and batch['target'].shape == (3, 1, 16, 16)
    assert all((batch['target'][j] > 0).any() for j in range(3))


def test_probabilistic_oversampling(blosc2_folder):
    ds = nnUNetDatasetBlosc2(str(blosc2_folder[0]))
    dl = nnUNetDataLoader(ds, 2, (8, 8, 8), (8, 8, 8), LM, 0.5, probabilistic_oversampling=True)
    np.random.seed(0)
    flags = [dl.get_do_oversample(0) for _ in range(2000)]
    assert 0.45 < np.mean(flags) < 0.55
    dl0 = nnUNetDataLoader(ds, 2, (8, 8, 8), (8, 8, 8), LM, 0.0, probabilistic_oversampling=True)
    assert not any(dl0.get_do_oversample(0) for _ in range(100))


def test_ignore_label_samples_annotated_voxels(tmp_path):
    from tests_training_helpers import make_ignore_folder
    folder = make_ignore_folder(tmp_path)
    lm = LabelManager({'background': 0, 'a': 1, 'b': 2, 'ignore': 3}, None)
    ds = nnUNetDatasetBlosc2(str(folder))
    dl = nnUNetDataLoader(ds, 2, (6, 6, 6), (6, 6, 6), lm, 0.0)
    assert dl.annotated_classes_key == (-1, 0, 1, 2) and dl.has_ignore
    np.random.seed(0)
    for _ in range(5):
        batch = next(dl)
        # not forced, but still centred on an annotated voxel
        assert all(((batch['target'][j] >= 0) & (batch['target'][j] != 3)).any() for j in range(2))


def test_cascade_previous_stage_becomes_seg_channel(blosc2_folder, tmp_path):
    folder, cases = blosc2_folder
    prev = tmp_path / 'prev'
    prev.mkdir()
    for k, (_, seg, _) in cases.items():
        nnUNetDatasetBlosc2.save_seg(np.clip(seg[0], 0, None), str(prev / k))
    ds = nnUNetDatasetBlosc2(str(folder), folder_with_segs_from_previous_stage=str(prev))
    np.random.seed(0)
    dl = nnUNetDataLoader(ds, 2, (8, 8, 8), (8, 8, 8), LM, 1.0)
    batch = next(dl)
    assert batch['target'].shape == (2, 2, 8, 8, 8)
    # previous stage == ground truth (clipped) wherever the patch lies inside the case
    gt, prev_seg = batch['target'][:, 0], batch['target'][:, 1]
    inside = gt >= 0
    assert torch.equal(gt[inside], prev_seg[inside])
    # with the validation pipeline it turns into one-hot image channels
    dl.transforms = build_validation_transforms(None, is_cascaded=True, foreground_labels=[1, 2])
    batch = next(dl)
    assert batch['data'].shape == (2, 4, 8, 8, 8) and batch['target'].shape == (2, 1, 8, 8, 8)
    assert set(torch.unique(batch['data'][:, 2:]).tolist()) <= {0.0, 1.0}


def test_training_pipeline_with_deep_supervision(blosc2_folder):
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    ds = nnUNetDatasetBlosc2(str(blosc2_folder[0]))
    final = (8, 16, 16)
    rot = (-np.pi / 6, np.pi / 6)
    initial = get_patch_size(final, rot, rot, rot, (0.85, 1.25))
    scales = [[1, 1, 1], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]
    tr = build_training_transforms(final, rot, scales, (0, 1, 2), False, use_mask_for_norm=[True, False],
                                   foreground_labels=[1, 2])
    torch.manual_seed(0)
    np.random.seed(0)
    dl = nnUNetDataLoader(ds, 2, initial, final, LM, 0.33, transforms=tr)
    batch = next(dl)
    assert batch['data'].shape == (2, 2, 8, 16, 16)
    assert [tuple(t.shape) for t in batch['target']] == [(2, 1, 8, 16, 16), (2, 1, 4, 8, 8), (2, 1, 2, 4, 4)]
    assert all(t.dtype == torch.int16 and t.min() >= 0 for t in batch['target'])  # -1 removed


def test_regions_pipeline_gives_bool_targets(blosc2_folder):
    ds = nnUNetDatasetBlosc2(str(blosc2_folder[0]))
    va = build_validation_transforms(None, regions=[(1, 2), (2,)], ignore_label=None)
    dl = nnUNetDataLoader(ds, 2, (8, 8, 8), (8, 8, 8), LM, 1.0, transforms=va)
    np.random.seed(0)
    batch = next(dl)
    assert batch['target'].shape == (2, 2, 8, 8, 8) and batch['target'].dtype == torch.bool
    assert torch.all(batch['target'][:, 1] <= batch['target'][:, 0])  # region 2 is inside region (1, 2)
