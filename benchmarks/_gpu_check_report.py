"""benchmarks/gpu_check.py: comparing prediction outputs and turning the raw results into the one table it prints."""
from __future__ import annotations

import os
from typing import Dict, List, Optional

TARGET_TRAIN_SPEEDUP = 1.10  # ours / reference iterations per second
TARGET_PREDICT_TIME = 0.80  # ours / reference wall time
TARGET_VRAM = 1.00  # ours / reference peak allocated VRAM
CROSS_DEVICE_MAX_DIFFERING = 1e-3  # fraction of voxels whose label may change between a GPU and a CPU prediction


def _read_prediction(folder: str, case: str):
    import numpy as np
    import tifffile
    seg = tifffile.imread(os.path.join(folder, f"{case}.tif"))
    with np.load(os.path.join(folder, f"{case}.npz")) as npz:
        probabilities = npz["probabilities"]
    return seg, probabilities


def _difference(folder_a: str, folder_b: str, cases) -> dict:
    import numpy as np
    per_case, differing, voxels, max_dp = {}, 0, 0, 0.0
    # a run on a subset of the volumes (the deterministic-cuDNN runs) is compared on that subset
    cases = [c for c in cases if os.path.isfile(os.path.join(folder_a, f"{c}.tif"))]
    if not cases:
        raise ValueError(f"no predictions in {folder_a}")
    for case in cases:
        seg_a, p_a = _read_prediction(folder_a, case)
        seg_b, p_b = _read_prediction(folder_b, case)
        n = int((seg_a != seg_b).sum())
        dp = float(np.abs(p_a.astype(np.float64) - p_b).max())
        per_case[case] = {"voxels_differing": n, "voxels": int(seg_a.size), "max_abs_prob_diff": dp}
        differing, voxels, max_dp = differing + n, voxels + int(seg_a.size), max(max_dp, dp)
    return {"voxels_differing": differing, "voxels": voxels, "max_abs_prob_diff": max_dp, "cases": per_case}


COMPARED_RUNS = (("ours", "ref1"), ("ref2", "ref1"), ("ours2", "ours"), ("ours_deterministic", "ref_deterministic"))


def _same_fingerprints(a: dict, b: dict, key: str) -> Optional[str]:
    """'n of m' cases whose ``key`` fingerprint (preprocessed input or logits) is the same in both runs, None where
    a run recorded none. Cases are matched by the shape of their preprocessed input (each volume has its own)."""
    fa = {tuple(f["shape"]): f[key] for f in a.get("fingerprints") or []}
    fb = {tuple(f["shape"]): f[key] for f in b.get("fingerprints") or []}
    if not fa or set(fa) != set(fb):
        return None
    return f"{sum(fa[k] == fb[k] for k in fa)} of {len(fa)}"


def compare_predictions(runs: Dict[str, dict], volumes: Dict[str, list]) -> dict:
    """Ours vs the reference's first run; each side's second run vs its first (run-to-run spread); ours vs the
    reference with cuDNN's deterministic algorithms."""
    out = {}
    for a, b in COMPARED_RUNS:
        if a in runs and b in runs and "error" not in runs[a] and "error" not in runs[b]:
            try:
                out[f"{a}_vs_{b}"] = _difference(runs[a]["output"], runs[b]["output"], volumes)
            except (OSError, KeyError, ValueError) as e:
                out[f"{a}_vs_{b}"] = {"error": f"comparison failed: {e}"}
                continue
            for same, key in (("same_input", "input_sha1"), ("same_logits", "logits_sha1")):
                out[f"{a}_vs_{b}"][same] = _same_fingerprints(runs[a], runs[b], key)
    return out


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or not b:
        return None
    return a / b


def _row(check: str, ours=None, reference=None, ratio=None, target: str = "", verdict: str = "info") -> dict:
    return {"check": check, "ours": ours, "reference": reference, "ratio": ratio, "target": target,
            "verdict": verdict}


