"""``nnUNetTrainer``: the training life cycle of nnU-Net.

Every hook users override keeps its name and signature; the work behind most hooks lives in small modules next to
this file (``_setup``, ``_epoch``, ``_checkpointing``, ``_validation``). The module-level names below are part of
the compatibility surface: custom trainers start with ``from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import *``
and use them directly, so they are imported here even where this file does not need them.
"""
import contextlib
import inspect
import multiprocessing
import os
import shutil
import sys
import warnings
from copy import deepcopy
from datetime import datetime
from os.path import isfile, join
from time import time, sleep
from typing import List, Tuple, Union

import numpy as np
import torch
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.helpers.scalar_type import RandomScalar
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform, BGContrast
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.nnunet.random_binary_operator import ApplyRandomBinaryOperatorTransform
from batchgeneratorsv2.transforms.nnunet.remove_connected_components import \
    RemoveRandomConnectedComponentFromOneHotEncodingTransform
from batchgeneratorsv2.transforms.nnunet.seg_to_onehot import MoveSegAsOneHotToDataTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.nnunet_masking import MaskImageTransform
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert3DTo2DTransform, Convert2DTo3DTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
from torch import autocast, nn
from torch import distributed as dist
from torch.cuda import device_count
from torch.nn.parallel import DistributedDataParallel as DDP

try:
    from torch.amp import GradScaler
    TORCH_HAS_OLD_GRADSCALER = False
except ImportError:  # torch < 2.3
    from torch.cuda.amp import GradScaler
    TORCH_HAS_OLD_GRADSCALER = True

from nnunetv2.configuration import ANISO_THRESHOLD, default_num_processes
from nnunetv2.errors import UserError as _UserError
from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
from nnunetv2.file_io import load_json, save_json, maybe_mkdir_p
from nnunetv2.inference.export_prediction import export_prediction_from_logits, resample_and_save
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_results
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.training.logging.nnunet_logger import MetaLogger
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss, DC_and_BCE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn, MemoryEfficientSoftDiceLoss
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer import _checkpointing, _ddp_sync, _epoch, _loop, _setup, _training_data, \
    _validation
from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.crossval_split import generate_crossval_split
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.file_path_utilities import check_workers_alive_and_busy
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.helpers import empty_cache, dummy_context
from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot, \
    determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager, ConfigurationManager

_CITATION = ("\n#######################################################################\n"
             "Please cite the following paper when using nnU-Net:\n"
             "Isensee, F., Jaeger, P. F., Kohl, S. A., Petersen, J., & Maier-Hein, K. H. (2021). "
             "nnU-Net: a self-configuring method for deep learning-based biomedical image segmentation. "
             "Nature methods, 18(2), 203-211.\n"
             "#######################################################################\n")


