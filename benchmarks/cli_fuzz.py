"""Differential trial, not a speed benchmark: does argparse make the same of random command lines for every
``nnUNetv2_*`` console command on our side as on the reference's (2.8.1)?

    python benchmarks/cli_fuzz.py [--cases 40] [--seed 0] [--commands train,predict] [--reference-python PATH]

No command does its work. In a driver process on each side, ``ArgumentParser.parse_args`` and ``parse_known_args``
are wrapped: the first parse of an entry point records what it got (``vars()`` of the Namespace, each value with its
type name, and the unknown arguments of ``parse_known_args``) or the exit status of a parse error, then raises a
private exception that ends the entry point. Each entry point is imported as the side's own console-script table
names it (ours: pyproject.toml; the reference: its dist-info ``entry_points.txt``).

Round one records each command's parser as data (option strings, dest, nargs, type, choices, default, required,
action; help texts are ours to word and are left out), which is compared like a case: this stands in for ``--help``.
Round two parses ``--cases`` command lines per command, drawn from the union of both sides' flags with a seeded
generator: every flag with plausible values (dataset ids, configurations, folds with ``all``, paths, names, devices),
nargs="+" lists, repeated flags, negative, float and non-numeric numbers, values outside ``choices``, unknown flags,
stray positionals, and required flags left out. A difference that documentation/differences_from_reference.md
describes is printed as BY DESIGN and does not fail the run; anything else is DIFFERENT (exit status 1).
"""
from __future__ import annotations

import json
import os
import random
import sys
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzz_harness import REPO, first_difference, run_both, trial_arguments, work_folder  # noqa: E402

SIDE_VARIABLE = "NNUNET_CLI_FUZZ_SIDE"

PLANNING = ("nnUNetv2_extract_fingerprint", "nnUNetv2_plan_experiment", "nnUNetv2_preprocess",
            "nnUNetv2_plan_and_preprocess")
REQUIRED_D = "-d is required by the planning commands"
NOT_STRICT = "export_model_to_zip --not_strict really skips missing configurations and folds"


def _parser_by_design(command: str, flag: str, ref_entry: Optional[dict], our_entry: Optional[dict]) -> Optional[str]:
    """The documented reason (differences_from_reference.md) for a difference of one flag of a parser, if any."""
    if command in PLANNING and flag == "-d" and ref_entry and our_entry:
        # only if required is all that differs
        if not first_difference(dict(ref_entry, required=None), dict(our_entry, required=None)):
            return REQUIRED_D
    if command == "nnUNetv2_export_model_to_zip" and flag == "--not_strict":
        return NOT_STRICT  # the reference's store_false with default False could never be set
    return None


def _case_by_design(case: dict, r: dict, o: dict, diff: str) -> Optional[str]:
    """The documented reason for a difference of a parsed command line, if any."""
    if case["command"] in PLANNING and "-d" not in case["argv"] and o.get("exit") == 2 and r.get("exit") is None:
        return REQUIRED_D  # the reference parsed it and crashed later with a TypeError
    if case["command"] == "nnUNetv2_export_model_to_zip" and diff.startswith("/namespace/not_strict"):
        # only if nothing else differs (the first difference would hide a later one)
        rest = [dict(side, namespace={k: v for k, v in side["namespace"].items() if k != "not_strict"})
                for side in (r, o)]
        if not first_difference(*[{k: v for k, v in x.items() if k != "seconds"} for x in rest]):
            return NOT_STRICT
    return None


class _Parsed(BaseException):
    """Raised once the entry point's arguments are parsed: its work must not run (not an Exception, so that no
    handler of the entry point takes it for a failure)."""


