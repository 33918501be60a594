"""Patch sampling with foreground oversampling: the training/validation batch generator."""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from batchgenerators.dataloading.data_loader import DataLoader
from threadpoolctl import ThreadpoolController

from nnunetv2.errors import UserError, plain_numbers
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetBaseDataset
from nnunetv2.utilities.label_handling.label_handling import LabelManager

IntSeq = Union[List[int], Tuple[int, ...], np.ndarray]

_threadpools: Optional[ThreadpoolController] = None


def _single_threaded_native_pools():
    """Context limiting BLAS/OpenMP pools to one thread, like ``threadpool_limits(1)``, but scanning the loaded
    libraries only once per process image instead of every batch (2.6 ms -> 0.07 ms; a forked worker inherits the
    scan together with the libraries it describes)."""
    global _threadpools
    if _threadpools is None:
        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1, user_api=None)


def crop_and_pad(arr, lbs: Sequence[int], ubs: Sequence[int], pad_value, dtype=None) -> np.ndarray:
    """``arr[..., lbs:ubs]`` over the trailing ``len(lbs)`` axes; the parts of the box outside the array are filled
    with ``pad_value``. Works on numpy arrays, memory maps and blosc2 NDArrays (only the inside part is read).

    A box that misses the array entirely along some axis (possible only with ``pad_sides``) gives zeros, not
    ``pad_value``: the reference's crop does so, and loaders must draw the same batches.

    Returns a writable array owned by the caller (never a view into a memory map).
    """
    lead = arr.shape[:arr.ndim - len(lbs)]
    shape = arr.shape[-len(lbs):]
    if any(hi <= 0 or lo >= s for lo, hi, s in zip(lbs, ubs, shape)):
        return np.zeros((*lead, *(int(hi - lo) for lo, hi in zip(lbs, ubs))), dtype=dtype or arr.dtype)
    src = tuple(slice(max(lo, 0), min(hi, s)) for lo, hi, s in zip(lbs, ubs, shape))
    inside = arr[(slice(None),) * len(lead) + src]  # no Ellipsis: blosc2 < 4 fails when it stands for no axis
    # blosc2 slicing already returns a fresh array; views (memory maps, in-memory arrays) must be copied because
    # the transforms work in place
    if not isinstance(inside, np.ndarray) or not inside.flags.owndata or not inside.flags.writeable:
        inside = np.array(inside, dtype=dtype)  # one copy, converting on the way
    elif dtype is not None and inside.dtype != dtype:
        inside = inside.astype(dtype)
    out_shape = tuple(int(hi - lo) for lo, hi in zip(lbs, ubs))
    if inside.shape[len(lead):] == out_shape:
        return inside  # the common case: no padding, no further copy
    # write every output voxel once: the inside part by copy, only the border slabs with the pad value (filling
    # the whole box first and then overwriting most of it costs a second pass over the patch)
    out = np.empty((*lead, *out_shape), dtype=inside.dtype)
    dst = tuple(slice(s.start - lo, s.stop - lo) for s, lo in zip(src, lbs))
    out[(..., *dst)] = inside
    for axis, (d, n) in enumerate(zip(dst, out_shape)):
        after = (slice(None),) * (len(out_shape) - axis - 1)  # index from the end: lead axes stay under '...'
        if d.start > 0:
            out[(..., slice(0, d.start), *after)] = pad_value
        if d.stop < n:
            out[(..., slice(d.stop, n), *after)] = pad_value
    return out


