"""Find a class (or any attribute) by name in the modules of a folder, recursively.

nnU-Net stores only class names in plans and on the command line (trainers, planners, preprocessors, readers,
label managers); this resolves them. Modules are visited in ``pkgutil.iter_modules`` order (alphabetical):
first the plain modules of a folder, then its sub-packages.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import re
import sys
from typing import Any, Iterable, Iterator, List, Optional, Tuple

from nnunetv2.errors import UserError


@contextlib.contextmanager
def temporarily_extend_syspath(path: str) -> Iterator[None]:
    """Put ``abspath(path)`` at the front of ``sys.path``; take it out again afterwards if it was not there."""
    path = os.path.abspath(path)
    sys.path.insert(0, path)
    try:
        yield
    finally:
        # remove the entry we inserted (the first occurrence); one the caller already had stays where it was
        try:
            sys.path.remove(path)
        except ValueError:
            pass


def _module_file_under(module: Any, root: str) -> bool:
    file = getattr(module, "__file__", None)
    if not file:
        return False
    try:
        return os.path.commonpath([os.path.abspath(file), root]) == root
    except ValueError:  # different drives on Windows
        return False


@contextlib.contextmanager
def temporarily_cleanup_imports_from_path(path: str) -> Iterator[None]:
    """Forget (remove from ``sys.modules``) the modules imported from files under ``path`` during the block.

    Used for external trainer folders, whose modules are imported as top-level modules and would otherwise
    shadow same-named modules imported later.
    """
    root = os.path.abspath(path)
    before = set(sys.modules)
    try:
        yield
    finally:
        for name in [n for n in sys.modules if n not in before]:
            if _module_file_under(sys.modules.get(name), root):
                sys.modules.pop(name, None)


class MissingDependencyError(UserError, ModuleNotFoundError):
    """A module of a searched folder imports a module that is not installed (still a ModuleNotFoundError)."""


class BrokenModuleError(UserError, ImportError):
    """A module of a searched folder cannot be imported because of a syntax error (still an ImportError, as every
    failed import of a searched module is)."""


def import_failure_line(e: BaseException, module_name: str) -> Optional[str]:
    """One line for a module that cannot be imported because of its source (a SyntaxError: file and line) or a
    missing dependency; None for other errors, which keep their traceback (a bug inside the module)."""
    if isinstance(e, SyntaxError):
        where = f"{e.filename}, line {e.lineno}" if e.filename else module_name
        return f"Cannot import module {module_name}: {type(e).__name__} in {where}: {e.msg}"
    if isinstance(e, ModuleNotFoundError) and e.name and e.name != module_name:
        return f"Cannot import module {module_name}: it needs the module '{e.name}', which is not installed"
    return None


def _import_or_skip(full_name: str) -> Optional[Any]:
    """Import ``full_name``; None if exactly that module cannot be found. A module with a syntax error or a missing
    dependency is a UserError naming it; any other error propagates."""
    try:
        return importlib.import_module(full_name)
    except ModuleNotFoundError as e:
        if e.name == full_name:
            return None
        line = import_failure_line(e, full_name)
        if line is None:
            raise
        raise MissingDependencyError(line + ".", "Install it, or fix or remove the module.") from e
    except SyntaxError as e:
        raise BrokenModuleError(import_failure_line(e, full_name) + ".",
                                "Fix the file, or move it out of the folder.") from None


def _python_sources(folders: Iterable[str]) -> Iterator[Tuple[str, str]]:
    """(path, source) of every readable .py file under ``folders``, in search order."""
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__pycache__')))
            for name in sorted(files):
                if not name.endswith('.py'):
                    continue
                path = os.path.join(root, name)
                try:
                    with open(path, encoding='utf-8', errors='replace') as f:
                        yield path, f.read()
                except OSError:
                    continue


def files_defining_class(folders: Iterable[str], class_name: str) -> List[str]:
    """The .py files under ``folders`` whose source has a ``class <class_name>`` statement (text search only, no
    import: used to tell the user which of several same-named classes a lookup picked)."""
    pattern = re.compile(r"^[ \t]*class[ \t]+" + re.escape(class_name) + r"\b", re.MULTILINE)
    return [os.path.abspath(path) for path, source in _python_sources(folders) if pattern.search(source)]


def classes_defined_in(folders: Iterable[str]) -> List[str]:
    """Names of the public classes that the .py files under ``folders`` define (text search only, no import: the
    candidates of a 'did you mean' for folders whose modules a failed lookup has already forgotten)."""
    pattern = re.compile(r"^[ \t]*class[ \t]+([A-Za-z]\w*)", re.MULTILINE)
    return sorted({name for _, source in _python_sources(folders) for name in pattern.findall(source)})


def _may_define(module_file: Optional[str], class_name: str) -> bool:
    """False only if the module's source provably never spells ``class_name`` (so cannot bind it by name)."""
    if not module_file or not module_file.endswith('.py'):
        return True
    try:
        with open(module_file, encoding='utf-8', errors='replace') as f:
            source = f.read()
    except OSError:
        return True
    return re.search(r'\b' + re.escape(class_name) + r'\b', source) is not None


