"""Benchmark: with every random generator seeded alike, does our trainer train the same model as the reference (2.8.1)?

    python benchmarks/seeded_training.py [--datasets 902 903] [--trainers nnUNetTrainer nnUNetTrainerDA5 ...]
                                         [--epochs 2] [--iterations 3] [--val-iterations 2] [--final-validation]
                                         [--preprocessed PATH] [--reference-python PATH] [--keep]

Each golden dataset is generated (../shared/reference/<dataset>/generate.sh), planned by the reference, cut down to
tiny plans ``nnUNetPlansTiny`` (3 stages, 8/16/32 features, patch 32^3 or 64x64) and preprocessed once by the
reference; each side then gets its own copy of that folder, so that each writes its own ``splits_final.json``. For
every dataset and trainer the script re-runs itself under each implementation's python (the reference from a
temporary folder, without PYTHONPATH, so that our package cannot shadow it; ours with this checkout first on the path)
as a driver that:

* seeds ``random``, ``numpy`` and ``torch`` with the same number, uses one torch thread, deterministic algorithms and
  ``nnUNet_n_proc_DA=0`` (batches come from batchgenerators' single-threaded augmenter in the main process on both
  sides, so the random streams are consumed in the same order);
* builds the trainer the public way, shortens it to ``--epochs`` x ``--iterations`` (+ ``--val-iterations``) and calls
  ``run_training()`` (and ``perform_actual_validation`` with ``--final-validation``);
* records, in the order they happen: the initial weights, every batch (case keys, data, target), every loss and the
  weights after every ``train_step``, every validation step's outputs, the random generators' states, the final
  weights, optimizer state, ``checkpoint_final.pth`` (logged values without timestamps), the output files, the split
  and the validation ``summary.json`` (paths normalised) with the validation folder's file names (and probabilities,
  which the driver saves on request), and a cascade's ``predicted_next_stage`` files. The driver also takes a fold,
  a plans name and ``--npz`` (used by ``training_run_fuzz.py``, which imports this script's driver and comparison).

The two records are then walked side by side and the first difference is reported: what, at which step, max |delta|.
A trainer that both sides refuse for a dataset (e.g. cross-entropy on a region dataset) counts as agreement; the
error types may differ (ours raises UserError where the reference asserts). Exit status 1 if anything differs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.environ.get("NNUNET_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
# dataset id -> (folder name, the one configuration its tiny plans keep)
DATASETS = {901: ("Dataset901_SynthCT3D", "3d_fullres"), 902: ("Dataset902_SynthMRRegions", "3d_fullres"),
            903: ("Dataset903_SynthNatural2D", "2d"), 904: ("Dataset904_SynthSparse3D", "3d_fullres")}
DEFAULT_TRAINERS = ["nnUNetTrainer", "nnUNetTrainerDA5", "nnUNetTrainerNoDeepSupervision", "nnUNetTrainerCELoss"]
PLANS = "nnUNetPlansTiny"
SEED = 1234

# one event of a record: (step, what, value), e.g. ("epoch 0 train 2", "loss", 0.61)
Event = Tuple[str, str, Any]


# ---------------------------------------------------------------------------------------------------------------------
# driver: runs inside the implementation's own python (ours or the reference), imports only public nnunetv2 names
# ---------------------------------------------------------------------------------------------------------------------
def _plain(obj: Any, placeholders: Dict[str, str]) -> Any:
    """``obj`` as builtins and numpy arrays only (the record is read by the other python), with this side's own folders
    replaced by placeholders (the two sides write to different folders)."""
    import numpy as np
    import torch
    if torch.is_tensor(obj):
        return obj.detach().cpu().numpy().copy()
    if isinstance(obj, dict):
        return {str(k): _plain(v, placeholders) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, placeholders) for v in obj]
    if isinstance(obj, str):
        for folder, name in placeholders.items():
            obj = obj.replace(folder, name)
        return obj
    if isinstance(obj, (np.ndarray, np.generic, bool, int, float)) or obj is None:
        return obj
    return repr(obj)  # torch.device, dtypes, ...


def _rng_states() -> Dict[str, str]:
    import numpy as np
    import torch
    return {"torch": hashlib.md5(torch.get_rng_state().numpy().tobytes()).hexdigest(),
            "numpy": hashlib.md5(pickle.dumps(np.random.get_state())).hexdigest(),
            "python": hashlib.md5(pickle.dumps(random.getstate())).hexdigest()}


def _state_dict(network) -> Dict[str, Any]:
    return {k: v.detach().cpu().numpy().copy() for k, v in network.state_dict().items()}


def _hook(trainer, name: str, before=None, after=None) -> None:
    """Wrap the bound method ``name`` of this trainer instance (the class stays untouched on both sides)."""
    original = getattr(trainer, name)

    def wrapped(*a, **kw):
        if before is not None:
            before(*a, **kw)
        result = original(*a, **kw)
        if after is not None:
            after(result, *a, **kw)
        return result
    setattr(trainer, name, wrapped)


def _npz_arrays(path: str) -> Dict[str, Any]:
    import numpy as np
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _validation_probabilities(output_folder: str) -> Dict[str, Any]:
    """The validation folder's file names (segmentations are compared through summary.json) and the arrays of its
    ``.npz`` probabilities (``--npz``)."""
    folder = os.path.join(output_folder, "validation")
    found: Dict[str, Any] = {"files": sorted(os.listdir(folder))}
    for name in found["files"]:
        if name.endswith(".npz"):
            found[name] = _npz_arrays(os.path.join(folder, name))
    return found


def _next_stage_predictions(args, plans_name: str) -> Dict[str, Any]:
    """What the final validation of a cascade's first stage left for the next stage (case file -> arrays); empty for
    other configurations. The folder is shared by all folds, so it is found from nnUNet_results, not the fold's."""
    folder = os.path.join(os.environ["nnUNet_results"], args.dataset_name,
                          f"{args.trainer}__{plans_name}__{args.configuration}", "predicted_next_stage")
    found: Dict[str, Any] = {}
    for root, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            if name.endswith(".npz"):
                found[key] = _npz_arrays(path)
            elif name.endswith(".b2nd"):
                import blosc2
                found[key] = blosc2.open(path, mode="r")[:]
            else:
                with open(path, "rb") as f:
                    found[key] = hashlib.md5(f.read()).hexdigest()
    return found


