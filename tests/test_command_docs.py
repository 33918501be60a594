"""documentation/commands.md: generated from the commands' parsers, up to date, complete, with examples that parse."""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "scripts" / "generate_command_docs.py"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("generate_command_docs", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def parsers(gen):
    scripts = gen.console_scripts()
    return {command: gen.command_parser(command, target) for command, target in scripts.items()}


def test_commands_md_is_up_to_date():
    # a fresh interpreter: the defaults shown depend on variables read when nnunetv2 is imported
    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_def_n_proc", "nnUNet_npp", "nnUNet_nps")}
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_console_script_has_a_parser_and_an_example(gen, parsers):
    documented = {c for _, commands in gen.SECTIONS for c, _ in commands}
    assert len(parsers) == 21
    assert documented == set(parsers)


def test_every_command_and_flag_has_help(parsers):
    for command, parser in parsers.items():
        assert parser.description and len(parser.description.split()) >= 4, command
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help.split()) >= 2, (command, action.option_strings or action.dest)


def test_every_flag_with_a_default_says_it_in_its_help(parsers):
    # the help is what `-h` shows: a value the flag takes when left out must be readable there too
    for command, parser in parsers.items():
        for action in parser._actions:
            if action.required or action.default is None or isinstance(
                    action, (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction)):
                continue
            assert "default" in action.help.lower(), (command, action.option_strings, action.default)


def test_examples_parse(gen, parsers):
    for _, commands in gen.SECTIONS:
        for command, example in commands:
            lines = [line for line in example.splitlines() if line.split()[0] == command]
            assert lines, f"the example of {command} does not run it: {example!r}"
            for line in lines:
                try:
                    args = parsers[command].parse_args(shlex.split(line)[1:])
                except SystemExit:
                    pytest.fail(f"example of {command} does not parse: {line}")
                assert args is not None


def test_usage_and_table_rows(gen, parsers):
    """The rendering: options in brackets unless required, positionals last; one table row per argument."""
    parser = parsers["nnUNetv2_train"]
    text = gen.command_section("nnUNetv2_train", parser, "nnUNetv2_train 4 3d_fullres 0")
    usage = text.split("```text\n")[1].split("\n```")[0]
    assert usage.startswith("nnUNetv2_train [-tr TR] [-p P]")
    assert usage.split()[-3:] == ["dataset_name_or_id", "configuration", "fold"]
    assert "| `fold` | required |" in text
    assert "| `-num_gpus NUM_GPUS` | 1 |" in text
    assert "| `--npz` | off |" in text
    predict = gen.command_section("nnUNetv2_predict_from_modelfolder", parsers["nnUNetv2_predict_from_modelfolder"],
                                  "")
    assert "| `--continue_prediction, --c` | off |" in predict
    assert "| `-f F [F ...]` | 0 1 2 3 4 |" in predict


def test_readme_links_the_reference():
    assert "documentation/commands.md" in (REPO / "README.md").read_text()