def _plain(value):
    """A value with its type name, so that 3 and 3.0 and '3' differ; lists item by item."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):  # repr: exact, and NaN equal to NaN
        return ["float", repr(value)]
    if isinstance(value, (bool, int, str)):
        return [type(value).__name__, value]
    return [type(value).__name__, repr(value)]


def _describe_parser(parser) -> dict:
    """A parser as data, without its help texts."""
    out = {}
    for action in parser._actions:
        if type(action).__name__ == "_HelpAction":
            continue
        key = " ".join(sorted(action.option_strings)) or action.dest
        out[key] = {"dest": action.dest, "nargs": action.nargs, "const": _plain(action.const),
                    "default": _plain(action.default), "required": action.required,
                    # no type and type=str parse alike (argparse's identity for strings)
                    "type": getattr(action.type, "__name__", repr(action.type)) if action.type else "str",
                    "choices": _plain(list(action.choices)) if action.choices is not None else None,
                    "action": type(action).__name__}
    return out


def _entry_points(side: str) -> Dict[str, str]:
    """command -> 'module:function' as this side's installation names it."""
    if side == "ours":
        import tomllib
        with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
            return dict(tomllib.load(f)["project"]["scripts"])
    from importlib.metadata import distribution
    return {e.name: e.value for e in distribution("nnunetv2").entry_points if e.group == "console_scripts"}


def _run_entry(target: str, argv: List[str], describe: bool) -> dict:
    """Call the entry point with ``argv``; what its first parse made of it (or the parser itself)."""
    import argparse
    import importlib
    module, function = target.split(":")
    entry = getattr(importlib.import_module(module), function)
    original_args, original_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    state = {"inside_parse_args": False, "record": None}

    def stop(parser, namespace, unknown):
        state["record"] = ({"parser": _describe_parser(parser)} if describe else
                           {"namespace": {k: _plain(v) for k, v in sorted(vars(namespace).items())},
                            "unknown": list(unknown) if unknown is not None else None, "exit": None})
        raise _Parsed()

    def parse_args(self, args=None, namespace=None):
        if describe:
            stop(self, None, None)
        state["inside_parse_args"] = True
        try:
            ns = original_args(self, args, namespace)
        except SystemExit as e:
            state["record"] = {"namespace": None, "unknown": None, "exit": e.code}
            raise _Parsed() from None
        finally:
            state["inside_parse_args"] = False
        stop(self, ns, None)

    def parse_known_args(self, args=None, namespace=None):
        if state["inside_parse_args"]:  # parse_args builds on it: only the outer call counts
            return original_known(self, args, namespace)
        if describe:
            stop(self, None, None)
        try:
            ns, unknown = original_known(self, args, namespace)
        except SystemExit as e:
            state["record"] = {"namespace": None, "unknown": None, "exit": e.code}
            raise _Parsed() from None
        stop(self, ns, unknown)

    saved_argv = sys.argv
    sys.argv = [target.split(":")[1]] + argv
    argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse_args, parse_known_args
    try:
        entry()
    except _Parsed:
        return state["record"]
    except SystemExit as e:  # ended before parsing (or a wrapper turned our stop into an exit)
        return state["record"] or {"ended_unparsed": f"SystemExit {e.code}"}
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = original_args, original_known
        sys.argv = saved_argv
    return {"ended_unparsed": "returned"}


def drive(cases_file: str, result_file: str) -> None:
    from _fuzz_harness import drive_cases
    side = os.environ[SIDE_VARIABLE]
    with open(cases_file) as f:
        cases = json.load(f)
    table = _entry_points(side)

    def compute(key):
        case = cases[key]
        target = table.get(case["command"])
        if target is None:
            return {"missing_command": case["command"]}
        return _run_entry(target, case["argv"], case["describe"])

    drive_cases(list(cases), compute, result_file, time_limit_s=60)


# --- drawing command lines ---------------------------------------------------------------------------------------

_CONFIGS = ["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"]
_WORDS = ["abc", "nnUNetPlans", "nnUNetTrainer", "nnUNetTrainer_5epochs", "x y", "", "-", "DefaultPreprocessor"]


def _number(rng: random.Random, integer: bool) -> str:
    kind = rng.random()
    if kind < 0.5:
        return str(rng.randint(0, 8))
    if kind < 0.65:
        return str(-rng.randint(1, 5))
    if kind < 0.8:
        return rng.choice(["1.5", "0.5", "2.0", "1e3", "-0.25"])
    if kind < 0.9:
        return rng.choice(["abc", "nan", "inf", "0x10", "1_000"])
    return str(rng.randint(100, 99999)) if integer else rng.choice(["3", "0.8", "12.5"])


