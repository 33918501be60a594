"""Differential trial, not a speed benchmark: do the training components (losses, the trainer's configuration
pieces, the augmentation pipelines, the learning-rate schedule) give bit for bit the reference's (2.8.1) results on
random inputs?

    python benchmarks/training_fuzz.py [--cases 2000] [--seed 0] [--reference-python PATH] [--keep]

Each case is drawn from its own seeded generator, identically under both interpreters, and is one of:

* ``loss``: one of ``SoftDiceLoss``, ``MemoryEfficientSoftDiceLoss``, ``RobustCrossEntropyLoss``, ``TopKLoss``,
  ``DC_and_CE_loss``, ``DC_and_BCE_loss`` or ``DC_and_topk_loss`` with random arguments (batch Dice, background,
  smoothing, clip_tp, class weights, label smoothing, ignore label / ``use_ignore_label``, loss weights including 0,
  either Dice class), 2-D or 3-D float32 logits, label-map targets (with or without the channel axis, integer or
  float, ignored voxels, sometimes all of them), one-hot or region targets, a loss mask, and sometimes wrapped in
  ``DeepSupervisionWrapper`` over several resolutions; the loss and its gradient w.r.t. the logits are compared;
* ``trainer``: ``nnUNetTrainer`` or a shipped variant (loss, mirroring, augmentation, no deep supervision,
  optimizer, learning-rate schedule, batch norm) built the public way on random plans (2-D/3-D, random strides and
  patch sizes, anisotropic ones among them, batch Dice or not) and a dataset.json with labels, regions and/or an
  ignore label, with and without deep supervision: ``_get_deep_supervision_scales``,
  ``configure_rotation_dummyDA_mirroring_and_inital_patch_size`` and ``_build_loss`` (its weights, then the loss
  and gradient on random network outputs and targets of the right shapes); half of them also build the seeded
  network and run one or two epochs (three for the warm-up trainer) of a few ``train_step`` /
  ``validation_step`` calls through the epoch hooks (losses, tp/fp/fn, logged pseudo Dice and its moving average,
  learning rates, weights after), and half pretend to be one rank of a DDP run (world size and rank faked) for
  ``_set_batch_size_and_oversample`` and the deep-supervision weights;
* ``train_transforms`` / ``val_transforms``: ``get_training_transforms`` of nnUNetTrainer or an augmentation
  variant (DA5, NoDA, DASegOrd0, ...) / nnUNetTrainer's ``get_validation_transforms`` with random arguments (patch
  size, rotation, deep-supervision scales, mirror axes, dummy 2-D augmentation, masking for normalization, cascade
  with foreground labels, regions, ignore label) applied to a few random samples after seeding ``random``,
  ``numpy`` and ``torch`` alike; every output tensor compared;
* ``regions``: ``ConvertSegmentationToRegionsTransform`` (ours is a faster subclass) on label maps of several
  dtypes with regions as ints, lists and tuples, empty, repeated or out of the dtype's range;
* ``poly``: ``PolyLRScheduler`` over random explicit and implicit steps (past the end too); the learning rates and
  the scheduler's ``state_dict``;
* ``warmup``: the warm-up / offset schedules (``Lin_incr_LRScheduler``, ``Lin_incr_offset_LRScheduler``,
  ``PolyLRScheduler_offset``, ``CosineAnnealingLR_offset``) over random steps (their learning rates);
* ``patch_size``: ``get_patch_size`` for random patch sizes, angles (ranges, scalars, negative, beyond 90 degrees)
  and scale ranges.

Left out on purpose (documented differences): deep supervision with a two-stage network (one output: weight 1 in
ours, 0 and a NaN loss in the reference), ``ddp=True`` with batch Dice outside DDP (the reference fails without a
process group), the loss variants' lowest deep-supervision weight under DDP without compile (1e-6 in ours) and
the warm-up schedules' ``get_last_lr()`` (missing in the reference).

One driver process per side (ours: this checkout; the reference from a temporary folder) computes every case with
one torch thread and deterministic algorithms; results are compared exactly (a case both sides refuse counts as
agreement). Prints the first difference of each disagreeing case and a summary; exit status 1 if anything differs.
"""
from __future__ import annotations

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import compare_outcomes, print_summary, run_both, trial_arguments, work_folder  # noqa: E402

KINDS = ["loss", "loss", "loss", "loss", "counts", "regions", "trainer", "trainer", "trainer", "train_transforms",
         "train_transforms", "val_transforms", "poly", "warmup", "patch_size"]
# shipped trainers whose loss, rotation/mirroring, augmentation, optimizer, schedule or network differs from
# nnUNetTrainer's (the base drawn most often)
TRAINERS = ["nnUNetTrainer"] * 6 + [
    "nnUNetTrainerCELoss", "nnUNetTrainerDiceLoss", "nnUNetTrainerDiceCELoss_noSmooth", "nnUNetTrainerTopk10Loss",
    "nnUNetTrainerTopk10LossLS01", "nnUNetTrainerDiceTopK10Loss", "nnUNetTrainerNoDeepSupervision",
    "nnUNetTrainerDA5", "nnUNetTrainerNoDA", "nnUNetTrainer_DASegOrd0_NoMirroring", "nnUNetTrainer_noDummy2DDA",
    "nnUNetTrainerNoMirroring", "nnUNetTrainer_onlyMirror01", "nnUNetTrainer_250epochs_NoMirroring",
    "nnUNetTrainerAdam", "nnUNetTrainerVanillaAdam3en4", "nnUNetTrainerAdam1en3", "nnUNetTrainerCosAnneal",
    "nnUNetTrainer_warmup", "nnUNetTrainerBN", "nnUNetTrainer_5epochs", "nnUNetTrainer_onlyMirror01_DA5"]
