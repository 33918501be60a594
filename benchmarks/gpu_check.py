"""GPU check: our CUDA paths, and ours vs the reference nnU-Net v2 2.8.1 on one GPU, in one command (< 10 minutes).

    python benchmarks/gpu_check.py [--device cuda|cpu] [--out FILE] [--steps pytest,predict,train,resume[,variants]]
                                   [--reference-python PATH] [--budget-s 570] [--iters 30] [--warmup 10]
                                   [--work DIR] [--keep]

On a GPU machine without network, use benchmarks/gpu_check.sh (installs the carried wheels first; see
benchmarks/README.md). ``--device cpu`` runs the same steps at toy size (tests/benchmarks/test_gpu_check.py does).

Steps (each child process writes JSON through benchmarks/_gpu_check_driver.py):
1. ``pytest -m cuda`` on the test files that hold CUDA tests (all skip without a GPU). Runs while the data of the
   other steps are generated and preprocessed on the CPU.
2. Prediction: generated volumes (one >= 256x256x200 voxels on the GPU) with a random-weight checkpoint (fixed seed)
   of the default 3d_fullres network, TTA on: the reference and ours in turn, twice each (their run-to-run spread:
   cuDNN picks algorithms at run time). Wall time, peak VRAM, voxels differing, max |delta p| of the probabilities.
   Then the smallest volume once more on each side with cuDNN's deterministic algorithms: identical there means the
   same arithmetic, so that differences in the default mode come from cuDNN's run-time choice.
3. Training: that network, AMP and torch.compile as the trainer decides by default, iterations/s after warm-up,
   peak VRAM, loss finite; ours and the reference in turn, once on a fixed dummy batch (the GPU step alone), then
   with each trainer's own augmenter workers (--da-workers, and --few-da-workers as on a server with few cores per
   GPU). After prediction because its compile time is the least predictable.
4. ``nnUNetv2_train --c`` (resume) and ``--val`` with our trainer on the device; the checkpoint written there
   predicts the same on the CPU.
5. Only when named (``--steps variants``): our training step on the dummy batch computed other ways that change
   rounding, not results (fused SGD; channels-last memory layout; both), each against our default step in the
   same run: candidates for the 1.1x training target, measured before any is adopted.

Targets (GPU only): training iterations/s >= 1.1x the reference's, prediction time <= 0.8x, peak VRAM no higher,
differences to the reference no larger than the reference's own run-to-run spread. Prints one table and writes it
with all raw numbers as JSON: --out if given, and $OUT/gpu_check.json where $OUT is set (else ./gpu_check.json).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DRIVER = os.path.join(HERE, "_gpu_check_driver.py")
sys.path.insert(0, HERE)
from _gpu_check_report import compare_predictions, build_table, format_table  # noqa: E402
from _gpu_check_driver import TRAIN_VARIANTS as VARIANTS  # noqa: E402

STEPS = ("pytest", "predict", "train", "resume")
OPTIONAL_STEPS = ("variants",)  # only when named in --steps
# rough minimum seconds a step needs on the GPU; a step is skipped when less of the budget is left
MIN_STEP_S = {"pytest": 60, "train": 150, "predict": 60, "resume": 45, "variants": 120}
STUB = '''"""Stand-in for SimpleITK written by benchmarks/gpu_check.py where SimpleITK is not installed (its wheel is too
large to carry to the GPU machine). nnU-Net imports it at module level for its NIfTI reader; the check's images are
.tif files, so nothing of it is ever called. Any use raises ImportError."""


class _Missing:
    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise ImportError(f"SimpleITK.{self._name}: SimpleITK is not installed here (stand-in by gpu_check.py)")

    def __getattr__(self, item):
        return _Missing(f"{self._name}.{item}")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Missing(name)
'''


class Check:
    def __init__(self, args):
        self.args = args
        self.start = time.perf_counter()
        self.work = args.work or tempfile.mkdtemp(prefix="nnunet_gpu_check_")
        os.makedirs(self.work, exist_ok=True)
        self.log_path = os.path.join(self.work, "gpu_check.log")
        self.results: Dict[str, dict] = {"meta": self._meta()}
        self.reference: Optional[str] = None
        self._stubbed: set = set()  # implementations that get the SimpleITK stand-in

    # ---------------------------------------------------------------------------------------------- plumbing
    def remaining(self) -> float:
        if not self.args.budget_s:
            return float("inf")
        return self.args.budget_s - (time.perf_counter() - self.start)

    def log(self, text: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def say(self, text: str) -> None:
        print(f"[gpu_check {time.perf_counter() - self.start:6.0f}s] {text}", flush=True)
        self.log(f"== {text}")

    def _meta(self) -> dict:
        import torch
        meta = {"device": self.args.device, "torch": torch.__version__, "python": sys.version.split()[0],
                "date": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": self.args.budget_s}
        if self.args.device == "cuda" and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            meta.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2 ** 30, 1),
                        cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        try:
            meta["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                            text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
        return meta

    def env(self, impl: str) -> Dict[str, str]:
        env = dict(os.environ)
        data = os.path.join(self.work, "data")
        env.update(nnUNet_raw=os.path.join(data, "raw"), nnUNet_preprocessed=os.path.join(data, "preprocessed"),
                   nnUNet_results=os.path.join(self.work, f"results_{impl}"), PYTHONUNBUFFERED="1",
                   nnUNet_n_proc_DA=str(self.args.da_workers))
        env.pop("nnUNet_compile", None)  # the trainer's default decides (on for CUDA)
        # torch.compile's caches per implementation: the second to compile the same graph would otherwise find the
        # first one's kernels on disk and start up in a fraction of the time
        env.update(TORCHINDUCTOR_CACHE_DIR=os.path.join(self.work, f"inductor_cache_{impl}"),
                   TRITON_CACHE_DIR=os.path.join(self.work, f"triton_cache_{impl}"))
        # ours from this checkout; the reference must never see it
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                 if p and os.path.abspath(p) != REPO]
        if impl == "ours":
            paths.insert(0, REPO)
        stub_dir = os.path.join(self.work, "stubs")
        if os.path.isdir(stub_dir) and impl in self._stubbed:
            paths.append(stub_dir)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def python(self, impl: str) -> str:
        return sys.executable if impl == "ours" else self.reference

    def cwd(self, impl: str) -> str:
        folder = REPO if impl == "ours" else os.path.join(self.work, "reference_cwd")
        os.makedirs(folder, exist_ok=True)
        return folder

    def start_child(self, impl: str, cmd: List[str]) -> subprocess.Popen:
        out = open(os.path.join(self.work, f"child_{len(os.listdir(self.work))}.log"), "w+")
        proc = subprocess.Popen(cmd, env=self.env(impl), cwd=self.cwd(impl), stdout=out, stderr=subprocess.STDOUT)
        proc.output_file = out  # type: ignore[attr-defined]
        return proc

    def finish_child(self, proc: subprocess.Popen, label: str, timeout: float) -> Tuple[int, str]:
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = -9
        proc.output_file.seek(0)  # type: ignore[attr-defined]
        text = proc.output_file.read()  # type: ignore[attr-defined]
        proc.output_file.close()  # type: ignore[attr-defined]
        self.log(f"---- {label} (rc {rc})\n{text[-20000:]}")
        if rc != 0:
            print(text[-3000:], file=sys.stderr)
        return rc, text

    def driver(self, impl: str, command: str, label: str, *extra: str) -> dict:
        out = os.path.join(self.work, f"{label}.json")
        cmd = [self.python(impl), DRIVER, command, "--work", self.work, "--device", self.args.device, "--out", out,
               "--np", str(self.args.np), *extra]
        started = time.perf_counter()
        proc = self.start_child(impl, cmd)
        rc, _ = self.finish_child(proc, label, self.remaining() - 5)
        if rc != 0 or not os.path.isfile(out):
            return {"error": f"{label} failed (exit code {rc}); see gpu_check.log"}
        with open(out) as f:
            result = json.load(f)
        result["process_wall_s"] = time.perf_counter() - started
        return result

    # ---------------------------------------------------------------------------------------------- set-up
    def find_reference(self) -> None:
        if self.args.no_reference:
            self.results["reference"] = {"available": False, "why": "--no-reference"}
            return
        candidates = [self.args.reference_python, os.environ.get("NNUNET_REFERENCE_PYTHON"),
                      "/opt/nnunet_ref/bin/python"]
        python = next((c for c in candidates if c and os.path.isfile(c)), None)
        if python is None:
            self.results["reference"] = {"available": False, "why": "no reference python (--reference-python, "
                                                                    "NNUNET_REFERENCE_PYTHON, /opt/nnunet_ref)"}
            return
        self.reference = python
        probe = subprocess.run([python, "-c", "import nnunetv2, os; print(os.path.dirname(nnunetv2.__file__))"],
                               env=self.env("ref"), cwd=self.cwd("ref"), capture_output=True, text=True, timeout=300)
        location = probe.stdout.strip()
        if probe.returncode != 0 or not location or location.startswith(REPO):
            self.reference = None
            self.results["reference"] = {"available": False, "why": f"the reference does not import: "
                                                                    f"{(probe.stderr or location)[-500:]}"}
        else:
            self.results["reference"] = {"available": True, "python": python, "package": location}

    def stub_simpleitk_where_missing(self) -> None:
        """Where SimpleITK cannot be imported, put a stand-in on that implementation's path (images are .tif)."""
        stub_dir = os.path.join(self.work, "stubs")
        os.makedirs(os.path.join(stub_dir, "SimpleITK"), exist_ok=True)
        with open(os.path.join(stub_dir, "SimpleITK", "__init__.py"), "w") as f:
            f.write(STUB)
        for impl in ("ours", "ref"):
            if impl == "ref" and self.reference is None:
                continue
            probe = subprocess.run([self.python(impl), "-c", "import SimpleITK"], env=self.env(impl),
                                   cwd=self.cwd(impl), capture_output=True, timeout=120)
            if probe.returncode != 0:
                self._stubbed.add(impl)
        self.results["meta"]["simpleitk_stand_in_for"] = sorted(self._stubbed)

    # ---------------------------------------------------------------------------------------------- steps
    def pytest_step(self) -> subprocess.Popen:
        files = []
        for root, _, names in os.walk(os.path.join(REPO, "tests")):
            for name in sorted(names):
                if name.startswith("test_") and name.endswith(".py"):
                    path = os.path.join(root, name)
                    with open(path, encoding="utf-8") as f:
                        if "mark.cuda" in f.read():
                            files.append(os.path.relpath(path, REPO))
        self.results["pytest"] = {"files": sorted(files)}
        return self.start_child("ours", [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs",
                                         "-p", "no:cacheprovider", *sorted(files)])

    def finish_pytest(self, proc: subprocess.Popen) -> None:
        rc, text = self.finish_child(proc, "pytest -m cuda", self.remaining() - 5)
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text)}
        self.results["pytest"].update(rc=rc, counts=counts)

    def run(self) -> None:
        steps = [s for s in self.args.steps.split(",") if s]
        self.find_reference()
        self.stub_simpleitk_where_missing()
        self.say(f"work folder {self.work}; reference: {self.results['reference']}")

        pytest_proc = self.pytest_step() if "pytest" in steps else None
        self.say("generating and preprocessing the dataset, writing the random-weight model")
        self.results["prepare"] = self.driver("ours", "prepare", "prepare", "--seed", "12345")
        if pytest_proc is not None:
            self.say("waiting for pytest -m cuda")
            self.finish_pytest(pytest_proc)
        self.save()
        if "error" in self.results["prepare"]:
            return

        impls = ["ours"] + (["ref"] if self.reference else [])
        # prediction first: it needs no compilation, so its time is predictable; training's is not
        if "predict" in steps and self._time_for("predict"):
            predict = self.results.setdefault("predict", {})
            volumes = self.results["prepare"].get("volumes", {})
            for run, extra in self.prediction_runs(volumes):
                self.say(f"prediction: {run}")
                output = os.path.join(self.work, f"predictions_{run}")
                predict[run] = self.driver("ours" if run.startswith("ours") else "ref", "predict", f"predict_{run}",
                                           "--output", output, *extra)
                predict[run]["output"] = output
                self.save()
            predict["comparison"] = compare_predictions(predict, volumes)
        if "train" in steps and self._time_for("train"):
            train = self.results.setdefault("train", {})
            for impl in impls:
                self.say(f"training speed: {impl}")
                train[impl] = self.driver(impl, "train", f"train_{impl}", "--iters", str(self.args.iters),
                                          "--warmup", str(self.args.warmup),
                                          "--few-da-workers", str(self.args.few_da_workers))
                self.save()
        if "resume" in steps and self._time_for("resume"):
            self.say("--c resume, --val, GPU checkpoint on the CPU")
            self.results["resume"] = self.driver("ours", "resume", "resume", "--iters", "5")
        if "variants" in steps and self._time_for("variants"):
            variants = self.results.setdefault("variants", {})
            ours_default = self.results.get("train", {}).get("ours", {})
            if "dummy" in ours_default:  # the train step of this run measured our default step already
                variants["default"] = {"dummy": ours_default["dummy"], "variant": "default",
                                       "from": "the train step of this run"}
            for variant in VARIANTS:
                if variant in variants:
                    continue
                if variant != "default" and self.remaining() < MIN_STEP_S["variants"] / 2:
                    variants[variant] = {"skipped": f"time budget: {self.remaining():.0f} s left"}
                    continue
                self.say(f"training speed, our step computed another way: {variant}")
                variants[variant] = self.driver("ours", "train", f"variant_{variant}", "--iters",
                                                str(self.args.iters), "--warmup", str(self.args.warmup),
                                                "--variant", variant)
                self.save()
        self.save()

    def prediction_runs(self, volumes: Dict[str, list]) -> List[Tuple[str, List[str]]]:
        """(run, extra driver arguments) in order: each side twice (its own run-to-run spread) interleaved, then
        the smallest volume once per side with cuDNN's deterministic algorithms (same arithmetic or not)."""
        if not self.reference:
            return [("ours", []), ("ours2", [])]
        smallest = min(volumes, key=lambda name: math.prod(volumes[name]))
        deterministic = ["--cudnn", "deterministic", "--cases", smallest]
        return [("ref1", []), ("ours", []), ("ref2", []), ("ours2", []),
                ("ref_deterministic", deterministic), ("ours_deterministic", deterministic)]

    def _time_for(self, step: str) -> bool:
        needed = MIN_STEP_S[step] if self.args.device == "cuda" else 0
        if self.remaining() < needed:
            self.results[step] = {"skipped": f"time budget: {self.remaining():.0f} s left, ~{needed} s needed"}
            self.say(f"skipping {step}: not enough of the time budget left")
            return False
        return True

    # ---------------------------------------------------------------------------------------------- output
    def outputs(self) -> List[str]:
        paths = [self.args.out] if self.args.out else []
        if os.environ.get("OUT"):
            paths.append(os.path.join(os.environ["OUT"], "gpu_check.json"))
        return paths or [os.path.abspath("gpu_check.json")]

    def save(self) -> None:
        self.results["meta"]["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        self.results["table"] = build_table(self.results)
        for path in self.outputs():
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                json.dump(self.results, f, indent=1, default=str)
            if os.path.isfile(self.log_path):
                shutil.copy(self.log_path, os.path.join(os.path.dirname(os.path.abspath(path)), "gpu_check.log"))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--out", help="JSON file (also $OUT/gpu_check.json where $OUT is set)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated subset of {','.join(STEPS + OPTIONAL_STEPS)} (default: "
                             f"{','.join(STEPS)})")
    parser.add_argument("--reference-python", help="python of an environment with nnunetv2 2.8.1")
    parser.add_argument("--no-reference", action="store_true", help="ours only (no side-by-side numbers)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip steps that no longer fit (default: 570 on cuda, unlimited on cpu)")
    parser.add_argument("--iters", type=int, default=None, help="timed training iterations (default 30; cpu 3)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default 10; cpu 1)")
    parser.add_argument("--np", type=int, default=None, help="preprocessing/export processes (default 8; cpu 1)")
    parser.add_argument("--da-workers", type=int, default=None, help="augmenter workers (default 12; cpu 2)")
    parser.add_argument("--few-da-workers", type=int, default=None,
                        help="training is also timed with this many augmenter workers, as on a server with few "
                             "cores per GPU (default 4; cpu 1; 0: not)")
    parser.add_argument("--work", help="work folder (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    unknown = sorted(set(s for s in args.steps.split(",") if s) - set(STEPS + OPTIONAL_STEPS))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {','.join(STEPS + OPTIONAL_STEPS)}")
    cuda = args.device == "cuda"
    for name, on_gpu, on_cpu in (("budget_s", 570, 0), ("iters", 30, 3), ("warmup", 10, 1), ("np", 8, 1),
                                 ("da_workers", 12, 2), ("few_da_workers", 4, 1)):
        if getattr(args, name) is None:
            setattr(args, name, on_gpu if cuda else on_cpu)
    if cuda:
        import torch
        if not torch.cuda.is_available():
            parser.error("--device cuda but torch sees no GPU (use --device cpu for the toy-size dry run)")
    check = Check(args)
    try:
        check.run()
    finally:
        check.save()
        print(format_table(check.results["table"], check.results["meta"]))
        print(f"JSON: {', '.join(check.outputs())}")
        if not args.keep and not args.work:
            shutil.rmtree(check.work, ignore_errors=True)
    failed = [row for row in check.results["table"] if row["verdict"] == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
