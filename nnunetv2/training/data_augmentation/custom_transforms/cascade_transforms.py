"""Cascade input handling for batchgenerators (v1) batches: one-hot encoding and perturbation of the previous stage."""
from __future__ import annotations

from typing import Callable, List, Tuple, Union

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform
from scipy.ndimage import binary_closing, binary_dilation, binary_erosion, binary_opening, label as cc_label
from skimage.morphology import ball, disk


def _chosen_samples_and_channels(n_samples: int, channels: List[int], p_per_sample: float, p_per_label: float):
    """(sample, channel) pairs to perturb. A generator, so the caller's own random draws for one pair happen before
    the draws that choose the next pair: the same random sequence as the reference's nested loops."""
    for b in range(n_samples):
        if np.random.uniform() >= p_per_sample:
            continue
        for c in np.random.permutation(channels):
            if np.random.uniform() >= p_per_label:
                continue
            yield b, c


class MoveSegAsOneHotToData(AbstractTransform):
    """Append channel ``index_in_origin`` of ``key_origin`` to ``key_target`` as one channel per label (one-hot)."""

    def __init__(self, index_in_origin: int, all_labels: Union[Tuple[int, ...], List[int]],
                 key_origin="seg", key_target="data", remove_from_origin=True):
        self.remove_from_origin = remove_from_origin
        self.all_labels = all_labels
        self.key_target = key_target
        self.key_origin = key_origin
        self.index_in_origin = index_in_origin

    def __call__(self, **data_dict):
        origin = data_dict.get(self.key_origin)
        target = data_dict.get(self.key_target)
        seg = origin[:, self.index_in_origin:self.index_in_origin + 1]
        onehot = np.concatenate([(seg == lbl) for lbl in self.all_labels], axis=1).astype(target.dtype)
        data_dict[self.key_target] = np.concatenate((target, onehot), axis=1)
        if self.remove_from_origin:
            keep = [i for i in range(origin.shape[1]) if i != self.index_in_origin]
            data_dict[self.key_origin] = origin[:, keep]
        return data_dict


class RemoveRandomConnectedComponentFromOneHotEncodingTransform(AbstractTransform):
    """Delete a random small connected component from one-hot channels (optionally giving it to another class)."""

    def __init__(self, channel_idx: Union[int, List[int]], key: str = "data", p_per_sample: float = 0.2,
                 fill_with_other_class_p: float = 0.25, dont_do_if_covers_more_than_x_percent: float = 0.25,
                 p_per_label: float = 1):
        self.p_per_label = p_per_label
        self.dont_do_if_covers_more_than_x_percent = dont_do_if_covers_more_than_x_percent
        self.fill_with_other_class_p = fill_with_other_class_p
        self.p_per_sample = p_per_sample
        self.key = key
        self.channel_idx = [channel_idx] if not isinstance(channel_idx, (list, tuple)) else list(channel_idx)

    def __call__(self, **data_dict):
        data = data_dict.get(self.key)
        for b, c in _chosen_samples_and_channels(data.shape[0], self.channel_idx, self.p_per_sample,
                                                 self.p_per_label):
            workon = data[b, c].astype(bool)
            if not np.any(workon):
                continue
            num_voxels = np.prod(workon.shape, dtype=np.int64)
            lab, num_comp = cc_label(workon, structure=np.ones([3] * workon.ndim))
            if num_comp == 0:
                continue
            sizes = np.bincount(lab.ravel())[1:]
            valid = [i + 1 for i, s in enumerate(sizes)
                     if s < num_voxels * self.dont_do_if_covers_more_than_x_percent]
            if not valid:
                continue
            chosen = valid[np.random.choice(len(valid))]
            mask = lab == chosen
            data[b, c][mask] = 0
            if np.random.uniform() < self.fill_with_other_class_p:
                others = [i for i in self.channel_idx if i != c]
                if others:
                    data[b, np.random.choice(others)][mask] = 1
        data_dict[self.key] = data
        return data_dict


class ApplyRandomBinaryOperatorTransform(AbstractTransform):
    """Dilate/erode/close/open one-hot channels with a random ball/disk; voxels a channel gains leave the others."""

    def __init__(self, channel_idx: Union[int, List[int], Tuple[int, ...]], p_per_sample: float = 0.3,
                 any_of_these: Tuple[Callable] = (binary_dilation, binary_erosion, binary_closing, binary_opening),
                 key: str = "data", strel_size: Tuple[int, int] = (1, 10), p_per_label: float = 1):
        self.p_per_label = p_per_label
        self.strel_size = strel_size
        self.key = key
        self.any_of_these = any_of_these
        self.p_per_sample = p_per_sample
        self.channel_idx = [channel_idx] if not isinstance(channel_idx, (list, tuple)) else list(channel_idx)

    def __call__(self, **data_dict):
        data = data_dict.get(self.key)
        for b, c in _chosen_samples_and_channels(data.shape[0], self.channel_idx, self.p_per_sample,
                                                 self.p_per_label):
            operation = self.any_of_these[np.random.choice(len(self.any_of_these))]
            size = np.random.uniform(*self.strel_size)
            workon = data[b, c].astype(bool)
            strel = ball(size) if workon.ndim == 3 else disk(size)
            res = operation(workon, strel).astype(data.dtype)
            data[b, c] = res
            added = (res > 0) & ~workon
            for oc in self.channel_idx:
                if oc != c:
                    data[b, oc][added] = 0
        data_dict[self.key] = data
        return data_dict