def _value(rng: random.Random, flag: str, spec: dict) -> str:
    """One plausible (sometimes implausible) value for ``flag``."""
    if spec.get("choices") and rng.random() < 0.8:
        return str(rng.choice(spec["choices"])[1])
    name, kind = flag.lstrip("-"), spec.get("type")
    if name in ("c", "configurations") or "config" in name:
        return rng.choice(_CONFIGS + ["3d", "abc"])
    if name in ("f", "folds"):
        return rng.choice(["0", "1", "2", "3", "4", "all", "5", "-1", "1.5", "abc"])
    if name == "d" or name.startswith("dataset") or name in ("s", "t"):
        return rng.choice(["1", "2", "4", "Dataset004_Hippocampus", "999", "0", "-3", "abc"])
    if name == "device":
        return rng.choice(["cpu", "cuda", "mps", "tpu"])
    if kind in ("int", "float") or name in ("np", "npp", "nps", "npfp", "num_parts", "part_id", "step_size",
                                            "gpu_memory_target", "num_gpus"):
        return _number(rng, kind == "int")
    if name in ("i", "o", "ref", "pred", "input", "output", "m", "pp_pkl_file", "plans_json", "dataset_json",
                "djfile", "pfile", "url", "zip", "gt", "gt_folder", "pred_folder", "pp_pkl", "prev_stage_predictions",
                "pretrained_weights", "input_folder", "output_folder", "model_folder", "raw", "ref_folder"):
        return rng.choice(["/tmp/x", "rel/folder", "a.zip", "file.json", "C:\\win", "."])
    if kind == "int":
        return _number(rng, True)
    if kind == "float":
        return _number(rng, False)
    return rng.choice(_WORDS + [_number(rng, True)])


def draw_argv(rng: random.Random, flags: Dict[str, dict]) -> List[str]:
    """A random command line over ``flags`` (option string -> parser data, the union of both sides)."""
    argv = []
    options = [f for f in flags if f.startswith("-")]
    positionals = [f for f in flags if not f.startswith("-")]
    required = [f for f in options if flags[f]["required"]]
    chosen = [f for f in required if rng.random() < 0.9]
    chosen += [f for f in options if f not in chosen and rng.random() < 0.3]
    if chosen and rng.random() < 0.1:
        chosen.append(rng.choice(chosen))  # the same flag twice
    rng.shuffle(chosen)
    for flag in chosen:
        spec = flags[flag]
        # a multi-name action is keyed by all its names: pick one of them
        flag_name = rng.choice(flag.split(" "))
        argv.append(flag_name)
        nargs = spec["nargs"]
        if spec["action"] in ("_StoreTrueAction", "_StoreFalseAction", "_StoreConstAction", "_CountAction"):
            if rng.random() < 0.05:
                argv.append(_value(rng, flag_name, spec))  # a value given to a switch
            continue
        if nargs in ("+", "*"):
            n = rng.choice([0, 1, 1, 2, 3]) if nargs == "+" else rng.choice([0, 1, 2])
        elif nargs == "?":
            n = rng.choice([0, 1, 1])
        elif isinstance(nargs, int):
            n = nargs if rng.random() < 0.9 else rng.choice([max(0, nargs - 1), nargs + 1])
        else:
            n = 1 if rng.random() < 0.95 else 0
        argv += [_value(rng, flag_name, spec) for _ in range(n)]
    for p in positionals:
        if rng.random() < 0.9:
            argv.insert(rng.randint(0, len(argv)) if rng.random() < 0.3 else len(argv), _value(rng, p, flags[p]))
    roll = rng.random()
    if roll < 0.02:
        argv.insert(rng.randint(0, len(argv)), rng.choice(["-h", "--help"]))  # both must exit 0
    elif roll < 0.08:
        argv.insert(rng.randint(0, len(argv)), rng.choice(["--bogus", "-zz", "--tr", "-fold"]))
    elif roll < 0.12:
        argv.insert(rng.randint(0, len(argv)), "stray")
    elif roll < 0.14:
        argv.append("--")
    return argv


