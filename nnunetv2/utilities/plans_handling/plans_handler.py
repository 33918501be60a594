"""Read access to a plans file: ``PlansManager`` (the whole file) and ``ConfigurationManager`` (one configuration).

Plans handling sits on floor 3 (utilities). Everything it names by string -- reader/writer, preprocessor, label
manager, resampling functions, the planner -- lives on a higher or sibling floor, so those classes are resolved
by name only when a property asks for them (imports inside the properties). That keeps
``plans handler <-> preprocessor <-> label handling`` free of import cycles.
"""
from __future__ import annotations

import os
import warnings
from copy import deepcopy
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Type, Union

from nnunetv2.errors import UserError
from nnunetv2.file_io import load_json

if TYPE_CHECKING:  # only for annotations; never imported at run time from here
    from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from nnunetv2.utilities.plans_handling.legacy_plans import convert_legacy_configuration, is_legacy_configuration

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _find_class_in_package(subpackage: str, class_name: str, what: str):
    """Look ``class_name`` up inside ``nnunetv2.<subpackage>`` (recursive module walk); RuntimeError if absent."""
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    found = recursive_find_python_class(os.path.join(_PACKAGE_ROOT, *subpackage.split('.')), class_name,
                                        current_module='nnunetv2.' + subpackage)
    if found is None:
        raise UserError(f"{what} class '{class_name}' named in the plans was not found in nnunetv2.{subpackage}.",
                        hint=f"Place a module defining {class_name} inside the nnunetv2/{subpackage.replace('.', '/')} "
                             f"folder, or fix the name in the plans file.")
    return found


def _required(mapping: Any, key: str, where: str) -> Any:
    """``mapping[key]``; a key missing from hand-edited plans is a UserError naming the key and where it belongs."""
    try:
        return mapping[key]
    except (KeyError, TypeError):
        raise UserError(f"The {where} lacks the key '{key}'.",
                        "Restore it (compare with the plans nnUNetv2_plan_experiment writes) or fix the plans file.") \
            from None


def check_plans_identifier(name: str, option: str) -> None:
    """UserError unless ``name`` can name a plans file ``<nnUNet_preprocessed>/<dataset>/<name>.json``: an empty name
    wrote a hidden '.json', 'X.json' wrote 'X.json.json' and a name with a path separator wrote outside the dataset
    folder."""
    if not name or not name.strip():
        raise UserError(f"{option} is empty.", "Give a plans name such as nnUNetPlans.")
    if name.endswith(".json"):
        raise UserError(f"{option} {name!r} ends with .json: plans are named without it.",
                        f"Use {option} {name[:-len('.json')]}.")
    if "/" in name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise UserError(f"{option} {name!r} is a path: a plans name is a file name in the dataset's folder "
                        f"of nnUNet_preprocessed.", "Give a name without '/', e.g. nnUNetPlans_custom.")


class PlansInheritanceError(UserError, ValueError):
    """A configuration's ``inherits_from`` names a configuration the plans lack, or the chain loops (hand-edited
    plans). A ``ValueError`` and a ``RuntimeError``: the reference raised each for one of the two cases."""


