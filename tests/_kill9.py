"""Killing commands at random moments, and what must hold afterwards (the kill suites of preprocess, train, predict
and model install).

A command runs in its own session (process group). At the chosen moment its main process gets SIGKILL (what the
out-of-memory killer or ``kill -9 <pid>`` does) or the whole group gets SIGINT (Ctrl-C at a terminal) or SIGTERM (a
scheduler). Afterwards no process of the group may be left (workers notice that their parent is gone), and every
file under the output folders either loads or carries a temporary name. Re-running the command must then complete
and give what an uninterrupted run gives; the tests check that.

The moments come from ``random.Random(seed)``; the seed is printed (``NNUNET_KILL_SEED`` repeats a run).
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from nnunetv2.file_io import TMP_PREFIX

# names that announce a file or folder as unfinished: atomic writes' temporaries, the installer's staging folder
TEMP_PREFIXES = (TMP_PREFIX, ".nnunet_install_")
GROUP_EXIT_S = 60.0  # a worker whose parent died exits within its poll interval plus the C call it is in


def kill_seed() -> int:
    seed = int(os.environ.get("NNUNET_KILL_SEED", random.SystemRandom().randrange(2 ** 31)))
    print(f"kill moments drawn with NNUNET_KILL_SEED={seed}")
    return seed


@dataclass
class Outcome:
    returncode: Optional[int]
    stdout: str
    stderr: str
    killed: bool            # the signal was sent before the command ended by itself
    seconds: float          # how long the command ran
    left_behind: List[int]  # processes of its group still alive GROUP_EXIT_S after the kill


def _group_members(pgid: int) -> List[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if not _is_zombie(int(p))]


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def describe_group(pgid: int) -> str:
    """Each live process of the group: pid, parent, state, command line and kernel stack (for a hang report)."""
    lines = []
    for pid in _group_members(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300]
            try:
                stack = Path(f"/proc/{pid}/stack").read_text()
            except OSError:
                stack = Path(f"/proc/{pid}/wchan").read_text()
            lines.append(f"pid {pid} ppid {stat[1]} state {stat[0]}: {cmdline}\n{stack}")
        except OSError as e:
            lines.append(f"pid {pid}: {e}")
    return "\n".join(lines)


def as_from_a_terminal() -> None:
    """In the command's process before it runs: Ctrl-C back to its default. pytest started in the background by a
    script (``... &``) ignores SIGINT, and so would the commands: every Ctrl-C kill would then test nothing (status 0
    after a complete run is accepted, as for a Ctrl-C that came when the work was done)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_the_moment(proc: subprocess.Popen, kill_at: Optional[float], kill_when: Optional[Callable[[], bool]],
                         timeout: float) -> bool:
    """Wait for the moment to send the signal: ``kill_at`` seconds after the start, or (``kill_when``) the first
    poll that finds it true. False when the command ended before."""
    if kill_when is None:
        try:
            proc.wait(timeout=kill_at)
            return False
        except subprocess.TimeoutExpired:
            return True
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if kill_when():
            return True
        assert time.monotonic() < deadline, f"the moment to send the signal did not come within {timeout} s"
        time.sleep(0.05)
    return False


