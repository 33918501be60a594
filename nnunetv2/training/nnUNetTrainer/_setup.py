"""Pure helpers behind nnUNetTrainer's constructor and ``initialize``.

They take plain values (shapes, sizes, devices) and return plain values, so they can be tested without a trainer.
"""
from __future__ import annotations

import inspect
import os
import warnings
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nnunetv2.configuration import compile_setting
from nnunetv2.errors import UserError

# legacy names a subclass may still pass to the base constructor; accepted and ignored
IGNORED_INIT_ARGUMENTS = ("unpack_dataset",)


def sort_out_device_argument(device: Any, unpack_dataset: Any) -> torch.device:
    """The device, also when a pre-2.6 subclass passed ``(…, dataset_json, unpack_dataset, device)`` positionally.

    In that case the boolean lands in ``device`` and the device in ``unpack_dataset``.
    """
    if isinstance(device, bool) and isinstance(unpack_dataset, (torch.device, str)):
        device = unpack_dataset
    if isinstance(device, str):
        device = torch.device(device)
    if not isinstance(device, torch.device):
        raise UserError(f"nnUNetTrainer: device must be a torch.device (or 'cpu'/'cuda'/'mps'), got {device!r}.")
    return device


def select_device(device: torch.device, is_ddp: bool, local_rank: int) -> torch.device:
    """DDP on CUDA: ``cuda:<GPU index of this process on its node>``; DDP on CPU (gloo): the CPU. Without DDP, CUDA
    always means ``cuda:0`` (the GPU is chosen with CUDA_VISIBLE_DEVICES)."""
    if device.type == "cuda":
        return torch.device(type="cuda", index=ddp_gpu_index(local_rank) if is_ddp else 0)
    return device


def ddp_gpu_index(rank: int) -> int:
    """The GPU of this DDP process: torchrun's ``LOCAL_RANK`` (the rank within the node, so multi-node runs work),
    else the rank (``-num_gpus`` spawns all processes on one node, where both agree)."""
    local = os.environ.get("LOCAL_RANK")
    return int(local) if local is not None and local.isdigit() else rank