def _speed_verdict(ratio: Optional[float], target: float, higher_is_better: bool, on_gpu: bool) -> str:
    if not on_gpu:
        return "n/a (cpu toy)"
    if ratio is None:
        return "n/a"
    ok = ratio >= target if higher_is_better else ratio <= target
    return "ok" if ok else "MISS"


def _failed(results: dict, key: str) -> Optional[str]:
    step = results.get(key)
    if not isinstance(step, dict):
        return None
    if "skipped" in step:
        return "skipped"
    if "error" in step:
        return step["error"]
    return None


def build_table(results: dict) -> List[dict]:
    on_gpu = results.get("meta", {}).get("device") == "cuda"
    rows: List[dict] = []
    if "pytest" in results:
        p = results["pytest"]
        counts = p.get("counts", {})
        summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "not finished"
        good = p.get("rc") == 0 and not counts.get("failed") and not counts.get("error") and not counts.get("errors")
        if on_gpu:
            good = good and counts.get("passed", 0) > 0
        rows.append(_row("pytest -m cuda", summary, verdict=("ok" if good else "FAIL") if "rc" in p else "n/a"))
    prepare = results.get("prepare", {})
    if "error" in prepare:
        rows.append(_row("dataset, plans, model", prepare["error"], verdict="FAIL"))
        return rows
    if prepare:
        rows.append(_row("3d_fullres plans", f"patch {prepare.get('patch_size')}, batch {prepare.get('batch_size')}, "
                                             f"{prepare.get('n_stages')} stages"))

    train = results.get("train", {})
    problem = _failed(results, "train")
    if problem:
        rows.append(_row("training", problem, verdict="skipped" if problem == "skipped" else "FAIL"))
    elif train:
        ours, ref = train.get("ours", {}), train.get("ref", {})
        for impl, label in ((ours, "ours"), (ref, "reference")):
            if "error" in impl:
                rows.append(_row(f"training ({label})", impl["error"], verdict="FAIL"))
        r = _ratio(ours.get("initialize_and_dummy_s"), ref.get("initialize_and_dummy_s"))
        if r is not None:
            rows.append(_row("train start-up s (initialize, compile, dummy steps)", ours["initialize_and_dummy_s"],
                             ref["initialize_and_dummy_s"], r))
        few = ours.get("augmenter_few", {}).get("workers")
        for mode, label in (("dummy", "dummy data"), ("augmenter", "augmenter workers"),
                            ("augmenter_few", f"{few} augmenter workers")):
            a, b = ours.get(mode, {}), ref.get(mode, {})
            if not a:
                continue
            r = _ratio(a.get("iters_per_s"), b.get("iters_per_s"))
            rows.append(_row(f"train it/s, {label}", a.get("iters_per_s"), b.get("iters_per_s"), r,
                             f">= {TARGET_TRAIN_SPEEDUP:.2f}x", _speed_verdict(r, TARGET_TRAIN_SPEEDUP, True, on_gpu)))
            r = _ratio(a.get("peak_allocated_mb"), b.get("peak_allocated_mb"))
            rows.append(_row(f"train peak VRAM MB, {label}", a.get("peak_allocated_mb"), b.get("peak_allocated_mb"),
                             r, f"<= {TARGET_VRAM:.2f}x", _speed_verdict(r, TARGET_VRAM, False, on_gpu)))
            finite = a.get("losses_finite")
            rows.append(_row(f"train loss finite, {label}", finite, b.get("losses_finite"),
                             verdict="ok" if finite else "FAIL"))

    predict = results.get("predict", {})
    problem = _failed(results, "predict")
    if problem:
        rows.append(_row("prediction", problem, verdict="skipped" if problem == "skipped" else "FAIL"))
    elif predict:
        rows += _prediction_rows(predict, on_gpu)

    resume = results.get("resume", {})
    problem = _failed(results, "resume")
    if problem:
        rows.append(_row("--c / --val", problem, verdict="skipped" if problem == "skipped" else "FAIL"))
    elif resume:
        ok = resume.get("first_run_epochs") == 1 and resume.get("resumed_epochs") == 2 \
            and resume.get("resumed_train_losses") == 2
        rows.append(_row("--c resume: epochs 1 -> 2", f"{resume.get('first_run_epochs')} -> "
                                                      f"{resume.get('resumed_epochs')}", verdict="ok" if ok else "FAIL"))
        dice = resume.get("val_mean_dice")
        rows.append(_row("--val: summary.json rewritten, mean Dice", dice,
                         verdict="ok" if isinstance(dice, (int, float)) else "FAIL"))
        n, total = resume.get("cross_device_voxels_differing"), resume.get("cross_device_voxels")
        fraction = n / total if n is not None and total else None
        rows.append(_row("checkpoint from the device on the CPU: voxels differing", n, ratio=fraction,
                         target=f"<= {CROSS_DEVICE_MAX_DIFFERING:.1%} of voxels",
                         verdict="ok" if fraction is not None and fraction <= CROSS_DEVICE_MAX_DIFFERING else "FAIL"))
        rows.append(_row("checkpoint from the device on the CPU: max |dp|", resume.get("cross_device_max_abs_prob_diff")))
    rows += _variant_rows(results.get("variants", {}))
    return rows