def run_command(cmd: Sequence[str], env: Dict[str, str], kill_at: Optional[float] = None,
                sig: int = signal.SIGKILL, whole_group: bool = False, timeout: float = 900,
                kill_when: Optional[Callable[[], bool]] = None) -> Outcome:
    """Run ``cmd``; ``kill_at`` seconds after the start, or as soon as ``kill_when()`` is true, send ``sig`` (to
    the main process, or to the whole group). Waits until the group is gone (up to GROUP_EXIT_S after the signal);
    the rest is reported in ``left_behind`` and then killed, so that nothing outlives the test. A command (or a
    process of its group holding its output) that does not end fails with each process's kernel and Python stacks
    (``env`` with PYTHONFAULTHANDLER=1, as ``command_env`` sets it)."""
    start = time.monotonic()
    proc = subprocess.Popen(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=as_from_a_terminal)
    killed = False
    try:
        if (kill_at is not None or kill_when is not None) and _wait_for_the_moment(proc, kill_at, kill_when,
                                                                                    timeout):
            (os.killpg if whole_group else os.kill)(proc.pid, sig)
            killed = True
        try:
            # after a kill the output pipes close when the last process of the group is gone
            stdout, stderr = proc.communicate(timeout=GROUP_EXIT_S * 5 if killed else timeout)
        except subprocess.TimeoutExpired:
            state, main_status = describe_group(proc.pid), proc.poll()
            with contextlib.suppress(ProcessLookupError):  # the group may have emptied meanwhile
                os.killpg(proc.pid, signal.SIGABRT)  # PYTHONFAULTHANDLER (command_env): Python stacks on stderr
                time.sleep(3)
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            main = "still running" if main_status is None else f"had ended with status {main_status}"
            raise AssertionError(f"{' '.join(cmd)} did not end (signal {sig} sent: {killed}, {kill_at} s after the "
                                 f"start; its main process {main}); its processes:\n{state}\n--- stdout\n"
                                 f"{stdout[-3000:]}\n--- stderr\n{stderr[-20000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    seconds = time.monotonic() - start
    deadline = time.monotonic() + GROUP_EXIT_S
    left = _group_members(proc.pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _group_members(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    return Outcome(proc.returncode, stdout, stderr, killed, seconds, left)


def assert_ran(outcome: Outcome, what: str) -> None:
    assert outcome.returncode == 0, (f"{what} exited {outcome.returncode}\n--- stdout\n{outcome.stdout[-3000:]}\n"
                                     f"--- stderr\n{outcome.stderr[-5000:]}")


# the interpreter's own start, before it handles SIGINT: tens of milliseconds; a silent death later is not excused
STARTING_S = 0.5


def interrupted_while_starting(outcome: Outcome) -> bool:
    """Ctrl-C while the interpreter was still starting or importing the command's module (its first second or so,
    before any of our code runs): the default SIGINT action, or Python's own KeyboardInterrupt traceback. Only the
    main process exists then."""
    stderr = outcome.stderr
    if "Fatal Python error: init_import_site" in stderr:
        return True
    # killed by the signal itself, silently, in the first instant: the interpreter had not yet installed its
    # KeyboardInterrupt handler (seen at 0.045 s); once it has, every SIGINT becomes a traceback or our status 130
    if outcome.returncode == -signal.SIGINT and not stderr.strip() and outcome.seconds < STARTING_S:
        return True
    # numpy turns a Ctrl-C that lands while its C extension initialises into an ImportError (status 1); without a
    # 'sys.exit(' frame that happened while the console script imported the command's module, before our code ran
    if (outcome.returncode == 1 and "Importing the numpy C-extensions failed" in stderr and "sys.exit(" not in stderr
            and stderr.count("Traceback (most recent call last)") <= 2):
        return True
    # a console script imports the entry point's module, then calls it in 'sys.exit(...)'; a KeyboardInterrupt from
    # inside the call would have been turned into status 130 by the entry point. So: the one traceback starts at the
    # script's top level and never reaches 'sys.exit(' (whatever the imported modules run meanwhile, multiprocessing's
    # own modules included); a worker process's traceback would start in multiprocessing's bootstrap instead
    frames = re.findall(r'File "([^"]*)", line \d+, in (\S+)', stderr)
    return (outcome.returncode == -signal.SIGINT and "sys.exit(" not in stderr
            and stderr.count("Traceback (most recent call last)") <= 1
            and bool(frames) and frames[0][1] == "<module>"
            and not any(file.endswith(("multiprocessing/process.py", "multiprocessing/spawn.py",
                                       "multiprocessing/forkserver.py")) for file, _ in frames))


def assert_clean_interruption(outcome: Outcome, expected_status: int, where: str = "") -> None:
    """After SIGINT/SIGTERM to the group: the documented status (or 0: the command had finished its work and was
    exiting), no traceback from any process, nothing left. ``where`` (which kill of which run) leads each message."""
    assert not outcome.left_behind, f"{where}: processes left behind: {outcome.left_behind}"
    if outcome.returncode != expected_status and interrupted_while_starting(outcome):
        return
    assert outcome.returncode in (expected_status, 0), (where, outcome.returncode, outcome.stderr[-5000:])
    assert "Traceback" not in outcome.stderr and "KeyboardInterrupt" not in outcome.stderr, \
        (where, outcome.stderr[-5000:])


def is_temporary(path: Path, root: Path) -> bool:
    return any(part.startswith(TEMP_PREFIXES) for part in path.relative_to(root).parts)


def load_file(path: Path) -> None:
    """Load ``path`` with what its kind is read by; raises if it is truncated or garbage."""
    name = path.name
    if name.endswith(".json"):
        json.loads(path.read_bytes())
    elif name.endswith(".npz"):
        with np.load(path) as f:
            for k in f.files:
                f[k]
    elif name.endswith(".npy"):
        np.load(path)
    elif name.endswith(".pkl"):
        pickle.loads(path.read_bytes())
    elif name.endswith(".b2nd"):
        import blosc2
        blosc2.open(str(path), mode="r")[:]
    elif name.endswith(".pth"):
        import torch
        torch.load(path, map_location="cpu", weights_only=False)
    elif name.endswith((".nii.gz", ".nii", ".mha", ".nrrd")):
        import SimpleITK as sitk
        sitk.ReadImage(str(path))
    elif name.endswith(".png"):
        from PIL import Image
        with Image.open(path) as im:
            im.load()
    elif name.endswith(".zip"):
        import zipfile
        with zipfile.ZipFile(path) as z:
            assert z.testzip() is None


def assert_final_files_load(*folders: Path) -> List[Path]:
    """Every file under ``folders`` that does not carry a temporary name loads; returns the final files."""
    final = []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not is_temporary(p, folder):
                try:
                    load_file(p)
                except Exception as e:  # noqa: BLE001 - the assertion names the file and the error
                    raise AssertionError(f"{p} does not load after a kill: {type(e).__name__}: {e}") from e
                final.append(p)
    return final


def remove_temporaries(*folders: Path) -> None:
    """What a user may delete after a crash (and a re-run ignores anyway)."""
    import shutil
    for folder in folders:
        for p in sorted(Path(folder).rglob("*"), reverse=True):
            if p.exists() and is_temporary(p, Path(folder)) and p.name.startswith(TEMP_PREFIXES):
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def tree_digest(folder: Path, skip: Iterable[str] = ()) -> Dict[str, bytes]:
    """Relative path -> bytes of every final file (temporaries and names in ``skip`` left out)."""
    skip = set(skip)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and not is_temporary(p, Path(folder)) and p.name not in skip}


def command_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", **extra)
    return env


def console_script(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


def assert_same_contents(a: dict, b: dict) -> None:
    """Equal decoded folder contents: values are arrays grouped in a dict or tuple (compared exactly), or plain."""
    assert sorted(a) == sorted(b)
    for name, value in a.items():
        if isinstance(value, dict):
            assert sorted(value) == sorted(b[name]), name
            pairs = [(value[k], b[name][k]) for k in value]
        elif isinstance(value, tuple):
            pairs = list(zip(value, b[name]))
        else:
            assert value == b[name], name
            continue
        for x, y in pairs:
            np.testing.assert_array_equal(x, y, err_msg=name)


def kill_chains(run: Callable[..., Outcome], contents: Callable[[Path], dict], root: Path, n_chains: int,
                kills_per_chain: int, what: str) -> None:
    """Kill a command at random moments and check what a rerun completes.

    ``run(folder, resume, **kill)`` runs the command writing into ``folder`` (``resume``: not the first run there)
    and ``contents(folder)`` decodes its results. An uninterrupted run gives the expected contents and the time
    range. Each chain then runs the command ``kills_per_chain`` times into one folder and stops it at a random
    moment each time: SIGKILL of the main process, or, 30% of the time, Ctrl-C to the process group (status 130,
    no traceback). After every kill no process is left behind and every final file loads. A last uninterrupted
    rerun must give the expected contents."""
    uninterrupted = run(root / "uninterrupted", False)
    assert_ran(uninterrupted, what)
    expected = contents(root / "uninterrupted")
    rng = random.Random(kill_seed())
    for chain in range(n_chains):
        folder = root / f"killed_{chain}"
        shutil.rmtree(folder, ignore_errors=True)
        for k in range(kills_per_chain):
            at = rng.uniform(0.0, uninterrupted.seconds)
            ctrl_c = rng.random() < 0.3
            outcome = run(folder, k > 0, kill_at=at, sig=signal.SIGINT if ctrl_c else signal.SIGKILL,
                          whole_group=ctrl_c)
            where = f"chain {chain}, kill {k} at {at:.1f} s ({'Ctrl-C' if ctrl_c else 'SIGKILL'})"
            if outcome.killed and ctrl_c:
                assert_clean_interruption(outcome, 130)
            assert not outcome.left_behind, f"{where}: processes left behind"
            assert_final_files_load(folder)
        assert_ran(run(folder, True), f"{what} after chain {chain}")
        assert_same_contents(contents(folder), expected)
