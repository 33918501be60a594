"""What the client trials (totalsegmentator_trial.py, hdbet_trial.py, moose_trial.py, segforge_trial.py, ...) share:
installing a client into an environment beside ours or the reference, and comparing the output files both sides
wrote."""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterable, List, Optional, Tuple

# the one way of telling which requirements of a client are missing: those not installed, minus the skipped ones
_MISSING_REQUIREMENTS = (
    "import importlib.metadata as m, re, sys\n"
    "skip = set(sys.argv[2:])\n"
    "for r in m.requires(sys.argv[1]) or []:\n"
    "    if ';' in r: continue\n"
    "    name = re.split(r'[<>=!~ \\[]', r, 1)[0]\n"
    "    if name.lower() in skip: continue\n"
    "    try: m.version(name)\n"
    "    except m.PackageNotFoundError: print(r)\n")
_VERSION = ("import importlib.metadata as m, sys\n"
            "try:\n    print(m.version(sys.argv[1]))\nexcept m.PackageNotFoundError:\n    print('')\n")
# a DICOM SEG has random UIDs: its pixel data and segment labels are what must agree (read with pydicom)
_DICOM_SEG = ("import sys, numpy as np, pydicom\n"
              "x, y = (pydicom.dcmread(f) for f in sys.argv[1:])\n"
              "if not np.array_equal(x.pixel_array, y.pixel_array): print('DICOM SEG pixel data differs')\n"
              "lx, ly = ([s.SegmentLabel for s in d.SegmentSequence] for d in (x, y))\n"
              "if lx != ly: print(f'DICOM SEG segments differ: {lx} vs {ly}')\n")


def run(cmd: List[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def pip(python: str, *args: str) -> None:
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args])


def make_venv(path: str, system_site_packages: bool = True) -> str:
    """A venv at ``path`` (kept if it exists) from this interpreter; its python."""
    python = os.path.join(path, "bin", "python")
    if not os.path.isfile(python):
        run([sys.executable, "-m", "venv", *(["--system-site-packages"] if system_site_packages else []), path])
    return python


def nnunetv2_location(python: str, cwd: str, env: Optional[dict] = None) -> str:
    """The folder of the nnunetv2 that ``python`` imports ('' if none)."""
    return subprocess.run([python, "-c", "import os, nnunetv2; print(os.path.dirname(nnunetv2.__file__))"],
                          cwd=cwd, capture_output=True, text=True, env=env).stdout.strip()


def installed_version(python: str, distribution: str, cwd: str) -> str:
    return subprocess.run([python, "-c", _VERSION, distribution], capture_output=True, text=True, check=True,
                          cwd=cwd).stdout.strip()


def install_client(python: str, distribution: str, version: str, cwd: str, skipped: Iterable[str]) -> None:
    """``distribution==version`` without its dependencies, then those of them that are missing, except
    ``skipped`` (nnunetv2 always: ours or the reference comes from elsewhere)."""
    if installed_version(python, distribution, cwd) != version:
        pip(python, "--no-deps", f"{distribution}=={version}")
    missing = missing_requirements(python, distribution, cwd, skipped)
    if missing:
        pip(python, *missing)


def missing_requirements(python: str, distribution: str, cwd: str, skipped: Iterable[str] = ()) -> List[str]:
    """The requirements of the installed ``distribution`` that ``python`` lacks, one pip argument each (a requirement
    may hold spaces: Poetry writes ``TPTBox (>=1.0.0,<2.0.0)``), except ``skipped`` and nnunetv2."""
    skip = sorted({"nnunetv2", *(s.lower() for s in skipped)})
    said = subprocess.run([python, "-c", _MISSING_REQUIREMENTS, distribution, *skip], capture_output=True,
                          text=True, check=True, cwd=cwd).stdout
    return [line.strip() for line in said.splitlines() if line.strip()]


def output_files(root: str, ignore: Iterable[str] = ()) -> List[str]:
    """Paths under ``root`` relative to it, sorted ([''] where ``root`` is a file)."""
    if os.path.isfile(root):
        return [""]
    ignored = set(ignore)
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                  if f not in ignored)


