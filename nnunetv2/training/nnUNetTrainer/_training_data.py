"""Data side of nnUNetTrainer: split, data loaders and augmenters, bookkeeping files, the text log."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from datetime import datetime
from time import sleep
from typing import List, Tuple

import numpy as np

from nnunetv2.errors import UserError, os_error_line
from nnunetv2.file_io import atomic_path, load_json, save_json

# a full or read-only disk, or a path we may not write, does not heal within the retries; a flaky network disk may
_LOG_ERRNOS_NOT_WORTH_A_RETRY = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
                                 errno.ENOTDIR}
_log_files_warned_about: set = set()


def append_to_log(log_file: str, args: tuple, add_timestamp: bool) -> None:
    """Append one line (``str`` of every argument followed by a space); retried because of flaky network disks."""
    if add_timestamp:
        args = (f"{datetime.now()}:", *args)
    for attempt in range(5):
        try:
            with open(log_file, 'a+') as f:
                for a in args:
                    f.write(str(a))
                    f.write(" ")
                f.write("\n")
            return
        except IOError as e:
            if e.errno in _LOG_ERRNOS_NOT_WORTH_A_RETRY:
                # a full or read-only disk does not heal in 2 s: no retries (they cost 2 s per line), one warning
                if log_file not in _log_files_warned_about:
                    _log_files_warned_about.add(log_file)
                    print(f"nnU-Net warning: the training log is not written: "
                          f"{os_error_line(OSError(e.errno, e.strerror, log_file))} Training goes on; log lines are "
                          f"only printed.", file=sys.stderr)
                return
            print(f"{datetime.now()}: failed to log: ", sys.exc_info())
            if attempt < 4:
                sleep(0.5)


def do_split(trainer) -> Tuple[List[str], List[str]]:
    """(training keys, validation keys) of ``trainer.fold``; creates splits_final.json on first use."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    if trainer.dataset_class is None:
        trainer.dataset_class = infer_dataset_class(trainer.preprocessed_dataset_folder)
    if trainer.fold == "all":
        # if fold==all then we use all images for training and validation
        case_identifiers = trainer.dataset_class.get_identifiers(trainer.preprocessed_dataset_folder)
        tr_keys = case_identifiers
        val_keys = tr_keys
        return tr_keys, val_keys

    splits_file = os.path.join(trainer.preprocessed_dataset_folder_base, "splits_final.json")
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, identifiers=None,
                                    folder_with_segs_from_previous_stage=trainer.folder_with_segs_from_previous_stage)
    if not os.path.isfile(splits_file):
        trainer.print_to_log_file("Creating new 5-fold cross-validation split...")
        all_keys_sorted = list(np.sort(list(dataset.identifiers)))
        if len(all_keys_sorted) < 5:
            raise UserError(f"Only {len(all_keys_sorted)} training cases in {trainer.preprocessed_dataset_folder}: "
                            f"a 5-fold cross-validation needs at least 5.",
                            f"Train with fold 'all' or provide your own {splits_file}.")
        splits = generate_crossval_split(all_keys_sorted, seed=12345, n_splits=5)
        save_json(splits, splits_file)
    else:
        trainer.print_to_log_file("Using splits from existing split file:", splits_file)
        splits = load_json(splits_file)
        from nnunetv2.utilities.crossval_split import cases_in_no_fold, check_splits
        check_splits(splits, splits_file, dataset.identifiers)  # else an unknown id is blamed on preprocessing
        trainer.print_to_log_file(f"The split file contains {len(splits)} splits.")
        unused = cases_in_no_fold(splits, dataset.identifiers)
        if unused:
            shown = ', '.join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
            trainer.print_to_log_file(
                f"WARNING: {len(unused)} preprocessed case(s) are in no fold of {splits_file}, so no fold trains or "
                f"validates on them: {shown}. Cases added after the split was made? Add them to the folds, or "
                f"delete the file for a new 5-fold split (of all cases; it changes every fold). Ignore this if they "
                f"are held out on purpose.")

    trainer.print_to_log_file("Desired fold for training: %d" % trainer.fold)
    if trainer.fold < len(splits):
        tr_keys = splits[trainer.fold]['train']
        val_keys = splits[trainer.fold]['val']
        trainer.print_to_log_file("This split has %d training and %d validation cases."
                                  % (len(tr_keys), len(val_keys)))
    else:
        trainer.print_to_log_file("INFO: You requested fold %d for training but splits contain only %d folds. I am "
                                  "now creating a random (but seeded) 80:20 split!" % (trainer.fold, len(splits)))
        # if we request a fold that is not in the split file, create a random 80:20 split
        rnd = np.random.RandomState(seed=12345 + trainer.fold)
        keys = np.sort(list(dataset.identifiers))
        idx_tr = rnd.choice(len(keys), int(len(keys) * 0.8), replace=False)
        idx_val = [i for i in range(len(keys)) if i not in idx_tr]
        tr_keys = [keys[i] for i in idx_tr]
        val_keys = [keys[i] for i in idx_val]
        trainer.print_to_log_file("This random 80:20 split has %d training and %d validation cases."
                                  % (len(tr_keys), len(val_keys)))
    from nnunetv2.utilities.crossval_split import check_fold_has_cases
    # the training list is judged where the training data are set up (get_tr_and_val_datasets): the validation of a
    # trained model (--val) only needs the validation cases, as in the reference
    check_fold_has_cases(None, val_keys, trainer.fold,
                         splits_file if trainer.fold < len(splits)
                         else f"random 80:20 split of {len(dataset.identifiers)} case(s)")
    if any([i in val_keys for i in tr_keys]):
        trainer.print_to_log_file('WARNING: Some validation cases are also in the training set. Please check the '
                                  'splits.json or ignore if this is intentional.')
    return tr_keys, val_keys