class nnUNetTrainer(object):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda'), unpack_dataset: bool = None):
        # unpack_dataset: pre-2.6 argument, accepted (also positionally before device) and ignored
        device = _setup.sort_out_device_argument(device, unpack_dataset)
        self.is_ddp = dist.is_available() and dist.is_initialized()
        self.local_rank = 0 if not self.is_ddp else dist.get_rank()
        self.device = _setup.select_device(device, self.is_ddp, self.local_rank)
        if self.is_ddp:
            print(f"I am local rank {self.local_rank}. {device_count()} GPUs are available. The world size is "
                  f"{dist.get_world_size()}. Setting device to {self.device}")
        print(f"Using device: {self.device}")

        # saved in checkpoints as init_args; the plans dict is the caller's object (continue_training popped below)
        self.my_init_kwargs = _setup.collect_init_kwargs(self.__init__, locals())
        # get_trainer_from_args adds this key; the reference requires it, we default to a fresh start
        continue_training = plans.pop('continue_training', False)

        logger_config = {"plans": plans, "configuration": configuration, "fold": fold, "dataset": dataset_json}
        self.plans_manager = PlansManager(plans)
        self.configuration_manager = self.plans_manager.get_configuration(configuration)
        self.configuration_name = configuration
        self.dataset_json = dataset_json
        self.fold = fold

        folders = _setup.trainer_folders(
            self.plans_manager.dataset_name, self.__class__.__name__, self.plans_manager.plans_name, configuration,
            fold, self.configuration_manager.data_identifier, self.configuration_manager.previous_stage_name,
            nnUNet_preprocessed.get(), nnUNet_results.get())
        self.preprocessed_dataset_folder_base = folders['preprocessed_dataset_folder_base']
        self.output_folder_base = folders['output_folder_base']
        self.output_folder = folders['output_folder']
        self.preprocessed_dataset_folder = folders['preprocessed_dataset_folder']
        self.dataset_class = None
        self.is_cascaded = self.configuration_manager.previous_stage_name is not None
        self.folder_with_segs_from_previous_stage = folders['folder_with_segs_from_previous_stage']

        # hyperparameters; subclasses change them after calling super().__init__
        self.initial_lr = 1e-2
        self.weight_decay = 3e-5
        self.oversample_foreground_percent = 0.33
        self.probabilistic_oversampling = False
        self.num_iterations_per_epoch = 250
        self.num_val_iterations_per_epoch = 50
        self.num_epochs = 1000
        self.current_epoch = 0
        self.enable_deep_supervision = True

        self.label_manager = self.plans_manager.get_label_manager(dataset_json)
        self.num_input_channels = None  # -> self.initialize()
        self.network = None  # -> self.build_network_architecture()
        self.optimizer = self.lr_scheduler = None  # -> self.initialize
        self.grad_scaler = None
        # without CUDA, torch would make a disabled scaler and warn; run_training then stops with a one-line error
        if self.device.type == 'cuda' and torch.cuda.is_available():
            self.grad_scaler = torch.cuda.amp.GradScaler() if TORCH_HAS_OLD_GRADSCALER else GradScaler("cuda")
        self.loss = None  # -> self.initialize

        if self.output_folder is None:
            raise _UserError("nnUNet_results is not set, so the trainer has nowhere to write its output.",
                                   "Export nnUNet_results (see documentation/setting_up_paths.md).")
        maybe_mkdir_p(self.output_folder)
        self.log_file = _setup.log_file_name(self.output_folder)
        self.logger = MetaLogger(self.output_folder, continue_training)
        self.logger.update_config(logger_config)

        self.dataloader_train = self.dataloader_val = None  # see on_train_start
        self._best_ema = None
        self.inference_allowed_mirroring_axes = None  # set by configure_rotation_dummyDA_..., saved in checkpoints
        self.save_every = 50
        self.disable_checkpointing = False
        self.was_initialized = False

        self.print_to_log_file(_CITATION, also_print_to_console=True, add_timestamp=False)

    # ------------------------------------------------------------------ set-up
    def initialize(self):
        if self.was_initialized:
            raise RuntimeError("You have called self.initialize even though the trainer was already initialized. "
                               "That should not happen.")
        self._set_batch_size_and_oversample()
        self.num_input_channels = determine_num_input_channels(self.plans_manager, self.configuration_manager,
                                                               self.dataset_json)
        self.network = _setup.build_network(self).to(self.device)
        if self._do_i_compile():
            self.print_to_log_file('Using torch.compile...')
            self.network = torch.compile(self.network)
        self.optimizer, self.lr_scheduler = self.configure_optimizers()
        if self.is_ddp:
            self.network = _setup.wrap_for_ddp(self.network, self.device)
        self.loss = self._build_loss()
        _setup.check_preprocessed_data(self)
        self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        self.was_initialized = True
        self.logger.update_config({"hparas": {
            "initial_lr": self.initial_lr, "weight_decay": self.weight_decay,
            "oversample_foreground_percent": self.oversample_foreground_percent,
            "probabilistic_oversampling": self.probabilistic_oversampling,
            "num_iterations_per_epoch": self.num_iterations_per_epoch,
            "num_val_iterations_per_epoch": self.num_val_iterations_per_epoch, "num_epochs": self.num_epochs,
            "enable_deep_supervision": self.enable_deep_supervision,
            "batch_size": self.configuration_manager.batch_size}})

    def _do_i_compile(self):
        return _setup.do_i_compile(self.device, self.print_to_log_file)

    def _save_debug_information(self):
        # saving some debug information
        if self.local_rank == 0:
            save_json(_epoch.debug_information(self), join(self.output_folder, "debug.json"))

    @staticmethod
    def build_network_architecture(plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """The network for this configuration (also used by inference with deep supervision off). Override it
        to train another architecture; the trainer binds the arguments by parameter name."""
        return get_network_from_plans(
            configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import, num_input_channels, num_output_channels,
            allow_init=True, deep_supervision=enable_deep_supervision)

    def _get_deep_supervision_scales(self):
        if self.enable_deep_supervision:
            return _setup.deep_supervision_scales(self.configuration_manager.pool_op_kernel_sizes)
        return None

    def _set_batch_size_and_oversample(self):
        if not self.is_ddp:
            self.batch_size = self.configuration_manager.batch_size
            return
        world_size, rank = dist.get_world_size(), dist.get_rank()
        batch_size, oversample = _setup.ddp_batch_size_and_oversampling(
            self.configuration_manager.batch_size, world_size, rank, self.oversample_foreground_percent)
        print("worker", rank, "oversample", oversample)
        print("worker", rank, "batch_size", batch_size)
        self.batch_size = batch_size
        self.oversample_foreground_percent = oversample

    def _build_loss(self):
        if self.label_manager.has_regions:
            loss = DC_and_BCE_loss({}, {'batch_dice': self.configuration_manager.batch_dice, 'do_bg': True,
                                        'smooth': 1e-5, 'ddp': self.is_ddp},
                                   use_ignore_label=self.label_manager.ignore_label is not None,
                                   dice_class=MemoryEfficientSoftDiceLoss)
        else:
            loss = DC_and_CE_loss({'batch_dice': self.configuration_manager.batch_dice, 'smooth': 1e-5,
                                   'do_bg': False, 'ddp': self.is_ddp}, {}, weight_ce=1, weight_dice=1,
                                  ignore_label=self.label_manager.ignore_label, dice_class=MemoryEfficientSoftDiceLoss)
        if self._do_i_compile():
            loss.dc = torch.compile(loss.dc)
        # deep supervision: weights 2^-i, the lowest resolution output gets (almost) none
        return _setup.maybe_wrap_deep_supervision(self, loss)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """(rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes); also sets
        ``inference_allowed_mirroring_axes``. Override to change rotation or mirroring."""
        patch_size = self.configuration_manager.patch_size
        rotation_for_DA, do_dummy_2d_data_aug, mirror_axes = _setup.rotation_dummy2d_mirroring(patch_size,
                                                                                                ANISO_THRESHOLD)
        initial_patch_size = get_patch_size(patch_size, *([rotation_for_DA] * 3), (0.85, 1.25))
        if isinstance(initial_patch_size, tuple):
            initial_patch_size = list(initial_patch_size)
        if do_dummy_2d_data_aug:
            initial_patch_size[0] = patch_size[0]
        self.print_to_log_file(f'do_dummy_2d_data_aug: {do_dummy_2d_data_aug}')
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes

    # ------------------------------------------------------------------ logging
    def print_to_log_file(self, *args, also_print_to_console=True, add_timestamp=True):
        # one timestamp for both: the console shows the same line as the log file (clients read either); the other
        # DDP ranks write no log file and print their lines as they are, as in the reference
        if self.local_rank == 0:
            if add_timestamp:
                args = (f"{datetime.now()}:", *args)
            _training_data.append_to_log(self.log_file, args, False)
        if also_print_to_console:
            print(*args)

    def print_plans(self):
        if self.local_rank == 0:
            dct = deepcopy(self.plans_manager.plans)
            del dct['configurations']
            self.print_to_log_file(f"\nThis is the configuration used by this training:\nConfiguration name: "
                                   f"{self.configuration_name}\n", self.configuration_manager, '\n',
                                   add_timestamp=False)
            self.print_to_log_file('These are the global plan.json settings:\n', dct, '\n', add_timestamp=False)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                    momentum=0.99, nesterov=True)
        lr_scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
        return optimizer, lr_scheduler

    def plot_network_architecture(self):
        _training_data.plot_network_architecture(self)

    # ------------------------------------------------------------------ data
    def do_split(self):
        return _training_data.do_split(self)

    def get_tr_and_val_datasets(self):
        # create dataset split
        tr_keys, val_keys = self.do_split()
        from nnunetv2.utilities.crossval_split import check_fold_has_cases
        check_fold_has_cases(tr_keys, None, self.fold,
                             os.path.join(self.preprocessed_dataset_folder_base, "splits_final.json"))
        dataset_tr = self.dataset_class(self.preprocessed_dataset_folder, tr_keys,
                                        folder_with_segs_from_previous_stage=self.folder_with_segs_from_previous_stage)
        dataset_val = self.dataset_class(self.preprocessed_dataset_folder, val_keys,
                                         folder_with_segs_from_previous_stage=self.folder_with_segs_from_previous_stage)
        return dataset_tr, dataset_val

    def get_dataloaders(self):
        return _training_data.get_dataloaders(self)

    @staticmethod
    def get_training_transforms(
            patch_size: Union[np.ndarray, Tuple[int]],
            rotation_for_DA: RandomScalar,
            deep_supervision_scales: Union[List, Tuple, None],
            mirror_axes: Tuple[int, ...],
            do_dummy_2d_data_aug: bool,
            use_mask_for_norm: List[bool] = None,
            is_cascaded: bool = False,
            foreground_labels: Union[Tuple[int, ...], List[int]] = None,
            regions: List[Union[List[int], Tuple[int, ...], int]] = None,
            ignore_label: int = None,
    ) -> BasicTransform:
        from nnunetv2.training.data_augmentation.pipelines import build_training_transforms
        return build_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                         do_dummy_2d_data_aug, use_mask_for_norm, is_cascaded, foreground_labels,
                                         regions, ignore_label)

    @staticmethod
    def get_validation_transforms(
            deep_supervision_scales: Union[List, Tuple, None],
            is_cascaded: bool = False,
            foreground_labels: Union[Tuple[int, ...], List[int]] = None,
            regions: List[Union[List[int], Tuple[int, ...], int]] = None,
            ignore_label: int = None,
    ) -> BasicTransform:
        from nnunetv2.training.data_augmentation.pipelines import build_validation_transforms
        return build_validation_transforms(deep_supervision_scales, is_cascaded, foreground_labels, regions,
                                           ignore_label)

    def set_deep_supervision_enabled(self, enabled: bool):
        """Architectures without ``decoder.deep_supervision`` must override this."""
        _setup.unwrap_network(self.network).decoder.deep_supervision = enabled

    # ------------------------------------------------------------------ life cycle
    def on_train_start(self):
        if not self.was_initialized:
            self.initialize()
        # dataloaders must be instantiated here (not in initialize) because they need access to the training data
        self.dataloader_train, self.dataloader_val = self.get_dataloaders()
        maybe_mkdir_p(self.output_folder)
        # make sure deep supervision is on in the network
        self.set_deep_supervision_enabled(self.enable_deep_supervision)
        self.print_plans()
        empty_cache(self.device)
        if self.local_rank == 0:
            self.dataset_class.unpack_dataset(self.preprocessed_dataset_folder, overwrite_existing=False,
                                              num_processes=max(1, round(get_allowed_n_proc_DA() // 2)),
                                              verify=True)
        if self.is_ddp:  # the others wait while rank 0 unpacks, however long it takes
            _ddp_sync.wait_for_all_ranks()
        _training_data.copy_bookkeeping_files(self)
        # produces a pdf in output folder
        self.plot_network_architecture()
        self._save_debug_information()

    def on_train_end(self):
        # dirty hack because on_epoch_end increments the epoch counter and this is executed afterwards
        self.current_epoch -= 1
        self.save_checkpoint(join(self.output_folder, "checkpoint_final.pth"))
        self.current_epoch += 1
        # now we can delete latest
        if self.local_rank == 0:
            # another run of this fold finishing at the same moment may have removed it between a check and the removal
            with contextlib.suppress(FileNotFoundError):
                os.remove(join(self.output_folder, "checkpoint_latest.pth"))
        _training_data.shut_down_augmenters(self.dataloader_train, self.dataloader_val)
        empty_cache(self.device)
        self.print_to_log_file("Training done.")

    def on_train_epoch_start(self):
        self.network.train()
        self.lr_scheduler.step(self.current_epoch)
        self.print_to_log_file('')
        self.print_to_log_file(f'Epoch {self.current_epoch}')
        self.print_to_log_file(f"Current learning rate: {np.round(self.optimizer.param_groups[0]['lr'], decimals=5)}")
        # lrs are the same for all workers so we don't need to gather them in case of DDP training
        self.logger.log('lrs', self.optimizer.param_groups[0]['lr'], self.current_epoch)

    def train_step(self, batch: dict) -> dict:
        data = _epoch.to_device(batch['data'], self.device)
        target = _epoch.to_device(batch['target'], self.device)
        self.optimizer.zero_grad(set_to_none=True)
        # autocast only on CUDA: on CPU it would be slow and on MPS it is not supported
        with autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context():
            output = self.network(data)
            l = self.loss(output, target)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(l).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            l.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        return {'loss': l.detach().cpu().numpy()}

    def on_train_epoch_end(self, train_outputs: List[dict]):
        self.logger.log('train_losses', _epoch.mean_train_loss(train_outputs, self.is_ddp), self.current_epoch)

    def on_validation_epoch_start(self):
        self.network.eval()

    def validation_step(self, batch: dict) -> dict:
        data = _epoch.to_device(batch['data'], self.device)
        target = _epoch.to_device(batch['target'], self.device)
        with autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context():
            output = self.network(data)
            del data
            l = self.loss(output, target)
        # we only need the output with the highest output resolution (if DS enabled)
        if self.enable_deep_supervision:
            output, target = output[0], target[0]
        tp_hard, fp_hard, fn_hard = _epoch.hard_tp_fp_fn(output, target, self.label_manager.has_regions,
                                                         self.label_manager.ignore_label)
        return {'loss': l.detach().cpu().numpy(), 'tp_hard': tp_hard, 'fp_hard': fp_hard, 'fn_hard': fn_hard}

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        mean_fg_dice, dice_per_class, loss_here = _epoch.validation_summary(val_outputs, self.is_ddp)
        self.logger.log('mean_fg_dice', mean_fg_dice, self.current_epoch)
        self.logger.log('dice_per_class_or_region', dice_per_class, self.current_epoch)
        self.logger.log('val_losses', loss_here, self.current_epoch)

    def on_epoch_start(self):
        self.logger.log('epoch_start_timestamps', time(), self.current_epoch)

    def on_epoch_end(self):
        self.logger.log('epoch_end_timestamps', time(), self.current_epoch)
        _epoch.log_epoch_summary(self.logger.get_value, self.print_to_log_file)
        get = self.logger.get_value

        # handling periodic checkpointing
        current_epoch = self.current_epoch
        if (current_epoch + 1) % self.save_every == 0 and current_epoch != (self.num_epochs - 1):
            self.save_checkpoint(join(self.output_folder, 'checkpoint_latest.pth'))

        # handle 'best' checkpointing. ema_fg_dice is computed by the logger and can be accessed like this
        ema = get('ema_fg_dice', step=-1)
        if self._best_ema is None or ema > self._best_ema:
            self._best_ema = ema
            self.print_to_log_file(f"Yayy! New best EMA pseudo Dice: {np.round(self._best_ema, decimals=4)}")
            self.save_checkpoint(join(self.output_folder, 'checkpoint_best.pth'))

        if self.local_rank == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file('No checkpoint written, checkpointing is disabled')
            return
        checkpoint = _checkpointing.build_checkpoint(self, _setup.unwrap_network(self.network))
        _checkpointing.save_checkpoint_atomically(checkpoint, filename)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        if not self.was_initialized:
            self.initialize()
        from_file = isinstance(filename_or_checkpoint, str)
        source = filename_or_checkpoint if from_file else 'the checkpoint dict'
        checkpoint = _checkpointing.read_checkpoint(source, self.device) if from_file else filename_or_checkpoint
        _checkpointing.restore(self, checkpoint, _setup.unwrap_network(self.network), source)

    # ------------------------------------------------------------------ validation and the loop
    def perform_actual_validation(self, save_probabilities: bool = False):
        _validation.perform_actual_validation(self, save_probabilities)

    def run_training(self):
        """on_train_start, then per epoch: on_epoch_start, on_train_epoch_start, train_step per iteration,
        on_train_epoch_end, on_validation_epoch_start, validation_step per iteration, on_validation_epoch_end,
        on_epoch_end; finally on_train_end. SIGTERM/SIGUSR1/SIGINT stop it between two iterations with
        checkpoint_latest.pth written (see documentation/preemption.md)."""
        _loop.run_training(self)


# star import: all public names; OptimizedModule lazily (importing torch._dynamo costs ~2.5 s CPU)
def __getattr__(name: str):
    if name != 'OptimizedModule':
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from torch._dynamo import OptimizedModule
    return OptimizedModule


__all__ = sorted({name for name in globals() if not name.startswith('_')} | {'OptimizedModule'})