def _train_and_record(args, events: List[Event], phase: List[str], placeholders: Dict[str, str]) -> None:
    import numpy as np
    import torch
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    pre = os.path.join(os.environ["nnUNet_preprocessed"], args.dataset_name)
    with open(os.path.join(pre, args.plans + ".json")) as f:
        plans = json.load(f)
    plans["continue_training"] = False  # the reference's trainer pops this key (run_training sets it)
    with open(os.path.join(pre, "dataset.json")) as f:
        dataset_json = json.load(f)
    cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), args.trainer,
                                      "nnunetv2.training.nnUNetTrainer")
    if cls is None:
        raise RuntimeError(f"trainer class {args.trainer} not found")

    def record(step: str, what: str, value: Any) -> None:
        events.append((step, what, _plain(value, placeholders)))

    phase[0] = "construction"
    fold = args.fold if args.fold == "all" else int(args.fold)
    trainer = cls(plans=plans, configuration=args.configuration, fold=fold, dataset_json=dataset_json,
                  device=torch.device("cpu"))
    trainer.num_epochs = args.epochs
    trainer.num_iterations_per_epoch = args.iterations
    trainer.num_val_iterations_per_epoch = args.val_iterations
    counters = {"train": 0, "val": 0}

    def step_name(kind: str) -> str:  # counted over the whole run: "train step 4 (epoch 1)"
        return f"{kind} step {counters[kind]} (epoch {trainer.current_epoch})"

    def enter(name: str):
        return lambda *a, **kw: phase.__setitem__(0, name)

    # python's random state may differ while the trainer is set up (a late import that draws a number, on the two sides
    # at different moments; no training code uses it), so the generators are compared from the data loaders on
    _hook(trainer, "initialize", before=enter("initialize"),
          after=lambda r: record("setup", "initial weights", _state_dict(trainer.network)))
    _hook(trainer, "get_dataloaders", before=enter("data loaders"),
          after=lambda r: record("setup", "RNG states after data loaders", _rng_states()))
    _hook(trainer, "on_train_start", before=enter("on_train_start"),
          after=lambda r: record("setup", "RNG states after on_train_start", _rng_states()))

    def before_step(kind: str, batch) -> None:
        phase[0] = step_name(kind)
        record(step_name(kind), "RNG states before the step", _rng_states())
        record(step_name(kind), "batch keys", list(batch["keys"]))
        record(step_name(kind), "batch data", batch["data"])
        record(step_name(kind), "batch target", batch["target"])

    def after_train_step(result, batch) -> None:
        record(step_name("train"), "learning rate", trainer.optimizer.param_groups[0]["lr"])
        record(step_name("train"), "loss", float(result["loss"]))
        record(step_name("train"), "weights after the step", _state_dict(trainer.network))
        counters["train"] += 1

    def after_val_step(result, batch) -> None:
        record(step_name("val"), "outputs", result)
        counters["val"] += 1

    _hook(trainer, "train_step", before=lambda b: before_step("train", b), after=after_train_step)
    _hook(trainer, "validation_step", before=lambda b: before_step("val", b), after=after_val_step)

    trainer.run_training()
    phase[0] = "end of training"
    record("end", "RNG states after training", _rng_states())
    record("end", "final weights", _state_dict(trainer.network))
    record("end", "optimizer state", trainer.optimizer.state_dict())
    checkpoint = torch.load(os.path.join(trainer.output_folder, "checkpoint_final.pth"), map_location="cpu",
                            weights_only=False)
    checkpoint["logging"] = {k: v for k, v in checkpoint["logging"].items() if not k.endswith("timestamps")}
    record("end", "checkpoint_final.pth", checkpoint)
    if args.final_validation:
        phase[0] = "final validation"
        trainer.perform_actual_validation(args.npz)
        with open(os.path.join(trainer.output_folder, "validation", "summary.json")) as f:
            record("end", "validation summary.json", json.load(f))
        record("end", "validation probabilities", _validation_probabilities(trainer.output_folder))
        record("end", "RNG states after the final validation", _rng_states())
        record("end", "predicted_next_stage", _next_stage_predictions(args, plans["plans_name"]))
    # the training log's name holds the start time
    files = sorted(re.sub(r"\d{4}(_\d+){5}", "<time>", f) for f in os.listdir(trainer.output_folder))
    record("end", "output files", files)
    split_file = os.path.join(pre, "splits_final.json")
    if os.path.isfile(split_file):  # fold "all" writes none
        with open(split_file) as f:
            record("end", "splits_final.json", json.load(f))
    else:
        record("end", "splits_final.json", None)
    record("end", "draws after the run", {"python": random.random(), "numpy": np.random.rand(3),
                                          "torch": torch.rand(3)})


