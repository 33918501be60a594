"""Differential trial, not a speed benchmark: do our nnUNetv2_export_model_to_zip and
nnUNetv2_install_pretrained_model_from_zip make and install the reference's (2.8.1) zips?

    python benchmarks/model_sharing_fuzz.py [--cases 200] [--datasets 4] [--seed 0] [--verbose] [--keep]

One fake ``nnUNet_results`` tree is written per run: ``--datasets`` datasets, each with a few trained models
(trainers x plans x the four configurations), folds 0-4 and ``all`` (some missing), each fold with
checkpoint_final and/or checkpoint_best (seeded weights of a small U-Net, or neither), progress.png (now and then
missing), debug.json / network_architecture.pdf sometimes, a validation folder (summary.json sometimes missing,
predictions, .npz and .pkl) and junk files; crossval_results_folds_* folders with summary.json, postprocessing.pkl
and .json and predictions; an ensembles folder (sometimes absent) whose ensembles match the models or not;
inference_information.json / .txt and inference_instructions.txt. Every case draws a dataset (by name or id) and
``export_pretrained_model`` arguments (configurations, also missing ones, in random order; trainer and plans, also
missing ones; folds as ints or strings, with ``all``; strict or not; checkpoint names, also one never written;
cross-validation predictions or not).

Three driver runs: the reference exports every case and installs its zip into a fresh results folder; ours does
the same and also installs the reference's zip; the reference then installs ours. Compared per case: refusal or
not, the zip's members (names in order, dates, attributes, sizes, CRCs), the installed tree of each install (every
file's bytes, empty folders, nothing hidden left behind) and the cross-installations (each side installing the
other's zip must give the tree its own zip gives). A case both refuse counts as agreement. Counted apart as BY
DESIGN: ``strict=False`` with a missing or incomplete fold (ours skips it, the reference fails, leaving a partial
zip). Lines starting with NOTE: a difference that is documented or under discussion. Exit status 1 if anything
else differs.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import (compare_outcomes, first_difference, print_summary, run_both, run_driver,  # noqa: E402
                           trial_arguments, work_folder)

TRAINERS = ("nnUNetTrainer", "nnUNetTrainer_5epochs")
PLANS = ("nnUNetPlans", "nnUNetResEncUNetMPlans")
CONFIGURATIONS = ("2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres")
FOLDS = (0, 1, 2, 3, 4, "all")
FIRST_ID = 700
STRAY_ENSEMBLES = ("old_ensemble", "ensemble___junk___0_1", "ensemble___a__b___c__d__e__f___0")


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _checkpoint_bytes(cache: dict, rng: random.Random) -> bytes:
    """A real (small) checkpoint: the same few seeded networks reused, so that building the tree stays quick."""
    seed = rng.randrange(3)
    if seed not in cache:
        import io
        import torch
        from _fabricated_models import seeded_network, single_configuration_plans, small_unet
        plans = single_configuration_plans("Dataset700_Fuzz", small_unet(stages=2), [16, 16, 16], [1, 1, 1],
                                           "ZScoreNormalization", {}, [1, 1, 1], [16, 16, 16], [16, 16, 16])
        net = seeded_network(plans, 2, seed)
        buf = io.BytesIO()
        torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer", "current_epoch": seed,
                    "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0}}, buf)
        cache[seed] = buf.getvalue()
    return cache[seed]


def _fold(folder: str, rng: random.Random, cache: dict, complete: bool) -> None:
    """A fold folder; ``complete``: everything an export needs is there (a finished training)."""
    r = rng.random if not complete else (lambda: rng.random() * 0.08)
    os.makedirs(folder)
    kind = rng.choice(["final", "final", "best", "both", "both", "none"] if not complete else ["final", "both"])
    if kind in ("final", "both"):
        _write(os.path.join(folder, "checkpoint_final.pth"), _checkpoint_bytes(cache, rng))
    if kind in ("best", "both"):
        _write(os.path.join(folder, "checkpoint_best.pth"), _checkpoint_bytes(cache, rng))
    if r() < 0.9:
        _write(os.path.join(folder, "progress.png"), b"\x89PNG fake " + os.urandom(8))
    if r() < 0.5:
        _write(os.path.join(folder, "debug.json"), json.dumps({"x": r()}).encode())
    if r() < 0.4:
        _write(os.path.join(folder, "network_architecture.pdf"), b"%PDF" + os.urandom(16))
    if r() < 0.5:
        _write(os.path.join(folder, f"training_log_2026_{rng.randrange(99)}.txt"), b"log")
    if r() < 0.2:
        _write(os.path.join(folder, "checkpoint_latest.pth"), b"not loaded")
    if r() < 0.9:
        val = os.path.join(folder, "validation")
        os.makedirs(val)
        if r() < 0.85:
            _write(os.path.join(val, "summary.json"), json.dumps({"mean": r()}).encode())
        for case in range(rng.randrange(3)):
            _write(os.path.join(val, f"case_{case:03d}.nii.gz"), os.urandom(20))
            if r() < 0.5:
                _write(os.path.join(val, f"case_{case:03d}.npz"), os.urandom(20))
                _write(os.path.join(val, f"case_{case:03d}.pkl"), pickle.dumps({"case": case}))
        if r() < 0.1:
            os.makedirs(os.path.join(val, "subfolder"))
            _write(os.path.join(val, "subfolder", "junk.txt"), b"junk")


def _model(folder: str, rng: random.Random, cache: dict) -> list:
    """A trained model folder; returns its folds."""
    r = rng.random
    os.makedirs(folder)
    complete = r() < 0.6
    present = [f for f in FOLDS if r() < (0.95 if complete else 0.7)]
    for f in present:
        _fold(os.path.join(folder, f"fold_{f}"), rng, cache, complete and r() < 0.9)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        if complete or r() < 0.95:
            _write(os.path.join(folder, name), json.dumps({"name": name, "r": r()}).encode())
    for _ in range(rng.randrange(3)):
        folds = rng.choice([(0, 1, 2, 3, 4), (0,), (0, 1), ("all",), (1, 3), tuple(f for f in present if f != "all")])
        cv = os.path.join(folder, "crossval_results_folds_" + "_".join(str(f) for f in folds))
        for name, p in (("summary.json", 0.9), ("postprocessing.pkl", 0.7), ("postprocessing.json", 0.5),
                        ("case_000.nii.gz", 0.5), ("plans.json", 0.3), ("dataset.json", 0.3)):
            if r() < p:
                _write(os.path.join(cv, name), pickle.dumps({"pp": r()}) if name.endswith(".pkl") else os.urandom(12))
        os.makedirs(cv, exist_ok=True)
    if r() < 0.2:
        _write(os.path.join(folder, "junk.txt"), b"junk")
    return present


def build_tree(results: str, n_datasets: int, seed: int) -> dict:
    """The fake nnUNet_results tree; returns {dataset id: (name, [(trainer, plans, configuration)])}."""
    rng = random.Random(seed)
    cache: dict = {}
    datasets = {}
    for i in range(n_datasets):
        name = f"Dataset{FIRST_ID + i:03d}_Fuzz{i}"
        ds = os.path.join(results, name)
        models = [(t, p, c) for t in TRAINERS for p in PLANS for c in CONFIGURATIONS
                  if (t, p) == (TRAINERS[0], PLANS[0]) and rng.random() < 0.8 or rng.random() < 0.2]
        folds = {m: _model(os.path.join(ds, "__".join(m)), rng, cache) for m in models}
        os.makedirs(ds, exist_ok=True)
        if rng.random() < 0.75:
            ens = os.path.join(ds, "ensembles")
            os.makedirs(ens)
            for _ in range(rng.randrange(4)):
                u = rng.random()
                if models and u < 0.6:
                    members = rng.sample(models, min(len(models), 2))
                elif models and u < 0.8:  # one trained model and one configuration of it that was never trained
                    t, p, c = rng.choice(models)
                    members = [(t, p, c), (t, p, rng.choice([x for x in CONFIGURATIONS if x != c]))]
                else:
                    members = [(rng.choice(TRAINERS), rng.choice(PLANS), rng.choice(CONFIGURATIONS))
                               for _ in range(2)]
                e = os.path.join(ens, "ensemble___" + "___".join("__".join(m) for m in members) + "___" +
                                 rng.choice(["0_1_2_3_4", "0_1", "all"]))
                os.makedirs(e, exist_ok=True)
                for fname, p in (("summary.json", 0.9), ("postprocessing.pkl", 0.6), ("postprocessing.json", 0.3),
                                 ("case_000.nii.gz", 0.4)):
                    if rng.random() < p:
                        _write(os.path.join(e, fname), os.urandom(10))
            if rng.random() < 0.2:
                _write(os.path.join(ens, "notes.txt"), b"a file, not an ensemble")
            if rng.random() < 0.15:  # a folder someone put there by hand
                junk = rng.choice(STRAY_ENSEMBLES)
                _write(os.path.join(ens, junk, "summary.json"), b"{}")
        if rng.random() < 0.6:
            _write(os.path.join(ds, "inference_information.json"), b'{"best": 1}')
        if rng.random() < 0.6:
            _write(os.path.join(ds, "inference_instructions.txt"), b"instructions")
        if rng.random() < 0.2:
            _write(os.path.join(ds, "inference_information.txt"), b"information")
        datasets[FIRST_ID + i] = (name, folds)
    return datasets


def draw_cases(datasets: dict, n: int, seed: int) -> list:
    """The export arguments of every case (kept plain: both sides unpickle them)."""
    rng = random.Random(seed * 7919 + 1)
    cases = []
    for _ in range(n):
        did = rng.choice(sorted(datasets))
        name, models = datasets[did]
        if models and rng.random() < 0.85:
            t, p, _ = rng.choice(sorted(models))
        else:
            t, p = rng.choice(TRAINERS), rng.choice(PLANS)
        available = [c for (mt, mp, c) in models if (mt, mp) == (t, p)]
        if available and rng.random() < 0.6:
            configs = rng.sample(available, rng.randint(1, len(available)))
        else:
            configs = rng.sample(CONFIGURATIONS, rng.randint(1, 4))
        # mostly folds that all chosen models have, so that most exports can succeed
        common = [f for f in FOLDS if all(f in models.get((t, p, c), ()) for c in configs)]
        if common and rng.random() < 0.7:
            folds = rng.sample(common, rng.randint(1, len(common)))
            if rng.random() < 0.5:
                folds = sorted(folds, key=str)
        elif rng.random() < 0.3:
            folds = [0, 1, 2, 3, 4]
        else:
            folds = rng.sample(FOLDS, rng.randint(1, 3))
        if rng.random() < 0.3:
            folds = [str(f) for f in folds]
        chk = rng.choice([["checkpoint_final.pth"]] * 4 + [["checkpoint_best.pth"],
                          ["checkpoint_final.pth", "checkpoint_best.pth"], ["checkpoint_latest.pth"]])
        cases.append({"dataset": rng.choice([did, str(did), name]), "configurations": tuple(configs),
                      "trainer": t, "plans_identifier": p, "folds": tuple(folds), "strict": rng.random() < 0.6,
                      "save_checkpoints": tuple(chk), "export_crossval_predictions": rng.random() < 0.3})
    return cases


def zip_listing(path: str) -> list:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, i.date_time, i.compress_type, i.external_attr, i.file_size, i.CRC)
                for i in zf.infolist()]


def tree(root: str) -> dict:
    """Every file (sha256 of its bytes) and every empty folder below ``root``, hidden ones included."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if not dirnames and not files and rel != ".":
            out[rel + "/"] = "empty folder"
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.normpath(os.path.join(rel, f))] = hashlib.sha256(fh.read()).hexdigest()
    return out


