"""``nnUNetv2_train``: train one fold of one configuration.

``run_training_entry`` parses the command line; ``run_training`` is the Python API; ``get_trainer_from_args`` and
``maybe_load_checkpoint`` are used by third-party code (MONAI) and keep their signatures. Multi-GPU training uses
PyTorch distributed only: ``-num_gpus N`` spawns N processes with torch.multiprocessing, and a run started by
``torchrun`` (one process per GPU) is detected from its environment variables.

SIGTERM, SIGUSR1 and SIGINT stop a training after the current iteration with checkpoint_latest.pth written; the
command then exits with status 128 + signal number (``TrainingInterrupted``, a ``SystemExit``) and ``--c``
continues (documentation/preemption.md).
"""
import contextlib
import gc
import multiprocessing
import os
import socket
import sys
import time
from typing import Callable, Optional, Union

import torch
import torch.cuda
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunetv2.errors import UserError, exit_on_user_error
from nnunetv2.file_io import load_json
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.run._fold_claim import ResultsFolderSnapshot, claim_fold_folder, expected_fold_folder
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.run.process_group import (_check_gpu_of_this_process, _init_ddp_process, cleanup_ddp,  # noqa: F401
                                        cpu_threads_per_process, ddp_backend, setup_ddp)
from nnunetv2.training.nnUNetTrainer import _ddp_sync
from nnunetv2.training.nnUNetTrainer._preemption import TrainingInterrupted, forward_stop_signals, \
    stop_signal_of_exit_status
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
from nnunetv2.utilities.device_checks import require_available
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.utilities.slow_torch_releases import warn_if_conv3d_is_slow
from nnunetv2.utilities.torch_threads import one_cpu_thread_for_gpu_work


