import json
import os

import pytest

from nnunetv2.file_io import TMP_PREFIX, atomic_path, atomic_path_named_by_writer, save_json


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "plans.json"
    save_json({"a": 1}, str(target))
    real_dump = json.dump

    def dump_then_fail(obj, f, **kw):  # a disk that fills up halfway through the write
        f.write('{"partial": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_then_fail)
    with pytest.raises(OSError):
        save_json({"b": 2}, str(target))
    monkeypatch.setattr(json, "dump", real_dump)
    assert json.load(open(target)) == {"a": 1}  # the previous complete file is still there
    assert [f for f in os.listdir(tmp_path) if f.startswith(TMP_PREFIX)] == []


def test_atomic_path_keeps_the_ending(tmp_path):
    with atomic_path(str(tmp_path / "case.nii.gz")) as tmp:
        assert tmp.endswith("case.nii.gz") and os.path.basename(tmp).startswith(TMP_PREFIX)
        open(tmp, "w").write("x")
    assert (tmp_path / "case.nii.gz").read_text() == "x"


def test_save_json_format(tmp_path):
    save_json({"b": 1, "a": [1, 2]}, str(tmp_path / "x.json"))
    assert (tmp_path / "x.json").read_text() == '{\n    "a": [\n        1,\n        2\n    ],\n    "b": 1\n}'


def test_writer_named_file_lands_under_the_name_the_writer_chose(tmp_path):
    """A writer may write another name than asked (SimpleITK: x.nii.gz.nii.gz -> x.nii.gz) and sidecar files (the
    TIFF writer's spacing .json): all of them end up beside the target, nothing temporary stays."""
    (tmp_path / "x.nii.gz").write_text("old")
    with atomic_path_named_by_writer(str(tmp_path / "x.nii.gz.nii.gz")) as tmp:
        assert os.path.basename(tmp) == "x.nii.gz.nii.gz" and os.path.dirname(tmp) != str(tmp_path)
        open(tmp[:-len(".nii.gz")], "w").write("new")
        open(os.path.join(os.path.dirname(tmp), "x.json"), "w").write("{}")
    assert sorted(os.listdir(tmp_path)) == ["x.json", "x.nii.gz"]
    assert (tmp_path / "x.nii.gz").read_text() == "new"


def test_writer_named_file_failure_moves_nothing(tmp_path):
    (tmp_path / "case.tif").write_text("complete")
    with pytest.raises(OSError) as raised:
        with atomic_path_named_by_writer(str(tmp_path / "case.tif")) as tmp:
            open(tmp, "w").write("half")
            open(os.path.join(os.path.dirname(tmp), "case.json"), "w").write("{}")
            raise OSError(28, "No space left on device", tmp)
    assert raised.value.filename == str(tmp_path / "case.tif")  # the user's name, not the temporary one
    assert sorted(os.listdir(tmp_path)) == ["case.tif"] and (tmp_path / "case.tif").read_text() == "complete"


def _sleep_in_child(started, seconds):
    import time
    started.set()
    time.sleep(seconds)


def test_forked_worker_does_not_keep_the_folder_lock(tmp_path):
    """Workers forked while a folder lock is held (augmentation, export) must not hold it on: after the parent lets
    go (or is killed), the next run gets the lock at once, even while those workers still run."""
    import multiprocessing
    from nnunetv2.file_io import folder_lock
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    worker = None
    try:
        with folder_lock(str(tmp_path), "testing", wait=False):
            worker = ctx.Process(target=_sleep_in_child, args=(started, 60))
            worker.start()
        assert started.wait(30)  # the child runs its own code: the fork is behind it
        # the worker still runs; a new acquisition (a new open file) must not be blocked by its inherited copy
        with folder_lock(str(tmp_path), "testing", wait=False):
            assert worker.is_alive()
    finally:
        if worker is not None:
            worker.kill()
            worker.join()


def _lock_then_fork(folder: str):
    from nnunetv2.file_io import folder_lock
    with folder_lock(folder, "testing", wait=False):
        pid = os.fork()
        if pid == 0:
            # the inherited lock descriptor was closed at the fork: this open most likely reuses its number
            return "child", os.open(folder, os.O_RDONLY)
    return "parent", pid


def test_forked_child_unwinding_the_parents_lock_closes_nothing_of_its_own(tmp_path):
    """A plain os.fork() child that leaves the parent's ``with folder_lock`` must not close a descriptor it opened
    itself under the same number (the inherited one was closed at the fork)."""
    marker = tmp_path / "child_ok"
    role, value = _lock_then_fork(str(tmp_path))
    if role == "child":
        code = 1
        try:
            os.fstat(value)  # still open after the with-block was left
            marker.write_text("ok")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(value, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and marker.read_text() == "ok"


def test_a_waiting_lock_says_what_waits_and_where(tmp_path, capsys):
    """The holder may be doing something else in the folder (a training holding its fold folder), so the line
    names the folder and what is waiting, not a guess at what the holder does."""
    import threading
    from nnunetv2.file_io import folder_lock
    held, release = threading.Event(), threading.Event()

    def hold():
        with folder_lock(str(tmp_path), "training or validating this fold", wait=False):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        threading.Timer(0.5, release.set).start()
        with folder_lock(str(tmp_path), "determining the postprocessing"):
            pass
    finally:
        release.set()
        holder.join()
    err = capsys.readouterr().err
    assert f"waiting for another nnU-Net process working in {tmp_path} to finish before determining the " \
           "postprocessing" in err and "training" not in err


def test_json_safe_converts_numpy_dict_keys_too():
    """One JSON-values helper for plans, predictor arguments and postprocessing summaries: NumPy keys (a planner
    keyed by np.int64 labels) become Python keys, or json.dump would refuse them."""
    import json
    import numpy as np
    from nnunetv2.file_io import json_safe
    fixed = json_safe({np.int64(1): (np.float32(0.5), np.arange(2)), 'a': {np.bool_(True): np.int16(3)}})
    assert fixed == {1: [0.5, [0, 1]], 'a': {True: 3}}
    assert [type(k) for k in fixed] == [int, str] and type(next(iter(fixed['a']))) is bool
    assert json.loads(json.dumps(fixed)) == {'1': [0.5, [0, 1]], 'a': {'true': 3}}


def test_finished_files_leave_out_temporaries_and_folders(tmp_path):
    from nnunetv2.file_io import TMP_PREFIX, finished_files
    for name in ("b.nii.gz", "a.nii.gz", f"{TMP_PREFIX}0123456789ab_c.nii.gz", "d.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / "e.nii.gz").mkdir()
    assert finished_files(str(tmp_path)) == ["a.nii.gz", "b.nii.gz", "d.json"]
    assert finished_files(str(tmp_path), ".nii.gz") == ["a.nii.gz", "b.nii.gz"]


def test_a_fork_from_another_thread_while_a_lock_is_being_opened_leaves_the_child_without_it(tmp_path, monkeypatch):
    """Another thread may fork (a pool's worker handler starting a worker) while folder_lock has opened its
    descriptor but not yet registered it (os.open lets other threads run): the child must not keep a copy of that
    descriptor, or it holds the lock on after the parent let go."""
    import threading
    import time
    import nnunetv2.file_io as file_io
    folder = str(tmp_path)
    forked, child = threading.Event(), []
    real_open = os.open

    def fork_now():
        pid = os.fork()
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        child.append(pid)
        forked.set()

    def open_then_let_another_thread_fork(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if path == folder and not child:
            threading.Thread(target=fork_now, daemon=True).start()
            forked.wait(2)  # the fork happens in this window, or (guarded) right after the descriptor is registered
        return fd

    monkeypatch.setattr(file_io.os, "open", open_then_let_another_thread_fork)
    try:
        with file_io.folder_lock(folder, "testing", wait=False):
            # the fork waits for the descriptor to be registered, then comes while the lock is held (without this
            # wait it could come after the lock was let go, and the test would pass whatever the child kept)
            assert forked.wait(30) and child
        monkeypatch.setattr(file_io.os, "open", real_open)
        # BlockingIOError while the child (asleep for 20 s) keeps a copy. Retried for 3 s: a process that another
        # thread of this pytest starts at that moment (subprocess / spawn: fork then exec, no fork hooks) holds
        # copies of every descriptor between its fork and its exec, which on a loaded machine took long enough for
        # one attempt to fail once in a full CI run
        deadline = time.monotonic() + 3
        while True:
            try:
                with file_io.folder_lock(folder, "testing", wait=False):
                    break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        for pid in child:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


def test_writer_path_in_a_missing_folder_names_the_file_asked_for(tmp_path):
    target = tmp_path / "no_such_folder" / "case.nii.gz"
    with pytest.raises(FileNotFoundError) as e:  # was: the temporary folder's name (.nnunet_tmp_...)
        with atomic_path_named_by_writer(str(target)):
            pass
    assert e.value.filename == str(target)
    assert TMP_PREFIX not in str(e.value)
