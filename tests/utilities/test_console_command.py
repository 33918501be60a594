"""Console scripts: OpenMP threads sleep while waiting, the process ends quickly (exit handlers run, output arrives),
errors keep their exit status."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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



DEFERRED_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from nnunetv2.errors import exit_on_user_error
    from nnunetv2.utilities.console_command import import_with_ctrl_c_deferred

    @exit_on_user_error
    def entry():
        import_with_ctrl_c_deferred("slow_module")
        print("after the import")  # not reached: the held-back Ctrl-C arrives first

    entry()
''')

SLOW_MODULE = textwrap.dedent('''
    import os, signal, sys, time
    os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C in the middle of the import
    time.sleep(0.2)
    print("import complete", flush=True)
''')


def test_a_ctrl_c_during_the_heavy_imports_waits_for_them_and_exits_130(tmp_path):
    (tmp_path / "slow_module.py").write_text(SLOW_MODULE)
    script = tmp_path / "command.py"
    script.write_text(DEFERRED_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stdout == "import complete\n"
    assert proc.stderr.strip() == "nnU-Net: interrupted."


def test_ctrl_c_while_the_interpreter_exits_after_a_command_prints_nothing(tmp_path):
    """A Ctrl-C that arrives after the command's work is done, while the interpreter runs the libraries' exit
    clean-ups (torch's among them), used to print 'Exception ignored in atexit callback ... KeyboardInterrupt'."""
    import subprocess
    import sys
    import textwrap
    script = tmp_path / "cmd.py"
    script.write_text(textwrap.dedent("""
        import atexit, os, signal, time
        import torch  # noqa: F401  (its exit clean-ups are registered at import)
        from nnunetv2.errors import exit_on_user_error

        def library_clean_up():  # registered before the command runs, like torch's: runs after ours
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            print("clean-up finished", flush=True)

        atexit.register(library_clean_up)

        @exit_on_user_error
        def command():
            print("done", flush=True)

        command()
        """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["done", "clean-up", "finished"]
    assert "KeyboardInterrupt" not in result.stderr and "Traceback" not in result.stderr, result.stderr