def find_free_network_port() -> int:
    """A TCP port the OS reports as free right now (for the DDP rendezvous)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _load_plans_and_dataset_json(dataset_name: str, plans_identifier: str, configuration: str):
    """The plans and dataset.json of a preprocessed dataset, with one-line errors for what is missing."""
    folder = os.path.join(nnUNet_preprocessed, dataset_name)
    plans_file = os.path.join(folder, plans_identifier + ".json")
    if not os.path.isfile(plans_file):
        available = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json") and "Plans" in f) \
            if os.path.isdir(folder) else []
        raise UserError(f"Plans file not found: {plans_file}.",
                        (f"Available plans: {available}. " if available else "") +
                        f"Run 'nnUNetv2_plan_and_preprocess -d {dataset_name}' (or nnUNetv2_plan_experiment and "
                        f"nnUNetv2_preprocess) first, or pick another plans identifier with -p.")
    plans = load_json(plans_file)
    configurations = plans.get("configurations", {})
    if configuration not in configurations:
        raise UserError(f"Configuration {configuration!r} is not in {plans_file}.",
                        f"Available configurations: {sorted(configurations)}.")
    dataset_json_file = os.path.join(folder, "dataset.json")
    if not os.path.isfile(dataset_json_file):
        raise UserError(f"{dataset_json_file} is missing.",
                        f"Run 'nnUNetv2_plan_experiment -d {dataset_name}' (or nnUNetv2_plan_and_preprocess), "
                        f"which copies dataset.json there, or copy it from nnUNet_raw.")
    return plans, load_json(dataset_json_file)


def get_trainer_from_args(dataset_name_or_id: Union[int, str],
                          configuration: str,
                          fold: int,
                          trainer_name: str = 'nnUNetTrainer',
                          plans_identifier: str = 'nnUNetPlans',
                          continue_training: bool = False,
                          device: torch.device = torch.device('cuda')):
    # load nnunet class and do sanity checks
    nnunet_trainer = recursive_find_trainer_class_by_name(trainer_name)

    # handle dataset input. If it's an ID we need to convert to int from string
    if isinstance(dataset_name_or_id, str) and not dataset_name_or_id.startswith('Dataset'):
        try:
            dataset_name_or_id = int(dataset_name_or_id)
        except ValueError:
            raise UserError(f"Dataset {dataset_name_or_id!r} is neither an integer id nor a name starting with "
                            f"'Dataset'.", "Pass e.g. 4 or Dataset004_Hippocampus.") from None
    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    plans, dataset_json = _load_plans_and_dataset_json(dataset_name, plans_identifier, configuration)
    # the constructor pops this key again; it decides whether the logger resumes
    plans['continue_training'] = bool(continue_training)
    return nnunet_trainer(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
                          device=device)


def maybe_load_checkpoint(nnunet_trainer, continue_training: bool, validation_only: bool,
                          pretrained_weights_file: str = None):
    if continue_training and pretrained_weights_file is not None:
        raise UserError('Cannot both continue a training (--c) and start from pretrained weights '
                        '(-pretrained_weights).', 'Use only one of the two.')
    expected_checkpoint_file = None
    if continue_training:
        for name in ('checkpoint_final.pth', 'checkpoint_latest.pth', 'checkpoint_best.pth'):
            candidate = os.path.join(nnunet_trainer.output_folder, name)
            if os.path.isfile(candidate):
                expected_checkpoint_file = candidate
                break
        if expected_checkpoint_file is None:
            print(f"WARNING: Cannot continue training because there seems to be no checkpoint available to "
                  f"continue from in {nnunet_trainer.output_folder}. Starting a new training...")
    elif validation_only:
        expected_checkpoint_file = os.path.join(nnunet_trainer.output_folder, 'checkpoint_final.pth')
        if not os.path.isfile(expected_checkpoint_file):
            raise UserError(f"Cannot run validation because the training is not finished yet: "
                            f"{expected_checkpoint_file} does not exist.",
                            "Finish the training first (use --c to continue it).")
    elif pretrained_weights_file is not None:
        if os.path.isdir(pretrained_weights_file):
            raise UserError(f"Pretrained weights file {pretrained_weights_file} is a folder.",
                            "Pass a checkpoint file (e.g. .../fold_0/checkpoint_final.pth) with -pretrained_weights.")
        if not os.path.isfile(pretrained_weights_file):
            raise UserError(f"Pretrained weights file not found: {pretrained_weights_file}.")
        if not nnunet_trainer.was_initialized:
            nnunet_trainer.initialize()
        load_pretrained_weights(nnunet_trainer.network, pretrained_weights_file, verbose=True)
    if expected_checkpoint_file is not None:
        nnunet_trainer.load_checkpoint(expected_checkpoint_file)


def _parse_fold(fold: Union[int, str]):
    """'all' or a non-negative int (the reference would silently map -1 to the last split)."""
    if isinstance(fold, str) and fold == 'all':
        return fold
    try:
        fold = int(fold)
    except ValueError:
        raise UserError(f"Fold must be an integer (0-4 for the default 5-fold split) or 'all', got {fold!r}.") \
            from None
    if fold < 0:
        raise UserError(f"Fold must be 0 or larger (or 'all'), got {fold}.",
                        "The default 5-fold cross-validation has folds 0, 1, 2, 3 and 4.")
    return fold


def _check_device(device: torch.device) -> None:
    require_available(device, f"-device {device.type}", "Use -device cpu")


def _started_by_torchrun() -> bool:
    return 'TORCHELASTIC_RUN_ID' in os.environ and int(os.environ.get('WORLD_SIZE', '1')) > 1


def _check_ddp_device(device: torch.device, how: str) -> None:
    if device.type == 'mps':
        raise UserError(f"Distributed training ({how}) does not support -device mps.",
                        "Use -device cuda (one process per GPU) or -device cpu.")


def _train_in_this_process(trainer, continue_training: bool, only_run_validation: bool,
                           pretrained_weights: Optional[str], disable_checkpointing: bool,
                           val_with_best: bool, export_validation_probabilities: bool) -> None:
    """Create the trainer, optionally load weights or a checkpoint, train and validate
    (shared by the single-process, spawned-DDP and torchrun paths)."""
    if disable_checkpointing:
        trainer.disable_checkpointing = disable_checkpointing
    if continue_training and only_run_validation:
        raise UserError('Cannot set --c and --val flag at the same time.', 'Use one of them.')
    with contextlib.ExitStack() as held:
        ddp_device = trainer.device if getattr(trainer, 'is_ddp', False) else None
        claim_fold_folder(trainer.output_folder, held, ddp_device)
        maybe_load_checkpoint(trainer, continue_training, only_run_validation, pretrained_weights)
        if torch.cuda.is_available():
            torch.backends.cudnn.deterministic = False
            torch.backends.cudnn.benchmark = True
        warn_if_conv3d_is_slow(trainer.device, len(trainer.configuration_manager.patch_size))
        if not only_run_validation:
            trainer.run_training()
        if val_with_best:
            trainer.load_checkpoint(os.path.join(trainer.output_folder, 'checkpoint_best.pth'))
        trainer.perform_actual_validation(export_validation_probabilities)


def run_ddp(rank, dataset_name_or_id, configuration, fold, tr, p, disable_checkpointing, c, val,
            pretrained_weights, npz, val_with_best, world_size, device: torch.device = torch.device('cuda')):
    """One process of ``-num_gpus N`` (started by torch.multiprocessing.spawn). ``device`` (appended to the
    reference's arguments) is cuda (NCCL, one GPU per process) or cpu (gloo)."""
    device = torch.device(device)
    # all spawned processes are on this node: the rank is the node-local rank (overrides an inherited LOCAL_RANK)
    os.environ['LOCAL_RANK'], os.environ['LOCAL_WORLD_SIZE'] = str(rank), str(world_size)
    _init_ddp_process(device, rank, world_size)
    _train_in_process_group(lambda: get_trainer_from_args(dataset_name_or_id, configuration, fold, tr, p, c,
                                                          device=device),
                            (c, val, pretrained_weights, disable_checkpointing, val_with_best, npz),
                            expected_fold_folder(maybe_convert_to_dataset_name(dataset_name_or_id), tr, p,
                                                 configuration, _parse_fold(fold)))


def _check_all_ranks_run_the_same(settings: dict) -> None:
    """Refuse a torchrun whose processes were started with different arguments (a multi-node job whose nodes were
    given another fold, trainer, plans or --c): the ranks would train different things in one process group, mixing
    the training cases of several folds, or run different numbers of epochs and wait for each other forever. Every
    rank compares its settings with rank 0's and all stop with the same message. Paths may differ between nodes
    (other mount points), so only whether -pretrained_weights was given is compared."""
    gathered = _ddp_sync.gather_objects(settings)
    differing = sorted({k for other in gathered[1:] for k in settings if other.get(k) != gathered[0].get(k)})
    if differing:
        per_rank = "; ".join(f"{k}: " + ", ".join(f"rank {r}={g.get(k)!r}" for r, g in enumerate(gathered))
                             for k in differing)
        _ddp_sync.destroy_process_groups()
        raise UserError(f"The torchrun processes were started with different nnUNetv2_train arguments ({per_rank}).",
                        "Start every node (every torchrun) with the same dataset, configuration, fold, -tr, -p, "
                        "-device and flags (--c, --val, --npz, ...).")


def _train_in_process_group(build_trainer: Callable[[], object], train_args: tuple,
                            fold_folder: Optional[str] = None) -> None:
    """Train in a process that has joined the DDP group, then leave the group cleanly: all ranks meet at a
    barrier, the trainer (whose DDP reducer holds the group) is freed while the interpreter is fully alive, and
    only then the group is destroyed. Freeing a gloo group during interpreter shutdown, or while a peer still
    talks to it, can abort a rank at exit ('terminate called without an active exception').

    The other ranks reach that barrier while rank 0 still computes the validation metrics, which can take longer
    than the NCCL timeout: the barrier is on the gloo side group, whose timeout does not fire. A training stopped by
    a signal leaves the same way (all ranks stopped at the same iteration), then ends with its exit status.
    ``fold_folder`` (where the trainer will write) is claimed before the trainer is built, so that a run refused
    because another one trains that fold leaves nothing there, not even a log file."""
    finished = False
    interrupted_by = None
    try:
        with contextlib.ExitStack() as held:
            if fold_folder is not None:  # the same on every rank
                rank_device = torch.device('cuda', torch.cuda.current_device()) if dist.get_backend() == 'nccl' \
                    else torch.device('cpu')
                claim_fold_folder(fold_folder, held, rank_device)
            trainer = build_trainer()
            try:
                _train_in_this_process(trainer, *train_args)
            except TrainingInterrupted as e:
                interrupted_by = e.signum  # leaving this block drops the traceback, and with it the trainer
        finished = True
    finally:
        if finished:
            _ddp_sync.wait_for_all_ranks()
        trainer = None
        gc.collect()
        _ddp_sync.destroy_process_groups()
    if interrupted_by is not None:
        raise TrainingInterrupted(interrupted_by)


def _let_stopping_ranks_exit(processes, grace_s: float = 300) -> None:
    """Ranks stopped by a signal all stop at the same iteration, but not at the same instant: once the first has
    exited, ``context.join`` would terminate the others in the middle of leaving the process group. When the first
    one to end ended because of a stop signal, wait (up to ``grace_s``) for the others to end by themselves."""
    from multiprocessing.connection import wait
    ended = wait([p.sentinel for p in processes])
    for p in processes:
        if p.sentinel in ended:
            # the sentinel fires when the process closes its files, before its exit status can be collected
            # (exitcode is then still None nearly every time): collect it
            p.join()
    if any(stop_signal_of_exit_status(p.exitcode) is not None for p in processes if p.exitcode is not None):
        deadline = time.monotonic() + grace_s
        for p in processes:
            p.join(timeout=max(0.0, deadline - time.monotonic()))


def _join_spawned_ranks(context) -> None:
    """Wait for the ``-num_gpus`` processes. Stop signals sent to this process are passed on to them, and ranks
    that stopped because of one end this process with the same status (128 + signal number)."""
    with forward_stop_signals([p.pid for p in context.processes]):
        _let_stopping_ranks_exit(context.processes)
        try:
            while not context.join():
                pass
        except mp.ProcessRaisedException as e:
            user_error = _user_error_of_rank(str(e))
            if user_error is None:
                raise
            raise user_error from None
        except mp.ProcessExitedException as e:
            signum = stop_signal_of_exit_status(e.exit_code)
            if signum is None:
                raise
            raise TrainingInterrupted(signum) from None


def _user_error_of_rank(spawn_error: str) -> Optional[UserError]:
    """The ``UserError`` (or subclass) a spawned rank stopped with, for the same one line as without ``-num_gpus``;
    None where the rank stopped with another exception. torch passes the rank's exception on as its traceback text:
    the exception that counts is the one under the last traceback (an exception raised while handling another, or
    caused by it, is printed after it), named by its qualified class name, its message after it."""
    start = spawn_error.rfind("Traceback (most recent call last):")
    if start < 0:
        return None
    lines = spawn_error[start:].splitlines()[1:]
    while lines and (not lines[0].strip() or lines[0].startswith(" ")):  # the frames, indented
        lines.pop(0)
    if not lines:
        return None
    class_name, _, first_line = lines[0].partition(": ")
    module_name, _, name = class_name.rpartition(".")
    module = sys.modules.get(module_name) if module_name.split(".")[0] == "nnunetv2" else None
    error_class = getattr(module, name, None)
    if not (isinstance(error_class, type) and issubclass(error_class, UserError)):
        return None
    return UserError(" ".join(" ".join([first_line, *lines[1:]]).split()))


def run_training(dataset_name_or_id: Union[str, int],
                 configuration: str, fold: Union[int, str],
                 trainer_class_name: str = 'nnUNetTrainer',
                 plans_identifier: str = 'nnUNetPlans',
                 pretrained_weights: Optional[str] = None,
                 num_gpus: int = 1,
                 export_validation_probabilities: bool = False,
                 continue_training: bool = False,
                 only_run_validation: bool = False,
                 disable_checkpointing: bool = False,
                 val_with_best: bool = False,
                 device: torch.device = torch.device('cuda')):
    if plans_identifier == 'nnUNetPlans':
        print("\n############################\n"
              "INFO: You are using the old nnU-Net default plans. We have updated our recommendations. "
              "Please consider using those instead! Read more here: "
              "https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/resenc_presets.md"
              "\n############################\n")
    fold = _parse_fold(fold)
    if val_with_best and disable_checkpointing:
        raise UserError('--val_best is not compatible with --disable_checkpointing.', 'Drop one of the two flags.')
    if isinstance(device, str):
        device = torch.device(device)
    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)

    torchrun = _started_by_torchrun() and not dist.is_initialized()
    if num_gpus > 1 or torchrun:
        # the process group is set up for the requested device before any trainer exists
        _check_device(device)
    if num_gpus > 1:
        if torchrun or dist.is_initialized():
            raise UserError(f"-num_gpus {num_gpus} cannot be combined with torchrun (or an existing process group).",
                            "Leave -num_gpus at 1: torchrun --nproc_per_node sets the number of processes.")
        _check_ddp_device(device, f"-num_gpus {num_gpus}")
        if device.type == 'cuda' and torch.cuda.device_count() < num_gpus:
            raise UserError(f"-num_gpus {num_gpus} requested but only {torch.cuda.device_count()} GPU(s) are "
                            f"visible.", "Lower -num_gpus or check CUDA_VISIBLE_DEVICES.")
        os.environ['MASTER_ADDR'] = 'localhost'
        if 'MASTER_PORT' not in os.environ:
            port = str(find_free_network_port())
            print(f"using port {port}")
            os.environ['MASTER_PORT'] = port
        # with -device cpu the N processes share the cores and talk over gloo (mostly useful for testing)
        context = mp.spawn(run_ddp,
                           args=(dataset_name_or_id, configuration, fold, trainer_class_name, plans_identifier,
                                 disable_checkpointing, continue_training, only_run_validation, pretrained_weights,
                                 export_validation_probabilities, val_with_best, num_gpus, device),
                           nprocs=num_gpus, join=False)
        _join_spawned_ranks(context)
        return

    def build_trainer():
        return get_trainer_from_args(dataset_name_or_id, configuration, fold, trainer_class_name, plans_identifier,
                                     continue_training, device=device)
    train_args = (continue_training, only_run_validation, pretrained_weights, disable_checkpointing, val_with_best,
                  export_validation_probabilities)
    if torchrun:
        # torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*; one process per GPU (or CPU share), the trainer
        # detects DDP itself
        _check_ddp_device(device, "torchrun")
        _init_ddp_process(device)
        _check_all_ranks_run_the_same(dict(
            dataset=dataset_name, configuration=configuration, fold=fold, trainer=trainer_class_name,
            plans=plans_identifier, device=device.type, continue_training=bool(continue_training),
            only_run_validation=bool(only_run_validation), pretrained_weights=pretrained_weights is not None,
            disable_checkpointing=bool(disable_checkpointing), val_best=bool(val_with_best),
            npz=bool(export_validation_probabilities)))
        _train_in_process_group(build_trainer, train_args, expected_fold_folder(
            dataset_name, trainer_class_name, plans_identifier, configuration, fold))
    else:
        fold_folder = expected_fold_folder(dataset_name, trainer_class_name, plans_identifier, configuration, fold)
        with contextlib.ExitStack() as held:
            claim_fold_folder(fold_folder, held)
            before = ResultsFolderSnapshot(fold_folder)
            trainer = build_trainer()
            # checked on the trainer's device, not the requested one: a trainer may pick its own device, the only
            # way to train on a CPU-only machine for clients that cannot pass -device (MONAI's nnUNetV2Runner)
            try:
                _check_device(trainer.device)
            except UserError:
                before.remove_what_the_trainer_added(getattr(trainer, 'log_file', None))
                raise
            _train_in_this_process(trainer, *train_args)


