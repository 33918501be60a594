"""``sigint_blocked`` holds Ctrl-C back until its block ends, also when the kernel hands the SIGINT to another thread
of the process (one that does not block it; nnUNetv2_train has several), where Python still runs the handler in
the main thread. Unheld, a Ctrl-C at the start of the final validation interrupted ``multiprocessing.Pool()`` half
way: its spawned export workers outlived their semaphores and printed FileNotFoundError tracebacks (seen in
tests/run/test_kill9_train.py::test_train_with_workers_killed_at_many_moments)."""
from __future__ import annotations

import signal
import threading
import time

import pytest

from nnunetv2.utilities.worker_processes import sigint_blocked


@pytest.fixture
def thread_taking_sigint():
    """A thread that leaves SIGINT unblocked (started outside any block), alive until the test ends."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join()


def _python_runs_for_a_while():
    for _ in range(20):
        time.sleep(0.01)


def test_ctrl_c_taken_by_another_thread_waits_for_the_end_of_the_block(thread_taking_sigint):
    during = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_blocked():
            signal.pthread_kill(thread_taking_sigint.ident, signal.SIGINT)
            try:
                _python_runs_for_a_while()
            except KeyboardInterrupt:
                during.append(True)
                raise
            during.append(False)
    assert during == [False]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_held_ctrl_c_goes_to_the_handler_in_place_before_the_block(thread_taking_sigint):
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with sigint_blocked():
            signal.pthread_kill(thread_taking_sigint.ident, signal.SIGINT)
            _python_runs_for_a_while()
            assert seen == []
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_no_ctrl_c_no_call(thread_taking_sigint):
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with sigint_blocked():
            _python_runs_for_a_while()
        assert seen == []
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_ignored_ctrl_c_stays_ignored(thread_taking_sigint):
    # a command started in the background by a shell script ignores SIGINT; the block must not take it up
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sigint_blocked():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            signal.pthread_kill(thread_taking_sigint.ident, signal.SIGINT)
            _python_runs_for_a_while()
        _python_runs_for_a_while()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
