"""Labels, regions and the ignore label of a dataset, and the conversions between network outputs and label maps.

A dataset is region-based iff some ``labels`` value in dataset.json is a list with more
than one entry (BraTS style: ``"whole tumor": [1, 2, 3]``); then the network has one sigmoid output per foreground
region and ``regions_class_order`` says which value each region writes into the label map (later regions win).
Otherwise there is one softmax output per label, background included.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple, Type, Union

import numpy as np

from nnunetv2.errors import UserError

if TYPE_CHECKING:
    import torch

# torch is imported only when a tensor is handled: preprocessing workers use label managers on numpy arrays only and
# should not pay torch's import time.
Array = Union[np.ndarray, "torch.Tensor"]


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")  # a tensor cannot exist unless torch was imported
    return torch is not None and isinstance(x, torch.Tensor)


def _is_sequence(v) -> bool:
    return isinstance(v, (tuple, list))


def _only_background(v) -> bool:
    """True for 0 and for lists/tuples consisting only of zeros."""
    if _is_sequence(v):
        u = np.unique(v)
        return len(u) == 1 and u[0] == 0
    return v == 0


def argmax_first_axis(values: np.ndarray) -> np.ndarray:
    """``values.argmax(0)`` (same values, same dtype), channel by channel: NumPy's argmax over the first axis of a
    C-ordered array walks it with a stride of one channel and is several times slower than these few whole-volume
    comparisons. A later channel wins only where it is strictly larger, so ties go to the first channel as in
    argmax. NaN (which argmax treats as the largest value) falls back to argmax itself."""
    if values.ndim < 2 or values.shape[0] < 2 or values.dtype.kind not in 'fiub' or values.size == 0:
        return values.argmax(0)
    n = values.shape[0]
    best = values[0].copy()
    seg = np.zeros(values.shape[1:], dtype=np.uint8 if n <= 256 else np.intp)
    for c in range(1, n):
        seg[values[c] > best] = c
        np.maximum(best, values[c], out=best)  # propagates NaN: checked below
    if values.dtype.kind == 'f' and np.isnan(best).any():
        return values.argmax(0)
    return seg.astype(np.intp, copy=False)


class LabelManager(object):
    def __init__(self, label_dict: dict, regions_class_order: Optional[Sequence[int]], force_use_labels: bool = False,
                 inference_nonlin=None):
        self._sanity_check(label_dict)
        self.label_dict = label_dict
        self.regions_class_order = regions_class_order
        self._force_use_labels = force_use_labels

        self._has_regions: bool = False if force_use_labels else any(
            _is_sequence(v) and len(v) > 1 for v in label_dict.values())
        self._ignore_label: Optional[int] = self._determine_ignore_label()
        self._all_labels: List[int] = self._get_all_labels()
        self._regions: Optional[List[Union[int, Tuple[int, ...]]]] = self._get_regions()

        if self.has_ignore_label and self.ignore_label != max(self.all_labels) + 1:
            raise UserError(f"The ignore label must be the highest label value: expected "
                            f"{max(self.all_labels) + 1}, got {self.ignore_label} (dataset.json 'labels').",
                            "Give 'ignore' the value max(other labels) + 1.")

        self._inference_nonlin = inference_nonlin

    @property
    def inference_nonlin(self):
        """sigmoid per region with regions, else softmax over the channel axis (unless given to the constructor)."""
        if self._inference_nonlin is None:
            import torch
            from nnunetv2.utilities.helpers import softmax_helper_dim0
            self._inference_nonlin = torch.sigmoid if self.has_regions else softmax_helper_dim0
        return self._inference_nonlin

    @inference_nonlin.setter
    def inference_nonlin(self, fn) -> None:
        self._inference_nonlin = fn

    # --- construction helpers (overridable) ---
    def _sanity_check(self, label_dict: dict) -> None:
        if not isinstance(label_dict, dict):
            raise UserError(f"dataset.json 'labels' must be an object mapping label names to values, "
                            f"not {type(label_dict).__name__}.")
        if "background" not in label_dict:
            raise UserError("Background label not declared in dataset.json 'labels'.",
                            "Add \"background\": 0 (it must be 0).")
        bg = label_dict["background"]
        if _is_sequence(bg):
            raise UserError(f"Background label must be the integer 0, not a list ({bg!r}) in dataset.json 'labels'.",
                            "Use \"background\": 0.")
        try:
            bg_int = int(bg)
        except (TypeError, ValueError):
            bg_int = None
        if bg_int != 0:
            raise UserError(f"Background label must be 0, got {bg!r} in dataset.json 'labels'.",
                            "Use \"background\": 0 and renumber the other labels.")

    def _get_all_labels(self) -> List[int]:
        values: List[int] = []
        for name, v in self.label_dict.items():
            if name == "ignore":
                continue
            if _is_sequence(v):
                values.extend(int(i) for i in v)
            else:
                values.append(int(v))
        return list(np.unique(np.asarray(values, dtype=np.int64)))

    def _get_regions(self) -> Optional[List[Union[int, Tuple[int, ...]]]]:
        if not self._has_regions or self._force_use_labels:
            return None
        if self.regions_class_order is None:
            raise UserError("dataset.json declares regions (label values that are lists) but no "
                            "'regions_class_order'.",
                            "Add 'regions_class_order': one output label value per foreground region.")
        regions = []
        for name, v in self.label_dict.items():
            if name == "ignore" or _only_background(v):
                continue
            regions.append(tuple(v) if isinstance(v, list) else v)
        if len(self.regions_class_order) != len(regions):
            raise UserError(f"dataset.json 'regions_class_order' has {len(self.regions_class_order)} entries but "
                            f"there are {len(regions)} foreground regions.",
                            "Give exactly one entry per foreground region, in the order of 'labels'.")
        return regions

    def _determine_ignore_label(self) -> Optional[int]:
        ignore = self.label_dict.get("ignore")
        if ignore is not None and not isinstance(ignore, int):
            raise UserError(f"The ignore label must be a single integer, not {ignore!r} (dataset.json 'labels').",
                            "Use e.g. \"ignore\": <highest label + 1>.")
        return ignore

    # --- properties ---
    @property
    def has_regions(self) -> bool:
        return self._has_regions

    @property
    def has_ignore_label(self) -> bool:
        return self.ignore_label is not None

    @property
    def all_regions(self):
        return self._regions

    @property
    def all_labels(self) -> List[int]:
        return self._all_labels

    @property
    def ignore_label(self) -> Optional[int]:
        return self._ignore_label

    @property
    def foreground_regions(self):
        # like the reference, this raises TypeError when there are no regions (None is not iterable)
        return self.filter_background(self.all_regions)

    @property
    def foreground_labels(self) -> List[int]:
        return [i for i in self.all_labels if i != 0]

    @property
    def num_segmentation_heads(self) -> int:
        return len(self.foreground_regions) if self.has_regions else len(self.all_labels)

    @staticmethod
    def filter_background(classes_or_regions):
        return [i for i in classes_or_regions if not _only_background(i)]

    # --- conversions ---
    def apply_inference_nonlin(self, logits: Array) -> "torch.Tensor":
        import torch
        if isinstance(logits, np.ndarray):
            logits = torch.from_numpy(logits)
        with torch.no_grad():
            return self.inference_nonlin(logits.float())

    def convert_probabilities_to_segmentation(self, predicted_probabilities: Array) -> Array:
        """(c, ...) probabilities → label map; regions: threshold 0.5 in ``regions_class_order``, else argmax."""
        if not (isinstance(predicted_probabilities, np.ndarray) or _is_tensor(predicted_probabilities)):
            raise RuntimeError(f"Unexpected input type {type(predicted_probabilities)}: expected a numpy array or "
                               f"a torch tensor.")
        if predicted_probabilities.shape[0] != self.num_segmentation_heads:
            raise RuntimeError(f"Expected {self.num_segmentation_heads} channels (segmentation heads), got "
                               f"{predicted_probabilities.shape[0]} (shape {tuple(predicted_probabilities.shape)}).")
        if not self.has_regions:
            if isinstance(predicted_probabilities, np.ndarray):
                return argmax_first_axis(predicted_probabilities)
            return predicted_probabilities.argmax(0)
        if isinstance(predicted_probabilities, np.ndarray):
            segmentation = np.zeros(predicted_probabilities.shape[1:], dtype=np.uint16)
        else:
            import torch
            segmentation = torch.zeros(predicted_probabilities.shape[1:], dtype=torch.int16,
                                       device=predicted_probabilities.device)
        for i, c in enumerate(self.regions_class_order):
            segmentation[predicted_probabilities[i] > 0.5] = c
        return segmentation

    def convert_logits_to_segmentation(self, predicted_logits: Array) -> Array:
        if not self.has_regions:
            # the softmax is monotonic: argmax on the logits gives the same label map
            return self.convert_probabilities_to_segmentation(predicted_logits)
        probabilities = self.apply_inference_nonlin(predicted_logits)
        if isinstance(predicted_logits, np.ndarray):
            probabilities = probabilities.cpu().numpy()
        return self.convert_probabilities_to_segmentation(probabilities)

    def revert_cropping_on_probabilities(self, predicted_probabilities: Array, bbox: Sequence[Sequence[int]],
                                         original_shape: Sequence[int]) -> Array:
        """Put cropped (c, ...) probabilities back into the uncropped shape; outside the crop = background."""
        shape = (predicted_probabilities.shape[0], *original_shape)
        if isinstance(predicted_probabilities, np.ndarray):
            reverted = np.zeros(shape, dtype=predicted_probabilities.dtype)
        else:
            import torch
            reverted = torch.zeros(shape, dtype=predicted_probabilities.dtype, device=predicted_probabilities.device)
        if not self.has_regions:
            reverted[0] = 1
        # the box covers the last len(bbox) axes; a box reaching beyond the image puts back only the part inside
        # it, and one lying wholly outside puts back nothing (both as the reference)
        leading = (slice(None),) * (len(shape) - len(bbox))
        into, taken = [], []
        for (lo, hi), size in zip(bbox, shape[len(shape) - len(bbox):]):
            lo, hi = int(lo), int(hi)
            if hi <= 0 or lo >= size:
                return reverted
            start, stop = max(lo, 0), min(hi, size)
            into.append(slice(start, stop))
            taken.append(slice(start - lo, stop - lo))
        reverted[leading + tuple(into)] = predicted_probabilities[leading + tuple(taken)]
        return reverted


def get_labelmanager_class_from_plans(plans: dict) -> Type[LabelManager]:
    """The label manager class named by the plans' ``label_manager`` key (default: ``LabelManager``)."""
    if "label_manager" not in plans:
        print("No label manager specified in plans. Using default: LabelManager")
        return LabelManager
    name = plans["label_manager"]
    if name == "LabelManager":
        return LabelManager
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    folder = os.path.join(nnunetv2.__path__[0], "utilities", "label_handling")
    cls = recursive_find_python_class(folder, name, current_module="nnunetv2.utilities.label_handling")
    if cls is None:
        raise UserError(f"Label manager class {name!r} (plans key 'label_manager') was not found in {folder}.",
                        "Put a module defining it into that package or fix the plans file.")
    return cls