LOSS_VARIANTS = ["nnUNetTrainerCELoss", "nnUNetTrainerDiceLoss", "nnUNetTrainerDiceCELoss_noSmooth",
                 "nnUNetTrainerTopk10Loss", "nnUNetTrainerTopk10LossLS01", "nnUNetTrainerDiceTopK10Loss"]
AUGMENTING_TRAINERS = ["nnUNetTrainer"] * 6 + [
    "nnUNetTrainerDA5", "nnUNetTrainerDA5ord0", "nnUNetTrainerDA5Segord0", "nnUNetTrainerNoDA",
    "nnUNetTrainer_DASegOrd0", "nnUNetTrainer_onlyMirror01_DASegOrd0", "nnUNetTrainer_onlyMirror01_DA5"]


@functools.lru_cache(maxsize=None)  # one lookup per class and process: the cases time the trainers, not the search
def _trainer_class(name: str):
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    return recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                       "nnunetv2.training.nnUNetTrainer")


def _numpy(x):
    """A loss value or a tensor as a numpy array (a plain number, which a loss with both weights 0 returns, as is)."""
    import torch
    if torch.is_tensor(x):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy().copy()  # numpy has no bfloat16; exact
    return x


def _loss_and_grad(loss_fn, logits, *targets) -> dict:
    """The loss of ``logits`` (a tensor or a list of them) and its gradient w.r.t. each of them."""
    import torch
    leaves = logits if isinstance(logits, list) else [logits]
    for t in leaves:
        t.requires_grad_(True)
    value = loss_fn(logits, *targets)
    out = {"loss": _numpy(value), "loss_dtype": str(value.dtype) if torch.is_tensor(value) else type(value).__name__}
    if torch.is_tensor(value) and value.requires_grad:
        value.backward()
    out["grad"] = [None if t.grad is None else _numpy(t.grad) for t in leaves]
    return out


def _label_target(rng, shape, n_classes: int, ignore_label, layout: str):
    """A label map of ``shape`` (b, *spatial) with values 0..n_classes-1, some voxels set to the ignore label (all
    of them now and then), laid out as (b, 1, *spatial) or (b, *spatial), int16/int64/float32."""
    import numpy as np
    import torch
    t = rng.integers(0, n_classes, shape)
    if ignore_label is not None:
        r = rng.random()
        if r < 0.1:
            t[...] = ignore_label
        elif r < 0.8:
            t[rng.random(shape) < rng.uniform(0.05, 0.6)] = ignore_label
    if layout == "channel":
        t = t[:, None]
    dtype = rng.choice(["int16", "int64", "float32"])
    return torch.from_numpy(t.astype(getattr(np, str(dtype))))


def _logits(rng, shape, half: bool = False):
    """Random float32 logits; with ``half``, now and then float16 or bfloat16 (what autocast hands a loss)."""
    import numpy as np
    import torch
    x = torch.from_numpy((rng.normal(0, float(rng.choice([0.5, 2, 6])), shape)).astype(np.float32))
    if half and rng.random() < 0.15:
        x = x.to(torch.float16 if rng.random() < 0.5 else torch.bfloat16)
    return x


def _ignore_value(rng, n_classes: int) -> int:
    """The ignore label: the one after the last class, as nnU-Net plans it, or a larger value (e.g. 255)."""
    return n_classes if rng.random() < 0.7 else int(rng.choice([255, int(rng.integers(n_classes + 1, 40))]))


def _dice_kwargs(rng, with_clip: bool) -> dict:
    kwargs = {"batch_dice": bool(rng.random() < 0.5), "do_bg": bool(rng.random() < 0.5),
              "smooth": [1e-5, 1.0, 0.0, 1, 0, float(rng.uniform(0, 2))][int(rng.integers(0, 6))], "ddp": False}
    # outside DDP the reference gathers batch Dice terms over a process group that does not exist and fails
    # (ours sums locally): ddp=True is drawn without batch Dice only
    if not kwargs["batch_dice"] and rng.random() < 0.3:
        kwargs["ddp"] = True
    if with_clip and rng.random() < 0.3:
        kwargs["clip_tp"] = float(rng.choice([0.0, 1.0, float(rng.uniform(0, 5))]))
    return kwargs


