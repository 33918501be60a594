"""Console scripts: OpenMP threads sleep while waiting, the process ends quickly (exit handlers run, output arrives),
errors keep their exit status."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import atexit, multiprocessing, os, sys
    from nnunetv2.errors import UserError, exit_on_user_error
    from nnunetv2.utilities.console_command import as_command

    def square(x):
        return x * x

    @exit_on_user_error
    def entry():
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            assert pool.map(square, [1, 2, 3]) == [1, 4, 9]
        atexit.register(lambda: open(sys.argv[1], "w").write("handlers ran"))
        print(os.environ["OMP_WAIT_POLICY"], end=" ")
        print("unflushed output", end="")  # must still arrive
        if sys.argv[2] == "fail":
            raise UserError("bad input")

    if __name__ == "__main__":
        as_command(entry)()
''')


def _run(tmp_path, mode):
    script = tmp_path / "command.py"
    script.write_text(SCRIPT)
    marker = tmp_path / "marker.txt"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, str(script), str(marker), mode], capture_output=True, text=True,
                          timeout=120, env=env)
    return proc, marker


def test_success_runs_exit_handlers_and_flushes_output(tmp_path):
    proc, marker = _run(tmp_path, "ok")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "PASSIVE unflushed output"
    assert marker.read_text() == "handlers ran"


def test_user_error_keeps_its_one_line_and_status(tmp_path):
    proc, marker = _run(tmp_path, "fail")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "nnU-Net error: bad input"
    assert marker.read_text() == "handlers ran"  # the normal exit runs them too


def test_an_explicit_openmp_wait_policy_is_kept(tmp_path):
    script = tmp_path / "command.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "marker.txt"), "ok"], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, OMP_WAIT_POLICY="ACTIVE"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ACTIVE unflushed output"


REUSE_SCRIPT = textwrap.dedent('''
    import multiprocessing, os, resource, sys
    import numpy as np
    from nnunetv2.utilities.console_command import keep_freed_memory_for_reuse

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


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the setting exists for glibc only")
def test_freed_memory_is_reused_by_the_command_and_its_workers(tmp_path):
    # a 64 MB array is 32 huge pages or 16384 small ones: handed back at free, a new one faults them in again
    applied, here, in_worker, tunables = _reuse(tmp_path, "off")
    assert not applied and here >= 32 and in_worker >= 32
    applied, here, in_worker, tunables = _reuse(tmp_path, "on")
    assert applied and here < 16 and in_worker < 16
    assert tunables == "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the setting exists for glibc only")
def test_a_users_own_malloc_tunables_are_kept_and_others_extended(tmp_path):
    applied, here, in_worker, tunables = _reuse(tmp_path, "on", GLIBC_TUNABLES="glibc.malloc.tcache_count=0")
    assert not applied and tunables == "glibc.malloc.tcache_count=0" and here >= 32
    applied, _, _, tunables = _reuse(tmp_path, "on", GLIBC_TUNABLES="glibc.rtld.optional_static_tls=2048")
    assert applied
    assert tunables == ("glibc.rtld.optional_static_tls=2048:glibc.malloc.mmap_max=0:"
                        "glibc.malloc.trim_threshold=2147483647")
