"""TotalSegmentator's training-side patterns, written by us from what its trainers do (found in a trial with the real
package, see benchmarks/totalsegmentator_trial.py; no client code here, and TotalSegmentator is not needed).

Its skeleton-recall trainer keeps the pre-2.6 constructor and replaces the data loader's ``generate_train_batch``
with one in the style of nnU-Net 2.5: it preallocates the batch as ``np.zeros(self.data_shape)`` and
``np.zeros(self.seg_shape)``, fills it with ``acvl_utils``' ``crop_and_pad_nd`` and drops the pseudo axis of 2D
patches itself. The 2.6+ base loader sizes its batch from the first transformed sample, so it never needed those
shapes; without them that trainer died in its first augmentation worker.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd

from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
from nnunetv2.utilities.blosc2_storage import save_case
from nnunetv2.utilities.label_handling.label_handling import LabelManager

LM = LabelManager({'background': 0, 'vessel': 1, 'organ': 2}, None)
SHAPES = [(10, 20, 18), (12, 18, 20)]


def _case(rs: np.random.RandomState, shape):
    data = rs.randn(2, *shape).astype(np.float32)
    seg = np.zeros((1, *shape), np.int16)
    seg[0, 2:5, 3:9, 4:7] = 1
    seg[0, -4:-1, -5:-1, -4:-1] = 2
    properties = {'class_locations': {c: np.argwhere(seg == c) for c in (1, 2)}, 'spacing': [1.0, 1.0, 1.0],
                  'shape_before_cropping': shape}
    return data, seg, properties


@pytest.fixture
def dataset_folder(tmp_path):
    rs = np.random.RandomState(0)
    folder = tmp_path / 'nnUNetPlans_3d_fullres'
    folder.mkdir()
    for i, shape in enumerate(SHAPES):
        data, seg, properties = _case(rs, shape)
        save_case(data, seg, properties, str(folder / f'case_{i:03d}'), patch_size=(8, 16, 16))
    return folder


class SkeletonStyleLoader(nnUNetDataLoader):
    """Batch preallocated from the loader's shapes, as loaders of 2.5 and earlier did; one extra output key."""

    def generate_train_batch(self):
        keys = self.get_indices()
        data_all = np.zeros(self.data_shape, dtype=np.float32)
        seg_all = np.zeros(self.seg_shape, dtype=np.int16)
        for j, key in enumerate(keys):
            data, seg, seg_prev, properties = self._data.load_case(key)
            lbs, ubs = self.get_bbox(data.shape[1:], self.get_do_oversample(j), properties['class_locations'])
            bbox = [[a, b] for a, b in zip(lbs, ubs)]
            data_all[j] = crop_and_pad_nd(data, bbox, 0)
            seg_cropped = crop_and_pad_nd(seg, bbox, -1)
            if seg_prev is not None:
                seg_cropped = np.vstack((seg_cropped, crop_and_pad_nd(seg_prev, bbox, -1)[None]))
            seg_all[j] = seg_cropped
        if self.patch_size_was_2d:
            data_all, seg_all = data_all[:, :, 0], seg_all[:, :, 0]
        skel = torch.from_numpy((seg_all > 0).astype(np.int16))
        return {'data': torch.from_numpy(data_all), 'target': torch.from_numpy(seg_all), 'skel': skel, 'keys': keys}


def test_shapes_of_a_3d_batch(dataset_folder):
    dl = SkeletonStyleLoader(nnUNetDatasetBlosc2(str(dataset_folder)), 3, (9, 17, 17), (8, 16, 16), LM, 0.33)
    assert dl.data_shape == (3, 2, 9, 17, 17)  # the (larger) patch that is cropped, before any transform
    assert dl.seg_shape == (3, 1, 9, 17, 17)
    np.random.seed(0)
    batch = next(dl)
    assert batch['data'].shape == (3, 2, 9, 17, 17) and batch['target'].shape == (3, 1, 9, 17, 17)
    assert (batch['target'][-1] > 0).any()  # the last sample is forced onto foreground


def test_shapes_of_a_2d_batch(dataset_folder):
    dl = SkeletonStyleLoader(nnUNetDatasetBlosc2(str(dataset_folder)), 2, (16, 16), (16, 16), LM)
    assert dl.data_shape == (2, 2, 1, 16, 16) and dl.seg_shape == (2, 1, 1, 16, 16)  # pseudo-3D, as cropped
    batch = next(dl)
    assert batch['data'].shape == (2, 2, 16, 16) and batch['skel'].shape == (2, 1, 16, 16)


def test_previous_stage_adds_a_segmentation_channel(dataset_folder, tmp_path):
    previous = tmp_path / 'previous_stage'
    previous.mkdir()
    for i, shape in enumerate(SHAPES):
        nnUNetDatasetBlosc2.save_seg(np.ones(shape, np.uint8), str(previous / f'case_{i:03d}'))
    ds = nnUNetDatasetBlosc2(str(dataset_folder), folder_with_segs_from_previous_stage=str(previous))
    dl = SkeletonStyleLoader(ds, 2, (8, 16, 16), (8, 16, 16), LM)
    assert dl.seg_shape == (2, 2, 8, 16, 16)
    assert next(dl)['target'].shape == (2, 2, 8, 16, 16)


def test_shapes_are_read_only_when_asked_and_can_be_set(dataset_folder, monkeypatch):
    ds = nnUNetDatasetBlosc2(str(dataset_folder))
    reads = []
    original = ds.load_case
    monkeypatch.setattr(ds, 'load_case', lambda key: reads.append(key) or original(key))
    dl = nnUNetDataLoader(ds, 2, (8, 16, 16), (8, 16, 16), LM)
    next(dl)
    assert len(reads) == 2  # the base loader's batches never need the shapes: no extra read
    dl.data_shape = (2, 5, 8, 16, 16)  # a subclass may set its own, as loaders of 2.5 did in __init__
    assert dl.seg_shape == (2, 1, 8, 16, 16) and dl.data_shape == (2, 5, 8, 16, 16)
    assert len(reads) == 3
