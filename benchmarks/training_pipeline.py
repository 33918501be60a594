"""Benchmark: training input pipeline (and train_step) of ours vs the reference (2.8.1) on the same preprocessed data.

    python benchmarks/training_pipeline.py [--dataset 902] [--configuration 3d_fullres] [--workers 2]
                                           [--batches 40] [--warmup 5] [--steps 2] [--repeats 2] [--device cpu]
                                           [--preprocessed PATH] [--reference-python PATH] [--keep]

The golden dataset is generated (../shared/reference/<dataset>/generate.sh) and preprocessed once with the
reference (``nnUNetv2_plan_and_preprocess -c <configuration>``); both implementations then read that same folder
(``--preprocessed`` reuses an existing nnUNet_preprocessed). This script re-runs itself with each implementation's
python (the reference from a temporary folder so that our package cannot shadow it) and measures, in that process:

* single-process: batches/s of ``nnUNetDataLoader`` (``nnUNetDatasetBlosc2`` + the full training augmentation) drawn
  in the main process (no worker noise; 1 torch/BLAS thread), and the CPU time per batch of that loop (robust to
  other load on a shared machine);
* ``--workers`` processes: batches/s of the multi-process augmenter the trainer uses (ours:
  ``augmenters.nnUNetNonDetMultiThreadedAugmenter``; reference: batchgenerators' ``NonDetMultiThreadedAugmenter``),
  after ``--warmup`` batches; plus the time to the first batch; and the CPU time of the whole process tree (main
  process with its threads + workers) per batch over another ``--batches`` batches, taken between moments at which
  the queues are full and the workers idle (the number to compare on a shared machine);
* train_step: seconds per ``nnUNetTrainer.train_step`` on one fixed batch after ``initialize()`` (``--steps`` timed
  steps after one warm-up, in the first repeat only; skipped with ``--steps 0``).

Runs of ours and of the reference alternate ``--repeats`` times and the best value of each is reported (the one least
disturbed by other load on the machine); "whole driver wall time" and peak RSS are minima over the repeats too.

All parameters (patch sizes, rotation, dummy-2D, mirroring, deep-supervision scales, oversampling, regions) come from
each implementation's own ``nnUNetTrainer`` for the same plans; the transforms from its ``get_training_transforms``
(ours delegates to ``data_augmentation.pipelines.build_training_transforms``). Target: throughput >= the reference's.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.environ.get("NNUNET_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
NAMES = {901: "Dataset901_SynthCT3D", 902: "Dataset902_SynthMRRegions", 903: "Dataset903_SynthNatural2D",
         904: "Dataset904_SynthSparse3D"}


# ---------------------------------------------------------------------------------------------------------------------
# driver: runs inside the implementation's own python (ours or the reference), imports only public nnunetv2 names
# ---------------------------------------------------------------------------------------------------------------------
def _batches_per_s(gen, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        next(gen)
    return n / (time.perf_counter() - start)


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(worker_pids) -> float:
    return time.process_time() + sum(_proc_cpu_s(p) for p in worker_pids)


def _wait_until_workers_idle(worker_pids, timeout_s: float = 20.0) -> None:
    """Return once the workers have filled every queue and stopped computing (their CPU time stands still)."""
    deadline = time.perf_counter() + timeout_s
    last = sum(_proc_cpu_s(p) for p in worker_pids)
    while time.perf_counter() < deadline:
        time.sleep(0.3)
        now = sum(_proc_cpu_s(p) for p in worker_pids)
        if now - last < 0.03:  # < 10 % of one core in all: only idle polling left
            return
        last = now


def _workers_cpu_ms_per_batch(aug, n: int):
    """CPU time of the whole process tree (this process with all its threads + the workers) per batch consumed.

    Measured between two moments at which every queue is full and the workers idle, so that exactly the consumed
    batches were produced in between (robust to other load on the machine, unlike batches/s). Includes what idle
    polling happens while the queues refill. None where /proc is unavailable."""
    pids = [p.pid for p in getattr(aug, "_processes", [])]
    if not pids or not os.path.isdir(f"/proc/{pids[0]}"):
        return None
    _wait_until_workers_idle(pids)
    start = _tree_cpu_s(pids)
    for _ in range(n):
        next(aug)
    _wait_until_workers_idle(pids)
    return (_tree_cpu_s(pids) - start) * 1000 / n


def drive(args) -> dict:
    import torch
    from threadpoolctl import threadpool_limits
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    if args.impl == "ours":
        from nnunetv2.training.dataloading.augmenters import nnUNetNonDetMultiThreadedAugmenter as Augmenter
    else:
        from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter as Augmenter

    name = NAMES[args.dataset]
    pp = os.path.join(os.environ["nnUNet_preprocessed"], name)
    with open(os.path.join(pp, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    with open(os.path.join(pp, "dataset.json")) as f:
        dataset_json = json.load(f)
    plans["continue_training"] = False  # the reference's trainer pops this key (run_training sets it)
    trainer = nnUNetTrainer(plans, args.configuration, 0, dataset_json, device=torch.device(args.device))
    trainer.initialize()  # batch size, oversampling, network, loss, optimizer
    cm, lm = trainer.configuration_manager, trainer.label_manager
    patch_size = cm.patch_size
    rotation, dummy_2d, initial_patch_size, mirror_axes = \
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    transforms = trainer.get_training_transforms(
        patch_size, rotation, trainer._get_deep_supervision_scales(), mirror_axes, dummy_2d,
        use_mask_for_norm=cm.use_mask_for_norm, is_cascaded=False, foreground_labels=lm.foreground_labels,
        regions=lm.foreground_regions if lm.has_regions else None, ignore_label=lm.ignore_label)
    tr_keys, _ = trainer.do_split()
    dataset = nnUNetDatasetBlosc2(os.path.join(pp, cm.data_identifier), tr_keys)

    def loader():
        return nnUNetDataLoader(dataset, trainer.batch_size, initial_patch_size, patch_size, lm,
                                oversample_foreground_percent=trainer.oversample_foreground_percent,
                                sampling_probabilities=None, pad_sides=None, transforms=transforms,
                                probabilistic_oversampling=trainer.probabilistic_oversampling)

    import nnunetv2
    out = {"impl": args.impl, "package": os.path.dirname(nnunetv2.__file__), "batch_size": trainer.batch_size, "patch_size": [int(i) for i in patch_size],
           "augmenter": Augmenter.__module__ + "." + Augmenter.__name__}
    torch.manual_seed(1)
    import numpy as np
    np.random.seed(1)
    with threadpool_limits(1, None):
        n_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        dl = loader()
        next(dl)
        cpu = time.process_time()
        out["single_process_batches_per_s"] = _batches_per_s(dl, args.batches_single)
        # CPU seconds of this process: far less sensitive to other jobs on a shared machine than wall time
        out["single_process_cpu_ms_per_batch"] = (time.process_time() - cpu) * 1000 / args.batches_single
        torch.set_num_threads(n_threads)

    start = time.perf_counter()
    aug = Augmenter(loader(), None, args.workers, max(6, args.workers // 2), None,
                    pin_memory=args.device.startswith("cuda"), wait_time=0.002)
    batch = next(aug)
    out["first_batch_s"] = time.perf_counter() - start
    _batches_per_s(aug, args.warmup)
    out["workers_batches_per_s"] = _batches_per_s(aug, args.batches)
    cpu_ms = _workers_cpu_ms_per_batch(aug, args.batches)
    if cpu_ms is not None:
        out["workers_tree_cpu_ms_per_batch"] = cpu_ms
    aug._finish()

    if args.steps > 0:
        trainer.network.train()
        trainer.train_step(batch)  # warm-up (allocations, cudnn autotuning)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(batch)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        out["train_step_s"] = (time.perf_counter() - start) / args.steps
    return out


# ---------------------------------------------------------------------------------------------------------------------
# orchestration: runs in our python
# ---------------------------------------------------------------------------------------------------------------------
def _prepare(args, base: str) -> str:
    """nnUNet_preprocessed with the dataset preprocessed by the reference (or ``--preprocessed``)."""
    if args.preprocessed:
        return args.preprocessed
    raw, pre = os.path.join(base, "raw"), os.path.join(base, "preprocessed")
    os.makedirs(raw)
    os.makedirs(pre)
    subprocess.run(["bash", "generate.sh"], cwd=os.path.join(SHARED, "reference", NAMES[args.dataset]),
                   env=dict(os.environ, nnUNet_raw=raw), check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, nnUNet_raw=raw, nnUNet_preprocessed=pre, nnUNet_results=os.path.join(base, "unused"))
    from _harness import console_script
    print(f"preprocessing {NAMES[args.dataset]} {args.configuration} with the reference ...", flush=True)
    subprocess.run([console_script(args.ref_python, "nnUNetv2_plan_and_preprocess"), "-d", str(args.dataset), "-c",
                    args.configuration, "-np", "2", "-npfp", "2", "--no_pbar"], env=env, cwd=base, check=True,
                   stdout=subprocess.DEVNULL)
    return pre


def _run_driver(impl: str, python: str, args, pre: str, base: str, steps: int):
    from _harness import measure
    result = os.path.join(base, f"{impl}.json")
    cmd = [python, os.path.abspath(__file__), "--driver", impl, "--result", result, "--steps", str(steps)]
    for flag in ("dataset", "configuration", "workers", "batches", "batches_single", "warmup", "device"):
        cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    results = os.path.join(base, impl + "_results")
    os.makedirs(results, exist_ok=True)
    env = dict(os.environ, nnUNet_preprocessed=pre, nnUNet_results=results, nnUNet_raw=os.path.join(base, "raw"),
               nnUNet_compile="f", nnUNet_n_proc_DA=str(args.workers))
    m = measure(cmd, env, cwd=base if impl == "ref" else REPO)
    if m.returncode != 0:
        raise SystemExit(f"{impl} driver failed (exit {m.returncode})")
    with open(result) as f:
        out = json.load(f)
    out["wall_s"], out["peak_rss_mb"] = m.wall_s, m.peak_rss_mb
    return out


def _best(runs, key: str, higher_is_better: bool):
    values = [r[key] for r in runs if key in r]
    if not values:
        return None
    return max(values) if higher_is_better else min(values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=int, default=902, choices=sorted(NAMES))
    p.add_argument("--configuration", default="3d_fullres")
    p.add_argument("--workers", type=int, default=2, help="augmentation worker processes (nnUNet_n_proc_DA)")
    p.add_argument("--batches", type=int, default=40, help="timed batches with workers")
    p.add_argument("--batches-single", type=int, default=20, help="timed batches in the main process")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches with workers before timing")
    p.add_argument("--steps", type=int, default=2, help="timed train_step calls, first repeat only (0: skip)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs per implementation; best is reported")
    p.add_argument("--device", default="cpu", help="device for train_step (cpu, cuda)")
    p.add_argument("--preprocessed", default=None, help="existing nnUNet_preprocessed holding the dataset")
    p.add_argument("--reference-python", default=None, help="python of an env with nnunetv2==2.8.1")
    p.add_argument("--reference-venv", default=os.path.join(tempfile.gettempdir(), "nnunet_ref_venv"))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--driver", choices=["ours", "ref"], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.driver:
        args.impl = args.driver
        res = drive(args)
        with open(args.result, "w") as f:
            json.dump(res, f)
        return

    sys.path.insert(0, HERE)
    from _harness import default_reference_python, reference_python
    args.ref_python = reference_python(args.reference_python or default_reference_python(), args.reference_venv)
    base = tempfile.mkdtemp(prefix="nnunet_bench_train_")
    try:
        pre = _prepare(args, base)
        runs = {"ref": [], "ours": []}
        for r in range(args.repeats):  # interleaved, so that load from other jobs hits both alike
            steps = args.steps if r == 0 else 0  # train_step is compute-bound: once is enough
            runs["ref"].append(_run_driver("ref", args.ref_python, args, pre, base, steps))  # first: writes the split
            runs["ours"].append(_run_driver("ours", sys.executable, args, pre, base, steps))
        ours, ref = runs["ours"][0], runs["ref"][0]
        print(f"\n{NAMES[args.dataset]} {args.configuration}: batch size {ours['batch_size']}, patch "
              f"{ours['patch_size']}, {args.workers} workers, train_step on {args.device}; best of {args.repeats}")
        print(f"ours: {ours['package']} ({ours['augmenter']})\nreference: {ref['package']} ({ref['augmenter']})")
        print(f"{'metric':<34}{'ours':>10}{'reference':>11}{'ours/ref':>10}")
        rows = [("single-process batches/s", "single_process_batches_per_s", True),
                ("single-process CPU ms/batch", "single_process_cpu_ms_per_batch", False),
                (f"{args.workers}-worker batches/s", "workers_batches_per_s", True),
                (f"{args.workers}-worker CPU ms/batch, tree", "workers_tree_cpu_ms_per_batch", False),
                ("time to first batch (s)", "first_batch_s", False),
                ("train_step (s/iteration)", "train_step_s", False),
                ("whole driver wall time (s)", "wall_s", False),
                ("peak RSS, process tree (MB)", "peak_rss_mb", False)]
        for label, key, higher in rows:
            o, r = _best(runs["ours"], key, higher), _best(runs["ref"], key, higher)
            if o is not None and r is not None:
                print(f"{label:<34}{o:>10.3f}{r:>11.3f}{o / r:>10.2f}")
    finally:
        if args.keep:
            print(f"work folder kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