def _search(folder: str, class_name: str, current_module: Optional[str], verbose: bool,
            only_mentioning: bool = False, say_found: bool = False) -> Optional[Any]:
    """``verbose``: name every module in search order (also those the text pre-check skips, so that the listing is
    the same whichever pass finds the class); ``say_found``: name the module the class is found in."""
    modules = list(pkgutil.iter_modules([folder]))
    for info in modules:
        if info.ispkg:
            continue
        full_name = info.name if current_module is None else f"{current_module}.{info.name}"
        if verbose:
            print(f"  Inspecting module: {full_name}")
        if only_mentioning and not _may_define(os.path.join(folder, info.name + '.py'), class_name):
            continue
        module = _import_or_skip(full_name)
        if module is None and verbose:
            print(f"  Skipping module {full_name}: discovered by pkgutil but not importable as {full_name}")
        if module is not None and hasattr(module, class_name):
            if say_found:
                print(f"Found class {class_name} in {full_name}")
            return getattr(module, class_name)
    for info in modules:
        if not info.ispkg:
            continue
        sub_module = info.name if current_module is None else f"{current_module}.{info.name}"
        found = _search(os.path.join(folder, info.name), class_name, sub_module, verbose, only_mentioning, say_found)
        if found is not None:
            return found
    return None


def recursive_find_python_class(folder: str, class_name: str, current_module: Optional[str],
                                base_folder: Optional[str] = None, verbose: bool = False,
                                cleanup_imports_from_base_folder: bool = False) -> Optional[Any]:
    """The attribute ``class_name`` of the first module under ``folder`` that has one, or None.

    ``current_module`` is the dotted name of ``folder`` (None: its modules are imported as top-level modules,
    which works because ``base_folder`` (default ``folder``) is put on ``sys.path`` during the search).
    """
    folder = os.fspath(folder)
    base_folder = folder if base_folder is None else os.fspath(base_folder)
    cleanup = (temporarily_cleanup_imports_from_path(base_folder) if cleanup_imports_from_base_folder
               else contextlib.nullcontext())
    with temporarily_extend_syspath(base_folder), cleanup:
        if verbose:
            print(f"Searching for class {class_name} in folder {folder} with current module {current_module}")
        # first only the modules whose source spells the name (in the same order), so a lookup does not import
        # every trainer module with its dependencies; then, if that finds nothing (a class made dynamically),
        # every module as before (without listing them again: the first pass named each one)
        found = _search(folder, class_name, current_module, verbose, only_mentioning=True, say_found=verbose)
        return found if found is not None else _search(folder, class_name, current_module, False,
                                                       say_found=verbose)
