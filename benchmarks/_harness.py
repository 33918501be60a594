"""Shared benchmark plumbing: run a command, measure wall time and the peak RSS of its whole process tree, and find
(or create) a virtual environment with the reference nnU-Net v2 2.8.1 for side-by-side runs."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

REFERENCE_VERSION = "2.8.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checkout_warnings(repo: str = REPO, pythonpath: Optional[str] = None) -> List[str]:
    """Why a side-by-side run might not compare this checkout with the reference: our side runs the installed
    console scripts, which import the installed nnunetv2 (an editable install of another clone times that clone),
    and the reference's interpreter inherits PYTHONPATH (an nnunetv2 on it would replace the reference)."""
    import importlib.util
    warnings = []
    spec = importlib.util.find_spec("nnunetv2")
    installed = os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else None
    if installed is None or os.path.realpath(installed) != os.path.realpath(repo):
        warnings.append(f"the installed nnunetv2 is {installed or 'missing'}, not this checkout ({repo}): our side "
                        f"would time that one; run 'pip install -e {repo}' first")
    pythonpath = os.environ.get("PYTHONPATH", "") if pythonpath is None else pythonpath
    shadowing = [d for d in pythonpath.split(os.pathsep)
                 if d and os.path.isfile(os.path.join(d, "nnunetv2", "__init__.py"))]
    if shadowing:
        warnings.append(f"PYTHONPATH holds an nnunetv2 ({', '.join(shadowing)}); the reference's interpreter would "
                        f"import it instead of nnU-Net 2.8.1: unset PYTHONPATH")
    return warnings


for _warning in checkout_warnings():
    sys.stderr.write(f"WARNING: {_warning}\n")


@dataclass
class Measurement:
    wall_s: float
    peak_rss_mb: float
    returncode: int


def _children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _tree_rss_kb(root: int) -> int:
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
        stack += _children(pid)
    return total


def measure(cmd: List[str], env: Dict[str, str], cwd: Optional[str] = None, poll_s: float = 0.05,
            memory: bool = True) -> Measurement:
    """Run ``cmd``; report wall time and the peak summed RSS of the process and all its descendants
    (``memory=False``: wall time only, peak 0, no polling thread taking CPU from the run)."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def poll():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kb(proc.pid))
            time.sleep(poll_s)

    t = threading.Thread(target=poll, daemon=True)
    if memory:
        t.start()
    _, err = proc.communicate()
    done.set()
    if memory:
        t.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-3000:])
    return Measurement(wall, peak / 1024, proc.returncode)


def reference_python(explicit: Optional[str], venv_dir: str) -> str:
    """Python of an environment with the reference installed: ``explicit`` if given, else ``venv_dir`` (created with
    ``--system-site-packages`` and ``pip install nnunetv2==2.8.1`` on first use)."""
    if explicit:
        return explicit
    python = os.path.join(venv_dir, "bin", "python")
    if not os.path.isfile(python):
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv_dir], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", f"nnunetv2=={REFERENCE_VERSION}"], check=True)
    return python


def console_script(python: str, name: str) -> str:
    """Path of console script ``name`` installed next to ``python``."""
    return os.path.join(os.path.dirname(python), name)


def our_console_script(name: str) -> str:
    """Our console script ``name``: the one next to this interpreter where it exists (as the reference's is called),
    not a wrapper found on PATH first (pyenv's shims run bash and pyenv before python: ~0.1 s per call)."""
    import shutil
    own = console_script(sys.executable, name)
    return own if os.path.isfile(own) else (shutil.which(name) or name)


def report(rows: List[tuple]) -> None:
    """Print a table: (label, ours Measurement, reference Measurement)."""
    print(f"{'case':<34}{'ours s':>9}{'ref s':>9}{'ratio':>8}{'ours MB':>10}{'ref MB':>10}{'ratio':>8}")
    for label, ours, ref in rows:
        print(f"{label:<34}{ours.wall_s:>9.1f}{ref.wall_s:>9.1f}{ours.wall_s / ref.wall_s:>8.2f}"
              f"{ours.peak_rss_mb:>10.0f}{ref.peak_rss_mb:>10.0f}{ours.peak_rss_mb / max(ref.peak_rss_mb, 1):>8.2f}")


def default_reference_python() -> Optional[str]:
    """The preinstalled reference environment (``$NNUNET_REFERENCE_PYTHON``, else /opt/nnunet_ref) if it exists;
    None lets ``reference_python`` create a venv with ``pip install nnunetv2==2.8.1``."""
    for candidate in (os.environ.get("NNUNET_REFERENCE_PYTHON"), "/opt/nnunet_ref/bin/python"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


@dataclass
class TreeMeasurement(Measurement):
    peak_pss_mb: float = 0.0  # proportional set size: shared pages (torch libraries, forked memory) counted once


def _tree_pids(root: int) -> List[int]:
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack += _children(pid)
    return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_tree(cmd: List[str], env: Dict[str, str], cwd: Optional[str] = None,
                 poll_s: float = 0.05, memory: bool = True) -> TreeMeasurement:
    """Like ``measure`` but also the peak summed PSS of the process tree. Summed RSS counts pages shared between the
    processes (e.g. torch's libraries in every worker) once per process; PSS splits them, so it is the better
    estimate of the RAM a run really needs when it spawns workers. ``memory=False``: wall time only (peaks 0), with
    no polling thread taking CPU from the run."""
    peak_rss = peak_pss = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def poll():
        nonlocal peak_rss, peak_pss
        while not done.is_set():
            t0 = time.perf_counter()
            peak_rss = max(peak_rss, _tree_rss_kb(proc.pid))
            peak_pss = max(peak_pss, sum(_pss_kb(p) for p in _tree_pids(proc.pid)))
            # smaps_rollup walks every mapping of a process (torch maps many): at a fixed 50 ms this poll took a
            # third of a core from the runs it measures; sleeping 19x its own cost keeps it under 5% of one core
            time.sleep(max(poll_s, 19 * (time.perf_counter() - t0)))

    t = threading.Thread(target=poll, daemon=True)
    if memory:
        t.start()
    _, err = proc.communicate()
    done.set()
    if memory:
        t.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-3000:])
    return TreeMeasurement(wall, peak_rss / 1024, proc.returncode, peak_pss / 1024)


class BackgroundLoad:
    """``n`` busy processes (pure-Python loops, one core each) running while the block runs: the same, reproducible
    competition for the cores for ours and the reference, instead of whatever else happens to run on the machine."""

    def __init__(self, n: int):
        self.n = n
        self.procs: List[subprocess.Popen] = []

    def __enter__(self) -> "BackgroundLoad":
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