def main() -> int:
    p = trial_arguments(__doc__, driver_nargs=3)
    p.add_argument("--cases", type=int, default=40, help="command lines per command")
    p.add_argument("--commands", default="", help="comma-separated command names (without nnUNetv2_); all if empty")
    args = p.parse_args()
    if args.driver:
        drive(args.driver[1], args.driver[2])
        return 0

    import tomllib
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        commands = sorted(tomllib.load(f)["project"]["scripts"])
    if args.commands:
        wanted = {"nnUNetv2_" + c.strip() for c in args.commands.split(",")}
        commands = [c for c in commands if c in wanted]

    with work_folder("nnunet_cli_fuzz_", args.keep) as base:
        def run_round(cases: dict) -> Tuple[dict, dict]:
            path = os.path.join(base, "cases.json")
            with open(path, "w") as f:
                json.dump(cases, f)
            # the driver reads its side from the environment: each side has its own entry-point table
            return run_both(args, __file__, ["-", path], base, lambda side: {SIDE_VARIABLE: side})

        # round one: the parsers themselves
        specs = {c: {"command": c, "argv": [], "describe": True} for c in commands}
        ref_specs, our_specs = run_round(specs)
        total = differing = refused_both = by_design = 0
        failures = 0
        seconds = {"ref": ref_specs["seconds"], "ours": our_specs["seconds"]}
        union: Dict[str, Dict[str, dict]] = {}
        for c in commands:
            r, o = ref_specs["outcomes"][c], our_specs["outcomes"][c]
            total += 1
            if "parser" not in r or "parser" not in o:
                failures += 1
                print(f"DIFFERENT {c} parser: reference {r}; ours {o}")
                continue
            # a parser counts once: different if any flag differs without a documented reason
            verdicts = set()
            for key in list(r["parser"]) + [k for k in o["parser"] if k not in r["parser"]]:
                d = first_difference(r["parser"].get(key), o["parser"].get(key), f"{c} {key}")
                if d:
                    reason = _parser_by_design(c, key, r["parser"].get(key), o["parser"].get(key))
                    verdicts.add("by design" if reason else "different")
                    print(f"BY DESIGN ({reason}) {d}" if reason else f"DIFFERENT parser {d}")
            if "different" in verdicts:
                failures += 1
            elif verdicts:
                by_design += 1
            # the reference's data where both have the flag, but required where either side requires it (so that
            # leaving out a flag only ours requires stays a rare draw)
            union[c] = {**o["parser"], **r["parser"]}
            for key in union[c]:
                union[c][key] = dict(union[c][key], required=any(
                    side["parser"].get(key, {}).get("required") for side in (r, o)))

        # round two: random command lines
        rng = random.Random(args.seed)
        cases = {}
        for c in commands:
            if c not in union:
                continue
            for i in range(args.cases):
                cases[f"{c}#{i}"] = {"command": c, "argv": draw_argv(rng, union[c]), "describe": False}
        ref, ours = run_round(cases)
        seconds["ref"] += ref["seconds"]
        seconds["ours"] += ours["seconds"]
        exits = {}
        for key, case in cases.items():
            r, o = ref["outcomes"][key], ours["outcomes"][key]
            exits[r.get("exit")] = exits.get(r.get("exit"), 0) + 1
            total += 1
            if r["error"] or o["error"]:
                if r["error"] and o["error"]:
                    refused_both += 1
                    continue
                d = f"reference {r['error'] or 'parsed'}; ours {o['error'] or 'parsed'}"
            else:
                strip = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
                d = first_difference(strip(r), strip(o))
            if not d:
                if r.get("exit") is not None:
                    refused_both += 1
                continue
            line = f"{case['command']} {' '.join(case['argv'])!r}: {d}"
            reason = _case_by_design(case, r, o, d)
            if reason:
                by_design += 1
                print(f"BY DESIGN ({reason}) {line}")
            else:
                differing += 1
                print(f"DIFFERENT {line}")
        print(f"\nours: {ours['package']}\nreference: {ref['package']}")
        print(f"{len(commands)} commands, {total} outcomes ({len(commands)} parsers + {len(cases)} command lines, "
              f"seed {args.seed}): {total - differing - failures - by_design} agree "
              f"({refused_both} stopped by argparse on both sides: errors, help), {by_design} by design, "
              f"{differing + failures} differ; "
              f"reference exit statuses {dict(sorted(exits.items(), key=str))}; time ours {seconds['ours']:.1f} s, "
              f"reference {seconds['ref']:.1f} s")
        return 1 if differing or failures else 0


if __name__ == "__main__":
    sys.exit(main())
