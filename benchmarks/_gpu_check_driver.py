"""The measuring side of benchmarks/gpu_check.py: runs inside one implementation's python (ours or the reference) and
writes what it measured as JSON. It imports only names both implementations share, except for the steps that
concern ours alone (``prepare``, ``resume``).

    python _gpu_check_driver.py prepare --work DIR --device cpu|cuda --out FILE
    python _gpu_check_driver.py train   --work DIR --device D --iters N --warmup W [--variant V] --out FILE
    python _gpu_check_driver.py predict --work DIR --device D --output DIR --out FILE
    python _gpu_check_driver.py resume  --work DIR --device D --out FILE

The environment (nnUNet_raw, nnUNet_preprocessed, nnUNet_results, nnUNet_n_proc_DA, nnUNet_compile) is set by the
caller.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

DATASET_ID, DATASET_NAME = 990, "Dataset990_GpuCheck"
CONFIGURATION = "3d_fullres"
# the training set and the prediction volumes (one >= 256x256x200 voxels on the GPU), in array axis order (z, y, x)
SIZES = {
    "cuda": {"train": (64, 192, 192), "num_train": 8,
             "predict": {"vol_a": (200, 256, 256), "vol_b": (90, 220, 200), "vol_c": (48, 160, 170)}},
    "cpu": {"train": (12, 32, 32), "num_train": 5, "predict": {"vol_a": (20, 48, 40), "vol_b": (14, 36, 34)}},
}
CHECK_TRAINER = "nnUNetTrainerGpuCheck"
TRAINER_SOURCE = '''
import os
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerGpuCheck(nnUNetTrainer):
    """nnUNetTrainer with a schedule short enough for the GPU check (epochs from GPU_CHECK_EPOCHS)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get('GPU_CHECK_EPOCHS', '1'))
        self.num_iterations_per_epoch = int(os.environ.get('GPU_CHECK_ITERATIONS', '10'))
        self.num_val_iterations_per_epoch = 2
        self.save_every = 1