def convert_labelmap_to_one_hot(segmentation: Array, all_labels: Union[List, "torch.Tensor", np.ndarray],
                                output_dtype=None) -> Array:
    """(len(all_labels), *seg.shape) one-hot encoding; channel i is ``segmentation == all_labels[i]``.

    numpy: compared label by label (dtype uint8, or uint16 if a label is ≥ 255, unless given). torch: scatter by
    label *value*, as in the reference, so only correct for consecutive labels 0..n-1; keeps the device.
    """
    if _is_tensor(segmentation):
        import torch
        if output_dtype is None:
            output_dtype = torch.uint8 if max(all_labels) < 255 else torch.uint16
        result = torch.zeros((len(all_labels), *segmentation.shape), dtype=output_dtype, device=segmentation.device)
        result.scatter_(0, segmentation[None].long(), 1)
        return result
    if output_dtype is None:
        output_dtype = np.uint8 if max(all_labels) < 255 else np.uint16
    result = np.zeros((len(all_labels), *segmentation.shape), dtype=output_dtype)
    for i, label in enumerate(all_labels):
        result[i] = segmentation == label
    return result


def determine_num_input_channels(plans_manager, configuration_or_config_manager, dataset_json: dict) -> int:
    """Image channels (``modality`` if present, else ``channel_names``) plus one per foreground label in a cascade.

    Duck-typed on purpose: ``plans_manager`` needs ``get_configuration`` and ``get_label_manager``, the configuration
    manager ``previous_stage_name`` (keeps utilities free of an import-time dependency on plans handling).
    """
    if isinstance(configuration_or_config_manager, str):
        config_manager = plans_manager.get_configuration(configuration_or_config_manager)
    else:
        config_manager = configuration_or_config_manager
    # built for every configuration, as in the reference: unusable labels are refused here too
    label_manager = plans_manager.get_label_manager(dataset_json)
    channels = dataset_json["modality"] if "modality" in dataset_json else dataset_json["channel_names"]
    num_input_channels = len(channels)
    if getattr(config_manager, "previous_stage_name", None) is not None:
        num_input_channels += len(label_manager.foreground_labels)
    return num_input_channels
