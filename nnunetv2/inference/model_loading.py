"""Read a trained model folder: folds, checkpoints, plans, dataset.json, and build the network.

The trainer class named in the checkpoint is looked up lazily (the training package imports the predictor, so the
predictor must not import training at import time). Its static ``build_network_architecture`` is called with
arguments bound by parameter name, which supports every historical signature. When the trainer class
cannot be found the network is built from the plans (same network for every trainer that does not override it).
"""
from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from nnunetv2.configuration import compile_setting
from nnunetv2.errors import UserError
from nnunetv2.file_io import load_json
from nnunetv2.inference.out_of_memory import is_out_of_memory
from nnunetv2.utilities import find_objects as _find_objects
from nnunetv2.utilities.checkpoint_io import load_checkpoint, require_keys, strip_state_dict_prefixes
from nnunetv2.utilities.input_checks import is_whole_number
from nnunetv2.utilities.plans_handling.plans_checks import check_plans_for_inference
from nnunetv2.utilities.slow_torch_releases import warn_if_conv3d_is_slow

logger = logging.getLogger(__name__)
# our trainer lookup as it was on import (clients may replace the module attribute later)
_OUR_TRAINER_LOOKUP = _find_objects.recursive_find_trainer_class_by_name


@dataclass
class LoadedModel:
    plans_manager: Any
    configuration_manager: Any
    parameters: List[Dict[str, torch.Tensor]]
    network: nn.Module
    dataset_json: dict
    trainer_name: str
    inference_allowed_mirroring_axes: Optional[Tuple[int, ...]]
    label_manager: Any


def auto_detect_available_folds(model_training_output_dir: str, checkpoint_name: str) -> List[int]:
    """Integer folds ``fold_<k>`` (lexicographic folder order, ``fold_all`` excluded) that hold the checkpoint."""
    print('use_folds is None, attempting to auto detect available folds')
    subdirs = sorted(d for d in os.listdir(model_training_output_dir)
                     if d.startswith('fold_') and os.path.isdir(os.path.join(model_training_output_dir, d)))
    subdirs = [d for d in subdirs if d != 'fold_all']
    subdirs = [d for d in subdirs if os.path.isfile(os.path.join(model_training_output_dir, d, checkpoint_name))]
    folds = [int(d.split('_')[-1]) for d in subdirs if re.fullmatch(r'fold_\d+', d)]
    print(f'found the following folds: {folds}')
    return folds


def normalize_folds(use_folds: Union[Sequence[Union[int, str]], int, str]) -> List[Union[int, str]]:
    """Single value -> list; entries to int unless 'all'."""
    if isinstance(use_folds, (str, int)):
        use_folds = [use_folds]
    out: List[Union[int, str]] = []
    for f in use_folds:
        if f == 'all':
            out.append(f)
            continue
        try:
            out.append(int(f))
        except (TypeError, ValueError):
            raise UserError(f"Invalid fold {f!r}: folds are integers or 'all'.") from None
    return out


def _describe_folds(model_dir: str) -> str:
    found = []
    for d in sorted(os.listdir(model_dir)):
        if d.startswith('fold_') and os.path.isdir(os.path.join(model_dir, d)):
            pths = sorted(f for f in os.listdir(os.path.join(model_dir, d)) if f.endswith('.pth'))
            found.append(f"{d} ({', '.join(pths) if pths else 'no checkpoints'})")
    return '; '.join(found) if found else 'no fold_X folders'


