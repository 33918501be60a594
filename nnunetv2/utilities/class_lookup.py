"""Find a class by name inside one of our packages, or fail with a message that lists what is available."""
from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pkgutil
from typing import List, Optional, Type

import nnunetv2
from nnunetv2.errors import UserError


def package_folder(dotted_package: str) -> str:
    """File-system folder of a package given as 'nnunetv2.x.y'."""
    parts = dotted_package.split(".")
    assert parts[0] == "nnunetv2"
    return os.path.join(nnunetv2.__path__[0], *parts[1:])


def available_subclasses(dotted_package: str, base: Type) -> List[str]:
    """Names of all classes derived from ``base`` (itself included) defined in modules of ``dotted_package``."""
    names = set()
    for info in pkgutil.walk_packages([package_folder(dotted_package)], prefix=dotted_package + "."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # a broken optional module must not hide the rest of the list
            continue
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, base):
                names.add(name)
    return sorted(names)


def find_class_or_explain(dotted_package: str, class_name: str, base: Type, what: str, flag: str) -> Type:
    """The class named ``class_name`` found in ``dotted_package``; otherwise a UserError listing the available
    ``what``s (subclasses of ``base``) with the closest matches first."""
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    cls: Optional[Type] = recursive_find_python_class(package_folder(dotted_package), class_name,
                                                      current_module=dotted_package)
    if cls is not None:
        return cls
    available = available_subclasses(dotted_package, base)
    close = difflib.get_close_matches(class_name, available, n=3)
    hint = f"Did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"Unknown {what} '{class_name}' ({flag}).",
                    f"{hint}Available: {', '.join(available)}. Custom classes must live inside the "
                    f"{dotted_package} package.")
