"""Hand a numpy array to another process without copying it through a pipe and without importing torch.

Pickled, a ``SharedArray`` carries a file descriptor of an anonymous shared-memory file (Linux ``memfd``) holding the
array, not the data: the receiving process maps the same memory and gets a numpy array backed by it. This is how
torch passes CPU tensors between processes, without torch's import (a second of CPU time in every preprocessing
worker). The file has no name, so nothing is left behind when a process is killed; the memory is freed when the
last descriptor and mapping of it are gone. As with torch's tensors, the sending process must live until the
receiver has unpickled the array: the descriptor is fetched from it then (multiprocessing's resource sharer).
"""
from __future__ import annotations

import mmap
import os
from multiprocessing import reduction

import numpy as np

AVAILABLE = hasattr(os, 'memfd_create') and getattr(reduction, 'HAVE_SEND_HANDLE', False)


class SharedArray:
    """A copy of ``array`` in shared memory, to be pickled into a multiprocessing queue or pipe (see the module
    docstring); unpickling gives a numpy array. Needs ``AVAILABLE``."""

    def __init__(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        self.shape, self.dtype = array.shape, array.dtype.str
        fd = os.memfd_create('nnunet_array', os.MFD_CLOEXEC)
        try:
            if array.nbytes:
                os.ftruncate(fd, array.nbytes)
                with mmap.mmap(fd, array.nbytes) as memory:
                    view = np.ndarray(array.shape, array.dtype, buffer=memory)
                    view[...] = array
                    del view  # the mapping cannot close while a view of it exists
            # registered with this process's resource sharer now (a duplicate of fd), so that fd can be closed
            self._handle = reduction.DupFd(fd)
        finally:
            os.close(fd)

    def __reduce__(self):
        return _attach, (self._handle, self.shape, self.dtype)


def _attach(handle, shape: tuple, dtype: str) -> np.ndarray:
    fd = handle.detach()
    try:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if nbytes == 0:
            return np.empty(shape, dtype)
        memory = mmap.mmap(fd, nbytes)
    finally:
        os.close(fd)
    return np.ndarray(shape, dtype, buffer=memory)  # keeps the mapping alive as long as the array lives
