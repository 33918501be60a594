"""The default experiment planner: turns a dataset fingerprint into ``nnUNetPlans.json``.

Subclass ``ExperimentPlanner`` and override its hooks (``determine_*``, ``get_plans_for_configuration``,
``generate_data_identifier``, ...) for custom planning; the planning constants (VRAM target, feature limits, ...)
are plain attributes set in ``__init__`` so a subclass can change them after ``super().__init__``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from copy import deepcopy
from typing import List, Optional, Tuple, Union

import numpy as np

from nnunetv2.configuration import ANISO_THRESHOLD
from nnunetv2.errors import UserError
from nnunetv2.experiment_planning.experiment_planners import planning_rules as rules
from nnunetv2.experiment_planning.experiment_planners.feature_map_size import (COUNTS_KEY, PLAIN_CONV_UNET,
                                                                                unet_feature_map_size)
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.experiment_planning.experiment_planners.planner_setup import (
    check_overwrite_target_spacing, load_fingerprint_or_fail, sync_raw_splits_file)
from nnunetv2.file_io import atomic_path, json_safe, load_json, maybe_mkdir_p, save_json
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

_KW_REQUIRES_IMPORT = ('conv_op', 'norm_op', 'dropout_op', 'nonlin')

# Building a network just to count its feature maps is the slow part of planning; the count is a pure function of
# the arguments, so it is remembered for the process (planners of the same dataset share most architectures).
_ESTIMATE_MEMO: dict = {}


def _estimate_key(*args) -> str:
    return json.dumps(args, default=str)


# The U-Net classes are named (feature_map_size.PLAIN_CONV_UNET, ...), not imported, until someone asks for the
# class object: importing dynamic_network_architectures imports torch (seconds of CPU), and planning the default
# U-Nets never needs it.


def _import_dotted(name: str):
    import importlib
    module, _, attr = name.rpartition('.')
    return getattr(importlib.import_module(module), attr)


class ExperimentPlanner(object):
    # the arch_kwargs key of the per-stage block counts this planner writes for a network class it does not know
    _unet_counts_key = 'n_conv_per_stage'

    def __init__(self, dataset_name_or_id: Union[str, int],
                 gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = 'DefaultPreprocessor', plans_name: str = 'nnUNetPlans',
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        from nnunetv2.utilities.dataset_json import check_raw_dataset_json, num_training_mismatch
        from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

        self.dataset_name = str(maybe_convert_to_dataset_name(dataset_name_or_id))
        self.suppress_transpose = suppress_transpose
        self.raw_dataset_folder = os.path.join(nnUNet_raw, self.dataset_name)
        preprocessed_folder = os.path.join(nnUNet_preprocessed, self.dataset_name)
        dataset_json_file = os.path.join(self.raw_dataset_folder, 'dataset.json')
        if not os.path.isfile(dataset_json_file):
            raise UserError(f"{dataset_json_file} does not exist.",
                            hint="Experiment planning needs the raw dataset in nnUNet_raw.")
        self.dataset_json = check_raw_dataset_json(load_json(dataset_json_file), dataset_json_file)
        self.dataset = get_filenames_of_train_images_and_targets(self.raw_dataset_folder, self.dataset_json)
        mismatch = num_training_mismatch(self.dataset_json, len(self.dataset))
        if mismatch is not None:  # planned with numTraining all the same, as the reference does
            print(f"WARNING: {dataset_json_file}: {mismatch}. Planning uses numTraining (the dataset's size caps the "
                  f"batch size); correct it if the cases found are the dataset.", file=sys.stderr, flush=True)
        self.dataset_fingerprint = load_fingerprint_or_fail(preprocessed_folder, self.dataset_name)

        self.anisotropy_threshold = ANISO_THRESHOLD

        self.UNet_base_num_features = 32
        self.UNet_class = PLAIN_CONV_UNET  # the property below turns the name into the class when read
        # reference values: feature-map element counts that fit a given GPU at the reference batch size
        self.UNet_reference_val_3d = 560000000
        self.UNet_reference_val_2d = 85000000
        self.UNet_reference_com_nfeatures = 32
        self.UNet_reference_val_corresp_GB = 8
        self.UNet_reference_val_corresp_bs_2d = 12
        self.UNet_reference_val_corresp_bs_3d = 2
        self.UNet_featuremap_min_edge_length = 4
        self.UNet_blocks_per_stage_encoder = (2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2)
        self.UNet_blocks_per_stage_decoder = (2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2)
        self.UNet_min_batch_size = 2
        self.UNet_max_features_2d = 512
        self.UNet_max_features_3d = 320
        self.max_dataset_covered = 0.05  # a batch may cover at most this fraction of the dataset's voxels
        self.UNet_vram_target_GB = gpu_memory_target_in_gb

        self.lowres_creation_threshold = 0.25  # lowres is searched while patch/median voxels < this

        self.preprocessor_name = preprocessor_name
        self.plans_identifier = plans_name
        self.overwrite_target_spacing = check_overwrite_target_spacing(overwrite_target_spacing)

        self.plans = None

        sync_raw_splits_file(self.raw_dataset_folder, preprocessed_folder)

    @property
    def UNet_class(self):
        """The network class (a subclass may assign a class or its dotted name; reading gives the class)."""
        spec = self._UNet_class
        if isinstance(spec, str):
            spec = self._UNet_class = _import_dotted(spec)
        return spec

    @UNet_class.setter
    def UNet_class(self, value) -> None:
        self._UNet_class = value

    def _unet_class_name(self) -> str:
        spec = self.__dict__.get('_UNet_class')
        if isinstance(spec, str):
            return spec
        cls = self.UNet_class
        return cls.__module__ + '.' + cls.__name__

    # ----- hooks ---------------------------------------------------------------------------------------------------
    def determine_reader_writer(self):
        from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
        example_image = self.dataset[next(iter(self.dataset.keys()))]['images'][0]
        return determine_reader_writer_from_dataset_json(self.dataset_json, example_image)

    @staticmethod
    def static_estimate_VRAM_usage(patch_size: Tuple[int], input_channels: int, output_channels: int,
                                   arch_class_name: str, arch_kwargs: dict,
                                   arch_kwargs_req_import: Tuple[str, ...]):
        """Feature-map element count of the network at ``patch_size`` (dynamic_network_architectures' own count).

        nnU-Net's own U-Nets are counted arithmetically (``feature_map_size``, no torch needed); other networks are
        built on torch's 'meta' device: no weights are allocated or initialised, the count depends only on the
        layer structure, so this is fast and gives the same number.
        """
        key = _estimate_key(patch_size, input_channels, output_channels, arch_class_name, arch_kwargs,
                            arch_kwargs_req_import)
        if key not in _ESTIMATE_MEMO:
            value = unet_feature_map_size(arch_class_name, arch_kwargs, patch_size, output_channels)
            if value is not None:
                _ESTIMATE_MEMO[key] = value
                return value
            import torch
            from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
            try:
                with torch.device('meta'):
                    net = get_network_from_plans(arch_class_name, arch_kwargs, arch_kwargs_req_import,
                                                 input_channels, output_channels, allow_init=False)
                    value = net.compute_conv_feature_map_size(patch_size)
            except (NotImplementedError, RuntimeError):
                # a custom architecture that computes with tensors while being built: build it for real
                net = get_network_from_plans(arch_class_name, arch_kwargs, arch_kwargs_req_import, input_channels,
                                             output_channels, allow_init=False)
                value = net.compute_conv_feature_map_size(patch_size)
            _ESTIMATE_MEMO[key] = value
        return _ESTIMATE_MEMO[key]

    def determine_resampling(self, *args, **kwargs):
        """``(data_fn, data_kwargs, seg_fn, seg_kwargs)`` written into every configuration."""
        from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
        resampling_data = resample_data_or_seg_to_shape
        resampling_data_kwargs = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
        resampling_seg = resample_data_or_seg_to_shape
        resampling_seg_kwargs = {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None}
        return resampling_data, resampling_data_kwargs, resampling_seg, resampling_seg_kwargs

    def determine_segmentation_softmax_export_fn(self, *args, **kwargs):
        """``(fn, kwargs)`` used to resample predicted probabilities back to the original spacing."""
        from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
        return resample_data_or_seg_to_shape, {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}

    def determine_fullres_target_spacing(self) -> np.ndarray:
        if self.overwrite_target_spacing is not None:
            return np.array(self.overwrite_target_spacing)
        return rules.fullres_target_spacing(self.dataset_fingerprint['spacings'],
                                            self.dataset_fingerprint['shapes_after_crop'], self.anisotropy_threshold)

    def determine_normalization_scheme_and_whether_mask_is_used_for_norm(self) -> Tuple[List[str], List[bool]]:
        from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme
        if 'channel_names' not in self.dataset_json.keys():
            print('WARNING: "modalities" should be renamed to "channel_names" in dataset.json. This will be '
                  'enforced soon!')
        modalities = self.dataset_json['channel_names'] if 'channel_names' in self.dataset_json.keys() else \
            self.dataset_json['modality']
        schemes = [get_normalization_scheme(m) for m in modalities.values()]
        # masking only pays off when cropping to the nonzero region removed a good part of the image
        if self.dataset_fingerprint['median_relative_size_after_cropping'] < (3 / 4.):
            use_mask = [s.leaves_pixels_outside_mask_at_zero_if_use_mask_for_norm_is_true for s in schemes]
        else:
            use_mask = [False] * len(schemes)
        return [s.__name__ for s in schemes], use_mask

    def determine_transpose(self):
        if self.suppress_transpose:
            return [0, 1, 2], [0, 1, 2]
        return rules.transpose_from_spacing(self.determine_fullres_target_spacing())

    def generate_data_identifier(self, configuration_name: str) -> str:
        return self.plans_identifier + '_' + configuration_name

    def _shrink_needed(self, estimate: float, ref_bs: int, reference: float) -> bool:
        """Shrink-loop test; the default planner normalises by the reference batch size (times the minimum 2)."""
        return estimate / ref_bs * 2 > reference

    def _architecture(self, n_stages: int, kernel_sizes, strides, dim: int) -> dict:
        """The plans' ``architecture`` block (key order as the reference writes it)."""
        max_features = self.UNet_max_features_2d if dim == 2 else self.UNet_max_features_3d
        class_name = self._unet_class_name()
        counts_key = COUNTS_KEY.get(class_name)
        if counts_key is None:
            # another network class: the planner's own key, unless the class's signature names only the other one
            # (a class taking **kwargs gets the planner's key, as the reference writes it)
            counts_key = self._unet_counts_key
            other = 'n_conv_per_stage' if counts_key == 'n_blocks_per_stage' else 'n_blocks_per_stage'
            parameters = _init_parameters(self.UNet_class)
            if counts_key not in parameters and other in parameters:
                counts_key = other
        return {
            'network_class_name': class_name,
            'arch_kwargs': {
                'n_stages': n_stages,
                'features_per_stage': tuple(min(max_features, self.UNet_base_num_features * 2 ** i)
                                            for i in range(n_stages)),
                'conv_op': f'torch.nn.modules.conv.Conv{dim}d',
                'kernel_sizes': kernel_sizes,
                'strides': strides,
                counts_key: self.UNet_blocks_per_stage_encoder[:n_stages],
                'n_conv_per_stage_decoder': self.UNet_blocks_per_stage_decoder[:n_stages - 1],
                'conv_bias': True,
                'norm_op': f'torch.nn.modules.instancenorm.InstanceNorm{dim}d',
                'norm_op_kwargs': {'eps': 1e-5, 'affine': True},
                'dropout_op': None,
                'dropout_op_kwargs': None,
                'nonlin': 'torch.nn.LeakyReLU',
                'nonlin_kwargs': {'inplace': True},
            },
            '_kw_requires_import': _KW_REQUIRES_IMPORT,
        }

    def get_plans_for_configuration(self, spacing: Union[np.ndarray, Tuple[float, ...], List[float]],
                                    median_shape: Union[np.ndarray, Tuple[int, ...]],
                                    data_identifier: str, approximate_n_voxels_dataset: float,
                                    _cache: dict) -> dict:
        def estimate_for(patch_size, architecture) -> float:
            key = str(patch_size) + '_' + str(architecture['arch_kwargs']['strides'])
            if key not in _cache:
                _cache[key] = self.static_estimate_VRAM_usage(
                    patch_size, num_input_channels, len(self.dataset_json['labels'].keys()),
                    architecture['network_class_name'], architecture['arch_kwargs'],
                    architecture['_kw_requires_import'])
            return _cache[key]

        assert all([i > 0 for i in spacing]), f"Spacing must be > 0! Spacing: {spacing}"
        dim = len(spacing)
        num_input_channels = len(self.dataset_json['channel_names'].keys()
                                 if 'channel_names' in self.dataset_json.keys()
                                 else self.dataset_json['modality'].keys())
        min_edge = self.UNet_featuremap_min_edge_length

        initial_patch_size = rules.initial_patch_size(spacing, median_shape)
        _, strides, kernel_sizes, patch_size, divisor = get_pool_and_conv_props(
            spacing, initial_patch_size, min_edge, 999999)
        architecture = self._architecture(len(strides), kernel_sizes, strides, dim)
        estimate = estimate_for(patch_size, architecture)

        ref_bs = self.UNet_reference_val_corresp_bs_2d if dim == 2 else self.UNet_reference_val_corresp_bs_3d
        reference = (self.UNet_reference_val_2d if dim == 2 else self.UNet_reference_val_3d) * \
                    (self.UNet_vram_target_GB / self.UNet_reference_val_corresp_GB)

        while self._shrink_needed(estimate, ref_bs, reference):
            axis = rules.axis_to_shrink(patch_size, median_shape[:dim])
            patch_size = list(patch_size)
            tmp = deepcopy(patch_size)
            tmp[axis] -= divisor[axis]
            # subtract the divisor the *reduced* patch will have, so that sizes like 224 between 256 and 192 are
            # not skipped
            divisor = get_pool_and_conv_props(spacing, tmp, min_edge, 999999)[-1]
            patch_size[axis] -= divisor[axis]
            _, strides, kernel_sizes, patch_size, divisor = get_pool_and_conv_props(
                spacing, patch_size, min_edge, 999999)
            architecture = self._architecture(len(strides), kernel_sizes, strides, dim)
            estimate = estimate_for(patch_size, architecture)

        batch_size = rules.batch_size_from_estimate(reference, estimate, ref_bs, approximate_n_voxels_dataset,
                                                    self.max_dataset_covered, patch_size, self.UNet_min_batch_size)

        resampling_data, resampling_data_kwargs, resampling_seg, resampling_seg_kwargs = self.determine_resampling()
        resampling_softmax, resampling_softmax_kwargs = self.determine_segmentation_softmax_export_fn()
        normalization_schemes, mask_is_used_for_norm = \
            self.determine_normalization_scheme_and_whether_mask_is_used_for_norm()

        return {
            'data_identifier': data_identifier,
            'preprocessor_name': self.preprocessor_name,
            'batch_size': batch_size,
            'patch_size': patch_size,
            'median_image_size_in_voxels': median_shape,
            'spacing': spacing,
            'normalization_schemes': normalization_schemes,
            'use_mask_for_norm': mask_is_used_for_norm,
            'resampling_fn_data': _fn_name(resampling_data),
            'resampling_fn_seg': _fn_name(resampling_seg),
            'resampling_fn_data_kwargs': resampling_data_kwargs,
            'resampling_fn_seg_kwargs': resampling_seg_kwargs,
            'resampling_fn_probabilities': _fn_name(resampling_softmax),
            'resampling_fn_probabilities_kwargs': resampling_softmax_kwargs,
            'architecture': architecture,
        }

    def plan_experiment(self):
        from nnunetv2.experiment_planning.experiment_planners.plan_assembly import plan_experiment_with
        self.plans = plan_experiment_with(self)
        return self.plans

    def save_plans(self, plans):
        """Write ``<plans identifier>.json`` (configurations of an existing file that we did not plan are kept)."""
        fixed = json_safe(plans)
        plans.clear()
        plans.update(fixed)
        folder = os.path.join(nnUNet_preprocessed, self.dataset_name)
        plans_file = os.path.join(folder, self.plans_identifier + '.json')
        if os.path.isfile(plans_file):
            rules.merge_with_old_configurations(plans, load_json(plans_file))
        maybe_mkdir_p(folder)
        save_json(plans, plans_file, sort_keys=False)
        print(f"Plans were saved to {plans_file}")

    def load_plans(self, fname: str):
        self.plans = load_json(fname)

    def _copy_dataset_json(self):
        target_folder = os.path.join(nnUNet_preprocessed, self.dataset_name)
        maybe_mkdir_p(target_folder)
        with atomic_path(os.path.join(target_folder, 'dataset.json')) as tmp:
            shutil.copyfile(os.path.join(self.raw_dataset_folder, 'dataset.json'), tmp)


def _fn_name(fn) -> str:
    """Plans store functions by name; hooks may return the function or its name."""
    return fn if isinstance(fn, str) else fn.__name__


def _init_parameters(cls) -> Tuple[str, ...]:
    import inspect
    try:
        return tuple(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return ()