def check_model_folder(model_dir: str, folds: List[Union[int, str]], checkpoint_name: str) -> List[str]:
    """Checkpoint paths for ``folds``; UserError naming what is missing and what exists."""
    if not os.path.isdir(model_dir):
        raise UserError(f"Model folder not found: {model_dir}.",
                        "Check -d/-tr/-p/-c (or -m) and $nnUNet_results, or install the model first.")
    for f in ('dataset.json', 'plans.json'):
        if not os.path.isfile(os.path.join(model_dir, f)):
            parent, name = os.path.split(os.path.normpath(model_dir))
            hint = None
            if re.fullmatch(r'fold_(\d+|all)', name) and os.path.isfile(os.path.join(parent, f)):
                # scripts often hand over the fold folder that holds the checkpoint
                fold = name[len('fold_'):]
                hint = (f"{model_dir} is one fold of the model: pass the folder above it, {parent}, and choose the "
                        f"fold with use_folds=({fold if fold != 'all' else repr(fold)},) (-f {fold}).")
            raise UserError(f"Model folder {model_dir} has no {f}; it is not a complete trained model folder.", hint)
    if len(folds) == 0:
        raise UserError(f"No folds with {checkpoint_name} in model folder {model_dir}. Found: "
                        f"{_describe_folds(model_dir)}.", "Pass -f with existing folds or -chk with an existing file.")
    files = []
    for f in folds:
        fname = os.path.join(model_dir, f'fold_{f}', checkpoint_name)
        if not os.path.isfile(fname):
            raise UserError(f"Checkpoint {fname} not found. Available in {model_dir}: {_describe_folds(model_dir)}.",
                            "Pass -f with existing folds or -chk with an existing checkpoint name.")
        files.append(fname)
    return files


def _find_trainer_class(trainer_name: str, trainer_lookup):
    """The trainer class of that name, or None when it (or the training package) is not available.

    A trainer module that exists but fails to import (a dependency that moved, a syntax error) is said in a
    warning: the network then comes from the plans, which is the trainer's network unless the trainer builds
    another one (the strict weight loading catches most such cases, not all)."""
    try:
        return trainer_lookup(trainer_name)
    except (ImportError, RuntimeError, AssertionError) as e:
        if isinstance(e, ImportError):  # the module exists but does not import (find_class_by_name says which)
            reason = str(e).splitlines()[0].rstrip(".")
            logger.warning("Trainer %s could not be looked up, a trainer module failed to import%s: %s. Building the "
                           "network from the plans' architecture instead; if %s builds another network, fix that "
                           "import.", trainer_name, _failing_module(e), reason, trainer_name)
        else:
            logger.debug("trainer lookup for %s failed: %s", trainer_name, e)
        return None


def _failing_module(e: BaseException) -> str:
    """' (FILE)': the last trainer module (ours or of a nnUNet_extTrainer folder) the failed import went through."""
    import nnunetv2
    from nnunetv2.paths import nnUNet_extTrainer
    folders = [os.path.join(nnunetv2.__path__[0], 'training', 'nnUNetTrainer'),
               *(f for f in (nnUNet_extTrainer.get() or '').split(os.pathsep) if f)]
    folders = [os.path.abspath(f) + os.sep for f in folders]
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        if any(os.path.abspath(frame.filename).startswith(f) for f in folders):
            return f" ({frame.filename})"
    return ""


# parameter names of the three historical build_network_architecture signatures, plus common aliases
_ALIASES = {'num_classes': 'num_output_channels', 'output_channels': 'num_output_channels',
            'input_channels': 'num_input_channels', 'deep_supervision': 'enable_deep_supervision',
            'network_class_name': 'architecture_class_name', 'arch_kwargs': 'arch_init_kwargs',
            'arch_kwargs_req_import': 'arch_init_kwargs_req_import'}
_CURRENT_ORDER = ('plans_manager', 'configuration_manager', 'num_input_channels', 'num_output_channels',
                  'enable_deep_supervision')
_OLD_ORDER = ('architecture_class_name', 'arch_init_kwargs', 'arch_init_kwargs_req_import', 'num_input_channels',
              'num_output_channels', 'enable_deep_supervision')


