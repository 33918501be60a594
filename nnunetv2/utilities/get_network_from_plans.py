"""Instantiate the network a plans configuration describes (class and kwargs named by dotted strings)."""
from __future__ import annotations

import importlib
import os
import pydoc
import sys
import warnings
from typing import Optional, Tuple, Union

import torch.nn as nn

from nnunetv2.errors import UserError
from nnunetv2.utilities.find_class_by_name import import_failure_line


class NetworkImportError(UserError, ImportError):
    """A class or object named in the plans' architecture cannot be imported (an ImportError, as in the reference,
    and a UserError: one line at the command line)."""


# Modules whose import does something (starts a program, a GUI, a web browser): plans come with every shared model,
# and naming one of these as a "class" would run it before any check on what the name is.
_RUN_ON_IMPORT = frozenset({'this', 'antigravity', 'idlelib', 'turtledemo'})


def _refuse_modules_that_run_on_import(dotted_name: str, what: str) -> None:
    parts = dotted_name.split('.')
    for i in range(1, len(parts) + 1):
        module = '.'.join(parts[:i])
        if module in sys.modules:
            continue  # already imported: importing it again runs nothing
        if parts[0] in _RUN_ON_IMPORT or parts[i - 1] == '__main__':
            raise UserError(f"{what} '{dotted_name}' in the plans names the module '{module}', whose import runs a "
                            f"program: refused.", "Name a torch.nn.Module subclass there in the plans file.")


def locate_plans_name(dotted_name: str, what: str):
    """The object a dotted name in the plans stands for (``pydoc.locate``; None if there is none). Modules that run
    a program when imported are refused first; a module that exists but fails to import (syntax error, missing
    dependency) is named."""
    _refuse_modules_that_run_on_import(dotted_name, what)
    try:
        return pydoc.locate(dotted_name)
    except pydoc.ErrorDuringImport as e:
        line = import_failure_line(e.value, dotted_name.rsplit('.', 1)[0])
        if line is None:
            raise e.value from None  # a bug inside that module: keep its own traceback
        raise NetworkImportError(f"{line} (needed for {what} '{dotted_name}' in the plans).",
                                 "Fix or install that module, or fix the name in the plans file.") from None


def _why_not_importable(dotted_name: str) -> str:
    """Which part of a dotted name fails: the first module that is missing, or the missing attribute."""
    parts = dotted_name.split('.')
    for i in range(1, len(parts)):
        module = '.'.join(parts[:i])
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            return f"there is no module '{module}'"
        except Exception:  # noqa: BLE001 - _locate reported real import failures already
            break
        if pydoc.locate('.'.join(parts[:i + 1])) is None:
            return f"module '{module}' has no attribute '{parts[i]}'"
    return "it cannot be imported"


def _require_module_class(obj, dotted_name: str, what: str, key: str):
    """``obj`` if it is a torch.nn.Module class, else a UserError. plans.json comes with every shared model, and the
    network calls what the plans name (the network class, and the conv, norm, dropout and nonlinearity ops it builds
    its layers from) with arguments the plans' author chose: a function or any other class there (torch.hub.load,
    subprocess.Popen, ...) could run code of that author's choosing."""
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return obj
    raise UserError(f"{what} '{dotted_name}' ({key} in the plans) is a {type(obj).__name__}, not a torch.nn.Module "
                    f"class: refused, since calling it could run code.",
                    "Name a torch.nn.Module subclass there in the plans file.")


def _locate_network_class(arch_class_name: str):
    """Class for a dotted path; if that path does not import, search dynamic_network_architectures by class name.

    The fallback keeps old plans working whose class path no longer exists (e.g. ``...residual_unet.X``).
    """
    nw_class = locate_plans_name(arch_class_name, 'network class')
    if nw_class is not None:
        return _require_module_class(nw_class, arch_class_name, "Network class", "architecture.network_class_name")
    warnings.warn(f"Network class {arch_class_name} not found by its dotted path. Searching "
                  f"dynamic_network_architectures.architectures for a class of that name.")
    import dynamic_network_architectures
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    short_name = arch_class_name.split('.')[-1]
    # Fast path for the U-Nets (the only classes nnU-Net itself writes): the full walk below imports every
    # architecture module, some of which pull in timm (seconds).
    nw_class = getattr(importlib.import_module('dynamic_network_architectures.architectures.unet'), short_name, None)
    if nw_class is None:
        nw_class = recursive_find_python_class(
            os.path.join(dynamic_network_architectures.__path__[0], 'architectures'), short_name,
            'dynamic_network_architectures.architectures')
    if nw_class is None:
        raise NetworkImportError(f"Network class '{arch_class_name}' (architecture.network_class_name in the plans) "
                                 f"cannot be imported: {_why_not_importable(arch_class_name)}; and no class "
                                 f"'{short_name}' exists in dynamic_network_architectures.architectures.",
                                 "Fix the name in the plans file, or install the module that defines the class.")
    print(f'FOUND IT: {nw_class}')
    return nw_class


def get_network_from_plans(arch_class_name: str, arch_kwargs: dict,
                           arch_kwargs_req_import: Union[list, Tuple[str, ...]], input_channels: int,
                           output_channels: int, allow_init: bool = True,
                           deep_supervision: Optional[bool] = None) -> nn.Module:
    """Build ``arch_class_name(input_channels=..., num_classes=output_channels, **arch_kwargs)``.

    Entries of ``arch_kwargs`` listed in ``arch_kwargs_req_import`` are dotted names of objects (conv op, norm op,
    nonlinearity, ...) and are replaced by the objects; ``deep_supervision`` is only passed when not None so the
    class default applies otherwise.
    """
    network_class = arch_class_name
    architecture_kwargs = dict(**arch_kwargs)
    for ri in arch_kwargs_req_import:
        if architecture_kwargs[ri] is not None:
            located = locate_plans_name(architecture_kwargs[ri], f"architecture argument '{ri}'")
            if located is None:
                raise NetworkImportError(f"Could not import '{architecture_kwargs[ri]}' (architecture argument "
                                         f"'{ri}' in the plans): {_why_not_importable(architecture_kwargs[ri])}.",
                                         "Fix the dotted name in the plans file.")
            architecture_kwargs[ri] = _require_module_class(located, architecture_kwargs[ri],
                                                            f"Architecture argument '{ri}'",
                                                            f"architecture.arch_kwargs.{ri}")

    nw_class = _locate_network_class(network_class)

    if deep_supervision is not None:
        architecture_kwargs['deep_supervision'] = deep_supervision

    network = nw_class(
        input_channels=input_channels,
        num_classes=output_channels,
        **architecture_kwargs
    )

    if hasattr(network, 'initialize') and allow_init:
        network.apply(network.initialize)

    return network