def same_value(a, b) -> bool:
    """Properties equal in value: arrays element for element, numpy scalars as Python numbers (also as dict keys)."""
    import numpy as np
    if isinstance(a, dict) and isinstance(b, dict):
        ka = {(k.item() if isinstance(k, np.generic) else k): v for k, v in a.items()}
        kb = {(k.item() if isinstance(k, np.generic) else k): v for k, v in b.items()}
        return ka.keys() == kb.keys() and all(same_value(ka[k], kb[k]) for k in ka)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b)) and np.asarray(a).dtype == np.asarray(b).dtype
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def same_output(a: str, b: str, dicom_python: str = sys.executable) -> Optional[str]:
    """None if the two output files are equal, else what differs. NIfTI: voxels, dtype, affine, header bytes and
    extensions; JSON: content; npz: every array; pkl: values (same_value); b2nd: array, dtype, chunks and blocks;
    DICOM SEG: pixel data and segment labels; else bytes."""
    import numpy as np
    if a.endswith(".pkl"):
        import pickle
        with open(a, "rb") as f, open(b, "rb") as g:
            return None if same_value(pickle.load(f), pickle.load(g)) else "pickled values differ"
    if a.endswith(".b2nd"):
        import blosc2
        x, y = blosc2.open(a, mode="r"), blosc2.open(b, mode="r")
        if (x.shape, x.dtype, x.chunks, x.blocks) != (y.shape, y.dtype, y.chunks, y.blocks):
            return f"shape/dtype/chunks/blocks {x.shape} {x.dtype} {x.chunks} {x.blocks} vs " \
                   f"{y.shape} {y.dtype} {y.chunks} {y.blocks}"
        return None if np.array_equal(x[...], y[...]) else "array values differ"
    if a.endswith((".nii", ".nii.gz")):
        import nibabel as nib
        x, y = nib.load(a), nib.load(b)
        X, Y = np.asarray(x.dataobj), np.asarray(y.dataobj)
        if X.shape != Y.shape or X.dtype != Y.dtype:
            return f"shape/dtype {X.shape} {X.dtype} vs {Y.shape} {Y.dtype}"
        if not np.array_equal(X, Y):
            return f"{int((X != Y).sum())} of {X.size} voxels differ"
        if not np.array_equal(x.affine, y.affine) or x.header.binaryblock != y.header.binaryblock:
            return "header/affine differ"
        if [e.get_content() for e in x.header.extensions] != [e.get_content() for e in y.header.extensions]:
            return "header extensions differ"
        return None
    if a.endswith(".dcm"):
        said = subprocess.run([dicom_python, "-c", _DICOM_SEG, a, b], capture_output=True, text=True)
        return (said.stdout + said.stderr).strip() or None
    if a.endswith(".json"):
        with open(a) as f, open(b) as g:
            return None if json.load(f) == json.load(g) else "JSON content differs"
    if a.endswith(".npz"):
        x, y = np.load(a), np.load(b)
        if sorted(x.files) != sorted(y.files):
            return "npz keys differ"
        bad = []
        for k in x.files:
            if x[k].shape != y[k].shape or x[k].dtype != y[k].dtype:
                bad.append(f"{k}: {x[k].shape} {x[k].dtype} vs {y[k].shape} {y[k].dtype}")
            elif not np.array_equal(x[k], y[k]):
                d = np.abs(x[k].astype(np.float64) - y[k].astype(np.float64))
                bad.append(f"{k}: {int((d > 0).sum())} differ, max {d.max():.3g}")
        return f"npz arrays differ: {bad}" if bad else None
    return None if filecmp.cmp(a, b, shallow=False) else "bytes differ"


def compare_outputs(ours: str, ref: str, ignore: Iterable[str] = (), dicom_python: str = sys.executable) -> List[str]:
    """What differs between the outputs under ``ours`` and ``ref`` (files or folders); empty if nothing."""
    problems = []
    names_ours, names_ref = output_files(ours, ignore), output_files(ref, ignore)
    if names_ours != names_ref:
        problems.append(f"files differ: only ours {sorted(set(names_ours) - set(names_ref))[:5]}, "
                        f"only reference {sorted(set(names_ref) - set(names_ours))[:5]}")
    for name in sorted(set(names_ours) & set(names_ref)):
        problem = same_output(os.path.join(ours, name), os.path.join(ref, name), dicom_python)
        if problem:
            problems.append(f"{name or os.path.basename(ours)}: {problem}")
    return problems


