#!/usr/bin/env python3
"""Write documentation/commands.md, the reference of every nnUNetv2_* command, from the commands' own parsers.

    python3 scripts/generate_command_docs.py          # (re)write documentation/commands.md
    python3 scripts/generate_command_docs.py --check  # exit 1 if the file is out of date

The commands are the console scripts of pyproject.toml; the parser of entry point ``f`` is built by ``f_parser()``
in the same module, so nothing is run. Defaults that come from environment variables are documented as they are
without those variables (they are cleared below before nnunetv2 is imported).
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from typing import Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(REPO, "documentation", "commands.md")
# Variables that change the defaults shown by -h; the reference documents the defaults without them.
DEFAULT_CHANGING_VARIABLES = ("nnUNet_def_n_proc", "nnUNet_n_proc_DA", "nnUNet_npp", "nnUNet_nps")

# The trained model folder of the examples (a shell variable, so that the example lines stay readable).
_MODEL = "MODEL=$nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer__nnUNetPlans__3d_fullres"
# (section, [(command, example)]): the order of the document. The examples tell one story on the Medical
# Segmentation Decathlon's Hippocampus task (labels 1 and 2); every line of an example that runs the command must
# parse with its parser (tests/test_command_docs.py checks it).
SECTIONS: List[Tuple[str, List[Tuple[str, str]]]] = [
    ("Dataset conversion", [
        ("nnUNetv2_convert_MSD_dataset", "nnUNetv2_convert_MSD_dataset -i /data/Task04_Hippocampus"),
        ("nnUNetv2_convert_old_nnUNet_dataset",
         "nnUNetv2_convert_old_nnUNet_dataset /data/nnUNet_raw_data_base/nnUNet_raw_data/Task004_Hippocampus "
         "Dataset004_Hippocampus"),
    ]),
    ("Fingerprint, planning and preprocessing", [
        ("nnUNetv2_plan_and_preprocess", "nnUNetv2_plan_and_preprocess -d 4 --verify_dataset_integrity"),
        ("nnUNetv2_extract_fingerprint", "nnUNetv2_extract_fingerprint -d 4 --verify_dataset_integrity"),
        ("nnUNetv2_plan_experiment", "nnUNetv2_plan_experiment -d 4 -pl nnUNetPlannerResEncM"),
        ("nnUNetv2_preprocess", "nnUNetv2_preprocess -d 4 -plans_name nnUNetResEncUNetMPlans -c 3d_fullres"),
        ("nnUNetv2_move_plans_between_datasets",
         "nnUNetv2_move_plans_between_datasets -s 4 -t 5 -sp nnUNetPlans -tp nnUNetPlans_Dataset004"),
    ]),
    ("Training", [
        ("nnUNetv2_train", "nnUNetv2_train 4 3d_fullres 0 --npz"),
    ]),
    ("Inference", [
        ("nnUNetv2_predict",
         "nnUNetv2_predict -i $nnUNet_raw/Dataset004_Hippocampus/imagesTs -o predictions_3d_fullres -d 4 "
         "-c 3d_fullres -f 0 1 2 3 4 --save_probabilities"),
        ("nnUNetv2_predict_from_modelfolder",
         "nnUNetv2_predict_from_modelfolder -i $nnUNet_raw/Dataset004_Hippocampus/imagesTs -o predictions "
         "-m $nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer__nnUNetPlans__3d_fullres -f 0 1 2 3 4"),
    ]),
    ("Evaluation, model selection, ensembling and postprocessing", [
        ("nnUNetv2_evaluate_folder",
         f"{_MODEL}\n"
         "nnUNetv2_evaluate_folder $nnUNet_preprocessed/Dataset004_Hippocampus/gt_segmentations "
         "$MODEL/fold_0/validation -djfile $MODEL/dataset.json -pfile $MODEL/plans.json --chill "
         "-o fold_0_summary.json"),
        ("nnUNetv2_evaluate_simple",
         f"{_MODEL}\n"
         "nnUNetv2_evaluate_simple $nnUNet_preprocessed/Dataset004_Hippocampus/gt_segmentations "
         "$MODEL/fold_0/validation -l 1 2 --chill -o fold_0_summary.json"),
        ("nnUNetv2_accumulate_crossval_results", "nnUNetv2_accumulate_crossval_results 4 -c 3d_fullres"),
        ("nnUNetv2_find_best_configuration", "nnUNetv2_find_best_configuration 4 -c 2d 3d_fullres"),
        ("nnUNetv2_ensemble", "nnUNetv2_ensemble -i predictions_2d predictions_3d_fullres -o predictions_ensemble"),
        ("nnUNetv2_determine_postprocessing",
         f"{_MODEL}\n"
         "nnUNetv2_determine_postprocessing -i $MODEL/crossval_results_folds_0_1_2_3_4 "
         "-ref $nnUNet_preprocessed/Dataset004_Hippocampus/gt_segmentations"),
        ("nnUNetv2_apply_postprocessing",
         f"{_MODEL}\n"
         "nnUNetv2_apply_postprocessing -i predictions_3d_fullres -o predictions_3d_fullres_pp "
         "-pp_pkl_file $MODEL/crossval_results_folds_0_1_2_3_4/postprocessing.pkl"),
    ]),
    ("Sharing models", [
        ("nnUNetv2_export_model_to_zip",
         "nnUNetv2_export_model_to_zip -d 4 -o Dataset004_Hippocampus_3d_fullres.zip -c 3d_fullres"),
        ("nnUNetv2_install_pretrained_model_from_zip",
         "nnUNetv2_install_pretrained_model_from_zip Dataset004_Hippocampus_3d_fullres.zip"),
        ("nnUNetv2_download_pretrained_model_by_url",
         "nnUNetv2_download_pretrained_model_by_url https://example.org/models/Dataset004_Hippocampus_3d_fullres.zip"),
    ]),
    ("Looking at data", [
        ("nnUNetv2_plot_overlay_pngs", "nnUNetv2_plot_overlay_pngs -d 4 -o overlays_Dataset004 --use_raw"),
    ]),
]

_INTRO = """\
# Command reference

