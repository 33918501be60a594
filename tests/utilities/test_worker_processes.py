"""One way to start, fail and report worker processes (worker_processes, watched_pool)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import _worker_helpers as helpers
from _kill9 import as_from_a_terminal
from nnunetv2.errors import UserError
from nnunetv2.utilities.watched_pool import WatchedPool
from nnunetv2.utilities.worker_processes import (WorkerDiedError, WorkerError, WorkerFailure, death_message,
                                                 start_worker, usable_cpus, worker_count)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_death_message_names_worker_task_and_flag():
    assert death_message("preprocessing worker", -9, "-np", "processing case_003") == (
        "A preprocessing worker was killed by signal 9 (SIGKILL) while processing case_003, probably out of "
        "memory: lower -np (or free memory).")

    class P:
        pid, exitcode = 123, 1
    assert death_message("export worker", P(), "-nps") == (
        "An export worker (pid 123) exited with exit code 1, its error, if any, is printed above.")
    assert death_message("worker", -15, "-np") == "A worker was killed by signal 15 (SIGTERM)."
    assert "shared memory" in death_message("worker", -int(signal.SIGBUS), "nnUNet_n_proc_DA")


def test_worker_count_is_capped_by_tasks_and_cpus():
    assert worker_count(1000, 3) == min(3, usable_cpus())
    assert worker_count(1000, 1000) == usable_cpus()
    assert worker_count(1000, 1000, cap_by_cpus=False) == 1000
    assert worker_count(2, 0) == 1 and worker_count(0, 5) == 1


def _packed(fn, *args) -> WorkerFailure:
    try:
        fn(*args)
    except BaseException as e:  # noqa: B902
        return WorkerFailure(e)
    raise AssertionError("did not raise")


def test_failure_is_reraised_as_itself_with_the_worker_traceback():
    failure = _packed(helpers.fail_on, 3, 3)
    with pytest.raises(ValueError, match="cannot handle 3") as e:
        failure.reraise("export worker (processing c.nii.gz)")
    cause = str(e.value.__cause__)
    assert "in export worker (processing c.nii.gz)" in cause and "Traceback" in cause and "fail_on" in cause

    with pytest.raises(UserError, match="x is broken. Fix it."):
        _packed(helpers.raise_user_error, "x").reraise("worker")

    with pytest.raises(WorkerError, match="Unpicklable in worker: this exception cannot travel") as e:
        _packed(helpers.raise_unpicklable).reraise("worker")
    assert "raise_unpicklable" in str(e.value)
    with pytest.raises(WorkerError, match="SystemExit"):
        _packed(sys.exit, 3).reraise("worker")


def test_watched_pool_results_failures_and_deaths():
    with WatchedPool(2, "worker process", "-np") as pool:
        assert pool.starmap(helpers.square, [(i,) for i in range(10)]) == [i * i for i in range(10)]
        with pytest.raises(ValueError, match="cannot handle 4") as e:
            pool.starmap(helpers.fail_on, [(i, 4) for i in range(6)], names=[f"case_{i}" for i in range(6)])
        assert "worker process (processing case_4)" in str(e.value.__cause__)
    with WatchedPool(2, "worker process", "-np") as pool:
        with pytest.raises(WorkerDiedError) as e:
            pool.starmap(helpers.kill_self_on, [(i, 2) for i in range(4)], names=[f"case_{i}" for i in range(4)])
    assert "was killed by signal 9 (SIGKILL) while processing case_2, probably out of memory: lower -np" \
        in str(e.value)


def test_pools_start_no_more_workers_than_tasks(monkeypatch):
    from nnunetv2.evaluation import _parallel
    from nnunetv2.utilities import case_pool, watched_pool
    sizes = []
    real_init = watched_pool.WatchedPool.__init__

    def recording_init(self, num_processes, *args, **kwargs):
        sizes.append(num_processes)
        real_init(self, num_processes, *args, **kwargs)

    monkeypatch.setattr(watched_pool.WatchedPool, "__init__", recording_init)
    assert _parallel.starmap(helpers.square, [(2,), (3,)], 1000) == [4, 9]
    assert case_pool.run_cases(helpers.square, [(4,), (5,)], ["a", "b"], 1000, "x", False) == [16, 25]
    assert sizes == [min(2, usable_cpus())] * 2


def test_start_worker_keeps_what_it_hands_over_alive():
    """The child unpickles a slow object before the event: the event must still exist when it gets there."""
    context = multiprocessing.get_context("spawn")
    event = context.Event()
    p = start_worker(context, helpers.touch_event, (helpers.SlowToUnpickle(1.0), event))
    del event  # only the process object holds it now (a plain Process would fail: FileNotFoundError, exit code 1)
    p.join(30)
    assert p.exitcode == 0


def _run_script(code: str, tmp_path) -> subprocess.Popen:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(code))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(helpers.__file__)] + sys.path))
    return subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True,
                            preexec_fn=as_from_a_terminal)  # the Ctrl-C tests below: as from a terminal


def _wait_for(path, proc, timeout=60.0):
    start = time.monotonic()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout, "child never got ready"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for a parent that does not reap it counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def test_ctrl_c_while_pool_workers_are_busy(tmp_path):
    """Ctrl-C to the process group of a command whose pool workers are busy (fingerprint, export workers): status 130
    and one line within seconds, no KeyboardInterrupt traceback from the workers, no process left."""
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = _run_script(f"""
        import _worker_helpers as helpers
        from nnunetv2.errors import exit_on_user_error
        from nnunetv2.utilities.case_pool import run_cases

        @exit_on_user_error
        def main():
            run_cases(helpers.mark_and_sleep, [({str(markers)!r}, i, 600) for i in range(4)], list("abcd"), 2, "x",
                      show_progress_bar=False)

        if __name__ == "__main__":
            main()
        """, tmp_path)
    deadline = time.monotonic() + 120
    while len(os.listdir(markers)) < 2:  # both workers are inside a task
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the workers never started their tasks"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)  # a task takes 600 s: the workers were stopped, not waited for
    assert proc.returncode == 130 and err.strip() == "nnU-Net: interrupted.", err
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).stdout.strip():
        assert time.monotonic() < deadline, "processes of the group left behind"
        time.sleep(0.1)


def test_ctrl_c_reaches_the_parent_only_and_orphans_exit(tmp_path):
    """SIGINT to the whole process group (a terminal's Ctrl-C): the worker ignores it, the parent stops it; no
    KeyboardInterrupt traceback from the worker. A worker whose parent is killed with SIGKILL exits by itself."""
    proc = _run_script("""
        import multiprocessing, sys
        import _worker_helpers as helpers
        from nnunetv2.utilities.worker_processes import start_worker
        if __name__ == "__main__":
            p = start_worker(multiprocessing.get_context("spawn"), helpers.sleep_forever, ("ready",))
            print(p.pid, flush=True)
            try:
                p.join()
            except KeyboardInterrupt:
                p.terminate()
                p.join()
                print("exit", p.exitcode, flush=True)
                sys.exit(130)
        """, tmp_path)
    child = int(proc.stdout.readline())
    _wait_for(tmp_path / "ready", proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "exit -15" in out  # the worker was still alive: the parent stopped it
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert _gone(child)

    (tmp_path / "ready").unlink()
    proc = _run_script("""
        import multiprocessing, time
        import _worker_helpers as helpers
        from nnunetv2.utilities.worker_processes import start_worker
        if __name__ == "__main__":
            p = start_worker(multiprocessing.get_context("spawn"), helpers.sleep_forever, ("ready",))
            print(p.pid, flush=True)
            time.sleep(3600)
        """, tmp_path)
    child = int(proc.stdout.readline())
    _wait_for(tmp_path / "ready", proc)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(child)


def test_worker_whose_parent_died_while_it_was_starting_exits(tmp_path):
    """The parent is killed while the worker is still unpickling its arguments, and stays an unreaped zombie (as
    under a test harness or a shell that has not waited yet): the worker must not take it for alive."""
    proc = _run_script("""
        import multiprocessing, os
        import _worker_helpers as helpers
        from nnunetv2.utilities.worker_processes import start_worker
        if __name__ == "__main__":
            p = start_worker(multiprocessing.get_context("spawn"), helpers.sleep_forever,
                             ("ready", helpers.SlowToUnpickle(2.0)))
            print(p.pid, flush=True)
            os._exit(0)
        """, tmp_path)
    child = int(proc.stdout.readline())
    deadline = time.monotonic() + 60
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = _gone(child)
    proc.wait()  # only now: until here the parent was a zombie
    if not gone:
        os.kill(child, signal.SIGKILL)
    assert gone
    assert not (tmp_path / "ready").exists()


_KILL_IDLE_WORKER = textwrap.dedent("""
    import os, signal, sys, time
    import _worker_helpers as helpers
    from nnunetv2.utilities.watched_pool import WatchedPool
    from nnunetv2.utilities.worker_processes import WorkerDiedError

    if __name__ == "__main__":
        victim = int(sys.argv[1])
        with WatchedPool(2, "worker process", "-np") as pool:  # a healthy pool first: results, then a clean exit
            assert pool.starmap(helpers.square, [(i,) for i in range(4)]) == [0, 1, 4, 9]
        unseen = len(sys.argv) > 2  # the death is never looked at: the pool is left as soon as a replacement started
        pool = WatchedPool(1 if victim < 0 else 2, "worker process", "-np")
        if unseen:  # nothing has looked at the workers: the pool only started them
            time.sleep(2)
        else:
            assert pool.starmap(helpers.square, [(i,) for i in range(4)]) == [0, 1, 4, 9]
        # the workers are idle (again): one waits on the task pipe holding its read lock, the other (if any) on that lock
        time.sleep(0.5)
        before = {p.pid for p in pool.pool._pool}
        os.kill(pool.pool._pool[max(victim, 0)].pid, signal.SIGKILL)
        if unseen:
            while {p.pid for p in pool.pool._pool} <= before:
                time.sleep(0.01)
            print("replaced", flush=True)
        else:
            time.sleep(0.5)
        start = time.monotonic()
        try:
            with pool:
                if not unseen:
                    pool.check_workers()
        except WorkerDiedError as e:
            print("died:", e, flush=True)
        print("left after %.1f s" % (time.monotonic() - start), flush=True)
""")


def _run_pool_script(tmp_path, code: str, *args: str) -> str:
    """Run ``code`` (a script using _worker_helpers) with ``args``; its output, or a failure if it hung."""
    script = tmp_path / "pool_script.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(helpers.__file__),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and its workers
        out, _ = proc.communicate()
        pytest.fail(f"the pool did not stop after its worker was killed:\n{out}")
    assert proc.returncode == 0, out
    assert float(out.split("left after ")[1].split()[0]) < 10, out
    return out


@pytest.mark.parametrize("victim", [-1, 0, 1])  # -1: the only worker of a pool of one (surely the lock's holder)
def test_pool_with_a_killed_idle_worker_stops_promptly(tmp_path, victim):
    """An idle worker killed (out of memory) while it holds the task pipe's read lock: leaving the pool used to wait
    for that lock forever (Pool.terminate), and so did the interpreter's exit. Either worker may hold it."""
    out = _run_pool_script(tmp_path, _KILL_IDLE_WORKER, str(victim))
    assert "was killed by signal 9 (SIGKILL)" in out and "probably out of memory: lower -np" in out, out
    assert "while processing" not in out, out  # it had delivered its last task


@pytest.mark.parametrize("victim", [-1, 0])
def test_pool_left_after_an_unnoticed_death_stops_promptly(tmp_path, victim):
    """A worker died and the pool already started its replacement, but nothing checked the workers before the pool
    was left (all results were in): leaving it must not wait for the lock the dead worker held."""
    out = _run_pool_script(tmp_path, _KILL_IDLE_WORKER, str(victim), "unseen")
    assert "replaced" in out and "died:" not in out, out


_DIE_WHILE_SENDING = textwrap.dedent("""
    import time
    import _worker_helpers as helpers
    from nnunetv2.utilities.watched_pool import WatchedPool
    from nnunetv2.utilities.worker_processes import WorkerDiedError

    if __name__ == "__main__":
        start = time.monotonic()
        try:
            with WatchedPool(2, "export worker", "-nps") as pool:
                tasks = [pool.submit(helpers.die_while_sending_a_result, (1,), name="case_1"),
                         pool.submit(helpers.square, (3,), name="case_3")]
                pool.collect(tasks)
        except WorkerDiedError as e:
            print("died:", e, flush=True)
        print("left after %.1f s" % (time.monotonic() - start), flush=True)
""")


def test_pool_whose_worker_died_while_sending_a_result_stops_promptly(tmp_path):
    """Killed in the middle of sending a result: the result pipe's write lock stays taken and the pool's result
    thread waits for the rest of the message forever. The death is reported and the pool (and the process) ends."""
    out = _run_pool_script(tmp_path, _DIE_WHILE_SENDING)
    assert "died: An export worker" in out and "while processing case_1" in out, out