def install(side: str, zip_file: str, destination: str) -> dict:
    """Install ``zip_file`` into the empty results folder ``destination`` with this side's installer."""
    from nnunetv2.model_sharing import model_import
    os.environ["nnUNet_results"] = destination  # ours reads it at every use
    if side == "ref":
        model_import.nnUNet_results = destination  # the reference bound it at import
    try:
        model_import.install_model_from_zip_file(zip_file)
    except Exception as e:
        return {"install_error": f"{type(e).__name__}: {str(e)[:200]}", "tree": tree(destination)}
    return {"install_error": None, "tree": tree(destination)}


def drive(phase: str, base: str, result_file: str) -> None:
    from _fuzz_harness import drive_cases
    side = os.environ["FUZZ_SIDE"]
    with open(os.path.join(base, "cases.pkl"), "rb") as f:
        cases = pickle.load(f)
    other = "ours" if side == "ref" else "ref"
    results = os.environ["nnUNet_results"]

    def compute(i: int) -> dict:
        if phase == "cross":  # install the other side's zip (if it wrote one)
            theirs = os.path.join(base, f"zips_{other}", f"case{i}.zip")
            if not os.path.isfile(theirs):
                return {"skipped": True}
            return install(side, theirs, os.path.join(base, f"installed_{side}_from_{other}", f"case{i}"))
        from nnunetv2.model_sharing.model_export import export_pretrained_model
        out = os.path.join(base, f"zips_{side}", f"case{i}.zip")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        a = cases[i]
        os.environ["nnUNet_results"] = results
        try:
            export_pretrained_model(a["dataset"], out, a["configurations"], a["trainer"], a["plans_identifier"],
                                    a["folds"], a["strict"], a["save_checkpoints"], a["export_crossval_predictions"])
        except Exception:
            if os.path.isfile(out):  # kept apart for the report, never installed
                os.replace(out, out + ".left_behind")
            raise
        outcome = {"members": zip_listing(out)}
        outcome.update(install(side, out, os.path.join(base, f"installed_{side}", f"case{i}")))
        theirs = os.path.join(base, f"zips_{other}", f"case{i}.zip")
        if side == "ours" and os.path.isfile(theirs):  # the reference ran first
            outcome["cross"] = install(side, theirs, os.path.join(base, f"installed_{side}_from_{other}", f"case{i}"))
        return outcome

    drive_cases(list(range(len(cases))), compute, result_file)


