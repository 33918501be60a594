"""Small, safe file helpers: every file written for the user goes to a temporary name first, then is renamed.

A crash or a kill therefore never leaves a half-written file under its final name.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import shutil
import tempfile
import uuid
from typing import Any, Iterator, Optional

from nnunetv2.errors import UserError

TMP_PREFIX = ".nnunet_tmp_"


def temporary_sibling(final_path: str) -> str:
    """A unique temporary file name in the folder of ``final_path`` that keeps its full file name as suffix.

    Keeping the suffix matters: writers such as SimpleITK pick the format from the file ending.
    """
    folder, name = os.path.split(os.path.abspath(final_path))
    return os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}_{name}")


def _raise_naming_final_path(e: BaseException, is_temporary, final_path: str) -> None:
    """An OSError about a temporary name (or about no name: a full disk reports none) again, naming the file the
    user asked for; the temporary name means nothing to them. Returns for anything else."""
    if isinstance(e, OSError) and e.errno is not None and (is_temporary(e.filename) or (
            e.filename2 is not None and is_temporary(e.filename2))):
        raise OSError(e.errno, e.strerror, final_path) from e


@contextlib.contextmanager
def atomic_path(final_path: str) -> Iterator[str]:
    """Yield a temporary path to write to; on success it is renamed to ``final_path``, on failure removed."""
    tmp = temporary_sibling(final_path)
    try:
        yield tmp
        os.replace(tmp, final_path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        _raise_naming_final_path(e, lambda name: name is None or name == tmp, final_path)
        raise


@contextlib.contextmanager
def atomic_path_named_by_writer(final_path: str) -> Iterator[str]:
    """``atomic_path`` for writers that may choose the written file's name themselves.

    SimpleITK's NIfTI writer given ``x.nii.gz.nii.gz`` writes ``x.nii.gz`` (the reference relies on it: HD-BET asks
    for ``<mask>.nii.gz`` + the model's ``.nii.gz``). Yields ``final_path``'s own name inside a private temporary
    folder beside it; on success every file written there is moved beside ``final_path`` under the name the writer
    gave it, on failure nothing is moved. The temporary folder is removed either way.
    """
    folder, name = os.path.split(os.path.abspath(final_path))
    tmp_dir = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=folder)
    try:
        yield os.path.join(tmp_dir, name)
        for written in sorted(os.listdir(tmp_dir)):
            os.replace(os.path.join(tmp_dir, written), os.path.join(folder, written))
    except OSError as e:
        _raise_naming_final_path(e, lambda name: isinstance(name, str) and name.startswith(tmp_dir), final_path)
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def raise_if_disk_full(path: str, min_free_bytes: int = 1 << 20) -> None:
    """``OSError(ENOSPC)`` naming ``path`` if the disk holding it has (almost) no space left. For libraries that
    report a failed write without an errno (blosc2: "Error while creating the NDArray")."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except (OSError, AttributeError):  # no statvfs on this platform, or the folder is gone
        return
    if st.f_bavail * st.f_frsize < min_free_bytes:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def os_error_behind(e: BaseException) -> Optional[OSError]:
    """The ``OSError`` that ``e`` is, or that it was raised while handling (``__cause__``/``__context__`` chain).

    Writers with a C++ core report a failed write as something else: torch's zip writer, given a Python file object,
    lets the ``OSError`` of ``write`` pass and then fails while closing the archive with "RuntimeError: [enforce fail
    at inline_container.cc] unexpected pos"; the ``OSError`` (e.g. ENOSPC) is only its context.
    """
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def save_json(obj: Any, file: str, indent: int = 4, sort_keys: bool = True) -> None:
    """``json.dump`` with the reference's formatting (indent 4, sorted keys unless told otherwise), atomically."""
    with atomic_path(file) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, sort_keys=sort_keys, indent=indent)


def load_json(file: str) -> Any:
    """``json.load``; a file that is not JSON (edited by hand, cut off by another tool) is a ``UserError`` naming it."""
    with open(file, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f": line {e.lineno}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        reason = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
        raise UserError(f"{file} is not valid JSON ({reason}{where}).",
                        "Fix it by hand (quotes around keys and strings, no trailing commas, no comments) or "
                        "recreate it with the command that wrote it.") from None


def save_pickle(obj: Any, file: str) -> None:
    with atomic_path(file) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f)


def load_pickle(file: str) -> Any:
    """``pickle.load``; a truncated or garbled file is a ``UserError`` naming it."""
    with open(file, "rb") as f:
        try:
            return pickle.load(f)
        except (EOFError, pickle.UnpicklingError) as e:
            raise UserError(f"{file} cannot be read: it is truncated or not a pickle file ({type(e).__name__}: "
                            f"{e}).", "Recreate it with the command that wrote it.") from None


def maybe_mkdir_p(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
