"""Find a trainer class by name: first in nnunetv2.training.nnUNetTrainer, then in the ``nnUNet_extTrainer`` folders.

The trainer package is imported inside the function (not at module import time) so that modules below the
trainer (e.g. the predictor) can use this without an import cycle.
"""
from __future__ import annotations

import inspect
import logging
import os
from typing import List, Optional, Type

from nnunetv2.errors import UserError
from nnunetv2.paths import nnUNet_extTrainer
from nnunetv2.utilities.class_lookup import available_subclasses, close_matches  # noqa: F401 (close_matches: public)
from nnunetv2.utilities.find_class_by_name import classes_defined_in, files_defining_class, \
    recursive_find_python_class

logger = logging.getLogger(__name__)

_TRAINER_PACKAGE = "nnunetv2.training.nnUNetTrainer"


def _search_external_folders(trainer_name: str, ext_value: str) -> Optional[type]:
    """Search each existing folder of the ``os.pathsep``-separated list; modules there import as top-level ones."""
    print(f"Trainer '{trainer_name}' not found in {_TRAINER_PACKAGE}.\n"
          f"Searching in external trainer paths from environment variable 'nnUNet_extTrainer'...")
    for path in ext_value.split(os.pathsep):
        path = path.strip()
        if not path or not os.path.isdir(path):
            continue
        print(f"Searching in: {path}")
        found = recursive_find_python_class(path, trainer_name, current_module=None, base_folder=path, verbose=True,
                                            cleanup_imports_from_base_folder=True)
        if found is not None:
            print(f"Using trainer '{trainer_name}' from: {path}")
            return found
    return None


def recursive_find_trainer_class_by_name(trainer_name: str) -> Type:
    import nnunetv2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    package_folder = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer")
    trainer_class = recursive_find_python_class(package_folder, trainer_name, _TRAINER_PACKAGE)
    ext_value = nnUNet_extTrainer.get()
    if trainer_class is None and ext_value:
        trainer_class = _search_external_folders(trainer_name, ext_value)
    if trainer_class is None:
        # the nnUNet_extTrainer folders' modules are forgotten after their search: their class names come from
        # their sources, so that a misspelt custom trainer is suggested too
        candidates = (available_subclasses(_TRAINER_PACKAGE, nnUNetTrainer)
                      + classes_defined_in(_ext_folders(ext_value)))
        similar = close_matches(trainer_name, sorted(set(candidates)))
        hint = f"Did you mean: {', '.join(similar)}? " if similar else ""
        raise UserError(
            f"Could not find a trainer class named {trainer_name!r} in {package_folder} "
            f"(nnUNet_extTrainer={ext_value!r}).",
            f"{hint}A custom trainer must be in a module inside that folder or in a folder listed in "
            f"nnUNet_extTrainer (separated by '{os.pathsep}').")
    if not (inspect.isclass(trainer_class) and issubclass(trainer_class, nnUNetTrainer)):
        raise UserError(f"{trainer_name!r} was found ({trainer_class!r}) but is not a subclass of nnUNetTrainer.",
                        "Derive your trainer from nnunetv2.training.nnUNetTrainer.nnUNetTrainer.nnUNetTrainer.")
    _warn_if_defined_twice(trainer_class, trainer_name, package_folder, ext_value)
    return trainer_class


def _ext_folders(ext_value: Optional[str]) -> List[str]:
    """The existing folders of the ``os.pathsep``-separated ``nnUNet_extTrainer`` value, in order."""
    return [p.strip() for p in (ext_value or "").split(os.pathsep) if p.strip() and os.path.isdir(p.strip())]


def _defining_file(cls: type, ext_folders: list) -> str:
    try:
        return os.path.abspath(inspect.getfile(cls))
    except (TypeError, OSError):
        pass  # modules of nnUNet_extTrainer folders are forgotten after the lookup: find the file by module name
    for folder in ext_folders:
        base = os.path.join(folder, *cls.__module__.split('.'))
        for candidate in (base + '.py', os.path.join(base, '__init__.py')):
            if os.path.isfile(candidate):
                return os.path.abspath(candidate)
    return f"module {cls.__module__}"


def _warn_if_defined_twice(trainer_class: type, trainer_name: str, package_folder: str, ext_value: str) -> None:
    """Several files defining a class of that name: the lookup takes the first in search order; say which."""
    folders = [package_folder] + _ext_folders(ext_value)
    files = files_defining_class(folders, trainer_name)
    if len(files) < 2:
        return
    used = _defining_file(trainer_class, folders[1:])
    others = [f for f in files if f != used]
    logger.warning("WARNING: trainer class %s is defined in %d files; using the one in %s (the first found: "
                   "nnunetv2/training/nnUNetTrainer first, then nnUNet_extTrainer in order). Also defined in: %s. "
                   "Rename one of them to choose explicitly.", trainer_name, len(files), used, ", ".join(others))