'''


def _cuda_memory(torch, device) -> dict:
    if device.type != "cuda":
        return {"peak_allocated_mb": None, "peak_reserved_mb": None}
    return {"peak_allocated_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20,
            "peak_reserved_mb": torch.cuda.max_memory_reserved(device) / 2 ** 20}


def _as_our_commands_run() -> bool:
    """Ours: the process settings that ``nnUNetv2_train`` and ``nnUNetv2_predict`` make before they import torch
    (freed memory kept for reuse, in this process and the workers it starts; OpenMP threads that sleep while waiting),
    so that the timings are those of the commands users type, not of a plain Python process. The reference's commands
    make none (returns False there). Must run before torch is imported."""
    try:
        from nnunetv2.utilities.console_command import prepare_command_process
    except ImportError:
        return False
    prepare_command_process()
    return True


def _threads_as_the_commands_set_them(torch, device) -> None:
    """``nnUNetv2_train`` and ``nnUNetv2_predict`` (ours and the reference's) give torch one CPU thread when they run
    on CUDA; the timed steps run with that setting too."""
    if device.type != "cuda":
        return
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # the inter-op pool has been used already
        pass


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _plans_and_dataset_json():
    folder = os.path.join(os.environ["nnUNet_preprocessed"], DATASET_NAME)
    with open(os.path.join(folder, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    return plans, dataset_json


# --------------------------------------------------------------------------------------------------------- ours only
def prepare(args) -> dict:
    """Generate the datasets (.tif, no SimpleITK needed), plan and preprocess 3d_fullres, write a checkpoint with
    random weights (fixed seed) that both implementations load, and the prediction inputs."""
    import torch
    from nnunetv2.demo.synthetic_dataset import make_synthetic_dataset
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                     plan_experiment_dataset, preprocess_dataset)
    sizes = SIZES[args.device]
    raw = os.environ["nnUNet_raw"]
    t0 = time.perf_counter()
    make_synthetic_dataset(raw, DATASET_ID, "GpuCheck", num_train=sizes["num_train"], num_test=0,
                           shape=sizes["train"], file_ending=".tif")
    extract_fingerprint_dataset(DATASET_ID, num_processes=args.np, verbose=False, show_progress_bar=False)
    plan_experiment_dataset(DATASET_ID)
    plans_file = os.path.join(os.environ["nnUNet_preprocessed"], DATASET_NAME, "nnUNetPlans.json")
    if args.device == "cpu":  # toy size: a small network so that every step takes seconds on a CPU
        with open(plans_file) as f:
            plans = json.load(f)
        arch = plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]
        n = arch["n_stages"]
        arch["features_per_stage"] = [min(4 * 2 ** i, 32) for i in range(n)]
        arch["n_conv_per_stage"] = [1] * n
        arch["n_conv_per_stage_decoder"] = [1] * (n - 1)
        with open(plans_file, "w") as f:
            json.dump(plans, f, indent=4)
    preprocess_dataset(DATASET_ID, configurations=[CONFIGURATION], num_processes=[args.np], show_progress_bar=False)
    t_data = time.perf_counter() - t0

    # prediction inputs: one synthetic case per volume size, renamed
    inputs = os.path.join(args.work, "predict_inputs")
    os.makedirs(inputs, exist_ok=True)
    for i, (name, shape) in enumerate(sizes["predict"].items()):
        folder = make_synthetic_dataset(os.path.join(args.work, "predict_raw"), 900 + i, f"Vol{i}", num_train=0,
                                        num_test=1, shape=shape, file_ending=".tif", seed=77 + i)
        shutil.copy(os.path.join(folder, "imagesTs", "case_000_0000.tif"), os.path.join(inputs, f"{name}_0000.tif"))
        shutil.copy(os.path.join(folder, "imagesTs", "case_000.json"), os.path.join(inputs, f"{name}.json"))

    # the model: the default network of the plans with seeded random weights, saved by our trainer on the CPU
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    plans, dataset_json = _plans_and_dataset_json()
    plans["continue_training"] = False
    torch.manual_seed(args.seed)
    trainer = nnUNetTrainer(plans, CONFIGURATION, 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the inference mirroring axes
    model = os.path.join(args.work, "model")
    os.makedirs(os.path.join(model, "fold_0"), exist_ok=True)
    trainer.save_checkpoint(os.path.join(model, "fold_0", "checkpoint_final.pth"))
    pp = os.path.join(os.environ["nnUNet_preprocessed"], DATASET_NAME)
    for f in ("nnUNetPlans.json", "dataset.json", "dataset_fingerprint.json"):
        shutil.copy(os.path.join(pp, f), os.path.join(model, "plans.json" if f == "nnUNetPlans.json" else f))
    cm = trainer.configuration_manager
    return {"data_s": t_data, "patch_size": list(cm.patch_size), "batch_size": cm.batch_size,
            "n_stages": len(cm.pool_op_kernel_sizes), "spacing": [float(s) for s in cm.spacing],
            "mirror_axes": list(trainer.inference_allowed_mirroring_axes), "model": model, "inputs": inputs,
            "volumes": {k: list(v) for k, v in sizes["predict"].items()}}


# ------------------------------------------------------------------------------------------------ both implementations
def _dummy_batch(torch, trainer, device):
    """A fixed batch of the trainer's patch and batch size with deep-supervision targets, already on the device."""
    patch = [int(p) for p in trainer.configuration_manager.patch_size]
    generator = torch.Generator().manual_seed(0)
    data = torch.rand((trainer.batch_size, trainer.num_input_channels, *patch), generator=generator)
    n_classes = trainer.label_manager.num_segmentation_heads
    scales = trainer._get_deep_supervision_scales() or [[1.0] * len(patch)]
    target = [torch.randint(0, n_classes, (trainer.batch_size, 1, *[round(p * s) for p, s in zip(patch, scale)]),
                            generator=generator).float().to(device) for scale in scales]
    return {"data": data.to(device), "target": target if trainer.enable_deep_supervision else target[0]}


def _timed_steps(torch, trainer, device, batches, warmup: int, iters: int) -> dict:
    losses = []
    for _ in range(warmup):
        losses.append(float(trainer.train_step(batches())["loss"]))
    _sync(torch, device)
    start = time.perf_counter()
    for _ in range(iters):
        losses.append(float(trainer.train_step(batches())["loss"]))
    _sync(torch, device)
    elapsed = time.perf_counter() - start
    return {"iters_per_s": iters / elapsed, "timed_iters": iters, "warmup_iters": warmup,
            "loss_first": losses[0], "loss_last": losses[-1], "losses_finite": all(math.isfinite(v) for v in losses)}


TRAIN_VARIANTS = ("default", "fused_sgd", "channels_last", "fused_sgd+channels_last")


def _variant_trainer_class(torch, base, variant: str):
    """``base`` (nnUNetTrainer) changed only in how the GPU step computes, not in what: a measuring aid for the
    step's speed, not (yet) a trainer of ours.

    fused_sgd: the same SGD (momentum 0.99, Nesterov, weight decay) as one fused kernel; with the grad scaler it
    also skips GradScaler.step's host synchronisation on the inf check (the fused kernel reads found_inf itself).
    channels_last: the network's weights and the input batch in channels-last (NDHWC) memory layout, which cuDNN's
    fp16 3-D convolutions prefer (no layout transposes around each convolution).
    """
    if variant == "default":
        return base
    fused, channels_last = "fused_sgd" in variant, "channels_last" in variant

    class VariantTrainer(base):
        def initialize(self):
            super().initialize()
            if channels_last:  # the compiled wrapper has not traced yet, so it compiles for this layout
                self.network.to(memory_format=torch.channels_last_3d)

        def configure_optimizers(self):
            optimizer, lr_scheduler = super().configure_optimizers()
            if fused:
                group = optimizer.param_groups[0]
                optimizer = torch.optim.SGD(self.network.parameters(), group["lr"], momentum=group["momentum"],
                                            weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                                            fused=True)
                lr_scheduler = type(lr_scheduler)(optimizer, self.initial_lr, self.num_epochs)
            return optimizer, lr_scheduler

        def train_step(self, batch: dict) -> dict:
            if channels_last:
                batch = dict(batch, data=batch["data"].contiguous(memory_format=torch.channels_last_3d))
            return super().train_step(batch)

    return VariantTrainer


def train(args) -> dict:
    """Iterations/s of nnUNetTrainer.train_step (AMP and torch.compile as the trainer decides by default), first on
    a fixed dummy batch (the GPU step alone), then on batches from the trainer's own augmenter workers. With
    ``--variant`` (ours only): the dummy batch alone, the step computed that way."""
    import torch
    import nnunetv2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    device = torch.device(args.device)
    _threads_as_the_commands_set_them(torch, device)
    if device.type == "cuda":  # as nnUNetv2_train sets them: cuDNN times its algorithms and keeps the fastest
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
    plans, dataset_json = _plans_and_dataset_json()
    plans["continue_training"] = False
    torch.manual_seed(args.seed)
    trainer_class = _variant_trainer_class(torch, nnUNetTrainer, args.variant or "default")
    trainer = trainer_class(plans, CONFIGURATION, 0, dataset_json, device=device)
    t0 = time.perf_counter()
    trainer.initialize()
    trainer.network.train()
    result = {"implementation": os.path.dirname(nnunetv2.__file__), "compiled": hasattr(trainer.network, "_orig_mod"),
              "amp": device.type == "cuda", "batch_size": trainer.batch_size, "variant": args.variant or "default"}
    fixed = _dummy_batch(torch, trainer, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dummy = _timed_steps(torch, trainer, device, lambda: fixed, args.warmup, args.iters)
    dummy.update(_cuda_memory(torch, device))
    result["dummy"] = dummy
    result["initialize_and_dummy_s"] = time.perf_counter() - t0
    del fixed
    if args.variant is not None:  # the step alone, compared with the other ways of computing it
        return result

    result["augmenter"] = _augmenter_steps(torch, trainer, device, args)
    if args.few_da_workers:
        # a server with few cores per GPU: the input pipeline may now set the pace
        os.environ["nnUNet_n_proc_DA"] = str(args.few_da_workers)
        result["augmenter_few"] = _augmenter_steps(torch, trainer, device, args)
        result["augmenter_few"]["workers"] = args.few_da_workers
    return result


def _augmenter_steps(torch, trainer, device, args) -> dict:
    """Timed train steps on batches from the trainer's own augmenter (nnUNet_n_proc_DA workers, read now)."""
    dl_train, dl_val = trainer.get_dataloaders()
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        real = _timed_steps(torch, trainer, device, lambda: next(dl_train), max(2, args.warmup // 2), args.iters)
        real.update(_cuda_memory(torch, device))
        return real
    finally:
        for augmenter in (dl_train, dl_val):
            finish = getattr(augmenter, "_finish", None)
            if finish is not None:
                finish()


def _sha1(tensor) -> str:
    import hashlib
    return hashlib.sha1(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def predict(args) -> dict:
    """``nnUNetPredictor.predict_from_files`` on the generated volumes (``--cases``: a subset) with the random-weight
    model, TTA on. ``--cudnn deterministic`` replaces the predictor's cuDNN benchmarking (algorithms picked by timing
    at run time) with cuDNN's deterministic choice, the same in every process: where ours and the reference then agree
    to the bit, their arithmetic is the same and any difference in the default mode is cuDNN's pick."""
    import torch
    import nnunetv2
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    device = torch.device(args.device)
    _threads_as_the_commands_set_them(torch, device)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=True, device=device, verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(os.path.join(args.work, "model"), (0,), "checkpoint_final.pth")
    if args.cudnn == "deterministic":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    inputs = os.path.join(args.work, "predict_inputs")
    sources, targets = inputs, args.output
    if args.cases:
        cases = args.cases.split(",")
        sources = [[os.path.join(inputs, f"{case}_0000.tif")] for case in cases]
        targets = [os.path.join(args.output, case) for case in cases]
    # fingerprints of each case's preprocessed input and of its logits: where two runs differ, they say whether
    # preprocessing (CPU) or the network pass (GPU) made the difference. Hashing time is left out of predict_s.
    fingerprints = []
    network_pass = predictor.predict_logits_from_preprocessed_data
    hashing_s = 0.0

    def fingerprinted(data):
        nonlocal hashing_s
        logits = network_pass(data)
        t0 = time.perf_counter()
        fingerprints.append({"shape": list(data.shape), "input_sha1": _sha1(data), "logits_sha1": _sha1(logits)})
        hashing_s += time.perf_counter() - t0
        return logits

    predictor.predict_logits_from_preprocessed_data = fingerprinted
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    predictor.predict_from_files(sources, targets, save_probabilities=True,
                                 overwrite=True, num_processes_preprocessing=args.np,
                                 num_processes_segmentation_export=args.np)
    _sync(torch, device)
    result = {"implementation": os.path.dirname(nnunetv2.__file__),
              "predict_s": time.perf_counter() - start - hashing_s, "hashing_s": hashing_s,
              "fingerprints": fingerprints}
    result.update(_cuda_memory(torch, device))
    return result


# --------------------------------------------------------------------------------------------------------- ours only
def _train_cli(*extra: str, epochs: int, device: str) -> None:
    """``nnUNetv2_train 990 3d_fullres 0 -tr nnUNetTrainerGpuCheck [extra]`` as typed (through the entry point)."""
    from nnunetv2.run.run_training import run_training_entry
    os.environ["GPU_CHECK_EPOCHS"] = str(epochs)
    argv = sys.argv
    sys.argv = ["nnUNetv2_train", str(DATASET_ID), CONFIGURATION, "0", "-tr", CHECK_TRAINER, "-device", device,
                *extra]
    try:
        run_training_entry()
    except SystemExit as e:
        if e.code not in (0, None):
            raise RuntimeError(f"nnUNetv2_train {' '.join(sys.argv[1:])} exited with {e.code}") from e
    finally:
        sys.argv = argv


def resume(args) -> dict:
    """Train one epoch, continue to two with --c, validate again with --val; then predict one case with the
    checkpoint written on this device both here and on the CPU."""
    import numpy as np
    import torch
    trainer_dir = os.path.join(args.work, "ext_trainer")
    os.makedirs(trainer_dir, exist_ok=True)
    with open(os.path.join(trainer_dir, "nnunettrainergpucheck.py"), "w") as f:
        f.write(TRAINER_SOURCE)
    os.environ["nnUNet_extTrainer"] = trainer_dir
    os.environ["GPU_CHECK_ITERATIONS"] = str(args.iters)
    # time: three trainings here; torch.compile and the worker augmenter have their own checks (pytest, train)
    os.environ["nnUNet_compile"] = "false"
    os.environ["nnUNet_n_proc_DA"] = "2"
    out = os.path.join(os.environ["nnUNet_results"], DATASET_NAME, f"{CHECK_TRAINER}__nnUNetPlans__{CONFIGURATION}",
                       "fold_0")
    result = {}
    t0 = time.perf_counter()
    _train_cli(epochs=1, device=args.device)
    first = torch.load(os.path.join(out, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    result["first_run_epochs"] = first["current_epoch"]
    _train_cli("--c", epochs=2, device=args.device)
    resumed = torch.load(os.path.join(out, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    result["resumed_epochs"] = resumed["current_epoch"]
    result["resumed_train_losses"] = len(resumed["logging"]["train_losses"])
    summary = os.path.join(out, "validation", "summary.json")
    os.remove(summary)
    _train_cli("--val", epochs=2, device=args.device)
    with open(summary) as f:
        result["val_mean_dice"] = json.load(f)["foreground_mean"]["Dice"]
    result["train_and_val_s"] = time.perf_counter() - t0

    # the checkpoint written on this device, predicted here and on the CPU
    from nnunetv2.imageio.tif_reader_writer import Tiff3DIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    image_file = os.path.join(os.environ["nnUNet_raw"], DATASET_NAME, "imagesTr", "case_000_0000.tif")
    with open(os.path.join(os.path.dirname(out), "plans.json")) as f:
        patch = json.load(f)["configurations"][CONFIGURATION]["patch_size"]
    outputs = {}
    for device in (args.device, "cpu"):
        image, props = Tiff3DIO().read_images([image_file])
        image = np.ascontiguousarray(image[(slice(None), *[slice(0, p) for p in patch])])  # one tile: one CPU pass
        predictor = nnUNetPredictor(use_mirroring=False, device=torch.device(device), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(os.path.dirname(out), (0,), "checkpoint_final.pth")
        outputs[device] = predictor.predict_single_npy_array(image, props, None, None, True)
    (seg_a, prob_a), (seg_b, prob_b) = outputs[args.device], outputs["cpu"]
    result["cross_device_voxels_differing"] = int((seg_a != seg_b).sum())
    result["cross_device_voxels"] = int(seg_a.size)
    result["cross_device_max_abs_prob_diff"] = float(np.abs(prob_a.astype(np.float64) - prob_b).max())
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("prepare", "train", "predict", "resume"))
    parser.add_argument("--work", required=True)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--output", help="predict: output folder")
    parser.add_argument("--cases", help="predict: comma-separated volumes (default: all)")
    parser.add_argument("--cudnn", default="benchmark", choices=("benchmark", "deterministic"),
                        help="predict: cuDNN's algorithm choice (the predictor's default: benchmark)")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--np", type=int, default=4, help="worker processes for preprocessing / export")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--variant", default=None, choices=TRAIN_VARIANTS,
                        help="train: the dummy batch only, the step computed this way (ours only)")
    parser.add_argument("--few-da-workers", type=int, default=0,
                        help="train: also time the augmenter with this many workers (0: not)")
    args = parser.parse_args()
    command_settings = _as_our_commands_run()
    result = {"prepare": prepare, "train": train, "predict": predict, "resume": resume}[args.command](args)
    result["command_settings"] = command_settings
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