def wrap_for_ddp(network: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``network`` (already on ``device``).

    On CUDA: SyncBatchNorm first (a no-op for nnU-Net's instance norms) and ``device_ids=[index]``. On the CPU
    (gloo) SyncBatchNorm is skipped, because its forward only runs on accelerators, and DDP must get no device ids.
    """
    from torch.nn.parallel import DistributedDataParallel
    if device.type == "cuda":
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
        return DistributedDataParallel(network, device_ids=[device.index])
    return DistributedDataParallel(network)


def collect_init_kwargs(init_fn, base_locals: Dict[str, Any]) -> Dict[str, Any]:
    """``my_init_kwargs``: the most-derived constructor's parameter names, values from the base constructor.

    The reference raises KeyError for a subclass parameter unknown to the base constructor; we skip such names
    (their values are not known here) and never record the ignored legacy ``unpack_dataset``.
    """
    kwargs = {}
    for name in inspect.signature(init_fn).parameters:
        if name in IGNORED_INIT_ARGUMENTS or name not in base_locals:
            continue
        kwargs[name] = base_locals[name]
    return kwargs


def log_file_name(output_folder: str, now: Optional[datetime] = None) -> str:
    """``training_log_<Y>_<M>_<D>_<hh>_<mm>_<ss>.txt`` (date parts not zero-padded, time parts two digits)."""
    t = now or datetime.now()
    return os.path.join(output_folder, f"training_log_{t.year}_{t.month}_{t.day}_{t.hour:02d}_{t.minute:02d}_"
                                       f"{t.second:02d}.txt")


def trainer_folders(dataset_name: str, trainer_name: str, plans_name: str, configuration_name: str, fold,
                    data_identifier: str, previous_stage_name: Optional[str],
                    preprocessed_root: Optional[str], results_root: Optional[str]) -> Dict[str, Optional[str]]:
    """The trainer's folders (None where the environment variable is not set)."""
    out: Dict[str, Optional[str]] = {}
    base_pp = os.path.join(preprocessed_root, dataset_name) if preprocessed_root is not None else None
    out["preprocessed_dataset_folder_base"] = base_pp
    if results_root is not None:
        out["output_folder_base"] = os.path.join(results_root, dataset_name,
                                                 f"{trainer_name}__{plans_name}__{configuration_name}")
        out["output_folder"] = os.path.join(out["output_folder_base"], f"fold_{fold}")
    else:
        out["output_folder_base"] = out["output_folder"] = None
    out["preprocessed_dataset_folder"] = os.path.join(base_pp, data_identifier) if base_pp is not None else None
    if previous_stage_name is not None and results_root is not None:
        # note: named after the *current* trainer class (the low-res stage must use the same trainer class)
        out["folder_with_segs_from_previous_stage"] = os.path.join(
            results_root, dataset_name, f"{trainer_name}__{plans_name}__{previous_stage_name}",
            "predicted_next_stage", configuration_name)
    else:
        out["folder_with_segs_from_previous_stage"] = None
    return out


def ddp_batch_size_and_oversampling(global_batch_size: int, world_size: int, rank: int,
                                    oversample_percent: float) -> Tuple[int, float]:
    """Per-rank batch size and foreground-oversampling fraction.

    The global rule forces samples ``j >= round(B * (1 - p))``; each rank gets the fraction of those forced
    samples that fall into its slice of the global batch.
    """
    if global_batch_size < world_size:
        raise UserError(f"The batch size ({global_batch_size}) is smaller than the number of GPUs ({world_size}).",
                        "Use fewer GPUs or a plans file with a larger batch size.")
    base = global_batch_size // world_size
    sizes = [base + (1 if base * world_size + i < global_batch_size else 0) for i in range(world_size)]
    assert sum(sizes) == global_batch_size
    lo, hi = sum(sizes[:rank]), sum(sizes[:rank + 1])
    first_forced = round(global_batch_size * (1 - oversample_percent))
    if hi / global_batch_size < 1 - oversample_percent:
        fraction = 0.0
    elif lo / global_batch_size > 1 - oversample_percent:
        fraction = 1.0
    else:
        fraction = sum(1 for j in range(lo, hi) if j >= first_forced) / sizes[rank]
    return sizes[rank], fraction


def deep_supervision_scales(pool_op_kernel_sizes: Sequence[Sequence[int]]) -> List[List[float]]:
    """Relative resolution of each deep-supervision output: 1 / cumulative stride, lowest stage dropped."""
    cumulative = np.cumprod(np.vstack(pool_op_kernel_sizes), axis=0)
    return [list(row) for row in (1 / cumulative)[:-1].tolist()]


def deep_supervision_weights(n: int, is_ddp: bool, compiled: bool) -> np.ndarray:
    """Weights 2^-i, the lowest-resolution one set to 0 (1e-6 under DDP without compile), normalised."""
    weights = np.array([1 / (2 ** i) for i in range(n)])
    if n == 1:  # a 2-stage network has one output, at full resolution: zeroing it gave 0/0, NaN loss and weights
        return weights
    # DDP without compile complains about parameters that got no gradient, hence a tiny weight there
    weights[-1] = 1e-6 if (is_ddp and not compiled) else 0
    return weights / weights.sum()


def rotation_dummy2d_mirroring(patch_size: Sequence[int], aniso_threshold: float
                               ) -> Tuple[Tuple[float, float], bool, Tuple[int, ...]]:
    """(rotation range in radians, do_dummy_2d_data_aug, mirror_axes) for a patch size."""
    dim = len(patch_size)
    if dim == 2:
        do_dummy_2d = False
        if max(patch_size) / min(patch_size) > 1.5:
            rotation = (-15. / 360 * 2. * np.pi, 15. / 360 * 2. * np.pi)
        else:
            rotation = (-180. / 360 * 2. * np.pi, 180. / 360 * 2. * np.pi)
        mirror_axes: Tuple[int, ...] = (0, 1)
    elif dim == 3:
        do_dummy_2d = (max(patch_size) / patch_size[0]) > aniso_threshold
        if do_dummy_2d:
            rotation = (-180. / 360 * 2. * np.pi, 180. / 360 * 2. * np.pi)
        else:
            rotation = (-30. / 360 * 2. * np.pi, 30. / 360 * 2. * np.pi)
        mirror_axes = (0, 1, 2)
    else:
        raise RuntimeError(f"Patch size {list(patch_size)} has {dim} dimensions; only 2D and 3D are supported.")
    return rotation, do_dummy_2d, mirror_axes


def do_i_compile(device: torch.device, log) -> bool:
    """torch.compile only on CUDA, not on Windows; default on unless nnUNet_compile says otherwise."""
    setting = compile_setting()
    if device.type in ("mps", "cpu") or os.name == "nt":
        if setting:
            log(f"INFO: torch.compile disabled because of unsupported device/OS (device {device.type}, "
                f"os {os.name}).")
        return False
    return setting is None or setting


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``)."""
    mod = network
    if isinstance(mod, torch.nn.parallel.DistributedDataParallel):
        mod = mod.module
    if hasattr(mod, "_orig_mod"):
        mod = mod._orig_mod
    return mod


def build_network(trainer) -> torch.nn.Module:
    """Call ``trainer.build_network_architecture`` binding arguments by parameter name.

    All three historical signatures work (2.1-2.2 with dataset_json, 2.3-2.6 with class name and kwargs, 2.7+
    with plans and configuration managers).
    """
    from nnunetv2.inference.model_loading import call_build_network_architecture
    from nnunetv2.utilities.plans_handling.plans_checks import check_patch_size
    check_patch_size(trainer.configuration_manager)  # else a tensor-size error only at the first iteration
    with warnings.catch_warnings():
        warnings.simplefilter("default", DeprecationWarning)
        return call_build_network_architecture(
            trainer.build_network_architecture, trainer.plans_manager, trainer.configuration_manager,
            trainer.dataset_json, trainer.num_input_channels, trainer.label_manager.num_segmentation_heads,
            trainer.enable_deep_supervision)


def check_preprocessed_folder(folder: Optional[str], dataset_name: str, configuration_name: str,
                              plans_name: str) -> None:
    """UserError telling the user to preprocess when the configuration's preprocessed data is missing."""
    if folder is None:
        return
    has_data = os.path.isdir(folder) and any(f.endswith((".b2nd", ".npz")) for f in os.listdir(folder))
    if not has_data:
        raise UserError(f"No preprocessed data for configuration {configuration_name!r} in {folder}.",
                        f"Run '{_preprocess_command(dataset_name, plans_name, configuration_name)}' "
                        f"(or nnUNetv2_plan_and_preprocess) first.")


def _preprocess_command(dataset_name: str, plans_name: str, configuration_name: str) -> str:
    """The nnUNetv2_preprocess command line that (re)makes a configuration's preprocessed data."""
    dataset_id = dataset_name[7:10] if dataset_name.startswith("Dataset") else dataset_name
    return f"nnUNetv2_preprocess -d {dataset_id} -plans_name {plans_name} -c {configuration_name}"


def check_preprocessed_data(trainer) -> None:
    """The configuration's preprocessed data exist and fit the plans (both checks below)."""
    check_preprocessed_folder(trainer.preprocessed_dataset_folder, trainer.plans_manager.dataset_name,
                              trainer.configuration_name, trainer.plans_manager.plans_name)
    check_preprocessed_matches_plans(trainer.preprocessed_dataset_folder, trainer.plans_manager,
                                     trainer.configuration_manager, trainer.configuration_name)


def check_preprocessed_matches_plans(folder: Optional[str], plans_manager, configuration_manager,
                                     configuration_name: str) -> None:
    """UserError when the preprocessed data were resampled to another spacing than the plans now give: plans edited
    (or planned again) after preprocessing, without preprocessing again. Training would learn at the old spacing
    while predictions resample images to the new one. The reference trains on such data without a word.

    Judged on the first case (a preprocessing run replaces the whole folder, so all cases come from one run): the
    shape the default preprocessor gives it at the plans' spacing against the stored shape. Read: one .pkl and one
    .b2nd header. Only for the default preprocessor itself (a subclass may resample otherwise), judged by the name the
    plans give: training never needs the preprocessor class, which may not be importable where it trains."""
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
    if folder is None or not os.path.isdir(folder) \
            or getattr(configuration_manager, 'preprocessor_name', None) != 'DefaultPreprocessor':
        return
    import blosc2
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    cases = sorted(nnUNetDatasetBlosc2.get_identifiers(folder))
    if not cases or not os.path.isfile(os.path.join(folder, cases[0] + ".pkl")):
        return
    from nnunetv2.file_io import load_pickle
    try:
        properties = load_pickle(os.path.join(folder, cases[0] + ".pkl"))
        stored = tuple(int(i) for i in blosc2.open(os.path.join(folder, cases[0] + ".b2nd"), mode="r").shape[1:])
    except Exception:  # a damaged file: named where the data are read, with what to do about it
        return
    if not isinstance(properties, dict):
        return
    before, spacing = properties.get("shape_after_cropping_and_before_resampling"), properties.get("spacing")
    if before is None or spacing is None:
        return
    original = [spacing[i] for i in plans_manager.transpose_forward]
    target = list(configuration_manager.spacing)
    if len(target) < len(before):  # 2d: the slice axis is not resampled
        target = [original[0]] + target
    if len(target) != len(before):
        return
    expected = tuple(int(i) for i in compute_new_shape(before, original, target))
    if expected != stored:
        command = _preprocess_command(plans_manager.dataset_name, plans_manager.plans_name, configuration_name)
        raise UserError(f"The preprocessed data in {folder} do not fit the plans: case {cases[0]} is stored with "
                        f"shape {stored}, but the spacing the plans give configuration {configuration_name!r} "
                        f"({[float(t) for t in target]}) makes it {expected}. Were the plans changed after "
                        f"preprocessing?",
                        f"Preprocess again: {command} (or give edited plans a new name).")


def maybe_wrap_deep_supervision(trainer, loss: torch.nn.Module):
    """Wrap ``loss`` in DeepSupervisionWrapper with the default weights when the trainer uses deep supervision."""
    if not trainer.enable_deep_supervision:
        return loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    # _do_i_compile is asked only under DDP, where the answer matters: overrides that log see the reference's calls
    weights = deep_supervision_weights(len(trainer._get_deep_supervision_scales()), trainer.is_ddp,
                                       trainer.is_ddp and trainer._do_i_compile())
    return DeepSupervisionWrapper(loss, weights)


def unwrap_ddp_only(network: torch.nn.Module) -> torch.nn.Module:
    if isinstance(network, torch.nn.parallel.DistributedDataParallel):
        return network.module
    return network