def get_dataloaders(trainer):
    """Training and validation augmenters (one batch pulled from each to start the workers)."""
    from nnunetv2.training.dataloading.augmenters import get_train_val_augmenters
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
    if trainer.dataset_class is None:
        trainer.dataset_class = infer_dataset_class(trainer.preprocessed_dataset_folder)

    # we use the patch size to determine whether we need 2D or 3D dataloaders. We also use it to determine whether
    # we need to use dummy 2D augmentation (in case of 3D training) and what our initial patch size should be
    patch_size = trainer.configuration_manager.patch_size
    deep_supervision_scales = trainer._get_deep_supervision_scales()
    (rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes) = \
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()

    lm = trainer.label_manager
    tr_transforms = trainer.get_training_transforms(
        patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
        use_mask_for_norm=trainer.configuration_manager.use_mask_for_norm, is_cascaded=trainer.is_cascaded,
        foreground_labels=lm.foreground_labels, regions=lm.foreground_regions if lm.has_regions else None,
        ignore_label=lm.ignore_label)
    val_transforms = trainer.get_validation_transforms(
        deep_supervision_scales, is_cascaded=trainer.is_cascaded, foreground_labels=lm.foreground_labels,
        regions=lm.foreground_regions if lm.has_regions else None, ignore_label=lm.ignore_label)

    dataset_tr, dataset_val = trainer.get_tr_and_val_datasets()
    for dataset in (dataset_tr, dataset_val):
        check = getattr(dataset, 'check_previous_stage_complete', None)  # (a client's own dataset class may lack it)
        if check is not None:
            check()
    dl_tr = nnUNetDataLoader(dataset_tr, trainer.batch_size, initial_patch_size,
                             trainer.configuration_manager.patch_size, lm,
                             oversample_foreground_percent=trainer.oversample_foreground_percent,
                             sampling_probabilities=None, pad_sides=None, transforms=tr_transforms,
                             probabilistic_oversampling=trainer.probabilistic_oversampling)
    dl_val = nnUNetDataLoader(dataset_val, trainer.batch_size, trainer.configuration_manager.patch_size,
                              trainer.configuration_manager.patch_size, lm,
                              oversample_foreground_percent=trainer.oversample_foreground_percent,
                              sampling_probabilities=None, pad_sides=None, transforms=val_transforms,
                              probabilistic_oversampling=trainer.probabilistic_oversampling)

    # workers that die report their traceback / exit code instead of hanging (see dataloading.augmenters)
    mt_gen_train, mt_gen_val = get_train_val_augmenters(dl_tr, dl_val, get_allowed_n_proc_DA(),
                                                        pin_memory=trainer.device.type == 'cuda')
    # let's get this party started
    _ = next(mt_gen_train)
    _ = next(mt_gen_val)
    return mt_gen_train, mt_gen_val


def copy_bookkeeping_files(trainer) -> None:
    """plans.json, dataset.json and dataset_fingerprint.json next to the fold folders (rank 0, atomically)."""
    if trainer.local_rank != 0:
        return
    base = trainer.output_folder_base
    save_json(trainer.plans_manager.plans, os.path.join(base, 'plans.json'), sort_keys=False)
    save_json(trainer.dataset_json, os.path.join(base, 'dataset.json'), sort_keys=False)
    # we don't really need the fingerprint but its still handy to have it with the others
    fingerprint = os.path.join(trainer.preprocessed_dataset_folder_base, 'dataset_fingerprint.json')
    if os.path.isfile(fingerprint):
        with atomic_path(os.path.join(base, 'dataset_fingerprint.json')) as tmp:
            shutil.copy(fingerprint, tmp)


def shut_down_augmenters(*augmenters) -> None:
    """Stop the worker processes of (NonDet)MultiThreadedAugmenters, silently."""
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
    from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
    with open(os.devnull, 'w') as devnull, contextlib.redirect_stdout(devnull):
        for a in augmenters:
            if a is not None and isinstance(a, (NonDetMultiThreadedAugmenter, MultiThreadedAugmenter)):
                a._finish()


def stop_augmenters_now(*augmenters) -> None:
    """Stop the workers without draining their queues: the signal that stops a training may have killed some of
    them in the middle of writing a batch, and draining a half-written message blocks forever."""
    for a in augmenters:
        kill = getattr(a, '_kill_workers', None)
        if kill is not None and getattr(a, 'initialized', False):
            kill()
        else:
            shut_down_augmenters(a)


def plot_network_architecture(trainer) -> None:
    """network_architecture.pdf via the optional hiddenlayer package; any failure is only logged."""
    from nnunetv2.utilities.helpers import empty_cache
    if trainer._do_i_compile():
        trainer.print_to_log_file("Unable to plot network architecture: nnUNet_compile is enabled!")
        return
    if trainer.local_rank == 0:
        try:
            # raises ImportError when hiddenlayer is not installed (it is optional)
            import hiddenlayer as hl
            import torch
            g = hl.build_graph(trainer.network,
                               torch.rand((1, trainer.num_input_channels, *trainer.configuration_manager.patch_size),
                                          device=trainer.device), transforms=None)
            g.save(os.path.join(trainer.output_folder, "network_architecture.pdf"))
            del g
        except Exception as e:
            trainer.print_to_log_file("Unable to plot network architecture:")
            trainer.print_to_log_file(e)
        finally:
            empty_cache(trainer.device)
