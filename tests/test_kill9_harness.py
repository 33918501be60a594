"""The kill tests' command runner (tests/_kill9.py) itself."""
import signal
import sys

from _kill9 import Outcome, interrupted_while_starting, run_command


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


NUMPY_INTERRUPTED = """Traceback (most recent call last):
  File "numpy/_core/__init__.py", line 24, in <module>
ImportError: PyCapsule_Import could not import module "datetime"

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "bin/nnUNetv2_evaluate_simple", line 5, in <module>
    from nnunetv2.evaluation.evaluate_predictions import evaluate_simple_entry_point_command
{call}ImportError:

Importing the numpy C-extensions failed. This error can happen for
"""


def test_numpys_import_error_from_a_ctrl_c_is_an_interruption_only_before_the_entry_point():
    def outcome(stderr):
        return Outcome(returncode=1, stdout="", stderr=stderr, killed=True, seconds=0.2, left_behind=[])
    assert interrupted_while_starting(outcome(NUMPY_INTERRUPTED.format(call="")))
    # inside the entry point our code had taken over: there the Ctrl-C must have become 'interrupted' (130)
    assert not interrupted_while_starting(outcome(NUMPY_INTERRUPTED.format(
        call='  File "bin/nnUNetv2_x", line 8, in <module>\n    sys.exit(entry())\n')))


IMPORT_INTERRUPTED = """Traceback (most recent call last):
  File "bin/nnUNetv2_apply_postprocessing", line 5, in <module>
    from nnunetv2.postprocessing.remove_connected_components import entry_point_apply_postprocessing_command
  File "nnunetv2/utilities/watched_pool.py", line 16, in <module>
    import multiprocessing.pool
  File "lib/python3.11/multiprocessing/pool.py", line 19, in <module>
    import queue
  File "lib/python3.11/ast.py", line 1461, in _Unparser
    boolop_precedence = {"and": _Precedence.AND, "or": _Precedence.OR}
  File "lib/python3.11/enum.py", line 193, in __get__
  File "<frozen importlib._bootstrap_external>", line 1122, in get_filename
KeyboardInterrupt
"""

WORKER_INTERRUPTED = """Process ForkPoolWorker-1:
Traceback (most recent call last):
  File "lib/python3.11/multiprocessing/process.py", line 314, in _bootstrap
    self.run()
  File "lib/python3.11/multiprocessing/pool.py", line 114, in worker
KeyboardInterrupt
"""


def test_a_ctrl_c_while_importing_is_an_interruption_while_starting():
    """Seen on a loaded machine: a Ctrl-C 0.2 s after the start landed while the console script imported its module
    (multiprocessing.pool, or numpy running a class body of ast): the one traceback starts at the script's top level
    and never reaches the entry point. A worker process's traceback is not excused."""
    def outcome(stderr):
        return Outcome(returncode=-signal.SIGINT, stdout="", stderr=stderr, killed=True, seconds=0.2, left_behind=[])
    assert interrupted_while_starting(outcome(IMPORT_INTERRUPTED))
    assert not interrupted_while_starting(outcome(WORKER_INTERRUPTED))
    assert not interrupted_while_starting(outcome(IMPORT_INTERRUPTED.replace(
        "    from nnunetv2", "    sys.exit(main())\n    from nnunetv2")))


def test_silent_death_by_sigint_is_an_interruption_only_in_the_interpreters_first_instant():
    """Before the interpreter installs its KeyboardInterrupt handler, SIGINT's default action ends it without a word
    (seen 0.045 s after the start); later, a silent death by SIGINT means our handling failed."""
    def outcome(seconds, stderr=""):
        return Outcome(returncode=-signal.SIGINT, stdout="", stderr=stderr, killed=True, seconds=seconds,
                       left_behind=[])
    assert interrupted_while_starting(outcome(0.045))
    assert not interrupted_while_starting(outcome(3.0))
    assert not interrupted_while_starting(Outcome(returncode=0, stdout="", stderr="", killed=True, seconds=0.045,
                                                  left_behind=[]))
