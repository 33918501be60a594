"""A conversion killed with kill -9 leaves its staging folder (a partial copy of the dataset) behind: it must carry
our temporary prefix, and the next conversion to the same name removes it, but never one whose conversion runs."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys

from nnunetv2.dataset_conversion.convert_raw_dataset_from_old_nnunet_format import convert
from nnunetv2.file_io import TMP_PREFIX

# converts in a fresh interpreter that dies (os._exit: no clean-up runs, as after kill -9) in its second folder copy,
# after the first copied folder and part of the second are in the staging folder
_KILLED_CONVERSION = """
import os, shutil, sys
real, calls = shutil.copytree, []
def dying_copytree(src, dst, *a, **k):
    calls.append(src)
    if len(calls) == 2:
        os.makedirs(dst)
        with open(os.path.join(dst, 'half.nii.gz'), 'wb') as f:
            f.write(b'\\x1f\\x8b')  # a truncated gzip: what a copy cut off by a kill leaves
        os._exit(137)
    return real(src, dst, *a, **k)
shutil.copytree = dying_copytree
from nnunetv2.dataset_conversion.convert_raw_dataset_from_old_nnunet_format import convert
convert(sys.argv[1], 'Dataset005_Prostate')
"""


def _kill_a_conversion(task) -> None:
    result = subprocess.run([sys.executable, "-c", _KILLED_CONVERSION, str(task)], capture_output=True, text=True)
    assert result.returncode == 137, result.stderr


def test_rerun_after_kill_leaves_no_staging_folder(nnunet_dirs, v1_task_factory):
    task = v1_task_factory()
    raw = nnunet_dirs["nnUNet_raw"]
    for _ in range(2):  # each attempt removes what the one before left: one partial copy at most
        _kill_a_conversion(task)
        leftovers = sorted(p.name for p in raw.iterdir())
        assert len(leftovers) == 1 and leftovers[0].startswith(TMP_PREFIX), leftovers

    convert(str(task), "Dataset005_Prostate")
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset005_Prostate"]


def test_staging_folder_of_a_running_conversion_is_kept(nnunet_dirs, v1_task_factory):
    raw = nnunet_dirs["nnUNet_raw"]
    running = raw / f"{TMP_PREFIX}Dataset005_Prostate_0123456789ab"
    running.mkdir()
    fd = os.open(running, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the conversion filling it holds
        convert(str(v1_task_factory()), "Dataset005_Prostate")
        assert sorted(p.name for p in raw.iterdir()) == sorted(["Dataset005_Prostate", running.name])
    finally:
        os.close(fd)