def _variant_rows(variants: Dict[str, dict]) -> List[dict]:
    """Our step computed other ways, each against our default step of the same run (its row's 'reference'
    column): speed, peak VRAM, and the losses (rounding may differ, the trend may not)."""
    rows: List[dict] = []
    default = variants.get("default", {}).get("dummy", {})
    for name, variant in variants.items():
        if "skipped" in variant or "error" in variant:
            problem = variant.get("skipped") or variant.get("error")
            rows.append(_row(f"variant {name}", problem, verdict="skipped" if "skipped" in variant else "FAIL"))
            continue
        step = variant.get("dummy", {})
        versus = default if name != "default" else {}
        rows.append(_row(f"variant {name}: train it/s, dummy data", step.get("iters_per_s"),
                         versus.get("iters_per_s"), _ratio(step.get("iters_per_s"), versus.get("iters_per_s")),
                         "vs our default step"))
        rows.append(_row(f"variant {name}: train peak VRAM MB", step.get("peak_allocated_mb"),
                         versus.get("peak_allocated_mb"),
                         _ratio(step.get("peak_allocated_mb"), versus.get("peak_allocated_mb")), "vs our default step"))
        losses = f"{step.get('loss_first', float('nan')):.4f} -> {step.get('loss_last', float('nan')):.4f}"
        default_losses = f"{versus['loss_first']:.4f} -> {versus['loss_last']:.4f}" if "loss_first" in versus else None
        rows.append(_row(f"variant {name}: loss first -> last", losses, default_losses,
                         verdict="ok" if step.get("losses_finite") else "FAIL"))
    return rows


def _runs(predict: dict, names) -> List[dict]:
    return [predict[k] for k in names if k in predict and "error" not in predict[k]]


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _peak(runs: List[dict]) -> Optional[float]:
    return max((r["peak_allocated_mb"] for r in runs if r.get("peak_allocated_mb")), default=None)


