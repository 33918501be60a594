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
import sys
import tempfile
import threading
import uuid
from typing import Any, Iterator, List, Optional

import numpy as np

from nnunetv2.errors import UserError

TMP_PREFIX = ".nnunet_tmp_"


def temporary_sibling(final_path: str) -> str:
    """A unique temporary file name in the folder of ``final_path`` that keeps its full file name as suffix.

    Keeping the suffix matters: writers such as SimpleITK pick the format from the file ending.
    """
    folder, name = os.path.split(os.path.abspath(final_path))
    return os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}_{name}")


def finished_files(folder: str, ending: str = "") -> List[str]:
    """Sorted names of the plain files in ``folder`` that end with ``ending``, without the temporaries of our atomic
    writes: a writer killed mid-write leaves one behind, and it is no result."""
    return sorted(f for f in os.listdir(folder) if f.endswith(ending) and not f.startswith(TMP_PREFIX)
                  and os.path.isfile(os.path.join(folder, f)))


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
    try:
        tmp_dir = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=folder)
    except OSError as e:  # e.g. the folder does not exist: name the file asked for, not the temporary folder
        _raise_naming_final_path(e, lambda n: isinstance(n, str) and n.startswith(os.path.join(folder, TMP_PREFIX)),
                                 final_path)
        raise
    try:
        yield os.path.join(tmp_dir, name)
        for written in sorted(os.listdir(tmp_dir)):
            os.replace(os.path.join(tmp_dir, written), os.path.join(folder, written))
    except OSError as e:
        _raise_naming_final_path(e, lambda name: isinstance(name, str) and name.startswith(tmp_dir), final_path)
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def replace_folder(new_folder: str, final_folder: str) -> None:
    """Put the complete folder ``new_folder`` (a sibling named by ``temporary_sibling``) in place of ``final_folder``,
    which may exist. The old folder is renamed away first and deleted after: readers see the old folder or the new
    one, never a half-filled one (between the two renames, for an instant, none). Another process doing the same at
    once: the last one's folder stays."""
    for _ in range(100):
        old = None
        if os.path.lexists(final_folder):
            old = temporary_sibling(final_folder)
            try:
                os.rename(final_folder, old)
            except FileNotFoundError:  # another process moved it away first
                old = None
        try:
            os.rename(new_folder, final_folder)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # another process put its folder there between our two renames: replace that one too
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    raise OSError(errno.EBUSY, "other processes keep replacing this folder", final_folder)


_held_folder_locks: set = set()  # (thread, folder) pairs holding the lock: re-entry goes through
_open_lock_fds: dict = {}  # fd -> token of the folder_lock call that opened it, in this process
# held while a lock descriptor is opened and registered, or unregistered and closed, and across every fork: a fork
# from another thread in between would give the child a descriptor it does not know to close
_lock_fds_guard = threading.Lock()


def _drop_inherited_folder_locks() -> None:
    """In a forked child: close the lock descriptors inherited from the parent. A flock belongs to the open file,
    which the child's copy keeps alive, so workers forked while a lock is held (augmentation, export) would hold it
    on until they exit, and a rerun right after the parent was killed would be refused or kept waiting by its
    orphans. The child never needs the parent's locks; the parent's own descriptors are untouched."""
    for fd in list(_open_lock_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_lock_fds.clear()
    _held_folder_locks.clear()
    _lock_fds_guard.release()  # taken by the forking thread, the child's only thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_lock_fds_guard.acquire, after_in_parent=_lock_fds_guard.release,
                        after_in_child=_drop_inherited_folder_locks)


@contextlib.contextmanager
def folder_lock(folder: str, purpose: str, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``folder`` itself while reading and rewriting files in it:
    another nnU-Net process (or thread) asking for the same lock waits, saying once on stderr what it waits for
    (with ``wait=False`` it gets ``BlockingIOError`` instead). The kernel releases the lock when the process ends,
    however it ends: no lock file, nothing stale. Re-entrant within a thread. Where the folder does not exist (the
    caller reports that), or the platform or file system has no ``flock`` on folders, it goes on without a lock."""
    key = (threading.get_ident(), os.path.realpath(folder))
    if key in _held_folder_locks:
        yield
        return
    token = object()
    try:
        import fcntl
        with _lock_fds_guard:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            _open_lock_fds[fd] = token
    except (ImportError, OSError):
        fd = None
    if fd is None:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise BlockingIOError(errno.EWOULDBLOCK, "another nnU-Net process is working in this folder",
                                      folder) from None
            # the holder may be doing something else in that folder (a training holds its fold folder while
            # determine_postprocessing waits on fold_X/validation): say what waits, not what the holder does
            print(f"nnU-Net: waiting for another nnU-Net process working in {folder} to finish before {purpose} ...",
                  file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass  # no flock on this file system: unlocked, as before
        _held_folder_locks.add(key)
        try:
            yield
        finally:
            _held_folder_locks.discard(key)
    finally:
        with _lock_fds_guard:
            if _open_lock_fds.get(fd) is token:  # not when a forked child unwinds: it closed its copy at the fork
                del _open_lock_fds[fd]
                os.close(fd)  # releases the lock


def folder_is_locked(folder: str) -> bool:
    """Whether another process (or thread) holds ``folder_lock`` on ``folder`` right now, e.g. a training its fold's
    folder. Only looks: the lock is taken for an instant (one who asks for it then without waiting should try again)."""
    try:
        with folder_lock(folder, 'looking whether it is in use', wait=False):
            return False
    except BlockingIOError:
        return True


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


def json_safe(obj: Any) -> Any:
    """``obj`` with tuples as lists and NumPy scalars and arrays (values and dict keys) as Python values, for
    ``save_json``."""
    if isinstance(obj, dict):
        return {(k.item() if isinstance(k, np.generic) else k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


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


def save_npz_compressed(file: str, **arrays: np.ndarray) -> None:
    """``np.savez_compressed(file, **arrays)`` written atomically under exactly ``file``."""
    with atomic_path(file) as tmp:
        with open(tmp, "wb") as f:  # a file object: given a name, np.savez appends '.npz' to it
            np.savez_compressed(f, **arrays)


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