def drive(args) -> None:
    """Train once, seeded, and pickle the record (events, or the error that stopped the run and where)."""
    # before torch is imported: its thread pools are sized at import
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import numpy as np
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)
    # recent blosc2 (4.15, not the 4.3.3 that Python 3.10 resolves) imports httpx and rich, and importing rich draws
    # from python's `random`: imported before seeding, that draw stays out of the comparison whatever each side resolved
    import blosc2  # noqa: F401
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)

    import nnunetv2
    placeholders = {os.environ["nnUNet_results"]: "$nnUNet_results",
                    os.environ["nnUNet_preprocessed"]: "$nnUNet_preprocessed"}
    events: List[Event] = []
    phase = ["import"]
    error = None
    try:
        _train_and_record(args, events, phase, placeholders)
    except Exception as e:  # recorded: a trainer may refuse a dataset on both sides
        error = {"phase": phase[0], "type": type(e).__name__, "message": str(e).splitlines()[0] if str(e) else ""}
    with open(args.result, "wb") as f:
        pickle.dump({"package": os.path.dirname(nnunetv2.__file__), "events": events, "error": error}, f)


# ---------------------------------------------------------------------------------------------------------------------
# comparison: runs in our python
# ---------------------------------------------------------------------------------------------------------------------
Difference = Union[None, float, str]  # None: equal; float: max |delta| of numbers; str: a difference in kind


def _worst(differences: Iterable[Difference]) -> Difference:
    """A difference in kind outranks any numeric one; of the numeric ones, the largest."""
    worst: Difference = None
    for d in differences:
        if isinstance(d, str):
            return d
        if d is not None and (worst is None or d > worst):
            worst = d
    return worst