def call_build_network_architecture(build_fn, plans_manager, configuration_manager, dataset_json: dict,
                                    num_input_channels: int, num_output_channels: int,
                                    enable_deep_supervision: bool = False,
                                    deep_supervision_as_keyword: bool = False) -> nn.Module:
    """Call a trainer's static ``build_network_architecture`` binding every argument by its parameter name.

    A builder whose parameters say nothing (only ``*args``/``**kwargs``) or that we do not recognise is called
    positionally like the reference does it: the current form only if a parameter is named ``plans_manager``, else
    the 2.3-2.6 form (class name, init kwargs, kwargs needing import, input and output channels). Training passes
    the deep-supervision flag as the last positional argument, inference (``deep_supervision_as_keyword``) as
    ``enable_deep_supervision=``."""
    values = {
        'plans_manager': plans_manager, 'configuration_manager': configuration_manager,
        'dataset_json': dataset_json, 'num_input_channels': num_input_channels,
        'num_output_channels': num_output_channels, 'enable_deep_supervision': enable_deep_supervision,
        'architecture_class_name': configuration_manager.network_arch_class_name,
        'arch_init_kwargs': configuration_manager.network_arch_init_kwargs,
        'arch_init_kwargs_req_import': configuration_manager.network_arch_init_kwargs_req_import,
    }
    params = list(inspect.signature(build_fn).parameters.values())
    if any(p.name == 'architecture_class_name' for p in params):
        warnings.warn("The trainer's build_network_architecture uses the old (2.3-2.6) signature. Please update it "
                      "to (plans_manager, configuration_manager, num_input_channels, num_output_channels, "
                      "enable_deep_supervision).", DeprecationWarning)
    kwargs, args, unknown = {}, [], []
    for p in params:
        name = _ALIASES.get(p.name, p.name)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in values:
            if p.kind == p.POSITIONAL_ONLY:
                args.append(values[name])
            else:
                kwargs[p.name] = values[name]
        elif p.default is p.empty:
            unknown.append(p.name)
    only_the_flag_named = not args and set(kwargs) <= {'enable_deep_supervision'}
    if any(p.kind == p.VAR_POSITIONAL for p in params) and only_the_flag_named:
        # ``*args, enable_deep_supervision=True, **kwargs``: a wrapper that parses the arguments itself; binding by
        # name would hand it the flag only
        kwargs, args = {}, []
    if unknown or not (args or kwargs):
        # names we do not recognise, or only *args/**kwargs (a wrapper, often one that parses the arguments itself)
        if any(p.name == 'plans_manager' for p in params):
            return _call_positionally(build_fn, values, _CURRENT_ORDER, deep_supervision_as_keyword)
        warnings.warn("The trainer's build_network_architecture does not name its parameters; it is called with "
                      "the old (2.3-2.6) arguments. Please give it the signature (plans_manager, "
                      "configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision).",
                      DeprecationWarning)
        try:
            return _call_positionally(build_fn, values, _OLD_ORDER, deep_supervision_as_keyword)
        except TypeError as e:
            if params and not all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
                raise
            if not _raised_by_a_pure_wrapper(e):
                raise  # a TypeError from inside the network's construction: a real error, not a signature mismatch
            # a pure *args/**kwargs wrapper that hands them on to a builder of the current form (2.6 and 2.7 called
            # every builder that way): the old arguments did not fit it, the current ones do
            logger.info("build_network_architecture rejected the old (2.3-2.6) arguments; calling it with the "
                        "current ones (plans_manager, configuration_manager, ...).")
            return _call_positionally(build_fn, values, _CURRENT_ORDER, deep_supervision_as_keyword)
    return build_fn(*args, **kwargs)


