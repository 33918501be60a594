"""Which reader/writer to use for a dataset: by class name, or automatically from the file ending."""
from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import traceback
from typing import List, Optional, Type

import nnunetv2.imageio
from nnunetv2.errors import UserError
from nnunetv2.imageio._helpers import one_line
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
from nnunetv2.imageio.nibabel_reader_writer import NibabelIO, NibabelIOWithReorient
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.imageio.tif_reader_writer import Tiff3DIO

logger = logging.getLogger(__name__)

# Order matters: the first class that claims an ending (and can read the example file) wins. NaturalImage2DIO
# precedes Tiff3DIO so that 2-D .tif files are read as natural images.
LIST_OF_IO_CLASSES = [
    NaturalImage2DIO,
    SimpleITKIO,
    Tiff3DIO,
    NibabelIO,
    NibabelIOWithReorient,
]


def determine_reader_writer_from_dataset_json(dataset_json_content: dict, example_file: str = None,
                                              allow_nonmatching_filename: bool = False,
                                              verbose: bool = True) -> Type[BaseReaderWriter]:
    """The class named by ``overwrite_image_reader_writer`` if set and found, else the automatic choice."""
    name = dataset_json_content.get('overwrite_image_reader_writer')
    if name is not None and name != 'None':
        try:
            cls = recursive_find_reader_writer_by_name(name)
        except RuntimeError:
            cls = None
        if cls is not None:
            if verbose:
                print(f'Using {cls} reader/writer')
            return cls
        if verbose:
            print(f'WARNING! Could not find requested reader/writer class {name} in nnunetv2.imageio (requested '
                  f'via overwrite_image_reader_writer in dataset.json).')
            print('Trying to automatically determine desired class')
    if 'file_ending' not in dataset_json_content:
        raise UserError("dataset.json has no 'file_ending' entry, so no image reader can be chosen.",
                        "Add e.g. \"file_ending\": \".nii.gz\" to dataset.json.")
    return determine_reader_writer_from_file_ending(dataset_json_content['file_ending'], example_file,
                                                    allow_nonmatching_filename, verbose)


def _read_failure(cls: Type[BaseReaderWriter], example_file: str, verbose: bool, matching: bool) -> Optional[str]:
    """None if ``cls`` can read ``example_file``, else a one-line reason."""
    try:
        cls().read_images((example_file,))
        return None
    except Exception as e:
        if verbose:
            if matching:
                print(f'Reader {cls.__name__} supports the file ending but failed to read {example_file}: '
                      f'{one_line(e)}')
            else:
                print(f'Reader {cls.__name__} failed to read {example_file}: {one_line(e)}')
        # the full traceback only helps when debugging a custom reader; keep it out of the normal output
        logger.debug('Traceback of %s reading %s:\n%s', cls.__name__, example_file, traceback.format_exc())
        # for our own errors the message alone (without the fix-it hint) says what is wrong
        return f"{cls.__name__}: {one_line(e.message if isinstance(e, UserError) else e, 200).rstrip('.')}"


def determine_reader_writer_from_file_ending(file_ending: str, example_file: str = None,
                                             allow_nonmatching_filename: bool = False,
                                             verbose: bool = True) -> Type[BaseReaderWriter]:
    """First class of LIST_OF_IO_CLASSES that supports ``file_ending`` (and can read ``example_file`` if given)."""
    ending = file_ending.lower()
    failures = []  # why the readers that claim this ending could not read the example file
    for cls in LIST_OF_IO_CLASSES:
        if ending in cls.supported_file_endings:
            if example_file is None:
                return cls
            reason = _read_failure(cls, example_file, verbose, matching=True)
            if reason is None:
                return cls
            failures.append(reason)
        elif allow_nonmatching_filename and example_file is not None:
            if _read_failure(cls, example_file, verbose, matching=False) is None:
                return cls
    supported = sorted({e for c in LIST_OF_IO_CLASSES for e in c.supported_file_endings})
    where = f"file {example_file}" if example_file is not None else "no example file"
    reasons = f" Readers tried: {'; '.join(failures)}." if failures else ""
    raise UserError(f"Unable to determine a reader for file ending {file_ending} and {where}.{reasons}",
                    f"Supported file endings: {', '.join(supported)}. Make sure 'file_ending' in dataset.json "
                    f"matches the files and that the files are valid images.")


def _iter_imageio_modules():
    """Module names of the nnunetv2.imageio package: its own modules first (alphabetically), then sub-packages."""
    def walk(path: List[str], prefix: str):
        entries = sorted(pkgutil.iter_modules(path), key=lambda m: m.name)
        for m in entries:
            if not m.ispkg:
                yield prefix + m.name
        for m in entries:
            if m.ispkg:
                sub = importlib.import_module(prefix + m.name)
                yield from walk(list(getattr(sub, '__path__', [])), prefix + m.name + '.')
    yield from walk(list(nnunetv2.imageio.__path__), 'nnunetv2.imageio.')


def recursive_find_reader_writer_by_name(rw_class_name: str) -> Type[BaseReaderWriter]:
    """Find a reader/writer class by name anywhere in the nnunetv2.imageio package (custom ones included)."""
    for modname in _iter_imageio_modules():
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue
            raise
        if hasattr(module, rw_class_name):
            return getattr(module, rw_class_name)
    # the loop above imported every module of the package: what it offers is known now
    from nnunetv2.utilities.class_lookup import available_subclasses, close_matches
    available = [n for n in available_subclasses('nnunetv2.imageio', BaseReaderWriter) if n != 'BaseReaderWriter']
    close = close_matches(rw_class_name, available, n=3)
    hint = f"Did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"Unable to find reader/writer class '{rw_class_name}'.",
                    f"{hint}Available: {', '.join(available)}. Custom readers/writers must be placed in the "
                    f"nnunetv2.imageio package ({os.path.dirname(nnunetv2.imageio.__file__)}).")