def notable_lines(text: str, ignore: Iterable[str] = ()) -> List[str]:
    """Lines that mention a warning, an error or a traceback (log timestamps dropped), except the FutureWarning the
    reference's import of torch.jit prints and lines containing one of ``ignore``."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines()]
    skipped = ("torch.jit.interface", *ignore)
    return [line[line.find(" - ") + 3:] if line[:2].isdigit() and " - " in line else line
            for line in lines if any(w in line.lower() for w in ("warn", "error", "traceback"))
            and not any(s in line for s in skipped) and line != "warnings.warn("]


def exit_problems(rc: int, text: str, ref_rc: Optional[int] = None, ref_text: str = "") -> List[str]:
    """A line per side that exited non-zero, with the last line it printed (no reference run: ``ref_rc`` None)."""
    problems = []
    for side, code, said in (("ours", rc, text), ("reference", ref_rc, ref_text)):
        if code is not None and code != 0:
            problems.append(f"{side} exit {code}: {said.strip().splitlines()[-1:]}")
    return problems


def printed_only_by_ours(text: str, ref_text: str, limit: int = 3, ignore: Iterable[str] = ()) -> List[str]:
    reference_lines = set(notable_lines(ref_text, ignore))
    return [f"only ours printed: {line}" for line in notable_lines(text, ignore)
            if line not in reference_lines][:limit]


def run_step(cmd: List[str], env: dict, folder: str) -> Tuple[int, float, str, str]:
    """One step of a case, run in ``folder``: (exit status, seconds, stderr, stdout). Both streams are also appended
    to ``folder``/stdout.txt and stderr.txt, which the trials leave out of the file comparison."""
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    for name, text in (("stdout.txt", p.stdout), ("stderr.txt", p.stderr)):
        with open(os.path.join(folder, name), "a") as f:
            f.write(text)
    return p.returncode, seconds, p.stderr, p.stdout


def print_header(cases: Iterable[str]) -> int:
    """The result table's header; the width of its case column."""
    width = max(len(n) for n in cases) + 2
    print(f"{'case':<{width}}{'ours s':>8}{'ref s':>8}  result", flush=True)
    return width


def print_case(name: str, width: int, wall: float, ref_wall: Optional[float], verdict: str,
               lines: Iterable[str] = ()) -> None:
    """One row of the result table (``ref_wall`` None: no reference run), then its remarks indented."""
    print(f"{name:<{width}}{wall:>8.1f}{'-' if ref_wall is None else f'{ref_wall:.1f}':>8}  {verdict}", flush=True)
    for line in lines:
        print(f"{'':<{width + 18}}{line}", flush=True)


def run_sides(sides: Iterable[str], case_index: int, work: str, name: str, run_one) -> dict:
    """Run case ``name`` on every side, alternating which side goes first from case to case (so that neither always
    meets a warm or a cold cache), each into a fresh folder ``work/runs/<side>/<name>``. ``run_one(side, out)``
    returns a tuple; the result maps each side to that tuple plus ``out``."""
    order = list(sides)
    results = {}
    for side in (order if case_index % 2 == 0 else order[::-1]):
        out = os.path.join(work, "runs", side, name)
        shutil.rmtree(out, ignore_errors=True)
        results[side] = (*run_one(side, out), out)
    return results


REFERENCE_VERSION = "2.8.1"

# run console script NAME of the nnunetv2 the interpreter imports (a venv sees both packages' entry points, and ours
# has no scripts of its own in a --system-site-packages venv): the entry point whose function exists there. Use as
# [python, "-c", CONSOLE_SCRIPT.format(name=NAME), *args].
CONSOLE_SCRIPT = (
    "import sys, importlib, importlib.metadata as m\n"
    "sys.argv[0] = '{name}'\n"
    "for e in m.entry_points(group='console_scripts', name='{name}'):\n"
    "    module, _, attr = e.value.partition(':')\n"
    "    f = getattr(importlib.import_module(module), attr, None)\n"
    "    if f is not None:\n"
    "        sys.exit(f())\n"
    "sys.exit('no {name} here')\n")


def trial_parser(description: str, name: str, client: str, version: str,
                 cases: Iterable[str]) -> argparse.ArgumentParser:
    """The arguments every client trial takes (work folder, our checkout, the client's version, venvs, cases, --keep);
    a trial adds its own before calling parse_trial_args."""
    cases = list(cases)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), f"{name}_trial"))
    parser.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        help="checkout of our nnunetv2 (default: this one)")
    parser.add_argument("--version", default=version, help=f"{client} version from PyPI")
    parser.add_argument("--ours-venv", default=None)
    parser.add_argument("--ref-venv", default=None)
    parser.add_argument("--cases", nargs="+", default=cases, choices=cases)
    parser.add_argument("--keep", action="store_true")
    return parser