class ConfigurationManager(object):
    """Typed view of one entry of ``plans['configurations']`` (inheritance already resolved by PlansManager)."""

    def __init__(self, configuration_dict: dict):
        self.configuration = configuration_dict
        if is_legacy_configuration(self.configuration):
            warnings.warn("Detected old nnU-Net plans format (configuration without 'architecture'). Rebuilding the "
                          "network architecture block from the old keys. If this fails, rerun "
                          "nnUNetv2_plan_experiment for your dataset.")
            convert_legacy_configuration(self.configuration)
        self._cache: Dict[str, Any] = {}
        self._where = "plans configuration"  # PlansManager names the configuration and the plans

    def __repr__(self):
        return self.configuration.__repr__()

    def _get(self, key: str) -> Any:
        return _required(self.configuration, key, self._where)

    # ----- plain keys ------------------------------------------------------------------------------------------
    @property
    def data_identifier(self) -> str:
        return self._get('data_identifier')

    @property
    def preprocessor_name(self) -> str:
        return self._get('preprocessor_name')

    @property
    def preprocessor_class(self) -> Type["DefaultPreprocessor"]:
        if 'preprocessor_class' not in self._cache:
            self._cache['preprocessor_class'] = _find_class_in_package('preprocessing', self.preprocessor_name,
                                                                       'Preprocessor')
        return self._cache['preprocessor_class']

    @property
    def batch_size(self) -> int:
        return self._get('batch_size')

    @property
    def patch_size(self) -> List[int]:
        return self._get('patch_size')

    @property
    def median_image_size_in_voxels(self) -> List[int]:
        return self._get('median_image_size_in_voxels')

    @property
    def spacing(self) -> List[float]:
        return self._get('spacing')

    @property
    def normalization_schemes(self) -> List[str]:
        return self._get('normalization_schemes')

    @property
    def use_mask_for_norm(self) -> List[bool]:
        return self._get('use_mask_for_norm')

    @property
    def batch_dice(self) -> bool:
        return self._get('batch_dice')

    # ----- architecture ----------------------------------------------------------------------------------------
    @property
    def network_arch_class_name(self) -> str:
        return _required(self._get('architecture'), 'network_class_name', self._where + " ('architecture')")

    @property
    def network_arch_init_kwargs(self) -> dict:
        return _required(self._get('architecture'), 'arch_kwargs', self._where + " ('architecture')")

    @property
    def network_arch_init_kwargs_req_import(self) -> Union[Tuple[str, ...], List[str]]:
        return _required(self._get('architecture'), '_kw_requires_import', self._where + " ('architecture')")

    @property
    def pool_op_kernel_sizes(self) -> Tuple[Tuple[int, ...], ...]:
        return _required(self._get('architecture'), 'arch_kwargs', self._where + " ('architecture')")['strides']

    # Pre-2.3 names, still read by third-party trainers that build their own networks (e.g. U-Mamba). Not in the
    # reference 2.8.1; derived read-only from the architecture block.
    @property
    def conv_kernel_sizes(self) -> List[List[int]]:
        return self.network_arch_init_kwargs['kernel_sizes']

    @property
    def n_conv_per_stage_encoder(self) -> List[int]:
        kw = self.network_arch_init_kwargs
        return kw['n_conv_per_stage'] if 'n_conv_per_stage' in kw else kw['n_blocks_per_stage']

    @property
    def n_conv_per_stage_decoder(self) -> List[int]:
        return self.network_arch_init_kwargs['n_conv_per_stage_decoder']

    @property
    def UNet_base_num_features(self) -> int:
        return self.network_arch_init_kwargs['features_per_stage'][0]

    @property
    def unet_max_num_features(self) -> int:
        return max(self.network_arch_init_kwargs['features_per_stage'])

    @property
    def UNet_class_name(self) -> str:
        return self.network_arch_class_name.split('.')[-1]

    # ----- resampling ------------------------------------------------------------------------------------------
    def _resampling_fn(self, key: str) -> Callable:
        if key not in self._cache:
            from nnunetv2.preprocessing.resampling.utils import recursive_find_resampling_fn_by_name
            fn = recursive_find_resampling_fn_by_name(self._get(key))
            self._cache[key] = partial(fn, **self._get(key + '_kwargs'))
        return self._cache[key]

    @property
    def resampling_fn_data(self) -> Callable:
        """Call as ``fn(data, new_shape, current_spacing, new_spacing)``."""
        return self._resampling_fn('resampling_fn_data')

    @property
    def resampling_fn_seg(self) -> Callable:
        return self._resampling_fn('resampling_fn_seg')

    @property
    def resampling_fn_probabilities(self) -> Callable:
        return self._resampling_fn('resampling_fn_probabilities')

    # ----- cascade ---------------------------------------------------------------------------------------------
    @property
    def next_stage_names(self) -> Optional[List[str]]:
        ret = self.configuration.get('next_stage')
        if ret is not None and isinstance(ret, str):
            ret = [ret]
        return ret

    @property
    def previous_stage_name(self) -> Optional[str]:
        return self.configuration.get('previous_stage')