def _prediction_rows(predict: dict, on_gpu: bool) -> List[dict]:
    rows: List[dict] = []
    for key, run in predict.items():
        if isinstance(run, dict) and "error" in run and key != "comparison":
            rows.append(_row(f"prediction ({key})", run["error"], verdict="FAIL"))
    ours, refs = _runs(predict, ("ours", "ours2")), _runs(predict, ("ref1", "ref2"))
    our_time, ref_time = _mean([r["predict_s"] for r in ours]), _mean([r["predict_s"] for r in refs])
    r = _ratio(our_time, ref_time)
    rows.append(_row("predict wall s (TTA, all volumes), mean of runs", our_time, ref_time, r,
                     f"<= {TARGET_PREDICT_TIME:.2f}x", _speed_verdict(r, TARGET_PREDICT_TIME, False, on_gpu)))
    if len(ours) > 1 or len(refs) > 1:
        rows.append(_row("predict wall s, each run", ", ".join(f"{r['predict_s']:.1f}" for r in ours) or None,
                         ", ".join(f"{r['predict_s']:.1f}" for r in refs) or None))
    r = _ratio(_peak(ours), _peak(refs))
    rows.append(_row("predict peak VRAM MB (highest run)", _peak(ours), _peak(refs), r,
                     f"<= {TARGET_VRAM:.2f}x", _speed_verdict(r, TARGET_VRAM, False, on_gpu)))

    comparison = predict.get("comparison", {})
    mine, theirs = comparison.get("ours_vs_ref1", {}), comparison.get("ref2_vs_ref1", {})
    if "error" in mine:
        rows.append(_row("prediction outputs", mine["error"], verdict="FAIL"))
    elif mine:
        for key, label in (("voxels_differing", "voxels differing from reference run 1"),
                           ("max_abs_prob_diff", "max |dp| to reference run 1")):
            spread_value = theirs.get(key)
            ok = spread_value is None or mine[key] <= max(spread_value, 1e-6 if key == "max_abs_prob_diff" else 0)
            rows.append(_row(label, mine[key], spread_value, target="<= reference run 2 vs run 1",
                             verdict="ok" if ok else "MISS"))
    if mine and "error" not in mine and mine.get("same_input"):
        rows.append(_row("cases with the same preprocessed input / logits as reference run 1",
                         f"{mine['same_input']} / {mine['same_logits']}"))
    own = comparison.get("ours2_vs_ours", {})
    if own and "error" not in own:
        rows.append(_row("ours run 2 vs run 1: voxels differing, max |dp|",
                         f"{own['voxels_differing']}, {_fmt(own['max_abs_prob_diff'])}"))

    exact = comparison.get("ours_deterministic_vs_ref_deterministic", {})
    if "error" in exact:
        rows.append(_row("deterministic cuDNN: outputs", exact["error"], verdict="FAIL"))
    elif exact:
        cases = ", ".join(exact.get("cases", {}))
        same = exact["voxels_differing"] == 0 and exact["max_abs_prob_diff"] == 0
        rows.append(_row(f"deterministic cuDNN ({cases}): voxels differing, max |dp|",
                         f"{exact['voxels_differing']}, {_fmt(exact['max_abs_prob_diff'])}; same logits "
                         f"{exact.get('same_logits')}", target="0, 0 (same sums)",
                         verdict="ok" if same else "MISS"))
        a, b = _runs(predict, ("ours_deterministic",)), _runs(predict, ("ref_deterministic",))
        r = _ratio(_peak(a), _peak(b))
        rows.append(_row("deterministic cuDNN: peak VRAM MB", _peak(a), _peak(b), r, f"<= {TARGET_VRAM:.2f}x",
                         _speed_verdict(r, TARGET_VRAM, False, on_gpu)))
    return rows


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def format_table(rows: List[dict], meta: dict) -> str:
    head = f"GPU check: {meta.get('gpu', meta.get('device'))}, torch {meta.get('torch')}, " \
           f"commit {meta.get('commit', '?')}, {meta.get('elapsed_s', '?')} s"
    cols = [("check", 52), ("ours", 26), ("reference", 22), ("ratio", 8), ("target", 28), ("verdict", 14)]
    lines = [head, "".join(f"{name:<{w}}" for name, w in cols)]
    for row in rows:
        cells = [_fmt(row[name])[:w - 1] for name, w in cols]
        lines.append("".join(f"{c:<{w}}" for c, (_, w) in zip(cells, cols)))
    return "\n".join(lines)
