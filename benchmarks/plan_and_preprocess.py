"""Benchmark: nnUNetv2_plan_and_preprocess of ours vs the reference (2.8.1) on the same generated datasets.

    python benchmarks/plan_and_preprocess.py [--datasets 901 905] [--np 2] [--repeats 1] [--reference-python PATH]

Each dataset is generated with ../shared/tools/make_synthetic_dataset.py (the golden datasets' generate.sh), then both
implementations plan and preprocess it into separate folders; the script prints wall time and peak RSS (whole process
tree) of each and their ratios, and checks that the plans and fingerprints agree and that every preprocessed case
(data, segmentation, properties of every configuration) is bit-identical. Targets: time <= 0.3x the reference's,
peak RAM no higher. Runs from the repository root; the reference is run from a temporary folder so that
our package cannot shadow it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import (console_script, default_reference_python, measure, our_console_script, reference_python,  # noqa: E402
                      report)
from _client_trial import same_value  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NNUNET_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))
NAMES = {901: "Dataset901_SynthCT3D", 902: "Dataset902_SynthMRRegions", 903: "Dataset903_SynthNatural2D",
         904: "Dataset904_SynthSparse3D", 905: "Dataset905_SynthBig3D"}


def _dirs(base: str, tag: str, raw: str) -> dict:
    env = dict(os.environ, nnUNet_raw=raw, nnUNet_preprocessed=os.path.join(base, tag, "preprocessed"),
               nnUNet_results=os.path.join(base, tag, "results"))
    os.makedirs(env["nnUNet_preprocessed"])
    os.makedirs(env["nnUNet_results"])
    return env


def _close(a, b, rel: float = 1e-6) -> bool:
    """JSON values equal, floats to ``rel`` relative tolerance."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)
    return a == b


def _same_preprocessed(ours_dir: str, ref_dir: str) -> Tuple[bool, int]:
    """(every case of every configuration folder identical: data, seg and properties; number of cases compared)."""
    import pickle

    import numpy as np
    from nnunetv2.utilities.blosc2_storage import load_case
    n = 0
    for folder in sorted(d for d in os.listdir(ref_dir) if d.startswith("nnUNetPlans_")):
        ref_cases = sorted(f[:-4] for f in os.listdir(os.path.join(ref_dir, folder)) if f.endswith(".pkl"))
        ours_cases = sorted(f[:-4] for f in os.listdir(os.path.join(ours_dir, folder))
                            if f.endswith(".pkl")) if os.path.isdir(os.path.join(ours_dir, folder)) else []
        if ref_cases != ours_cases:
            return False, n
        for case in ref_cases:
            a = load_case(os.path.join(ours_dir, folder, case))
            b = load_case(os.path.join(ref_dir, folder, case))
            with open(os.path.join(ours_dir, folder, case + ".pkl"), "rb") as f:
                pa = pickle.load(f)
            with open(os.path.join(ref_dir, folder, case + ".pkl"), "rb") as f:
                pb = pickle.load(f)
            if not (np.array_equal(a[0], b[0]) and a[0].dtype == b[0].dtype and np.array_equal(a[1], b[1])
                    and same_value(pa, pb)):
                print(f"  {folder}/{case} differs", flush=True)
                return False, n
            n += 1
    return True, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=int, nargs="+", default=[901, 902, 903, 904, 905])
    p.add_argument("--np", type=int, default=2, help="worker processes for both (-np and -npfp)")
    p.add_argument("--reference-python", default=default_reference_python(),
                   help="python of an env with nnunetv2==2.8.1 (default: $NNUNET_REFERENCE_PYTHON or /opt/nnunet_ref)")
    p.add_argument("--reference-venv", default=os.path.join(tempfile.gettempdir(), "nnunet_ref_venv"))
    p.add_argument("--repeats", type=int, default=1, help="runs of each, alternating; the fastest is reported")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()

    ref_python = reference_python(args.reference_python, args.reference_venv)
    base = tempfile.mkdtemp(prefix="nnunet_bench_pp_")
    raw = os.path.join(base, "raw")
    os.makedirs(raw)
    rows = []
    try:
        for d in args.datasets:
            gen_dir = os.path.join(SHARED, "reference", NAMES[d])
            subprocess.run(["bash", "generate.sh"], cwd=gen_dir, env=dict(os.environ, nnUNet_raw=raw), check=True,
                           stdout=subprocess.DEVNULL)
            flags = ["-d", str(d), "-np", str(args.np), "-npfp", str(args.np), "--no_pbar"]
            ref = ours = None
            for r in range(args.repeats):  # alternating; the fastest run of each counts
                ours_env, ref_env = _dirs(base, f"ours{d}_{r}", raw), _dirs(base, f"ref{d}_{r}", raw)
                m = measure([console_script(ref_python, "nnUNetv2_plan_and_preprocess")] + flags, ref_env, cwd=base)
                ref = m if ref is None or m.wall_s < ref.wall_s else ref
                m = measure([our_console_script("nnUNetv2_plan_and_preprocess")] + flags, ours_env, cwd=REPO)
                ours = m if ours is None or m.wall_s < ours.wall_s else ours
            same = all(
                _close(json.load(open(os.path.join(ours_env["nnUNet_preprocessed"], NAMES[d], f))),
                       json.load(open(os.path.join(ref_env["nnUNet_preprocessed"], NAMES[d], f))))
                for f in ("nnUNetPlans.json", "dataset_fingerprint.json"))
            same_data, n_cases = _same_preprocessed(os.path.join(ours_env["nnUNet_preprocessed"], NAMES[d]),
                                                    os.path.join(ref_env["nnUNet_preprocessed"], NAMES[d]))
            label = NAMES[d] + ("" if same else " (PLANS DIFFER!)") + ("" if same_data else " (DATA DIFFER!)")
            rows.append((label, ours, ref))
            print(f"{NAMES[d]}: ours {ours.wall_s:.1f} s / reference {ref.wall_s:.1f} s; plans and fingerprint "
                  f"{'equal' if same else 'DIFFERENT'}, {n_cases} preprocessed cases "
                  f"{'identical' if same_data else 'NOT identical'}", flush=True)
        print()
        report(rows)
        total_ours = sum(r[1].wall_s for r in rows)
        total_ref = sum(r[2].wall_s for r in rows)
        print(f"\ntotal wall time ratio (ours / reference): {total_ours / total_ref:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