def run_training_entry_parser():
    import argparse
    parser = argparse.ArgumentParser(description="Train one fold of an nnU-Net configuration.")
    parser.add_argument('dataset_name_or_id', type=str, help="Dataset name (DatasetXXX_Name) or integer id.")
    parser.add_argument('configuration', type=str, help="Configuration to train, e.g. 2d or 3d_fullres.")
    parser.add_argument('fold', type=str, help="Fold of the 5-fold cross-validation (0-4), or 'all'.")
    parser.add_argument('-tr', type=str, required=False, default='nnUNetTrainer',
                        help='[OPTIONAL] Trainer class name. Default: nnUNetTrainer')
    parser.add_argument('-p', type=str, required=False, default='nnUNetPlans',
                        help='[OPTIONAL] Plans identifier. Default: nnUNetPlans')
    parser.add_argument('-pretrained_weights', type=str, required=False, default=None,
                        help='[OPTIONAL] nnU-Net checkpoint (.pth) whose weights initialise the network (only '
                             'when starting a new training).')
    parser.add_argument('-num_gpus', type=int, default=1, required=False,
                        help='Number of GPUs for (single-node DDP) training. Default: 1')
    parser.add_argument('--npz', action='store_true', required=False,
                        help='[OPTIONAL] Also save the softmax/sigmoid probabilities of the final validation '
                             '(.npz + .pkl); needed to find the best ensemble.')
    parser.add_argument('--c', action='store_true', required=False,
                        help='[OPTIONAL] Continue from the latest checkpoint of this fold.')
    parser.add_argument('--val', action='store_true', required=False,
                        help='[OPTIONAL] Only run the final validation (needs checkpoint_final.pth).')
    parser.add_argument('--val_best', action='store_true', required=False,
                        help='[OPTIONAL] Validate with checkpoint_best.pth instead of the final weights. Writes into '
                             'the same validation folder. Not compatible with --disable_checkpointing.')
    parser.add_argument('--disable_checkpointing', action='store_true', required=False,
                        help='[OPTIONAL] Write no checkpoints (for testing).')
    parser.add_argument('-device', type=str, default='cuda', required=False,
                        help="Device type: 'cuda' (GPU), 'cpu' or 'mps' (Apple). Select the GPU with "
                             "CUDA_VISIBLE_DEVICES=X, not here. Default: cuda")
    return parser


@exit_on_user_error
def run_training_entry():
    args = run_training_entry_parser().parse_args()
    if args.device not in ('cpu', 'cuda', 'mps'):
        raise UserError(f"-device must be cpu, cuda or mps, got {args.device!r}.")
    if args.device == 'cpu':
        # use all cores for CPU training
        torch.set_num_threads(multiprocessing.cpu_count())
        device = torch.device('cpu')
    elif args.device == 'cuda':
        one_cpu_thread_for_gpu_work()
        device = torch.device('cuda')
    else:
        device = torch.device('mps')

    run_training(args.dataset_name_or_id, args.configuration, args.fold, args.tr, args.p, args.pretrained_weights,
                 args.num_gpus, args.npz, args.c, args.val, args.disable_checkpointing, args.val_best,
                 device=device)


if __name__ == '__main__':
    os.environ['OMP_NUM_THREADS'] = '1'
    os.environ['MKL_NUM_THREADS'] = '1'
    os.environ['OPENBLAS_NUM_THREADS'] = '1'
    os.environ['TORCHINDUCTOR_COMPILE_THREADS'] = '1'
    run_training_entry()