class nnUNetDataLoader(DataLoader):
    """Infinite random batches of patches; the last ``oversample_foreground_percent`` of each batch is centred on
    foreground (or, with ``probabilistic_oversampling``, each sample with that probability).

    ``patch_size`` is what is cropped (the larger initial patch for training), ``final_patch_size`` what the
    transforms produce. ``transforms`` is applied per sample; its outputs are stacked into the batch.
    """

    def __init__(self,
                 data: nnUNetBaseDataset,
                 batch_size: int,
                 patch_size: IntSeq,
                 final_patch_size: IntSeq,
                 label_manager: LabelManager,
                 oversample_foreground_percent: float = 0.0,
                 sampling_probabilities: IntSeq = None,
                 pad_sides: IntSeq = None,
                 probabilistic_oversampling: bool = False,
                 transforms=None):
        super().__init__(data, batch_size, 1, None, True, False, True, sampling_probabilities)

        if len(patch_size) == 2:
            final_patch_size = (1, *final_patch_size)
            patch_size = (1, *patch_size)
            self.patch_size_was_2d = True
        else:
            self.patch_size_was_2d = False
        if len(patch_size) != 3 or len(final_patch_size) != 3:
            raise ValueError(f"nnUNetDataLoader: patch sizes must be 2D or 3D, got patch_size={tuple(patch_size)}, "
                             f"final_patch_size={tuple(final_patch_size)}")

        self.indices = data.identifiers
        self.patch_size = patch_size
        self.final_patch_size = final_patch_size
        self.need_to_pad = (np.array(patch_size) - np.array(final_patch_size)).astype(int)
        if pad_sides is not None:
            if self.patch_size_was_2d:
                pad_sides = (0, *pad_sides)
            for d in range(len(self.need_to_pad)):
                self.need_to_pad[d] += pad_sides[d]
        self.pad_sides = pad_sides
        self.oversample_foreground_percent = oversample_foreground_percent
        self.sampling_probabilities = sampling_probabilities
        self.annotated_classes_key = tuple([-1] + label_manager.all_labels)
        self.has_ignore = label_manager.has_ignore_label
        self.get_do_oversample = self._oversample_last_XX_percent if not probabilistic_oversampling \
            else self._probabilistic_oversampling
        self.transforms = transforms

    # ----- batch shapes of releases before 2.6 ---------------------------------------------------------------------
    # Loaders up to 2.5 preallocated their batch and kept its shapes as attributes; subclasses written then (e.g.
    # TotalSegmentator's skeleton-recall loader, whose trainer still passes ``unpack_dataset``) fill
    # ``np.zeros(self.data_shape)`` themselves. The base class allocates from the first transformed sample instead,
    # so each shape is computed only when something asks for it (reading the first case costs a file open); one a
    # subclass set itself is kept.
    def determine_shapes(self) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """``(data_shape, seg_shape)`` of one cropped, untransformed batch: ``(batch_size, channels, *patch_size)``
        with the pseudo-3D patch of 2D configurations; the segmentation gains a channel for a previous stage."""
        data, seg, seg_prev, _ = self._data.load_case(self.indices[0])
        seg_channels = seg.shape[0] + (0 if seg_prev is None else 1)
        patch = tuple(int(i) for i in self.patch_size)
        return (self.batch_size, data.shape[0], *patch), (self.batch_size, seg_channels, *patch)

    data_shape = property(lambda self: self._legacy_shape(0), lambda self, value: self._set_legacy_shape(0, value))
    seg_shape = property(lambda self: self._legacy_shape(1), lambda self, value: self._set_legacy_shape(1, value))

    def _legacy_shape(self, which: int) -> Tuple[int, ...]:
        """``data_shape`` (0) or ``seg_shape`` (1): the one set, else computed once by ``determine_shapes``."""
        shapes = self.__dict__.setdefault('_legacy_shapes', [None, None])
        if shapes[which] is None:
            shapes[which] = self.determine_shapes()[which]
        return shapes[which]

    def _set_legacy_shape(self, which: int, value) -> None:
        self.__dict__.setdefault('_legacy_shapes', [None, None])[which] = value

    def _oversample_last_XX_percent(self, sample_idx: int) -> bool:
        """Force foreground for the last ``round(batch_size * p)`` samples of every batch."""
        return not sample_idx < round(self.batch_size * (1 - self.oversample_foreground_percent))

    def _probabilistic_oversampling(self, sample_idx: int) -> bool:
        return np.random.uniform() < self.oversample_foreground_percent

    def get_bbox(self, data_shape: np.ndarray, force_fg: bool, class_locations: Optional[dict],
                 overwrite_class: Union[int, Tuple[int, ...]] = None, verbose: bool = False):
        """Half-open patch box ``(lbs, ubs)`` in voxel coordinates of a case of spatial shape ``data_shape``.

        Random anywhere (allowing the configured padding), or centred on a random voxel of a random present class
        when foreground is forced (or of the annotated voxels when the dataset has an ignore label).
        """
        need_to_pad = self.need_to_pad.copy()
        dim = len(data_shape)

        for d in range(dim):
            # cases smaller than the patch are padded (on both sides) to at least the patch size
            if need_to_pad[d] + data_shape[d] < self.patch_size[d]:
                need_to_pad[d] = self.patch_size[d] - data_shape[d]

        lbs = [-need_to_pad[i] // 2 for i in range(dim)]
        ubs = [data_shape[i] + need_to_pad[i] // 2 + need_to_pad[i] % 2 - self.patch_size[i] for i in range(dim)]

        if not force_fg and not self.has_ignore:
            bbox_lbs = [np.random.randint(lbs[i], ubs[i] + 1) for i in range(dim)]
        else:
            selected_class = None
            if not force_fg and self.has_ignore:
                selected_class = self.annotated_classes_key
                if class_locations is None or selected_class not in class_locations:
                    # preprocessing records the annotated voxels under this key only when the dataset had its
                    # ignore label then; sampling anywhere instead would quietly train on another patch mix
                    raise UserError(
                        f"The case's foreground locations (class_locations) lack the annotated voxels' entry "
                        f"{plain_numbers(selected_class)} that training with an ignore label samples from: the "
                        f"data were preprocessed without the ignore label (or by another tool).",
                        hint="Preprocess again (nnUNetv2_preprocess) with the current dataset.json.")
                if len(class_locations[selected_class]) == 0:
                    warnings.warn('No annotated pixels in image!')
                    selected_class = None
            elif force_fg:
                if class_locations is None:
                    raise ValueError('foreground oversampling needs class_locations in the case properties')
                eligible = [i for i in class_locations.keys() if len(class_locations[i]) > 0]
                # the annotated-voxels key is only a fallback when no real class is present
                tmp = [i == self.annotated_classes_key if isinstance(i, tuple) else False for i in eligible]
                if any(tmp) and len(eligible) > 1:
                    eligible.pop(np.where(tmp)[0][0])
                if len(eligible) == 0:
                    if verbose:
                        print('case does not contain any foreground classes')
                else:
                    selected_class = eligible[np.random.choice(len(eligible))] \
                        if (overwrite_class is None or (overwrite_class not in eligible)) else overwrite_class

            voxels_of_that_class = class_locations[selected_class] if selected_class is not None else None
            if voxels_of_that_class is not None and len(voxels_of_that_class) > 0:
                selected_voxel = voxels_of_that_class[np.random.choice(len(voxels_of_that_class))]
                # centre the voxel in the patch; clamp only at the lower bound (the loader pads the upper side)
                bbox_lbs = [max(lbs[i], selected_voxel[i + 1] - self.patch_size[i] // 2) for i in range(dim)]
            else:
                bbox_lbs = [np.random.randint(lbs[i], ubs[i] + 1) for i in range(dim)]

        bbox_ubs = [bbox_lbs[i] + self.patch_size[i] for i in range(dim)]
        return bbox_lbs, bbox_ubs

    def _crop_sample(self, data, seg, seg_prev, lbs, ubs) -> Tuple[torch.Tensor, torch.Tensor]:
        """Crop (and pad: image 0, segmentation -1) one sample; cascade input becomes segmentation channel 1."""
        data_c = crop_and_pad(data, lbs, ubs, 0, np.float32)
        seg_c = crop_and_pad(seg, lbs, ubs, -1, np.int16)
        if seg_prev is not None:
            prev_c = crop_and_pad(seg_prev, lbs, ubs, -1, np.int16)
            seg_c = np.concatenate((seg_c, prev_c[None] if prev_c.ndim == seg_c.ndim - 1 else prev_c), axis=0)
        data_t, seg_t = torch.from_numpy(data_c), torch.from_numpy(seg_c)
        if self.patch_size_was_2d:
            data_t, seg_t = data_t[:, 0], seg_t[:, 0]
        return data_t, seg_t

    def generate_train_batch(self):
        selected_keys = self.get_indices()
        data_all = None
        seg_all = None

        # Workers parallelise over processes; nested BLAS/OpenMP threads would only oversubscribe the CPU.
        with torch.no_grad(), _single_threaded_native_pools():
            for j, key in enumerate(selected_keys):
                force_fg = self.get_do_oversample(j)
                data, seg, seg_prev, properties = self._data.load_case(key)
                shape = data.shape[1:]
                bbox_lbs, bbox_ubs = self.get_bbox(shape, force_fg, properties['class_locations'])
                image, segmentation = self._crop_sample(data, seg, seg_prev, bbox_lbs, bbox_ubs)

                if self.transforms is not None:
                    tmp = self.transforms(**{'image': image, 'segmentation': segmentation})
                    image, segmentation = tmp['image'], tmp['segmentation']

                if data_all is None:
                    # allocate the batch from the first sample's output (its shapes/dtypes define the batch)
                    data_all = torch.empty((len(selected_keys), *image.shape), dtype=torch.float32)
                    if isinstance(segmentation, (list, tuple)):
                        seg_all = [torch.empty((len(selected_keys), *s.shape), dtype=s.dtype) for s in segmentation]
                    else:
                        seg_all = torch.empty((len(selected_keys), *segmentation.shape), dtype=segmentation.dtype)
                data_all[j] = image
                if isinstance(seg_all, list):
                    for s_all, s in zip(seg_all, segmentation):
                        s_all[j] = s
                else:
                    seg_all[j] = segmentation

        return {'data': data_all, 'target': seg_all, 'keys': selected_keys}
