"""Freed memory is kept for reuse by a command and its workers (no page faults for a second large array), a user's
own malloc tunables win, and release_freed_memory hands the free pages back (all, or those beyond what it may keep
for the next case)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="the setting exists for glibc only")


REUSE_SCRIPT = textwrap.dedent('''
    import multiprocessing, os, resource, sys
    import numpy as np
    from nnunetv2.utilities.freed_memory import keep_freed_memory_for_reuse

    def page_faults_of_a_second_64mb_array():
        first = np.ones(8 * 2 ** 20)  # 64 MB
        del first
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        second = np.ones(8 * 2 ** 20)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    if __name__ == "__main__":
        applied = keep_freed_memory_for_reuse() if sys.argv[1] == "on" else False
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            in_worker = pool.apply(page_faults_of_a_second_64mb_array)
        print(applied, page_faults_of_a_second_64mb_array(), in_worker, os.environ.get("GLIBC_TUNABLES", ""))
''')


def _reuse(tmp_path, mode, **env):
    script = tmp_path / "reuse.py"
    script.write_text(REUSE_SCRIPT)
    base = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    proc = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=120,
                          env=dict(base, **env))
    assert proc.returncode == 0, proc.stderr
    applied, here, in_worker, tunables = (proc.stdout.split() + [""])[:4]
    return applied == "True", int(here), int(in_worker), tunables


def test_freed_memory_is_reused_by_the_command_and_its_workers(tmp_path):
    # a 64 MB array is 32 huge pages or 16384 small ones: handed back at free, a new one faults them in again
    applied, here, in_worker, tunables = _reuse(tmp_path, "off")
    assert not applied and here >= 32 and in_worker >= 32
    applied, here, in_worker, tunables = _reuse(tmp_path, "on")
    assert applied and here < 16 and in_worker < 16
    assert tunables == "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647:glibc.malloc.arena_max=1"


def test_a_users_own_malloc_tunables_are_kept_and_others_extended(tmp_path):
    applied, here, in_worker, tunables = _reuse(tmp_path, "on", GLIBC_TUNABLES="glibc.malloc.tcache_count=0")
    assert not applied and tunables == "glibc.malloc.tcache_count=0" and here >= 32
    applied, _, _, tunables = _reuse(tmp_path, "on", GLIBC_TUNABLES="glibc.rtld.optional_static_tls=2048")
    assert applied
    assert tunables == ("glibc.rtld.optional_static_tls=2048:glibc.malloc.mmap_max=0:"
                        "glibc.malloc.trim_threshold=2147483647:glibc.malloc.arena_max=1")


RELEASE_SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    from nnunetv2.utilities.freed_memory import keep_freed_memory_for_reuse, release_freed_memory

    def resident_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2 ** 20

    assert keep_freed_memory_for_reuse()
    a = np.ones(8 * 2 ** 20)  # 64 MB, written
    del a
    kept = resident_mb()
    release_freed_memory(keep_up_to=int(sys.argv[1]))
    print(kept - resident_mb())
''')


def _handed_back_mb(tmp_path, keep_up_to: int) -> float:
    script = tmp_path / "release.py"
    script.write_text(RELEASE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    proc = subprocess.run([sys.executable, str(script), str(keep_up_to)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout)


def test_release_hands_the_kept_pages_back(tmp_path):
    assert _handed_back_mb(tmp_path, 0) > 48  # of the 64 MB the array had, kept until the release
    assert _handed_back_mb(tmp_path, 32 * 2 ** 20) > 48  # more free than may be kept: all handed back


@pytest.mark.skipif(tuple(int(x) for x in platform.libc_ver()[1].split('.')[:2]) < (2, 33),
                    reason="glibc tells the free heap size from 2.33 on (mallinfo2)")
def test_release_keeps_what_the_next_case_may_reuse(tmp_path):
    from nnunetv2.utilities.freed_memory import KEPT_FOR_NEXT_CASE_BYTES
    assert abs(_handed_back_mb(tmp_path, KEPT_FOR_NEXT_CASE_BYTES)) < 8