def difference(a: Any, b: Any) -> Difference:
    """How ``a`` and ``b`` differ. Numbers are compared by value, whatever their type (np.float32 or float: ours keeps
    logged values as Python floats in checkpoints by design); arrays also by dtype and shape."""
    import numpy as np
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"keys differ: {sorted(set(a) ^ set(b))}"
        return _worst(difference(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"length {len(a)} vs {len(b)}"
        return _worst(difference(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return f"shape {a.shape} vs {b.shape}"
        if a.dtype != b.dtype:
            return f"dtype {a.dtype} vs {b.dtype}"
        if a.dtype.kind not in "biuf":
            return None if np.array_equal(a, b) else "values differ"
        if np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            return None
        if (np.isnan(a) != np.isnan(b)).any() if a.dtype.kind == "f" else False:
            return "NaN in one only"
        return float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    numbers = (int, float, np.number, np.bool_)
    if isinstance(a, numbers) and isinstance(b, numbers):
        x, y = float(a), float(b)
        if x == y or (math.isnan(x) and math.isnan(y)):
            return None
        return abs(x - y) if not (math.isnan(x) or math.isnan(y)) else "NaN in one only"
    if type(a) is not type(b):
        return f"{type(a).__name__} vs {type(b).__name__}"
    return None if a == b else f"{a!r:.60} vs {b!r:.60}"


@dataclass
class Verdict:
    identical: bool
    text: str
    steps: int = 0  # train + validation steps recorded (ours)


def compare(ref: dict, ours: dict) -> Verdict:
    """Walk both records in order and describe the first difference."""
    a, b = ref["events"], ours["events"]
    steps = len({e[0] for e in b if " step " in e[0]})
    for (step_a, what_a, value_a), (step_b, what_b, value_b) in zip(a, b):
        if (step_a, what_a) != (step_b, what_b):
            return Verdict(False, f"sequence: ref has {step_a}: {what_a}, ours {step_b}: {what_b}", steps)
        d = difference(value_a, value_b)
        if d is not None:
            delta = f"max |d| {d:.3g}" if isinstance(d, float) else d
            return Verdict(False, f"{step_a}: {what_a} ({delta})", steps)
    ea, eb = ref["error"], ours["error"]
    if ea and eb and ea["phase"] == eb["phase"] and len(a) == len(b):
        return Verdict(True, f"both refuse in {ea['phase']} (ours {eb['type']}, ref {ea['type']})", steps)
    if ea or eb:
        def say(e: Optional[dict]) -> str:
            return f"{e['type']} in {e['phase']}: {e['message']:.80}" if e else "no error"
        return Verdict(False, f"ours {say(eb)}; ref {say(ea)}", steps)
    if len(a) != len(b):
        return Verdict(False, f"ref recorded {len(a)} events, ours {len(b)}", steps)
    return Verdict(True, f"identical ({steps} steps, {len(a)} records)", steps)


# ---------------------------------------------------------------------------------------------------------------------
# orchestration: runs in our python
# ---------------------------------------------------------------------------------------------------------------------
def _tiny_plans(plans: dict, configuration: str) -> dict:
    """The reference's plans cut down to one small configuration (3 stages, 8/16/32 features): seconds per epoch on a
    CPU, while the trainer's paths that matter here (deep supervision, the augmentations) still run."""
    two_d = configuration == "2d"
    c = plans["configurations"][configuration]
    c["data_identifier"] = f"{PLANS}_{configuration}"
    c["batch_size"] = 4 if two_d else 2
    c["patch_size"] = [64, 64] if two_d else [32, 32, 32]
    ones, twos = ([1, 1], [2, 2]) if two_d else ([1, 1, 1], [2, 2, 2])
    c["architecture"]["arch_kwargs"].update(
        n_stages=3, features_per_stage=[8, 16, 32], kernel_sizes=[[3] * len(ones)] * 3, strides=[ones, twos, twos],
        n_conv_per_stage=[2, 2, 2], n_conv_per_stage_decoder=[1, 1])
    plans["plans_name"] = PLANS
    plans["configurations"] = {configuration: c}
    return plans


def _run_quietly(cmd: List[str], env: Dict[str, str], cwd: str) -> None:
    """Run a preparation command; its output (progress bars) is shown only if it fails."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout.decode(errors="replace")[-3000:])
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)}")


def reference_preprocess(dataset: int, ref_python: str, base: str, cut: Callable[[dict], dict],
                         configurations: List[str]) -> str:
    """nnUNet_preprocessed holding the raw ``dataset`` (in ``base``/raw) planned by the reference, its plans cut down
    by ``cut`` to ``PLANS`` and ``configurations`` preprocessed with them by the reference."""
    from _harness import console_script
    raw, pre = os.path.join(base, "raw"), os.path.join(base, "preprocessed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(nnUNet_raw=raw, nnUNet_preprocessed=pre, nnUNet_results=os.path.join(base, "unused"))
    _run_quietly([console_script(ref_python, "nnUNetv2_plan_and_preprocess"), "-d", str(dataset), "--no_pp",
                  "-npfp", "2"], env, base)
    plans_dir = os.path.join(pre, next(d for d in os.listdir(pre) if d.startswith(f"Dataset{dataset:03d}_")))
    with open(os.path.join(plans_dir, "nnUNetPlans.json")) as f:
        plans = cut(json.load(f))
    with open(os.path.join(plans_dir, PLANS + ".json"), "w") as f:
        json.dump(plans, f, indent=4)
    _run_quietly([console_script(ref_python, "nnUNetv2_preprocess"), "-d", str(dataset), "-plans_name", PLANS,
                  "-c", *configurations, "-np", *["2"] * len(configurations)], env, base)
    return pre


def _prepare(dataset: int, ref_python: str, base: str) -> str:
    """nnUNet_preprocessed holding ``dataset`` generated, planned and preprocessed (tiny plans) by the reference."""
    name, configuration = DATASETS[dataset]
    raw = os.path.join(base, "raw")
    os.makedirs(raw, exist_ok=True)
    _run_quietly(["bash", "generate.sh"], dict(os.environ, nnUNet_raw=raw), os.path.join(SHARED, "reference", name))
    print(f"planning and preprocessing {name} ({configuration}, {PLANS}) with the reference ...", flush=True)
    return reference_preprocess(dataset, ref_python, base, lambda plans: _tiny_plans(plans, configuration),
                                [configuration])


def _side_folder(source: str, base: str, side: str, name: str) -> str:
    """This side's own copy of the preprocessed dataset: each writes its own splits_final.json, which is compared."""
    pre = os.path.join(base, f"preprocessed_{side}")
    if not os.path.isdir(os.path.join(pre, name)):
        shutil.copytree(os.path.join(source, name), os.path.join(pre, name),
                        ignore=shutil.ignore_patterns("splits_final.json"))
    return pre


@dataclass
class TrainingRun:
    """One seeded training, as the driver is told it."""
    dataset_name: str
    configuration: str
    trainer: str
    epochs: int
    iterations: int
    val_iterations: int
    final_validation: bool
    fold: str = "0"  # "0".."4" or "all"
    plans: str = PLANS
    npz: bool = False  # the final validation also saves probabilities

    def driver_args(self) -> List[str]:
        return (["--dataset-name", self.dataset_name, "--configuration", self.configuration, "--trainer",
                 self.trainer, "--epochs", str(self.epochs), "--iterations", str(self.iterations),
                 "--val-iterations", str(self.val_iterations), "--fold", self.fold, "--plans", self.plans]
                + (["--final-validation"] if self.final_validation else []) + (["--npz"] if self.npz else []))


def _run_side(side: str, python: str, run: TrainingRun, source: str, base: str) -> Tuple[dict, float]:
    """One seeded training under ``python``: (record, wall seconds of the driver process). Each side keeps one
    nnUNet_results below ``base``, so a later run (a cascade's second stage) finds what an earlier one wrote."""
    from _harness import measure
    result = os.path.join(base, f"{side}_{run.dataset_name}_{run.configuration}_{run.trainer}.pkl")
    cmd = [python, os.path.abspath(__file__), "--driver", "--result", result] + run.driver_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if side == "ours":  # this checkout, whatever the interpreter has installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    name = run.dataset_name
    env.update(nnUNet_raw=os.path.join(base, "raw"), nnUNet_preprocessed=_side_folder(source, base, side, name),
               nnUNet_results=os.path.join(base, f"results_{side}"), nnUNet_n_proc_DA="0", nnUNet_compile="f",
               nnUNet_def_n_proc="1")
    m = measure(cmd, env, cwd=base if side == "ref" else REPO, memory=False)
    if m.returncode != 0 or not os.path.isfile(result):
        raise SystemExit(f"{side} driver failed (exit {m.returncode}): {' '.join(cmd)}")
    with open(result, "rb") as f:
        return pickle.load(f), m.wall_s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=int, nargs="+", default=[902, 903], choices=sorted(DATASETS))
    p.add_argument("--trainers", nargs="+", default=DEFAULT_TRAINERS)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--iterations", type=int, default=3, help="training iterations per epoch")
    p.add_argument("--val-iterations", type=int, default=2, help="validation iterations per epoch")
    p.add_argument("--final-validation", action="store_true",
                   help="also run perform_actual_validation and compare summary.json (sliding window with TTA: "
                        "~10-20 s per 3-D case on a CPU)")
    p.add_argument("--preprocessed", default=None,
                   help=f"existing nnUNet_preprocessed holding the datasets with {PLANS}.json (e.g. a --keep folder)")
    p.add_argument("--reference-python", default=None, help="python of an env with nnunetv2==2.8.1")
    p.add_argument("--reference-venv", default=os.path.join(tempfile.gettempdir(), "nnunet_ref_venv"))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--dataset-name", help=argparse.SUPPRESS)
    p.add_argument("--configuration", help=argparse.SUPPRESS)
    p.add_argument("--trainer", help=argparse.SUPPRESS)
    p.add_argument("--fold", default="0", help=argparse.SUPPRESS)
    p.add_argument("--plans", default=PLANS, help=argparse.SUPPRESS)
    p.add_argument("--npz", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.driver:
        drive(args)
        return 0

    sys.path.insert(0, HERE)
    from _harness import default_reference_python, reference_python
    ref_python = reference_python(args.reference_python or default_reference_python(), args.reference_venv)
    start = time.perf_counter()
    base = tempfile.mkdtemp(prefix="nnunet_bench_seeded_")
    rows: List[Tuple[str, str, Verdict, float, float]] = []
    packages: Dict[str, str] = {}
    try:
        for dataset in args.datasets:
            source = args.preprocessed or _prepare(dataset, ref_python, base)
            for trainer in args.trainers:
                run = TrainingRun(DATASETS[dataset][0], DATASETS[dataset][1], trainer, args.epochs, args.iterations,
                                  args.val_iterations, args.final_validation)
                ref, ref_s = _run_side("ref", ref_python, run, source, base)
                ours, ours_s = _run_side("ours", sys.executable, run, source, base)
                packages.update(ours=ours["package"], ref=ref["package"])
                verdict = compare(ref, ours)
                rows.append((DATASETS[dataset][0], trainer, verdict, ours_s, ref_s))
                print(f"{DATASETS[dataset][0]} {trainer}: {verdict.text} (ours {ours_s:.1f} s, ref {ref_s:.1f} s)",
                      flush=True)
        print(f"\nseeded CPU training, {args.epochs} epochs x {args.iterations} iterations (+{args.val_iterations} "
              f"validation), {'with' if args.final_validation else 'without'} final validation; seed {SEED}, "
              f"1 torch thread, nnUNet_n_proc_DA=0")
        print(f"ours: {packages.get('ours')}\nreference: {packages.get('ref')}")
        print(f"{'dataset':<28}{'trainer':<32}{'ours s':>8}{'ref s':>8}  result")
        for name, trainer, verdict, ours_s, ref_s in rows:
            print(f"{name:<28}{trainer:<32}{ours_s:>8.1f}{ref_s:>8.1f}  {verdict.text}")
        differing = [r for r in rows if not r[2].identical]
        print(f"\n{len(rows) - len(differing)} of {len(rows)} runs agree with the reference "
              f"(total {time.perf_counter() - start:.0f} s)")
        return 1 if differing else 0
    finally:
        if args.keep:
            print(f"work folder kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