def parse_trial_args(parser: argparse.ArgumentParser) -> Tuple[argparse.Namespace, str, str]:
    """(arguments, work folder, our checkout), both absolute; the work folder is created, and refused inside the
    checkout (a `python -c` run there would import the checkout's nnunetv2 on the reference's side too)."""
    args = parser.parse_args()
    work, repo = os.path.abspath(args.work), os.path.abspath(args.repo)
    if os.path.commonpath([work, repo]) == repo:
        parser.error("--work must be outside the repository")
    os.makedirs(work, exist_ok=True)
    return args, work, repo


def site_packages(python: str) -> str:
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def ours_venv(path: str, repo: str, work: str) -> str:
    """A venv with this interpreter's packages whose nnunetv2 is ``repo``'s (a .pth file naming ``repo`` is added
    where an install of ours points elsewhere); its python."""
    python = make_venv(path)
    if nnunetv2_location(python, work) != os.path.join(repo, "nnunetv2"):
        with open(os.path.join(site_packages(python), "zz_nnunetv2_checkout.pth"), "w") as f:
            f.write(repo + "\n")
    if nnunetv2_location(python, work) != os.path.join(repo, "nnunetv2"):
        sys.exit(f"{python} does not import {repo}/nnunetv2")
    return python


def reference_venv(path: str, work: str, client: str, version: str, base: Optional[str] = None,
                   skipped: Iterable[str] = ()) -> str:
    """A venv without this interpreter's packages, with the reference and ``client==version`` from PyPI. ``base``:
    the python of an installed reference (e.g. /opt/nnunet_ref/bin/python, same Python version) whose packages the
    venv sees through a .pth file instead; the client then goes in as install_client puts it (``skipped``: its
    requirements left out)."""
    python = make_venv(path, system_site_packages=False)
    if base:
        with open(os.path.join(site_packages(python), "zz_nnunetv2_reference.pth"), "w") as f:
            f.write(site_packages(base) + "\n")
        install_client(python, client, version, work, skipped)
        if nnunetv2_location(python, work) != nnunetv2_location(base, work):
            sys.exit(f"{python} does not import the nnunetv2 of {base}")
        return python
    if installed_version(python, client, work) != version:
        pip(python, f"nnunetv2=={REFERENCE_VERSION}", f"{client}=={version}")
    if not nnunetv2_location(python, work).startswith(path):
        sys.exit(f"{python} does not import its own nnunetv2")
    return python


def end_trial(work: str, keep: bool, failed: bool) -> int:
    """Remove the runs' outputs unless ``keep``; the exit status (1 if any case failed)."""
    if not keep:
        shutil.rmtree(os.path.join(work, "runs"), ignore_errors=True)
    return 1 if failed else 0


def case_problems(results: dict, compare: Callable[[str, str], List[str]], ignore: Iterable[str] = ()) -> List[str]:
    """What went wrong in one case run on both sides (``results``: side -> (exit status, seconds, stderr, output
    folder), as run_sides returns them): non-zero exits; where both succeeded, what ``compare(ours, reference)``
    finds; warnings only ours printed (except lines containing one of ``ignore``)."""
    rc, _, err, out = results["ours"]
    rrc, _, rerr, rout = results["reference"]
    problems = exit_problems(rc, err, rrc, rerr)
    if rc == 0 and rrc == 0:
        problems += compare(out, rout)
    return problems + printed_only_by_ours(err, rerr, ignore=ignore)


def run_trial(cases: List[str], sides: dict, work: str, keep: bool, run_one: Callable[[str, str, str], tuple],
              compare: Callable[[str, str], List[str]], ignore: Iterable[str] = ()) -> int:
    """Every case on both sides (``run_one(case, side, output folder)`` -> (exit status, seconds, stderr)), judged by
    case_problems (``ignore``: warnings of ours that are meant), one table row each; the exit status (1 if any case
    failed)."""
    failed = False
    width = print_header(cases)
    for i, name in enumerate(cases):
        results = run_sides(sides, i, work, name, lambda side, out: run_one(name, side, out))
        problems = case_problems(results, compare, ignore)
        failed |= bool(problems)
        print_case(name, width, results["ours"][1], results["reference"][1], "FAIL" if problems else "identical",
                   problems)
    return end_trial(work, keep, failed)
