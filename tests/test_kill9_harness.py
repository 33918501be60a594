"""The kill tests' command runner (tests/_kill9.py) itself."""
import signal
import sys

from _kill9 import run_command


def test_commands_take_ctrl_c_even_when_pytest_ignores_it(monkeypatch):
    # pytest started in the background by a script ignores SIGINT and its children inherit that: the Ctrl-C kills
    # would end in status 0 after a complete run, which the kill tests accept, so they would test nothing
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        outcome = run_command([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) "
                               "is signal.default_int_handler)"], env={"PATH": "/usr/bin:/bin"}, timeout=120)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.strip() == "True"


def test_signal_sent_when_the_moment_comes(tmp_path):
    # the command says when it is ready by creating a file; the signal must come after that, not at a fixed time
    ready = tmp_path / "ready"
    script = (f"import pathlib, time; time.sleep(0.5); pathlib.Path({str(ready)!r}).touch(); print('ready', flush=True);"
              " time.sleep(600)")
    outcome = run_command([sys.executable, "-c", script], env={"PATH": "/usr/bin:/bin"}, sig=signal.SIGTERM,
                          whole_group=True, kill_when=ready.exists, timeout=120)
    assert outcome.killed and outcome.returncode == -signal.SIGTERM and not outcome.left_behind
    assert outcome.stdout.strip() == "ready"


def test_a_process_holding_the_output_is_reported_with_its_stacks(monkeypatch):
    # the main process ends at once, a child it leaves behind keeps its stdout open: the runner must not wait forever
    # but fail, saying that the main process had ended and showing the child's Python stack
    import _kill9
    monkeypatch.setattr(_kill9, "GROUP_EXIT_S", 1.0)
    script = ("import os, signal, time\n"
              "if os.fork() == 0:\n"
              "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "    time.sleep(600)\n"
              "time.sleep(0.5)\n")
    try:
        run_command([sys.executable, "-c", script], env={"PATH": "/usr/bin:/bin", "PYTHONFAULTHANDLER": "1"},
                    sig=signal.SIGTERM, whole_group=True, kill_at=0.1, timeout=120)
    except AssertionError as e:
        message = str(e)
    else:
        raise AssertionError("the runner did not notice the process left holding the output")
    # faulthandler's dump of the child: the line of its sleep
    assert "its main process had ended with status" in message and 'File "<string>", line 4' in message, message