class PlansManager(object):
    """Wraps a plans dict (or the path of a plans JSON) and hands out ConfigurationManagers."""

    def __init__(self, plans_file_or_dict: Union[str, dict]):
        self.plans = plans_file_or_dict if isinstance(plans_file_or_dict, dict) else load_json(plans_file_or_dict)
        if not isinstance(self.plans, dict):
            raise UserError(f"The plans {plans_file_or_dict} must be a JSON object ({{...}}), not a "
                            f"{type(self.plans).__name__}.")
        self._where = f"plans file {plans_file_or_dict}" if not isinstance(plans_file_or_dict, dict) else \
            f"plans '{self.plans.get('plans_name', '?')}' of {self.plans.get('dataset_name', '?')}"
        self._configuration_managers: Dict[str, ConfigurationManager] = {}
        self._cache: Dict[str, Any] = {}

    def __repr__(self):
        return self.plans.__repr__()

    def _internal_resolve_configuration_inheritance(self, configuration_name: str,
                                                    visited: Tuple[str, ...] = None) -> dict:
        """Configuration dict with every ``inherits_from`` level merged in (child keys win)."""
        where = getattr(self, '_where', 'plans')  # a subclass with its own __init__ may not set it
        if configuration_name not in self.plans['configurations'].keys():
            valid = f"Valid configuration names are {list(self.plans['configurations'].keys())}"
            if visited:
                raise PlansInheritanceError(f"In the {where}, configuration '{visited[-1]}' inherits from "
                                            f"'{configuration_name}', which does not exist.",
                                            hint=f"{valid}; fix 'inherits_from'.")
            raise PlansInheritanceError(f"There is no configuration '{configuration_name}' in the {where}.",
                                        hint=f"{valid}.")
        configuration = deepcopy(self.plans['configurations'][configuration_name])
        if 'inherits_from' in configuration:
            parent_config_name = configuration['inherits_from']
            visited = (configuration_name,) if visited is None else visited + (configuration_name,)
            if parent_config_name in visited:
                raise PlansInheritanceError(f"Circular dependency detected in the {where}: "
                                            f"configuration {configuration_name} inherits from {parent_config_name}, "
                                            f"which is already part of the inheritance chain {visited}.",
                                            hint="Fix 'inherits_from' in the plans file.")
            base_config = self._internal_resolve_configuration_inheritance(parent_config_name, visited)
            base_config.update(configuration)
            configuration = base_config
        return configuration

    def get_configuration(self, configuration_name: str) -> ConfigurationManager:
        """The ConfigurationManager of that name; repeated calls return the same object."""
        if configuration_name in self._configuration_managers:
            return self._configuration_managers[configuration_name]
        if configuration_name not in _required(self.plans, 'configurations', self._where).keys():
            raise UserError(f"Requested configuration '{configuration_name}' not found in plans "
                            f"'{self.plans.get('plans_name')}'.",
                            hint=f"Available configurations: {list(self.plans['configurations'].keys())}.")
        manager = ConfigurationManager(self._internal_resolve_configuration_inheritance(configuration_name))
        manager._where = f"configuration '{configuration_name}' of the {self._where}"
        self._configuration_managers[configuration_name] = manager
        return manager

    @property
    def dataset_name(self) -> str:
        return _required(self.plans, 'dataset_name', self._where)

    @property
    def plans_name(self) -> str:
        return _required(self.plans, 'plans_name', self._where)

    @property
    def original_median_spacing_after_transp(self) -> List[float]:
        return _required(self.plans, 'original_median_spacing_after_transp', self._where)

    @property
    def original_median_shape_after_transp(self) -> List[float]:
        return _required(self.plans, 'original_median_shape_after_transp', self._where)

    @property
    def image_reader_writer_class(self) -> Type["BaseReaderWriter"]:
        if 'image_reader_writer_class' not in self._cache:
            from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name
            self._cache['image_reader_writer_class'] = recursive_find_reader_writer_by_name(
                _required(self.plans, 'image_reader_writer', self._where))
        return self._cache['image_reader_writer_class']

    @property
    def transpose_forward(self) -> List[int]:
        return _required(self.plans, 'transpose_forward', self._where)

    @property
    def transpose_backward(self) -> List[int]:
        return _required(self.plans, 'transpose_backward', self._where)

    @property
    def available_configurations(self) -> List[str]:
        return list(self.plans['configurations'].keys())

    @property
    def experiment_planner_class(self) -> Type["ExperimentPlanner"]:
        if 'experiment_planner_class' not in self._cache:
            self._cache['experiment_planner_class'] = _find_class_in_package(
                'experiment_planning', self.experiment_planner_name, 'Experiment planner')
        return self._cache['experiment_planner_class']

    @property
    def experiment_planner_name(self) -> str:
        return _required(self.plans, 'experiment_planner_used', self._where)

    @property
    def label_manager_class(self) -> Type["LabelManager"]:
        if 'label_manager_class' not in self._cache:
            from nnunetv2.utilities.label_handling.label_handling import get_labelmanager_class_from_plans
            self._cache['label_manager_class'] = get_labelmanager_class_from_plans(self.plans)
        return self._cache['label_manager_class']

    def get_label_manager(self, dataset_json: dict, **kwargs) -> "LabelManager":
        return self.label_manager_class(label_dict=dataset_json['labels'],
                                        regions_class_order=dataset_json.get('regions_class_order'),
                                        **kwargs)

    @property
    def foreground_intensity_properties_per_channel(self) -> dict:
        if 'foreground_intensity_properties_per_channel' not in self.plans.keys():
            if 'foreground_intensity_properties_by_modality' in self.plans.keys():
                return self.plans['foreground_intensity_properties_by_modality']
        return _required(self.plans, 'foreground_intensity_properties_per_channel', self._where)
