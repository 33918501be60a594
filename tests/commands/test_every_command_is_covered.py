"""Every console command of pyproject.toml is run by at least one test in this folder (a new command needs one)."""
from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_every_console_script_runs_in_these_tests():
    pyproject = (HERE.parents[1] / "pyproject.toml").read_text()
    section = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]  # tomllib is 3.11+, we support 3.10
    scripts = re.findall(r"^(nnUNetv2_\w+)\s*=", section, flags=re.M)
    assert len(scripts) == 21
    source = "\n".join(p.read_text() for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    invoked = set(re.findall(r'\[\s*"(nnUNetv2_\w+)"', source))  # run_command(["nnUNetv2_x", ...])
    assert sorted(set(scripts) - invoked) == []