def _raised_by_a_pure_wrapper(e: TypeError) -> bool:
    """Whether ``e`` was raised in the frame of a function that names no parameters (``*args``/``**kwargs`` only):
    a call there rejected the arguments handed on (a binding error is raised in the caller's frame). A TypeError
    from deeper down (a network's constructor, user code) is a real error: calling the builder again would build
    the network twice and report a misleading second error instead."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    code = tb.tb_frame.f_code
    return code.co_argcount == 0 and code.co_kwonlyargcount == 0 and code.co_posonlyargcount == 0 \
        and bool(code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS))


def _call_positionally(build_fn, values: dict, order: tuple, deep_supervision_as_keyword: bool) -> nn.Module:
    """``build_fn`` called with ``values`` in ``order``; the deep-supervision flag (always last) positionally, or as a
    keyword where inference passes it."""
    positional = [values[n] for n in order[:-1]]
    if deep_supervision_as_keyword:
        return build_fn(*positional, enable_deep_supervision=values['enable_deep_supervision'])
    return build_fn(*positional, values['enable_deep_supervision'])


def build_network(trainer_name: str, plans_manager, configuration_manager, dataset_json: dict,
                  num_input_channels: int, num_output_channels: int, trainer_class=None,
                  trainer_lookup=None) -> nn.Module:
    """Network for inference (deep supervision off) via the trainer class, or from the plans if it is unknown.
    ``trainer_lookup``: finds a trainer class by name (default: find_objects' current one)."""
    lookup = trainer_lookup or _find_objects.recursive_find_trainer_class_by_name
    # The base nnUNetTrainer builds exactly the plans' network (below); not importing the training package for it
    # saves seconds of start-up per command (it pulls in torch._dynamo, batchgeneratorsv2, skimage, ...). A lookup
    # a client has put in place is asked for every name, as the reference does.
    if trainer_class is None and (trainer_name != 'nnUNetTrainer' or lookup is not _OUR_TRAINER_LOOKUP):
        trainer_class = _find_trainer_class(trainer_name, lookup)
        if trainer_class is None:
            logger.info("Trainer class %s not found; building the network from the plans' architecture instead.",
                        trainer_name)
    if trainer_class is not None:
        return call_build_network_architecture(trainer_class.build_network_architecture, plans_manager,
                                               configuration_manager, dataset_json, num_input_channels,
                                               num_output_channels, enable_deep_supervision=False,
                                               deep_supervision_as_keyword=True)
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    # no weight initialisation: the checkpoint's weights replace every parameter right after (strict loading),
    # and drawing He-normal values for 16 M parameters costs 0.15 s of every prediction's start-up
    return get_network_from_plans(configuration_manager.network_arch_class_name,
                                  configuration_manager.network_arch_init_kwargs,
                                  configuration_manager.network_arch_init_kwargs_req_import,
                                  num_input_channels, num_output_channels, allow_init=False, deep_supervision=False)


def maybe_compile(network: nn.Module) -> nn.Module:
    """``network`` compiled where nnUNet_compile asks for it; one compiled already, or wrapped for DDP (the trainer's
    final validation hands its training network over), is left as it is."""
    if compile_setting() and not hasattr(network, '_orig_mod') \
            and not isinstance(network, nn.parallel.DistributedDataParallel):
        print('Using torch.compile')
        return torch.compile(network)
    return network


_MODEL_READ_ATTEMPTS = 5


def _raised_building_the_plans_network(e: BaseException) -> bool:
    """Whether ``e`` came from building the architecture the plans describe (get_network_from_plans, whether called
    directly or by a trainer's builder), rather than from a trainer's own network code."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is get_network_from_plans.__code__:
            return True
        tb = tb.tb_next
    return False


def check_checkpoint_contents(checkpoint: Dict[str, Any], fname: str, first: bool) -> None:
    """UserError naming the checkpoint when what prediction reads from it has the wrong type, or when its weights
    hold NaN or infinite values (a diverged training: every prediction would be noise, without a word)."""
    weights = checkpoint['network_weights']
    if not isinstance(weights, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in weights.items()):
        raise UserError(f"{fname} is not an nnU-Net checkpoint: 'network_weights' is not a mapping of parameter "
                        f"names to tensors (found {type(weights).__name__}).",
                        "Use the checkpoint file the model's training wrote.")
    not_finite = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not_finite:
        raise UserError(f"{fname} holds NaN or infinite weights ({len(not_finite)} of {len(weights)} tensors, "
                        f"e.g. {not_finite[0]}): the training diverged, and the network would predict nonsense.",
                        "Use another checkpoint of that training or train the model again.")
    if not first:
        return
    problems = []
    if not isinstance(checkpoint['trainer_name'], str):
        problems.append(f"'trainer_name' is {checkpoint['trainer_name']!r}, not a class name")
    init_args = checkpoint['init_args']
    if not isinstance(init_args, Mapping) or not isinstance(init_args.get('configuration'), str):
        problems.append("'init_args' has no configuration name ('init_args': {'configuration': ...})")
    axes = checkpoint.get('inference_allowed_mirroring_axes')
    if axes is not None and (not isinstance(axes, (list, tuple, np.ndarray)) or
                             not all(is_whole_number(a) for a in axes)):
        problems.append(f"'inference_allowed_mirroring_axes' is {axes!r}, not a tuple of axis numbers")
    if problems:
        raise UserError(f"{fname} is not a usable nnU-Net checkpoint: {'; '.join(problems)}.",
                        "Use the checkpoint file the model's training wrote.")


def _read_model_files(model_dir: str, checkpoint_files: List[str], allow_unsafe: bool):
    """dataset.json, plans, every fold's weights and the first checkpoint, all from one version of the model: read
    again while an install replaces the model's files (see model_sharing.model_update)."""
    from nnunetv2.model_sharing.model_update import file_identities, wait_for_model_updates
    from nnunetv2.utilities.dataset_json import check_dataset_json_for_use  # users edit this copy too
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json_file = os.path.join(model_dir, 'dataset.json')
    plans_file = os.path.join(model_dir, 'plans.json')
    watched = [dataset_json_file, plans_file, *checkpoint_files]
    for _ in range(_MODEL_READ_ATTEMPTS):
        wait_for_model_updates(model_dir)
        before = file_identities(watched)
        try:
            dataset_json = check_dataset_json_for_use(load_json(dataset_json_file), dataset_json_file)
            plans_manager = PlansManager(plans_file)
            parameters, first = [], None
            for fname in checkpoint_files:
                checkpoint = load_checkpoint(fname, allow_unsafe=allow_unsafe)
                require_keys(checkpoint, fname, ('network_weights',) if first is not None
                             else ('network_weights', 'trainer_name', 'init_args'))
                check_checkpoint_contents(checkpoint, fname, first is None)
                if first is None:
                    first = checkpoint
                parameters.append(strip_state_dict_prefixes(checkpoint['network_weights']))
        except UserError:
            # a file removed or replaced in the middle of its read (a finished training deletes
            # checkpoint_latest.pth) reads as a damaged one: read again, and report what is there then
            if file_identities(watched) != before:
                continue
            raise
        # an install still running now may have replaced some files before the read and the rest after it
        if not wait_for_model_updates(model_dir) and file_identities(watched) == before:
            return dataset_json, plans_manager, parameters, first
    raise UserError(f"The files of the model in {model_dir} kept changing while they were read "
                    f"({_MODEL_READ_ATTEMPTS} tries): another process is writing them.",
                    "Wait until that process (an install of a new version, a training writing the checkpoint) "
                    "has finished, then run this again.")


def load_trained_model(model_training_output_dir: str, use_folds, checkpoint_name: str = 'checkpoint_final.pth',
                       trainer_class=None, allow_unsafe: bool = False, trainer_lookup=None,
                       device=None) -> LoadedModel:
    """Everything the predictor needs from a trained model folder; first fold's weights already loaded. ``device``
    (where the predictor will run it) only decides whether a warning about a slow torch release applies."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    if use_folds is None:
        if not os.path.isdir(model_training_output_dir):
            raise UserError(f"Model folder not found: {model_training_output_dir}.")
        use_folds = auto_detect_available_folds(model_training_output_dir, checkpoint_name)
    folds = normalize_folds(use_folds)
    files = check_model_folder(model_training_output_dir, folds, checkpoint_name)

    dataset_json, plans_manager, parameters, first = _read_model_files(model_training_output_dir, files,
                                                                       allow_unsafe)
    trainer_name = first['trainer_name']
    configuration_name = first['init_args']['configuration']
    mirror_axes = first.get('inference_allowed_mirroring_axes')
    if mirror_axes is not None:  # checked to be whole numbers; a numpy array (custom trainers) becomes a tuple
        mirror_axes = tuple(int(a) for a in mirror_axes)
    configuration_manager = plans_manager.get_configuration(configuration_name)
    check_plans_for_inference(plans_manager, configuration_manager)
    if mirror_axes is not None and any(a < 0 or a >= len(configuration_manager.patch_size) for a in mirror_axes):
        raise UserError(f"{files[0]}: 'inference_allowed_mirroring_axes' {tuple(mirror_axes)} names axes that the "
                        f"{len(configuration_manager.patch_size)}-D configuration '{configuration_name}' lacks.",
                        "Use the checkpoint file the model's training wrote.")
    if device is not None:
        warn_if_conv3d_is_slow(device, len(configuration_manager.patch_size))
    from nnunetv2.inference.trained_plans import preprocessing_differences
    differences = preprocessing_differences(first['init_args'].get('plans'), plans_manager, configuration_name)
    if differences:
        print(f"WARNING: {os.path.join(model_training_output_dir, 'plans.json')} prepares images otherwise than the "
              f"plans {files[0]} was trained with: {'; '.join(differences)}. Predictions use plans.json; put back the "
              f"plans of the training (the checkpoint holds them) unless the change is meant.", file=sys.stderr,
              flush=True)
    num_input_channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    label_manager = plans_manager.get_label_manager(dataset_json)
    try:
        network = build_network(trainer_name, plans_manager, configuration_manager, dataset_json, num_input_channels,
                                label_manager.num_segmentation_heads, trainer_class=trainer_class,
                                trainer_lookup=trainer_lookup)
    except (TypeError, ValueError, AssertionError, KeyError, IndexError, RuntimeError) as e:
        # RuntimeError: dynamic_network_architectures' 'Invalid conv op' for a layer that is no convolution; our own
        # UserErrors and running out of memory are no fault of the plans' values and pass through
        if isinstance(e, UserError) or is_out_of_memory(e) or not _raised_building_the_plans_network(e):
            raise  # a trainer's own builder failed in its own code (a bug, a dependency's API): keep its traceback
        # the architecture comes from plans.json, which whoever shared the model wrote (or edited)
        raise UserError(f"The network that {os.path.join(model_training_output_dir, 'plans.json')} describes "
                        f"(configuration '{configuration_name}', trainer {trainer_name}) cannot be built: "
                        f"{type(e).__name__}: {' '.join(str(e).split())[:200]}.",
                        "Use the plans.json the model was trained with.") from e
    for fname, params in zip(files, parameters):
        try:
            network.load_state_dict(params)
        except RuntimeError as e:
            raise UserError(f"Could not load the weights of {fname} into the network built from the plans "
                            f"({' '.join(str(e).split())[:200]}).",
                            "Are the checkpoint, plans.json and dataset.json from the same model?") from e
    network.load_state_dict(parameters[0])
    return LoadedModel(plans_manager, configuration_manager, parameters, maybe_compile(network), dataset_json,
                       trainer_name, mirror_axes, label_manager)


def training_spacings(model_training_output_dir: str) -> Optional[np.ndarray]:
    """The spacings of the model's training images (``spacings`` of its dataset_fingerprint.json, one row per image,
    in file axis order), or None where the folder has no readable fingerprint (models shared without one)."""
    try:
        fingerprint = load_json(os.path.join(model_training_output_dir, 'dataset_fingerprint.json'))
        spacings = np.array(fingerprint['spacings'], dtype=np.float64)
    except (OSError, UserError, ValueError, KeyError, TypeError):
        return None
    return spacings if spacings.ndim == 2 and spacings.size and np.all(spacings > 0) else None


def average_over_folds(network: nn.Module, parameters: Sequence[dict], predict) -> torch.Tensor:
    """The average, on the CPU, of ``predict()`` run once with each fold's weights (``parameters``) loaded into
    ``network``: summed in fold order and divided once, in the dtype ``predict`` returns."""
    prediction = None
    for params in parameters:
        # a torch.compile'd network keeps the original module (plain state-dict keys) in _orig_mod
        getattr(network, '_orig_mod', network).load_state_dict(params)
        logits = predict().to('cpu')
        if prediction is None:
            prediction = logits
        else:
            prediction += logits
    if len(parameters) > 1:
        prediction /= len(parameters)
    return prediction
