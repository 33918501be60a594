"""Console scripts end quickly: exit handlers run, the fork server goes, errors keep their exit status."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import atexit, multiprocessing, os, sys
    from nnunetv2.errors import UserError, exit_on_user_error
    from nnunetv2.utilities.quick_exit import as_command
    from nnunetv2.utilities.worker_processes import start_method, use_fork_server

    def square(x):
        return x * x

    @exit_on_user_error
    def entry():
        use_fork_server(["json"])
        assert start_method() == "forkserver"
        ctx = multiprocessing.get_context(start_method())
        with ctx.Pool(2) as pool:
            assert pool.map(square, [1, 2, 3]) == [1, 4, 9]
        from multiprocessing import forkserver
        print("server", forkserver._forkserver._forkserver_pid, flush=True)
        atexit.register(lambda: open(sys.argv[1], "w").write("handlers ran"))
        print("unflushed output", end="")  # must still arrive
        if sys.argv[2] == "fail":
            raise UserError("bad input")

    if __name__ == "__main__":
        as_command(entry)()
''')


class _Finished:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _run(tmp_path, mode):
    """Run the command with its output in files; return when the command's own process has ended."""
    script = tmp_path / "command.py"
    script.write_text(SCRIPT)
    marker = tmp_path / "marker.txt"
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as o, open(err, "w") as e:
        returncode = subprocess.Popen([sys.executable, str(script), str(marker), mode], stdout=o, stderr=e).wait(120)
    return _Finished(returncode, out.read_text(), err.read_text()), marker


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_success_runs_exit_handlers_and_stops_the_fork_server(tmp_path):
    proc, marker = _run(tmp_path, "ok")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("unflushed output")
    assert marker.read_text() == "handlers ran"
    server = int(proc.stdout.split()[1])
    assert not _alive(server)  # stopped (and reaped) by the command before it ended, not some time after


def test_user_error_keeps_its_one_line_and_status(tmp_path):
    proc, marker = _run(tmp_path, "fail")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "nnU-Net error: bad input"
    assert marker.read_text() == "handlers ran"  # the normal exit runs them too