def describe(case: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in case.items())


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--datasets", type=int, default=4)
    p.add_argument("--verbose", action="store_true", help="one line per case that differs by design")
    args = p.parse_args()
    if args.driver:
        drive(*args.driver)
        return 0

    with work_folder("nnunet_model_sharing_fuzz_", args.keep) as base:
        results = os.path.join(base, "results")
        datasets = build_tree(results, args.datasets, args.seed)
        cases = draw_cases(datasets, args.cases, args.seed)
        with open(os.path.join(base, "cases.pkl"), "wb") as f:
            pickle.dump(cases, f)
        def env(side: str) -> dict:
            return {"nnUNet_results": results, "FUZZ_SIDE": side, "OMP_NUM_THREADS": "1"}
        ref, ours = run_both(args, __file__, ["export", base], base, env)
        # the reference installs our zips last (ours installed the reference's in its own run)
        ref_cross = run_driver("ref", _ref_python(args), __file__, ["cross", base], base, env("ref"))
        keys = list(range(len(cases)))
        by_design, rest = [], []
        for k in keys:
            r, o, c = ref["outcomes"][k], ours["outcomes"][k], cases[k]
            if r["error"] and not o["error"] and not c["strict"] and (
                    "not all requested folds" in r["error"] or r["error"].startswith("FileNotFoundError")):
                by_design.append((k, "--not_strict skips what is missing; the reference: " + r["error"][:80] +
                                  (", partial zip left behind" if os.path.isfile(
                                      os.path.join(base, "zips_ref", f"case{k}.zip.left_behind")) else "")))
            elif r["error"] and not o["error"] and not c["strict"] and "plans.json missing, " in r["error"] and \
                    not any(f"__{r['error'].split()[-1]}/" in m[0] for m in o["members"]):
                by_design.append((k, "--not_strict skips a configuration without a usable fold (its plans.json is "
                                     "missing too); the reference: " + r["error"][:80]))
            elif r["error"] and not o["error"] and r["error"].startswith("ValueError: not enough values to unpack") \
                    and not any(j in m[0] for m in o["members"] for j in STRAY_ENSEMBLES):
                by_design.append((k, "a folder in ensembles/ that is no ensemble: ours leaves it out, the reference "
                                     "stops with " + r["error"][:60]))
            elif not r["error"] and not o["error"] and not c["strict"] and _only_unexported_ensembles(r, o):
                by_design.append((k, "--not_strict skipped a configuration: ours leaves out the ensembles that use "
                                     "it, the reference exports them"))
            elif not r["error"] and o["error"] and not c["strict"] and "Nothing to export" in o["error"]:
                by_design.append((k, f"--not_strict and no model to export: ours refuses, the reference writes a "
                                     f"zip of {len(r['members'])} members ({', '.join(m[0] for m in r['members'])})"))
            else:
                rest.append(k)
        kinds: dict = {}
        for k, why in by_design:
            if args.verbose:
                print(f"BY DESIGN case {k} ({why})")
            kinds.setdefault(why.split(";")[0].split(":")[0], []).append(k)
        for why, ks in kinds.items():
            print(f"BY DESIGN {len(ks)} cases ({why}): {', '.join(map(str, ks[:12]))}{' ...' if len(ks) > 12 else ''}")
        differing, refused_both = compare_outcomes({"outcomes": {k: _main(ref["outcomes"][k]) for k in rest}},
                                                   {"outcomes": {k: _main(ours["outcomes"][k]) for k in rest}},
                                                   rest, lambda k: f"case {k} (seed {args.seed}: "
                                                   f"{describe(cases[k])})")
        for k in rest:  # name what a differing zip holds in one side only (compare_outcomes names the first item)
            r, o = ref["outcomes"][k], ours["outcomes"][k]
            if not r["error"] and not o["error"]:
                rn, on = [m[0] for m in r["members"]], [m[0] for m in o["members"]]
                if rn != on:
                    print(f"  case {k}: only in the reference's zip {sorted(set(rn) - set(on))}, only in ours "
                          f"{sorted(set(on) - set(rn))}")
        # cross-installations: each installer on the other's zip must give the tree that zip's own installer gave
        for k in keys:
            r, o, rc = ref["outcomes"][k], ours["outcomes"][k], ref_cross["outcomes"][k]
            for what, own, crossed in (("ours installing the reference's zip", r, o.get("cross")),
                                       ("the reference installing our zip", o, rc)):
                if own["error"] or crossed is None or crossed.get("skipped"):
                    continue
                if crossed.get("error"):
                    differing += 1
                    print(f"DIFFERENT case {k}, {what}: failed: {crossed['error']}")
                    continue
                d = first_difference({"install_error": own["install_error"], "tree": own["tree"]},
                                     {"install_error": crossed["install_error"], "tree": crossed["tree"]})
                if d:
                    differing += 1
                    print(f"DIFFERENT case {k}, {what}: {d}")
        print_summary("cases (not counting those by design)", len(rest), differing, refused_both, ref, ours)
        n_members = sum(len(o.get("members", [])) for o in ours["outcomes"].values())
        n_cross = sum(1 for k in keys if ours["outcomes"][k].get("cross")) + \
            sum(1 for k in keys if not ref_cross["outcomes"][k].get("skipped"))
        print(f"{len(by_design)} by design; {n_cross} cross-installations; zips written by both: "
              f"{sum(1 for k in keys if not ref['outcomes'][k]['error'] and not ours['outcomes'][k]['error'])}, "
              f"{n_members} members in ours; cross-installations: reference {ref_cross['seconds']:.1f} s")
        return 1 if differing else 0


def _only_unexported_ensembles(r: dict, o: dict) -> bool:
    """Whether the reference's zip is ours plus ensembles using a model that is not in the zip, and nothing else."""
    ours = {m[0] for m in o["members"]}
    extra = [m for m in r["members"] if m[0] not in ours]
    if not extra or [m for m in r["members"] if m[0] in ours] != o["members"]:
        return False
    exported = {m.split("/")[1] for m in ours}
    for m in extra:
        parts = m[0].split("/")
        if parts[1] != "ensembles" or all(i in exported for i in parts[2].split("___")[1:-1]):
            return False
    return True


def _main(outcome: dict) -> dict:
    return {k: v for k, v in outcome.items() if k != "cross"}


def _ref_python(args) -> str:
    from _harness import default_reference_python, reference_python
    return reference_python(args.reference_python or default_reference_python(), args.reference_venv)


if __name__ == "__main__":
    sys.exit(main())