<!-- Generated by scripts/generate_command_docs.py from the commands' own parsers: edit the help texts in the code
     (or the examples in that script) and run `python3 scripts/generate_command_docs.py`; a test fails when this
     file is out of date. -->

Every `nnUNetv2_*` command, its flags with their defaults, and one example. Descriptions and flag texts are
those that `<command> -h` prints. All commands find their data through the three folders `nnUNet_raw`,
`nnUNet_preprocessed` and `nnUNet_results` ([setting_up_paths.md](setting_up_paths.md));
[how_to_run.md](how_to_run.md) shows how the commands fit together. Worker-count defaults below are those without `nnUNet_def_n_proc`, `nnUNet_npp` and
`nnUNet_nps` set (those variables change them). The examples use the Medical Segmentation Decathlon's
Hippocampus task, converted to `Dataset004_Hippocampus`.
"""


def console_scripts(pyproject: str = os.path.join(REPO, "pyproject.toml")) -> Dict[str, str]:
    """``{command: 'module:function'}`` from the [project.scripts] table of pyproject.toml."""
    with open(pyproject) as f:
        text = f.read()
    match = re.search(r"^\[project\.scripts\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if match is None:
        raise RuntimeError(f"{pyproject} has no [project.scripts] table")
    return dict(re.findall(r'^\s*([\w.-]+)\s*=\s*"([^"]+)"', match.group(1), re.M))


def command_parser(command: str, target: str) -> argparse.ArgumentParser:
    """The parser of a console script (built by ``<entry>_parser()`` next to the entry point), named ``command``."""
    module_name, function_name = target.split(":")
    entry = getattr(importlib.import_module(module_name), function_name)
    module = sys.modules[entry.__module__]  # the registered module may only re-export the entry point
    builder = getattr(module, entry.__name__ + "_parser", None)
    if builder is None:
        raise RuntimeError(f"{entry.__module__} has no {entry.__name__}_parser() building the parser of {command}")
    parser = builder()
    parser.prog = command
    return parser


def _value(action: argparse.Action) -> str:
    """The value part of an argument: 'NP [NP ...]', 'fold', '' for a switch."""
    if action.option_strings and action.nargs == 0:
        return ""
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    nargs = action.nargs
    if nargs == "?":
        return f"[{metavar}]"
    if nargs == "*":
        return f"[{metavar} ...]"
    if nargs == "+":
        return f"{metavar} [{metavar} ...]"
    if isinstance(nargs, int):
        return " ".join([metavar] * nargs)
    return metavar


def _arguments(action: argparse.Action) -> str:
    """How an argument is written, with its aliases: '-np NP [NP ...]', '--continue_prediction, --c', 'fold'."""
    value = _value(action)
    if not action.option_strings:
        return value
    return ", ".join(f"{o} {value}".rstrip() for o in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.required or not action.option_strings and action.nargs not in ("?", "*"):
        return "required"
    if action.nargs == 0:
        return "off"
    d = action.default
    if d is None:
        return "-"
    if isinstance(d, (list, tuple)):
        return " ".join(str(v) for v in d)
    return str(d)


def _usage(command: str, actions: List[argparse.Action], width: int = 100) -> str:
    """Usage line(s), wrapped: options first (optional ones in brackets), then the positional arguments."""
    parts = []
    for a in actions:
        if a.option_strings:
            text = f"{a.option_strings[0]} {_value(a)}".rstrip()
            parts.append(text if a.required else f"[{text}]")
    parts += [_value(a) for a in actions if not a.option_strings]
    lines, line = [], command
    for part in parts:
        if len(line) + 1 + len(part) > width:
            lines.append(line)
            line = " " * len(command) + " " + part
        else:
            line += " " + part
    lines.append(line)
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def command_section(command: str, parser: argparse.ArgumentParser, example: str) -> str:
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    out = [f"### {command}", ""]
    if parser.description:
        out += [" ".join(parser.description.split()), ""]
    out += ["```text", _usage(command, actions), "```", ""]
    if actions:
        out += ["| Argument | Default | Description |", "|---|---|---|"]
        for a in sorted(actions, key=lambda a: bool(a.option_strings)):  # positional arguments first
            out.append(f"| `{_arguments(a)}` | {_cell(_default(a))} | {_cell(a.help or '')} |")
        out.append("")
    out += ["Example:", "", "```bash", example, "```", ""]
    return "\n".join(out)


def generate() -> str:
    scripts = console_scripts()
    documented = [c for _, commands in SECTIONS for c, _ in commands]
    missing = sorted(set(scripts) - set(documented))
    unknown = sorted(set(documented) - set(scripts))
    if missing or unknown:
        raise RuntimeError(f"SECTIONS of {__file__} and pyproject.toml disagree: not documented {missing}, "
                           f"not a console script {unknown}")
    out = [_INTRO]
    for section, commands in SECTIONS:
        out.append(f"- **{section}**: " + ", ".join(f"[{c}](#{c.lower()})" for c, _ in commands))
    out.append("")
    for section, commands in SECTIONS:
        out += [f"## {section}", ""]
        for command, example in commands:
            out.append(command_section(command, command_parser(command, scripts[command]), example))
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help=f"Exit 1 if {OUTPUT} is not up to date.")
    args = parser.parse_args()
    for name in DEFAULT_CHANGING_VARIABLES:
        os.environ.pop(name, None)
    sys.path.insert(0, REPO)
    text = generate()
    current = open(OUTPUT).read() if os.path.isfile(OUTPUT) else ""
    if args.check:
        if current == text:
            return 0
        diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "committed", "generated", lineterm="", n=1)
        sys.stderr.write(f"{OUTPUT} is out of date; run: python3 scripts/generate_command_docs.py\n"
                         + "\n".join(list(diff)[:60]) + "\n")
        return 1
    if current != text:
        from nnunetv2.file_io import atomic_path
        with atomic_path(OUTPUT) as tmp, open(tmp, "w") as f:
            f.write(text)
        print(f"wrote {OUTPUT}")
    else:
        print(f"{OUTPUT} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
