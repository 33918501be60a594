"""Shared by the differential trials (``*_fuzz.py``): each runs a driver under our python and under the reference's,
both computing the same randomly drawn cases, and compares what they return, exactly."""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def first_difference(ref, ours, path: str = "") -> Optional[str]:
    """Where two results first differ (None if equal): dicts key by key, sequences item by item, arrays exactly with
    their shapes and dtypes (NaN equal to NaN), anything else with ``==`` (so 3 equals 3.0)."""
    import numpy as np
    if isinstance(ref, dict) and isinstance(ours, dict):
        for k in list(ref) + [k for k in ours if k not in ref]:
            if k not in ours or k not in ref:
                return f"{path}/{k}: only in {'the reference' if k in ref else 'ours'}"
            d = first_difference(ref[k], ours[k], f"{path}/{k}")
            if d:
                return d
        return None
    if isinstance(ref, np.ndarray) or isinstance(ours, np.ndarray):
        a, b = np.asarray(ref), np.asarray(ours)
        if a.shape != b.shape:
            return f"{path}: shape {a.shape} (reference) vs {b.shape} (ours)"
        if a.dtype != b.dtype and not (a.size == 0 and b.size == 0):
            return f"{path}: dtype {a.dtype} (reference) vs {b.dtype} (ours)"
        if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            if a.dtype.kind == "f":
                return f"{path}: values differ, max |d| {float(np.nanmax(np.abs(a - b))):.3g}"
            return f"{path}: {int((a != b).sum())} of {a.size} values differ"
        return None
    if isinstance(ref, (list, tuple)) and isinstance(ours, (list, tuple)):
        if len(ref) != len(ours):
            return f"{path}: length {len(ref)} (reference) vs {len(ours)} (ours): {ref} vs {ours}"
        for i, (a, b) in enumerate(zip(ref, ours)):
            d = first_difference(a, b, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if ref == ours else f"{path}: {ref!r} (reference) vs {ours!r} (ours)"


def run_driver(side: str, python: str, script: str, driver_args: List[str], base: str,
               env_extra: Optional[Dict[str, str]] = None) -> dict:
    """Run ``script --driver <driver_args> <result file>`` under ``python`` and return the pickled result. Ours runs
    this checkout (PYTHONPATH); the reference runs from ``base`` without PYTHONPATH, so that no checkout shadows it."""
    result = os.path.join(base, f"result_{side}.pkl")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if side == "ours":
        env["PYTHONPATH"] = REPO
    unused = os.path.join(base, "unused")
    env.update(nnUNet_raw=unused, nnUNet_preprocessed=unused, nnUNet_results=unused)
    env.update(env_extra or {})
    cmd = [python, os.path.abspath(script), "--driver", *driver_args, result]
    proc = subprocess.run(cmd, env=env, cwd=base if side == "ref" else REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not os.path.isfile(result):
        sys.stderr.write(proc.stdout.decode(errors="replace")[-3000:])
        raise SystemExit(f"{side} driver failed (exit {proc.returncode})")
    with open(result, "rb") as f:
        return pickle.load(f)


def save_result(result_file: str, outcomes: dict, seconds: float) -> None:
    """What a driver returns: its outcomes (each a dict with an ``error`` entry), time spent and the package used."""
    import nnunetv2
    with open(result_file, "wb") as f:
        pickle.dump({"outcomes": outcomes, "seconds": seconds, "package": nnunetv2.__file__}, f)


class _OverTimeLimit(BaseException):  # not an Exception: outcome_or_error must not record it as a refusal
    pass


def _over_time_limit(signum, frame):
    raise _OverTimeLimit()


def drive_cases(keys: List, compute: Callable[[object], dict], result_file: str,
                time_limit_s: Optional[float] = None) -> None:
    """The driver's loop: ``compute(key)`` for every key, quietly (no log warnings, no console output), timed, a
    refusal recorded as an error; one that runs longer than ``time_limit_s`` is stopped and marked ``timed_out``."""
    import logging
    import warnings
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    if time_limit_s:
        signal.signal(signal.SIGALRM, _over_time_limit)
    outcomes, seconds = {}, 0.0
    for key in keys:
        start = time.perf_counter()
        if time_limit_s:
            signal.setitimer(signal.ITIMER_REAL, time_limit_s)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                outcomes[key] = outcome_or_error(lambda: compute(key))
        except _OverTimeLimit:
            outcomes[key] = {"timed_out": True, "error": None}
        finally:
            if time_limit_s:
                signal.setitimer(signal.ITIMER_REAL, 0)
        outcomes[key]["seconds"] = time.perf_counter() - start
        seconds += outcomes[key]["seconds"]
    save_result(result_file, outcomes, seconds)


def outcome_or_error(fn: Callable[[], dict]) -> dict:
    """``fn()`` (a dict of results) with ``error: None``, or ``{"error": "Type: message"}`` if it raised: a refusal
    is compared like a result (both sides refusing is agreement)."""
    try:
        out = fn()
        out["error"] = None
        return out
    except Exception as e:
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}


def compare_outcomes(ref: dict, ours: dict, keys: List, describe: Callable[[object], str]) -> Tuple[int, int]:
    """Print each disagreeing outcome; returns (number differing, number refused by both). Entries named ``seconds``
    are never compared."""
    differing = refused_both = 0
    for key in keys:
        r, o = ref["outcomes"][key], ours["outcomes"][key]
        if r["error"] or o["error"]:
            if r["error"] and o["error"]:
                refused_both += 1
            else:
                differing += 1
                print(f"DIFFERENT {describe(key)}: reference {r['error'] or 'ran'}; ours {o['error'] or 'ran'}")
            continue
        strip = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
        diff = first_difference(strip(r), strip(o))
        if diff:
            differing += 1
            print(f"DIFFERENT {describe(key)}: {diff}")
    return differing, refused_both


def print_summary(what: str, n: int, differing: int, refused_both: int, ref: dict, ours: dict) -> None:
    print(f"\nours: {ours['package']}\nreference: {ref['package']}")
    print(f"{n} {what}: {n - differing} agree ({refused_both} refused by both), {differing} differ; time ours "
          f"{ours['seconds']:.1f} s, reference {ref['seconds']:.1f} s "
          f"(ratio {ours['seconds'] / max(ref['seconds'], 1e-9):.2f})")


def trial_arguments(description: str, driver_nargs: int) -> argparse.ArgumentParser:
    """The options every trial has (--seed, --reference-python, --reference-venv, --keep and the hidden --driver
    with ``driver_nargs`` values); the trial adds its own."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference-python", default=None, help="python of an env with nnunetv2==2.8.1")
    p.add_argument("--reference-venv", default=os.path.join(tempfile.gettempdir(), "nnunet_ref_venv"))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--driver", nargs=driver_nargs, help=argparse.SUPPRESS)
    return p


def run_both(args, script: str, driver_args: List[str], base: str,
             env_of_side: Callable[[str], Dict[str, str]] = lambda side: {}) -> Tuple[dict, dict]:
    """(reference result, our result) of the driver, the reference first."""
    from _harness import default_reference_python, reference_python
    ref_python = reference_python(args.reference_python or default_reference_python(), args.reference_venv)
    ref = run_driver("ref", ref_python, script, driver_args, base, env_of_side("ref"))
    ours = run_driver("ours", sys.executable, script, driver_args, base, env_of_side("ours"))
    return ref, ours


@contextlib.contextmanager
def work_folder(prefix: str, keep: bool) -> Iterator[str]:
    """A temporary folder, deleted afterwards unless ``keep``."""
    base = tempfile.mkdtemp(prefix=prefix)
    try:
        yield base
    finally:
        if keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
