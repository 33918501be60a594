"""Installing a new version of a model while another process loads it.

The install replaces a model's files one at a time (each atomically, not as a set), and a loader reads dataset.json,
plans.json and one checkpoint per fold one after the other. Without care a prediction can then run on plans and
fold 0 of the old version and fold 1 of the new one, and exit 0. Loaders take no lock (parallel predictions must
not wait for each other, nor for the minutes that merging cross-validation results holds a model folder), so the
two sides meet like this:

* the install puts a marker folder into every existing model folder it updates and holds a lock on it while it
  moves files in. The marker is locked before it becomes visible (it is made in the staging folder and renamed
  into place), so a loader never sees an unlocked marker of a running install;
* the loader notes the identity of every file it reads before and after reading them, and afterwards looks for a
  locked marker. Files that changed during the read, or an install still running after it (the read may have
  fallen between two of its renames), make it wait for the install and read again.

A killed install leaves its marker unlocked: loaders ignore it, the next install of that model removes it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from nnunetv2.file_io import folder_lock

MODEL_UPDATE_PREFIX = ".nnunet_installing_"

FileIdentity = Optional[Tuple[int, int, int, int, int]]


def file_identities(paths: Sequence[str]) -> Tuple[FileIdentity, ...]:
    """(device, inode, size, mtime, ctime) of each file, None where it is missing: a file replaced by a rename or
    rewritten in place gets another identity. The change time is there for copies that rewrite a file in place and
    then set its old modification time again (``cp -p``, ``rsync --inplace -t``): no tool can set it back."""
    identities = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            identities.append(None)
            continue
        identities.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(identities)


def _markers(model_dir: str) -> List[str]:
    try:
        names = os.listdir(model_dir)
    except OSError:
        return []
    return sorted(os.path.join(model_dir, n) for n in names if n.startswith(MODEL_UPDATE_PREFIX))


def _wait_for_install(marker: str) -> bool:
    """Whether an install holds ``marker`` (then it has finished when this returns). Loaders ask with a shared lock,
    so two of them looking at the same marker at once (one a killed install left) do not take each other for an
    install; the install's exclusive lock excludes them."""
    try:
        import fcntl
        fd = os.open(marker, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):  # no flock here, or the marker is gone: the install has finished
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            print(f"nnU-Net: waiting for the installation of a new version of the model in "
                  f"{os.path.dirname(marker)} to finish before loading it ...", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_SH)
            return True
        except OSError:  # a file system without flock
            return False
    finally:
        os.close(fd)  # releases the shared lock


def wait_for_model_updates(model_dir: str) -> bool:
    """Whether an install was updating ``model_dir`` (then it has finished when this returns)."""
    waited = False
    for marker in _markers(model_dir):
        waited = _wait_for_install(marker) or waited
    return waited


@contextlib.contextmanager
def marking_model_updates(model_dirs: Iterable[str], staging_dir: str) -> Iterator[None]:
    """Hold a locked marker in each of ``model_dirs`` (existing model folders about to receive files) for as long as
    the ``with`` block runs; ``staging_dir`` is a folder of ours on the same file system."""
    placed: List[str] = []
    with contextlib.ExitStack() as stack:
        for model_dir in sorted(set(model_dirs)):
            for stale in _markers(model_dir):
                with contextlib.suppress(BlockingIOError, OSError):
                    with folder_lock(stale, "removing the marker of an interrupted install", wait=False):
                        shutil.rmtree(stale)
            name = MODEL_UPDATE_PREFIX + uuid.uuid4().hex[:12]
            staged = os.path.join(staging_dir, name)
            os.mkdir(staged)
            stack.enter_context(folder_lock(staged, "installing"))
            marker = os.path.join(model_dir, name)
            os.rename(staged, marker)
            placed.append(marker)
        try:
            yield
        finally:
            for marker in placed:  # removed while still locked: a loader waiting on it reads again afterwards
                with contextlib.suppress(OSError):
                    os.rmdir(marker)
