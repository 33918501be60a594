"""The import floors of DESIGN.md, enforced: a module imports at import time only from its own floor or below.

Import time means module level, including module-level ``try``/``if``/``with`` blocks and class bodies, but not
function or method bodies (lazy imports are the sanctioned way up) and not ``if TYPE_CHECKING:`` blocks.
Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those count too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import nnunetv2

PKG_DIR = Path(nnunetv2.__file__).resolve().parent

# (module prefix, floor); the longest matching prefix wins.
FLOORS = {
    "nnunetv2": 0,  # the package __init__ (version only)
    # the foundation below floor 1: paths.py raises UserError, file_io is the one atomic-write helper
    "nnunetv2.errors": 0, "nnunetv2.file_io": 0,
    "nnunetv2.paths": 1, "nnunetv2.configuration": 1,
    "nnunetv2.imageio": 2,
    "nnunetv2.utilities": 3,
    "nnunetv2.preprocessing": 4, "nnunetv2.dataset_conversion": 4,
    "nnunetv2.experiment_planning": 5,
    "nnunetv2.training": 6,  # training/__init__ and the building blocks below
    "nnunetv2.training.dataloading": 6, "nnunetv2.training.data_augmentation": 6, "nnunetv2.training.loss": 6,
    "nnunetv2.training.lr_scheduler": 6, "nnunetv2.training.logging": 6,
    "nnunetv2.inference": 7,
    "nnunetv2.training.nnUNetTrainer": 8,
    "nnunetv2.evaluation": 9, "nnunetv2.postprocessing": 9, "nnunetv2.ensembling": 9,
    "nnunetv2.run": 10, "nnunetv2.model_sharing": 10, "nnunetv2.demo": 10,
}

# Upward imports the reference's public surface forces. Each entry: (importing module, imported module).
ALLOWED_UPWARD = {
    # third-party trainers do `from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import *` and use
    # compute_metrics_on_folder, so the trainer (floor 8) imports evaluation (floor 9) at module level.
    ("nnunetv2.training.nnUNetTrainer.nnUNetTrainer", "nnunetv2.evaluation.evaluate_predictions"),
    ("nnunetv2.training.nnUNetTrainer.nnUNetTrainer", "nnunetv2.evaluation"),  # its package __init__
}


def _all_modules() -> dict:
    mods = {}
    for path in PKG_DIR.rglob("*.py"):
        parts = ("nnunetv2",) + path.relative_to(PKG_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _all_modules()


def floor_of(module: str) -> int:
    matches = [p for p in FLOORS if module == p or module.startswith(p + ".")]
    assert matches, f"{module} is on no floor: add its folder to FLOORS in {__file__}"
    return FLOORS[max(matches, key=len)]


def _resolve(name: str) -> str | None:
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def import_time_imports(module: str, path: Path) -> list:
    """(line, imported nnunetv2 name) for every import run when ``module`` is imported."""
    is_pkg = path.name == "__init__.py"
    found = []

    def visit(statements):
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "nnunetv2")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")[: None if is_pkg else -1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] == "nnunetv2":
                    for a in node.names:  # `from pkg import submodule` imports the submodule
                        sub = f"{source}.{a.name}"
                        found.append((node.lineno, sub if sub in MODULES else source))
            for field in ("body", "orelse", "finalbody"):
                visit(getattr(node, field, None) or [])
            for handler in getattr(node, "handlers", None) or []:
                visit(handler.body)
            for case in getattr(node, "cases", None) or []:  # match statements
                visit(case.body)

    visit(ast.parse(path.read_text(), str(path)).body)
    return found


def upward_imports() -> list:
    rows = []
    for module, path in sorted(MODULES.items()):
        own = floor_of(module)
        for line, name in import_time_imports(module, path):
            target = _resolve(name)
            assert target is not None, f"{module}:{line} imports {name}, which is no module of the package"
            parents = [".".join(target.split(".")[:i]) for i in range(1, target.count(".") + 1)]
            for t in [target] + [p for p in parents if p in MODULES]:
                if floor_of(t) > own:
                    rows.append((module, line, t))
    return rows


def test_every_module_is_on_a_floor():
    for module in MODULES:
        floor_of(module)


def test_no_upward_import_at_import_time():
    bad = sorted({f"{m}:{line} (floor {floor_of(m)}) imports {t} (floor {floor_of(t)})"
                  for m, line, t in upward_imports() if (m, t) not in ALLOWED_UPWARD})
    assert not bad, ("import-time imports from a higher floor (DESIGN.md 'Floors'); import inside the function "
                     "that needs it, or move the code down:\n" + "\n".join(bad))


def test_allow_list_has_no_stale_entries():
    used = {(m, t) for m, _, t in upward_imports()}
    assert ALLOWED_UPWARD <= used, f"allowed but no longer imported, remove: {sorted(ALLOWED_UPWARD - used)}"


def test_checker_sees_module_level_blocks_and_skips_functions(tmp_path):
    src = ("from typing import TYPE_CHECKING\n"
           "try:\n    from nnunetv2.run import run_training\nexcept ImportError:\n    pass\n"
           "if TYPE_CHECKING:\n    from nnunetv2.evaluation import evaluate_predictions\n"
           "class A:\n    from nnunetv2 import paths\n"
           "def f():\n    from nnunetv2.ensembling import ensemble\n"
           "from . import helpers\n")
    p = tmp_path / "m.py"
    p.write_text(src)
    names = [n for _, n in import_time_imports("nnunetv2.utilities.m", p)]
    assert names == ["nnunetv2.run.run_training", "nnunetv2.paths", "nnunetv2.utilities.helpers"]


@pytest.mark.parametrize("module, must_not_load", [
    # the knot DESIGN.md unties: the predictor finds trainer classes by name, lazily
    ("nnunetv2.inference.predict_from_raw_data", "nnunetv2.training.nnUNetTrainer"),
    # plans handler <-> preprocessor <-> label handling: classes resolved by name when asked for
    ("nnunetv2.utilities.plans_handling.plans_handler", "nnunetv2.preprocessing"),
    ("nnunetv2.utilities.plans_handling.plans_handler", "nnunetv2.utilities.label_handling"),
])
def test_knots_stay_untied_at_run_time(module, must_not_load):
    """The same, checked by importing (catches importlib calls at module level, which the AST check cannot see)."""
    code = (f"import sys, {module}\n"
            f"print(sorted(m for m in sys.modules if m == {must_not_load!r} or m.startswith({must_not_load!r} + '.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing {module} loads {out}"
