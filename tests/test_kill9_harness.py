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