def _loss_case(rng) -> dict:
    """One loss with random arguments on random logits/targets, sometimes under deep supervision."""
    import numpy as np
    import torch
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss, DC_and_topk_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss, SoftDiceLoss
    from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss, TopKLoss
    from nnunetv2.utilities.helpers import softmax_helper_dim1

    kind = str(rng.choice(["soft_dice", "me_dice", "ce", "topk", "dc_ce", "dc_ce", "dc_bce", "dc_bce", "dc_topk"]))
    dims = int(rng.choice([2, 3]))
    batch = int(rng.integers(1, 4))
    spatial = [int(v) for v in (rng.integers(2, 20, 2) if dims == 2 else rng.integers(2, 9, 3))]
    n_classes = int(rng.integers(2, 6))
    n_scales = int(rng.integers(2, 4)) if rng.random() < 0.3 else 0
    # shapes of the deep-supervision levels: each halves (at least 1 voxel) some axes of the one before
    shapes = [spatial]
    for _ in range(max(0, n_scales - 1)):
        shapes.append([max(1, s // 2) if rng.random() < 0.7 else s for s in shapes[-1]])
    out = {"kind": kind}

    half = bool(rng.random() < 0.5)

    def logits_of(channels):
        return [_logits(rng, (batch, channels, *s), half) for s in shapes]

    if kind in ("soft_dice", "me_dice"):
        cls = SoftDiceLoss if kind == "soft_dice" else MemoryEfficientSoftDiceLoss
        nonlin = str(rng.choice(["softmax", "sigmoid", "none"]))
        kwargs = _dice_kwargs(rng, with_clip=kind == "soft_dice")
        loss = cls(apply_nonlin={"softmax": softmax_helper_dim1, "sigmoid": torch.sigmoid, "none": None}[nonlin],
                   **kwargs)
        target_kind = str(rng.choice(["labels_channel", "labels_flat", "onehot", "onehot_bool"]))
        logits = logits_of(n_classes)
        if nonlin == "none":  # probabilities-like input, as when the nonlinearity is applied beforehand
            logits = [torch.softmax(x, 1) for x in logits]
        targets, masks = [], []
        use_mask = rng.random() < 0.4
        for s in shapes:
            if target_kind.startswith("labels"):
                targets.append(_label_target(rng, (batch, *s), n_classes, None,
                                             "channel" if target_kind == "labels_channel" else "flat"))
            else:
                onehot = rng.random((batch, n_classes, *s)) < 0.4
                targets.append(torch.from_numpy(onehot if target_kind == "onehot_bool" else onehot.astype(np.float32)))
            if use_mask:
                m = rng.random((batch, 1, *s)) < 0.7
                masks.append(torch.from_numpy(m if rng.random() < 0.5 else m.astype(np.float32)))
        out["args"] = [nonlin, kwargs, target_kind, use_mask]
        if n_scales:
            weights = [float(w) for w in rng.choice([0.0, 0.25, 0.5, 1.0], len(shapes))]
            weights[0] = 1.0
            fn = DeepSupervisionWrapper(loss, weights)
            extra = [masks] if use_mask else []
            out.update(_loss_and_grad(fn, logits, targets, *extra))
        else:
            if use_mask:
                out.update(_loss_and_grad(lambda x, y: loss(x, y, loss_mask=masks[0]), logits[0], targets[0]))
            else:
                out.update(_loss_and_grad(loss, logits[0], targets[0]))
        return out

    if kind in ("ce", "topk"):
        ce_kwargs = {}
        if rng.random() < 0.4:
            ce_kwargs["ignore_index"] = _ignore_value(rng, n_classes)
        if rng.random() < 0.3:
            ce_kwargs["label_smoothing"] = float(rng.choice([0.1, float(rng.uniform(0, 0.5))]))
        if rng.random() < 0.3:
            ce_kwargs["weight"] = torch.from_numpy(rng.uniform(0.1, 3, n_classes).astype(np.float32))
        if kind == "topk":
            ce_kwargs["k"] = float(rng.choice([10, 1, 50, 100, float(rng.uniform(0.5, 100))]))
            loss, layout = TopKLoss(**ce_kwargs), "channel"
        else:
            loss, layout = RobustCrossEntropyLoss(**ce_kwargs), str(rng.choice(["channel", "flat"]))
        out["args"] = [{k: _numpy(v) for k, v in ce_kwargs.items()}, layout]
        logits = logits_of(n_classes)
        targets = [_label_target(rng, (batch, *s), n_classes, ce_kwargs.get("ignore_index"), layout) for s in shapes]
        fn = DeepSupervisionWrapper(loss, [1.0] + [0.5] * (len(shapes) - 1)) if n_scales else loss
        out.update(_loss_and_grad(fn, logits if n_scales else logits[0], targets if n_scales else targets[0]))
        return out

    weight_ce = float(rng.choice([1, 1, 0, 0.5, 2]))
    weight_dice = float(rng.choice([1, 1, 0, 0.5, 2]))
    if kind in ("dc_ce", "dc_topk"):
        ignore_label = _ignore_value(rng, n_classes) if rng.random() < 0.5 else None
        dice_kwargs = _dice_kwargs(rng, with_clip=False)
        dice_class = MemoryEfficientSoftDiceLoss if rng.random() < 0.5 else SoftDiceLoss
        ce_kwargs = {}
        if rng.random() < 0.2:
            ce_kwargs["label_smoothing"] = float(rng.choice([0.1, float(rng.uniform(0, 0.5))]))
        if kind == "dc_ce" and rng.random() < 0.2:
            ce_kwargs["weight"] = torch.from_numpy(rng.uniform(0.1, 3, n_classes).astype(np.float32))
        if kind == "dc_topk":
            ce_kwargs["k"] = float(rng.choice([10, 5, 50]))
            loss = DC_and_topk_loss(dice_kwargs, ce_kwargs, weight_ce, weight_dice, ignore_label)
        else:
            loss = DC_and_CE_loss(dice_kwargs, ce_kwargs, weight_ce, weight_dice, ignore_label, dice_class)
        out["args"] = [dice_kwargs, {k: _numpy(v) for k, v in ce_kwargs.items()}, weight_ce, weight_dice, ignore_label,
                       dice_class.__name__]
        logits = logits_of(n_classes)
        targets = [_label_target(rng, (batch, *s), n_classes, ignore_label, "channel") for s in shapes]
    else:  # dc_bce: region targets, the last channel marking ignored voxels with use_ignore_label
        n_regions = n_classes - 1
        use_ignore = bool(rng.random() < 0.5)
        dice_kwargs = _dice_kwargs(rng, with_clip=False)
        bce_kwargs = {}
        if rng.random() < 0.3:
            bce_kwargs["pos_weight"] = torch.from_numpy(
                rng.uniform(0.5, 3, (n_regions,) + (1,) * dims).astype(np.float32))
        dice_class = MemoryEfficientSoftDiceLoss if rng.random() < 0.7 else SoftDiceLoss
        loss = DC_and_BCE_loss(bce_kwargs, dice_kwargs, weight_ce, weight_dice, use_ignore, dice_class)
        dtype = str(rng.choice(["bool", "float32", "uint8", "int16"]))
        out["args"] = [dice_kwargs, {k: _numpy(v) for k, v in bce_kwargs.items()}, weight_ce, weight_dice, use_ignore,
                       dice_class.__name__, dtype]
        logits = logits_of(n_regions)
        targets = []
        for s in shapes:
            t = rng.random((batch, n_regions + int(use_ignore), *s)) < 0.4
            if use_ignore and rng.random() < 0.1:
                t[:, -1] = True  # every voxel ignored
            targets.append(torch.from_numpy(t.astype(getattr(np, dtype))))
    if n_scales:
        weights = [1.0] + [float(w) for w in rng.choice([0.0, 0.5, 0.25], len(shapes) - 1)]
        r = rng.random()
        if r < 0.15:  # fewer or more weights than outputs
            weights = weights[:-1] if rng.random() < 0.5 else weights + [0.5]
        elif r < 0.4:  # as the trainer passes them
            weights = np.array(weights) / sum(weights)
        out.update(_loss_and_grad(DeepSupervisionWrapper(loss, weights), logits, targets))
    else:
        out.update(_loss_and_grad(loss, logits[0], targets[0]))
    return out


def _label_setup(rng, n_labels: int, kind: str):
    """(labels of dataset.json, regions_class_order or None) for plain labels, regions, an ignore label or both."""
    if kind.startswith("regions") and n_labels >= 2:
        labels = {"background": 0, "whole": list(range(1, n_labels + 1))}
        for i in range(2, n_labels + 1):
            labels[f"upper{i}"] = list(range(i, n_labels + 1)) if rng.random() < 0.5 else i
        order = list(range(1, n_labels + 1))
        if kind == "regions_ignore":
            labels["ignore"] = n_labels + 1
        return labels, order
    labels = {"background": 0, **{f"l{i}": i for i in range(1, n_labels + 1)}}
    if kind == "ignore":
        labels["ignore"] = n_labels + 1
    return labels, None


def _trainer_case(rng) -> dict:
    """A trainer on random plans: its deep-supervision scales, rotation/mirroring/initial patch size and loss."""
    import numpy as np
    import torch
    dims = int(rng.choice([2, 3]))
    trainer_name = TRAINERS[int(rng.integers(0, len(TRAINERS)))]
    n_stages = int(rng.integers(1, 6))
    strides = [[1] * dims]
    for _ in range(n_stages - 1):
        s = [int(v) for v in rng.choice([1, 2, 2, 2], dims)]
        if dims == 3 and rng.random() < 0.4:
            s[0] = 1  # a thick-slice axis pooled less often
        strides.append(s)
    cumulative = np.prod(np.array(strides), axis=0)
    # a patch that every stage divides; now and then one axis much shorter (anisotropic, dummy 2-D augmentation)
    mult = [int(v) for v in rng.integers(1, 4 if dims == 3 else 6, dims)]
    patch = [int(c * m) for c, m in zip(cumulative, mult)]
    if dims == 3 and rng.random() < 0.3:
        patch[0] = int(cumulative[0] * max(1, int(rng.integers(1, 3))))
        patch[1] = int(cumulative[1] * int(rng.integers(2, 6)))
    while int(np.prod(patch)) > 6000:  # small enough for the loss on two cores
        i = int(np.argmax(np.array(patch) / cumulative))
        if patch[i] <= cumulative[i]:
            break
        patch[i] -= int(cumulative[i])
    spacing = [float(v) for v in rng.uniform(0.3, 5, dims)]
    batch_size = int(rng.integers(1, 3))
    n_labels = int(rng.integers(1, 5))
    label_kind = str(rng.choice(["labels", "labels", "ignore", "regions", "regions_ignore"]))
    labels, order = _label_setup(rng, n_labels, label_kind)
    dataset_json = {"channel_names": {"0": "x"}, "labels": labels, "numTraining": 10, "file_ending": ".nii.gz"}
    if order:
        dataset_json["regions_class_order"] = order
    conv = f"torch.nn.modules.conv.Conv{dims}d"
    configuration = "2d" if dims == 2 else "3d_fullres"
    arch = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": n_stages, "features_per_stage": [4] * n_stages, "conv_op": conv,
                            "kernel_sizes": [[3] * dims] * n_stages, "strides": strides,
                            "n_conv_per_stage": [1] * n_stages, "n_conv_per_stage_decoder": [1] * (n_stages - 1),
                            "conv_bias": True, "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
                            "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    config = {"data_identifier": f"nnUNetPlans_{configuration}", "preprocessor_name": "DefaultPreprocessor",
              "batch_size": batch_size, "patch_size": patch, "median_image_size_in_voxels": [2 * p for p in patch],
              "spacing": spacing, "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
              "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resampling,
              "resampling_fn_seg": "resample_data_or_seg_to_shape",
              "resampling_fn_seg_kwargs": dict(resampling, is_seg=True, order=1),
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities_kwargs": dict(resampling, order=1),
              "architecture": arch, "batch_dice": bool(rng.random() < 0.5)}
    full_spacing = spacing if dims == 3 else [999.0] + spacing
    plans = {"dataset_name": "Dataset987_TrainingFuzz", "plans_name": "nnUNetPlans",
             "original_median_spacing_after_transp": full_spacing,
             "original_median_shape_after_transp": [64] * 3, "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "configurations": {configuration: config}, "experiment_planner_used": "ExperimentPlanner",
             "label_manager": "LabelManager", "continue_training": False,
             "foreground_intensity_properties_per_channel": {"0": {
                 "max": 1., "mean": .5, "median": .5, "min": 0., "percentile_00_5": 0., "percentile_99_5": 1.,
                 "std": .3}}}
    trainer = _trainer_class(trainer_name)(plans, configuration, int(rng.integers(0, 5)), dataset_json,
                                           torch.device("cpu"))
    # two stages give one deep-supervision output, weighted 1 by us and 0 (a NaN loss) by the reference on purpose
    # (documentation/differences_from_reference.md): drawn without deep supervision only
    # (and a single stage has no deep-supervision output at all: both refuse it)
    if rng.random() < 0.3 or n_stages <= 2:
        trainer.enable_deep_supervision = False
    out = {"args": [trainer_name, patch, strides, label_kind, n_labels, trainer.enable_deep_supervision]}
    scales = trainer._get_deep_supervision_scales()
    out["ds_scales"] = scales
    configure = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size
    rotation, dummy_2d, initial_patch, mirror_axes = configure()
    out["configure"] = {"rotation": list(rotation), "do_dummy_2d": dummy_2d, "initial_patch_size": initial_patch,
                        "mirror_axes": mirror_axes, "inference_mirroring": trainer.inference_allowed_mirroring_axes}
    loss = trainer._build_loss()
    out["loss_class"] = type(loss).__name__
    if hasattr(loss, "weight_factors"):
        out["weight_factors"] = [float(w) for w in loss.weight_factors]
    lm = trainer.label_manager
    heads = lm.num_segmentation_heads
    level_shapes = [patch] if scales is None else [[int(round(p * s)) for p, s in zip(patch, sc)] for sc in scales]

    def target():
        """Targets as the training pipeline hands them over: one per deep-supervision level (or one)."""
        targets = []
        for s in level_shapes:
            if lm.has_regions:
                t = rng.random((batch_size, heads + int(lm.ignore_label is not None), *s)) < 0.4
            else:
                # labels 0..n and the ignore label (its value), int16 like the data loader's segmentations
                values = lm.all_labels + ([lm.ignore_label] if lm.ignore_label is not None else [])
                t = rng.choice(np.array(values), (batch_size, 1, *s)).astype(np.int16)
            targets.append(torch.from_numpy(t))
        return targets if scales is not None else targets[0]

    logits = [_logits(rng, (batch_size, heads, *s)) for s in level_shapes]
    out.update(_loss_and_grad(loss, logits if scales is not None else logits[0], target()))
    if n_stages >= 2 and rng.random() < 0.5:  # a one-stage U-Net has no decoder output to train
        out["steps"] = _trainer_steps(rng, trainer, loss, patch, batch_size, target)
    if rng.random() < 0.5:
        out["ddp"] = _ddp_pieces(rng, trainer)
    return out


def _ddp_pieces(rng, trainer) -> dict:
    """What one rank of a pretended DDP run sets up: its share of the batch and of the foreground oversampling
    (``_set_batch_size_and_oversample``) and the deep-supervision weights of ``_build_loss``. The process group
    is faked by replacing torch.distributed's world size and rank for the duration."""
    import torch.distributed as dist
    world_size = int(rng.integers(1, 9))
    rank = int(rng.integers(0, world_size))
    # now and then fewer samples than ranks, which both refuse (with other exceptions)
    trainer.configuration_manager.configuration["batch_size"] = int(
        rng.integers(1, world_size) if world_size > 1 and rng.random() < 0.1 else world_size + rng.integers(0, 12))
    trainer.oversample_foreground_percent = float(rng.choice([0.33, 0.0, 1.0, 0.5, float(rng.uniform(0, 1))]))
    saved = dist.get_world_size, dist.get_rank
    dist.get_world_size = lambda group=None: world_size
    dist.get_rank = lambda group=None: rank
    trainer.is_ddp = True
    try:
        out = {"args": [world_size, rank, trainer.configuration_manager.batch_size,
                        trainer.oversample_foreground_percent]}
        try:
            trainer._set_batch_size_and_oversample()
        except Exception:
            out["refused"] = True
            return out
        out["batch_size"] = trainer.batch_size
        out["oversample"] = trainer.oversample_foreground_percent
        loss = trainer._build_loss()
        out["loss_class"] = type(loss).__name__
        if hasattr(loss, "weight_factors"):
            if type(trainer).__name__ in LOSS_VARIANTS:
                # on purpose, these give the lowest output 1e-6 here (as nnUNetTrainer), the reference 0, which
                # stops DDP (documentation/differences_from_reference.md): only the number of weights is compared
                out["n_weight_factors"] = len(loss.weight_factors)
            else:
                out["weight_factors"] = [float(w) for w in loss.weight_factors]
        return out
    finally:
        dist.get_world_size, dist.get_rank = saved
        trainer.is_ddp = False


def _trainer_steps(rng, trainer, loss, patch, batch_size: int, target) -> dict:
    """A seeded network trained for a few steps and validated through the trainer's own hooks (train_step,
    validation_step, the epoch-end summaries with the pseudo Dice); what they return and log, the weights after."""
    import numpy as np
    import torch
    torch.manual_seed(int(rng.integers(0, 2 ** 31)))
    trainer.num_input_channels = 1
    trainer.network = trainer.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 1, trainer.label_manager.num_segmentation_heads,
        trainer.enable_deep_supervision)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    trainer.loss = loss

    def batch():
        return {"data": torch.from_numpy(rng.normal(0, 1, (batch_size, 1, *patch)).astype(np.float32)),
                "target": target()}
    n_epochs = int(rng.integers(1, 3))  # two epochs: the pseudo Dice's moving average too
    if hasattr(trainer, "warmup_duration_whole_net"):  # the warm-up trainer: switch to the poly schedule early
        trainer.warmup_duration_whole_net = int(rng.integers(1, 3))
        n_epochs = int(rng.integers(1, 4))
    epochs = []
    for epoch in range(n_epochs):
        trainer.current_epoch = epoch
        trainer.on_train_epoch_start()
        train_outputs = [trainer.train_step(batch()) for _ in range(int(rng.integers(1, 3)))]
        trainer.on_train_epoch_end(train_outputs)
        trainer.on_validation_epoch_start()
        with torch.no_grad():
            val_outputs = [trainer.validation_step(batch()) for _ in range(int(rng.integers(1, 3)))]
        trainer.on_validation_epoch_end(val_outputs)
        epochs.append({"train": train_outputs, "val": val_outputs})
    # as float64 arrays (exact for these float32/float64 values, NaN equal to NaN): ours logs Python floats where
    # the reference logs NumPy scalars, on purpose (documentation/differences_from_reference.md)
    logged = {k: np.asarray(trainer.logger.get_value(k, step=None), dtype=np.float64) for k in
              ["lrs", "train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice", "dice_per_class_or_region"]}
    logged["mean_fg_dice_type"] = type(trainer.logger.get_value("mean_fg_dice", step=-1)).__name__
    return {"epochs": epochs, "logged": logged,
            "weights": {k: _numpy(v) for k, v in trainer.network.state_dict().items()},
            "lr": trainer.optimizer.param_groups[0]["lr"]}


def _transform_args(rng, training: bool) -> tuple:
    """(keyword arguments of get_training_transforms / get_validation_transforms, data shape, n channels,
    labels used in the segmentation)."""
    import numpy as np
    dims = int(rng.choice([2, 3]))
    # at least 6 voxels an axis: DA5's blank rectangles need room for one
    patch = [int(v) for v in (rng.integers(6, 28, 2) if dims == 2 else rng.integers(6, 14, 3))]
    n_labels = int(rng.integers(1, 5))
    ds_scales = None
    if rng.random() < 0.6:
        ds_scales, current = [[1.0] * dims], np.ones(dims)
        for _ in range(int(rng.integers(1, 4))):
            current = current / np.array(rng.choice([1, 2, 2], dims))
            ds_scales.append([float(v) for v in current])
    is_cascaded = bool(rng.random() < 0.25)
    regions, ignore_label = None, None
    r = rng.random()
    if r < 0.3 and n_labels >= 2:
        regions = [list(range(1, n_labels + 1))] + [
            (int(i) if rng.random() < 0.5 else tuple(range(int(i), n_labels + 1))) for i in range(2, n_labels + 1)]
        if rng.random() < 0.4:
            ignore_label = n_labels + 1
    elif r < 0.55:
        ignore_label = n_labels + 1
    n_channels = int(rng.integers(1, 3))
    kwargs = {"deep_supervision_scales": ds_scales, "is_cascaded": is_cascaded,
              "foreground_labels": list(range(1, n_labels + 1)) if is_cascaded else None,
              "regions": regions, "ignore_label": ignore_label}
    data_shape = list(patch)
    if training:
        dummy_2d = bool(dims == 3 and rng.random() < 0.3)
        rotation = rng.choice(["pm15", "pm30", "pm180", "scalar"])
        rotation = {"pm15": (-np.pi / 12, np.pi / 12), "pm30": (-np.pi / 6, np.pi / 6), "pm180": (-np.pi, np.pi),
                    "scalar": float(rng.uniform(-1, 1))}[str(rotation)]
        axes_options = [None, (), (0,), (1,), (0, 1)] + ([(2,), (0, 1, 2), (1, 2)] if dims == 3 else [])
        mirror_axes = axes_options[int(rng.integers(0, len(axes_options)))]
        use_mask = None if rng.random() < 0.5 else [bool(v) for v in rng.random(n_channels) < 0.6]
        patch_as = {"list": patch, "tuple": tuple(patch), "array": np.array(patch)}[
            str(rng.choice(["list", "tuple", "array"]))]
        kwargs = {"patch_size": patch_as, "rotation_for_DA": rotation,
                  "mirror_axes": mirror_axes, "do_dummy_2d_data_aug": dummy_2d, "use_mask_for_norm": use_mask,
                  **kwargs}
        # the data loader hands over a larger patch than the final one (room for rotation and scaling)
        data_shape = [p + int(rng.integers(0, max(1, p // 2) + 1)) for p in patch]
    return kwargs, data_shape, n_channels, n_labels


def _transforms_case(rng, training: bool) -> dict:
    """A few random samples through the training or validation pipeline, every generator seeded alike first."""
    import random
    import numpy as np
    import torch
    kwargs, data_shape, n_channels, n_labels = _transform_args(rng, training)
    name = AUGMENTING_TRAINERS[int(rng.integers(0, len(AUGMENTING_TRAINERS)))] if training else "nnUNetTrainer"
    trainer_class = _trainer_class(name)
    pipeline = (trainer_class.get_training_transforms if training else trainer_class.get_validation_transforms)(
        **kwargs)
    out = {"args": repr([name] + sorted(kwargs.items())),
           "transforms": [type(t).__name__ for t in pipeline.transforms]}
    # Gaussian blur with benchmark=True picks FFT or direct convolution by timing them, so its last digits change
    # from run to run on either side: its setting is compared, then it is run without the timing
    blurs = [t.transform if hasattr(t, "transform") else t for t in pipeline.transforms]
    blurs = [t for t in blurs if hasattr(t, "benchmark")]
    out["blur_benchmark"] = [bool(t.benchmark) for t in blurs]
    for t in blurs:
        t.benchmark = False
    seed = int(rng.integers(0, 2 ** 31))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    samples = []
    for _ in range(int(rng.integers(1, 4))):
        image = torch.from_numpy(rng.normal(0, 1, (n_channels, *data_shape)).astype(np.float32))
        values = list(range(0, n_labels + 1)) + [-1] + ([kwargs["ignore_label"]] if kwargs["ignore_label"] else [])
        seg = rng.choice(np.array(values), (1 + int(kwargs["is_cascaded"]), *data_shape))
        if kwargs["is_cascaded"]:
            seg[1] = np.clip(seg[1], 0, n_labels)  # the previous stage's segmentation holds labels only
        if rng.random() < 0.3:  # blobs rather than noise, so that connected-component steps find components
            seg[0] = 0
            seg[(0, *[slice(int(rng.integers(0, s // 2 + 1)), int(s // 2 + rng.integers(1, s // 2 + 2)))
                      for s in data_shape])] = int(rng.integers(1, n_labels + 1))
        with torch.no_grad():
            result = pipeline(image=image, segmentation=torch.from_numpy(seg.astype(np.int16)))
        sample = {"image": _numpy(result["image"])}
        segs = result["segmentation"]
        sample["segmentation"] = [_numpy(s) for s in segs] if isinstance(segs, (list, tuple)) else _numpy(segs)
        samples.append(sample)
    out["samples"] = samples
    out["rng_after"] = [float(np.random.random()), float(torch.rand(1)), random.random()]
    return out


def _counts_case(rng) -> dict:
    """``get_tp_fp_fn_tn`` as the trainer's validation step calls it (one-hot predictions, label maps, the ignore
    mask) and on soft probabilities, over random axes, squared or not."""
    import numpy as np
    import torch
    from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
    dims = int(rng.choice([2, 3]))
    batch, n_classes = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    spatial = [int(v) for v in (rng.integers(1, 20, 2) if dims == 2 else rng.integers(1, 9, 3))]
    if rng.random() < 0.5:
        pred = torch.from_numpy((rng.random((batch, n_classes, *spatial)) < 0.4).astype(np.float32))
    else:
        pred = torch.softmax(_logits(rng, (batch, n_classes, *spatial)), 1)
    layout = str(rng.choice(["channel", "flat", "onehot"]))
    if layout == "onehot":
        gt = torch.from_numpy((rng.random((batch, n_classes, *spatial)) < 0.4).astype(
            str(rng.choice(["float32", "bool", "int16"]))))
    else:
        gt = _label_target(rng, (batch, *spatial), n_classes, None, layout)
    all_axes = [0] + list(range(2, dims + 2))
    axes = str(rng.choice(["none", "spatial", "batch", "random", "empty"]))
    axes = {"none": None, "spatial": tuple(range(2, dims + 2)), "batch": all_axes, "empty": (),
            "random": [int(a) for a in rng.permutation(all_axes)[:int(rng.integers(1, len(all_axes) + 1))]]}[axes]
    mask = None
    if rng.random() < 0.5:
        m = rng.random((batch, 1, *spatial)) < 0.7
        mask = torch.from_numpy(m if rng.random() < 0.5 else m.astype(np.float32))
    square = bool(rng.random() < 0.3)
    counts = get_tp_fp_fn_tn(pred, gt, axes=axes, mask=mask, square=square)
    return {"args": repr((layout, axes, mask is None, square)), "counts": [_numpy(c) for c in counts],
            "dtypes": [str(c.dtype) for c in counts]}


def _regions_case(rng) -> dict:
    """``ConvertSegmentationToRegionsTransform`` as the pipelines import it (ours is a faster subclass) on label maps
    of several dtypes, with regions given as ints, lists and tuples (one label, several, none, repeated, values the
    dtype cannot hold, negative)."""
    import numpy as np
    import torch
    try:  # what our pipelines use
        from nnunetv2.training.data_augmentation.pipelines import ConvertSegmentationToRegionsTransform
    except ImportError:  # the reference's pipelines use batchgeneratorsv2's own
        from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
    dims = int(rng.choice([2, 3]))
    n_labels = int(rng.integers(1, 6))
    spatial = [int(v) for v in (rng.integers(1, 20, 2) if dims == 2 else rng.integers(1, 9, 3))]
    dtype = str(rng.choice(["int16", "int16", "int8", "uint8", "int32", "int64", "float32"]))
    seg = rng.integers(-1 if dtype != "uint8" else 0, n_labels + 2, (int(rng.integers(1, 3)), *spatial))
    if rng.random() < 0.2:
        seg[seg == n_labels + 1] = 200 if dtype == "uint8" else 130
    seg = torch.from_numpy(seg.astype(getattr(np, dtype)))

    def region():
        r = rng.random()
        if r < 0.3:
            return int(rng.integers(-1, n_labels + 2))
        labels = [int(v) for v in rng.integers(-1, n_labels + 2, int(rng.integers(0, 4)))]
        if rng.random() < 0.15:
            labels.append(int(rng.choice([130, 200, 300, 70000])))
        return labels if r < 0.7 else tuple(labels)
    regions = [region() for _ in range(int(rng.integers(1, 6)))]
    channel = int(rng.integers(0, seg.shape[0]))
    out = ConvertSegmentationToRegionsTransform(regions=regions, channel_in_seg=channel)(segmentation=seg)
    return {"args": repr((dtype, regions, channel)), "regions": _numpy(out["segmentation"])}


def _poly_case(rng) -> dict:
    import torch
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
    initial_lr = float(rng.choice([1e-2, 1e-3, float(rng.uniform(1e-5, 1))]))
    max_steps = int(rng.choice([1000, 250, int(rng.integers(1, 50))]))
    exponent = float(rng.choice([0.9, float(rng.uniform(0.1, 3))]))
    current_step = None if rng.random() < 0.7 else int(rng.integers(0, max_steps))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=initial_lr, momentum=0.99, nesterov=True)
    if current_step is not None:  # torch wants the starting lr recorded when a scheduler starts part way
        optimizer.param_groups[0]["initial_lr"] = initial_lr
    scheduler = PolyLRScheduler(optimizer, initial_lr, max_steps, exponent, current_step)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(int(rng.integers(1, 30))):
        r = rng.random()
        step = None if r < 0.4 else (-1 if r < 0.45 else int(rng.integers(0, max_steps + (2 if r > 0.95 else 0))))
        scheduler.step(step)
        lrs.append(optimizer.param_groups[0]["lr"])
    state = {k: v for k, v in scheduler.state_dict().items()}
    return {"lrs": lrs, "last_lr": scheduler.get_last_lr(), "state": repr(sorted(state.items()))}


def _warmup_case(rng) -> dict:
    """The warm-up / offset schedules of ``lr_scheduler.warmup`` (warm-up and Primus trainers) over random steps:
    the learning rates they set. Under current torch the reference's schedules have no ``get_last_lr()`` (their
    ``step`` never records it) and its ``CosineAnnealingLR_offset`` cannot be built (it hands torch a removed
    ``verbose`` argument); ours do both (documentation/differences_from_reference.md). So ``get_last_lr`` is not
    compared, and where the normal construction fails the cosine schedule is built as older torch built it (torch's
    own constructor without that argument) to compare its steps."""
    import torch
    from nnunetv2.training.lr_scheduler import warmup
    name = str(rng.choice(["Lin_incr_LRScheduler", "Lin_incr_offset_LRScheduler", "PolyLRScheduler_offset",
                           "CosineAnnealingLR_offset"]))
    lr = float(rng.choice([1e-2, 3e-4, float(rng.uniform(1e-5, 1))]))
    max_steps = int(rng.choice([50, 1000, int(rng.integers(2, 60))]))
    start = int(rng.integers(0, max_steps))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.99, nesterov=True)
    if name == "Lin_incr_LRScheduler":
        scheduler = warmup.Lin_incr_LRScheduler(optimizer, lr, max_steps)
    elif name == "Lin_incr_offset_LRScheduler":
        scheduler = warmup.Lin_incr_offset_LRScheduler(optimizer, lr, max_steps, start)
    elif name == "CosineAnnealingLR_offset":
        eta_min = float(rng.choice([0, 1e-6]))
        try:
            scheduler = warmup.CosineAnnealingLR_offset(optimizer, max_steps, eta_min, offset=start)
        except TypeError:
            scheduler = warmup.CosineAnnealingLR_offset.__new__(warmup.CosineAnnealingLR_offset)
            scheduler.offset = start
            torch.optim.lr_scheduler.CosineAnnealingLR.__init__(scheduler, optimizer, max_steps, eta_min)
    else:
        scheduler = warmup.PolyLRScheduler_offset(optimizer, lr, max_steps, start,
                                                  float(rng.choice([0.9, float(rng.uniform(0.1, 3))])))
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(int(rng.integers(1, 30))):
        r = rng.random()
        scheduler.step(None if r < 0.5 else int(rng.integers(0, max_steps + 1)))
        lrs.append(optimizer.param_groups[0]["lr"])
    return {"args": [name, lr, max_steps, start], "lrs": lrs, "ctr": getattr(scheduler, "ctr", None)}


def _patch_size_case(rng) -> dict:
    import numpy as np
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    dims = int(rng.choice([2, 3]))
    patch = [int(v) for v in rng.integers(1, 300, dims)]
    patch = {"list": patch, "tuple": tuple(patch), "array": np.array(patch)}[str(rng.choice(["list", "tuple",
                                                                                          "array"]))]

    def angle():
        r = rng.random()
        if r < 0.5:
            a = float(rng.choice([np.pi / 12, np.pi / 6, np.pi, float(rng.uniform(0, 4))]))
            return (-a, a) if rng.random() < 0.7 else [-a / 2, a]
        return float(rng.uniform(-2, 3))
    rot = [angle() for _ in range(3)]
    scale = tuple(float(v) for v in sorted(rng.uniform(0.5, 1.5, 2))) if rng.random() < 0.5 else (0.85, 1.25)
    return {"args": repr((patch, rot, scale)), "patch_size": get_patch_size(patch, *rot, scale)}


def _kind(seed: int) -> str:
    import numpy as np
    return KINDS[int(np.random.default_rng([seed, 7]).integers(0, len(KINDS)))]


def drive(first_seed: int, n_cases: int, result_file: str) -> None:
    import numpy as np
    import torch
    from _fuzz_harness import drive_cases
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    def case(i: int) -> dict:
        seed = first_seed + i
        rng = np.random.default_rng(seed)
        kind = _kind(seed)
        if kind == "loss":
            return _loss_case(rng)
        if kind == "trainer":
            return _trainer_case(rng)
        if kind in ("train_transforms", "val_transforms"):
            return _transforms_case(rng, kind == "train_transforms")
        if kind == "regions":
            return _regions_case(rng)
        if kind == "counts":
            return _counts_case(rng)
        if kind == "warmup":
            return _warmup_case(rng)
        if kind == "poly":
            return _poly_case(rng)
        return _patch_size_case(rng)

    drive_cases(list(range(n_cases)), case, result_file)


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=2000)
    args = p.parse_args()
    if args.driver:
        drive(int(args.driver[0]), int(args.driver[1]), args.driver[2])
        return 0

    with work_folder("nnunet_training_fuzz_", args.keep) as base:
        # each side's trainers write their folders and logs into their own results folder
        ref, ours = run_both(args, __file__, [str(args.seed), str(args.cases)], base,
                             lambda side: {"OMP_NUM_THREADS": "1", "nnUNet_compile": "f",
                                           "nnUNet_results": os.path.join(base, f"results_{side}")})
        differing, refused_both = compare_outcomes(
            ref, ours, list(range(args.cases)), lambda i: f"{_kind(args.seed + i)} case seed {args.seed + i}")
        print_summary("cases", args.cases, differing, refused_both, ref, ours)
        return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
