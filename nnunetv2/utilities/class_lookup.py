"""Find a class by name inside one of our packages, or fail with a message that lists what is available."""
from __future__ import annotations

import difflib
import inspect
import os
import sys
from typing import List, Optional, Type

import nnunetv2
from nnunetv2.errors import UserError


def package_folder(dotted_package: str) -> str:
    """File-system folder of a package given as 'nnunetv2.x.y'."""
    parts = dotted_package.split(".")
    assert parts[0] == "nnunetv2"
    return os.path.join(nnunetv2.__path__[0], *parts[1:])


def available_subclasses(dotted_package: str, base: Type) -> List[str]:
    """Names of the public classes (no leading underscore: those are helpers, not choices) derived from ``base``
    (itself included) in the already imported modules of ``dotted_package``. Call it after a failed
    ``recursive_find_python_class`` over that package: the search imported every module, so this costs nothing."""
    names = set()
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == dotted_package or module_name.startswith(dotted_package + ".")):
            continue
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, base) and not name.startswith("_"):
                names.add(name)
    return sorted(names)


def close_matches(name: str, candidates: List[str], n: int = 5) -> List[str]:
    """Up to ``n`` candidates similar to ``name`` (case-insensitive comparison)."""
    lower = {c.lower(): c for c in candidates}
    return [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6)]


def find_class_or_explain(dotted_package: str, class_name: str, base: Type, what: str, flag: str,
                          required_method: Optional[str] = None) -> Type:
    """The class named ``class_name`` found in ``dotted_package``; otherwise a UserError listing the available
    ``what``s (subclasses of ``base``) with the closest matches first. A class found by that name that is not derived
    from ``base`` and lacks ``required_method`` (some other class of the package, given to the wrong flag) is a
    UserError too; one that has the method is used as it is (duck typing, as the reference allows)."""
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    cls: Optional[Type] = recursive_find_python_class(package_folder(dotted_package), class_name,
                                                      current_module=dotted_package)
    if cls is not None:
        if required_method is None or (inspect.isclass(cls) and issubclass(cls, base)) \
                or callable(getattr(cls, required_method, None)):
            return cls
        where = getattr(cls, "__module__", None) or type(cls).__name__  # a function or constant of that name, too
        raise UserError(f"{class_name} ({where}) cannot be given to {flag}: it is not derived from "
                        f"{base.__name__} and has no {required_method}() method.",
                        f"Give {base.__name__} or a class derived from it ({what} classes).")
    available = available_subclasses(dotted_package, base)
    close = close_matches(class_name, available, n=3)
    hint = f"Did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"Unknown {what} '{class_name}' ({flag}).",
                    f"{hint}Available: {', '.join(available)}. Custom classes must live inside the "
                    f"{dotted_package} package.")
