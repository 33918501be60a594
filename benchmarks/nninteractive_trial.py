"""Client trial: nnInteractive (PyPI ``nninteractive``) on our nnunetv2, side by side with the reference (2.8.1).

    python nninteractive_trial.py [--work DIR] [--version 2.6.0] [--ref-venv DIR] [--ours-venv DIR]
                                  [--skip-server] [--keep]

Not a test (CI has no nnInteractive and no network). nnInteractive's weights come from HuggingFace (unreachable), so
``_nninteractive_fixture.py`` fabricates two model folders (plans.json, dataset.json, capability metadata,
fold_0/checkpoint_final.pth with seeded random weights; a PlainConvUNet found via the trainer stub fallback and a
ResidualEncoderUNet whose trainer ``nnUNetTrainer`` the session finds in nnunetv2).

* ours: a venv made with ``--system-site-packages`` from this interpreter (which must import our nnunetv2), plus
  ``nninteractive`` and ``nninteractive-client`` ``--no-deps`` and the missing fastapi/uvicorn.
* reference: a plain venv with ``pip install nnunetv2==2.8.1 nninteractive==VERSION``.

On each side (device cpu; the session's default device is cuda, the only CUDA dependency, and ``device=cpu`` is all it
takes): ``_nninteractive_side.py`` runs nnInteractiveInferenceSession through set_image, point (+/-), 2-D and 3-D box,
scribble, lasso with interaction_bbox, undo, reset, initial seg with and without prediction, autozoom off, a second
image, on both models (dense-tensor and blosc2 interaction storage, numpy and torch target buffers), and records every
target buffer and interaction tensor, the returned bboxes, the network and the signatures of every nnunetv2 symbol
nnInteractive touches; ``_nninteractive_server_client.py`` starts ``nninteractive-server --device cpu`` and drives it
with nnInteractiveRemoteInferenceSession. ``_nninteractive_compare.py`` then compares. Exit status 1 on any difference.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_VERSION = "2.8.1"


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def py(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def make_ours(venv: str, version: str, ours_src: str = None) -> None:
    if not os.path.isfile(py(venv)):
        run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    if ours_src:
        site = subprocess.run([py(venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(site, "zz_ours_nnunetv2.pth"), "w") as f:
            f.write(os.path.abspath(ours_src) + "\n")
    probe = subprocess.run([py(venv), "-c", "import nnunetv2; print(nnunetv2.__file__)"], capture_output=True,
                           text=True, cwd=tempfile.gettempdir())
    if probe.returncode != 0:
        sys.exit("this interpreter cannot import our nnunetv2 (an editable install pointing elsewhere?): "
                 + probe.stderr.strip().splitlines()[-1])
    run([py(venv), "-m", "pip", "install", "-q", "--no-deps", f"nninteractive=={version}",
         f"nninteractive-client=={version}"])
    run([py(venv), "-m", "pip", "install", "-q", "fastapi", "uvicorn"])


def make_ref(venv: str, version: str) -> None:
    if not os.path.isfile(py(venv)):
        run(["/usr/bin/env", "python3", "-m", "venv", venv])
    run([py(venv), "-m", "pip", "install", "-q", f"nnunetv2=={REFERENCE_VERSION}", f"nninteractive=={version}"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="default: $TMPDIR/nninteractive_trial, deleted unless --keep")
    ap.add_argument("--ours-src", default=None,
                    help="a checkout whose nnunetv2 the ours venv should import (written as a .pth into the venv), "
                         "for when this interpreter's editable install points elsewhere")
    ap.add_argument("--version", default="2.6.0")
    ap.add_argument("--ref-venv", default=None)
    ap.add_argument("--ours-venv", default=None)
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = os.path.abspath(args.work or os.path.join(tempfile.gettempdir(), "nninteractive_trial"))
    os.makedirs(work, exist_ok=True)
    ref_venv = args.ref_venv or os.path.join(work, "ref_venv")
    ours_venv = args.ours_venv or os.path.join(work, "ours_venv")
    make_ref(ref_venv, args.version)
    make_ours(ours_venv, args.version, args.ours_src)
    for venv, expect in ((ref_venv, ref_venv), (ours_venv, None)):
        # probed outside any checkout: "python -c" would import a nnunetv2 folder in the current directory first
        where = subprocess.run([py(venv), "-c", "import nnunetv2; print(nnunetv2.__file__)"], capture_output=True,
                               text=True, check=True, cwd=work).stdout.strip()
        print(f"{venv}: nnunetv2 from {where}")
        if expect and not where.startswith(os.path.realpath(expect)) and not where.startswith(expect):
            sys.exit("the reference venv does not use its own nnunetv2")
    models = os.path.join(work, "models")
    if not os.path.isdir(models):
        run([py(ref_venv), os.path.join(HERE, "_nninteractive_fixture.py"), models])
    status = 0
    for side, venv in (("ref", ref_venv), ("ours", ours_venv)):  # one after the other: fair timings on a busy box
        t = time.perf_counter()
        with open(os.path.join(work, f"{side}.log"), "w") as log:
            rc = subprocess.run([py(venv), os.path.join(HERE, "_nninteractive_side.py"), models,
                                 os.path.join(work, side)], stdout=log, stderr=subprocess.STDOUT, cwd=work).returncode
        print(f"session side {side}: rc {rc}, {time.perf_counter() - t:.1f} s")
        status |= rc != 0
    status |= subprocess.run([sys.executable, os.path.join(HERE, "_nninteractive_compare.py"),
                              os.path.join(work, "ref"), os.path.join(work, "ours")]).returncode != 0
    if not args.skip_server:
        import numpy as np
        for side, venv, port in (("ref", ref_venv, 18741), ("ours", ours_venv, 18742)):
            rc = subprocess.run([py(venv), os.path.join(HERE, "_nninteractive_server_client.py"),
                                 os.path.join(venv, "bin"), os.path.join(models, "legacy"), str(port),
                                 os.path.join(work, f"server_{side}.npz")], cwd=work).returncode
            print(f"server side {side}: rc {rc}")
            status |= rc != 0
        a, b = np.load(os.path.join(work, "server_ref.npz")), np.load(os.path.join(work, "server_ours.npz"))
        same = [k for k in a.files if k in b.files and np.array_equal(a[k], b[k])]
        print(f"server: {len(same)}/{len(a.files)} arrays identical")
        status |= len(same) != len(a.files)
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print("RESULT:", "differences" if status else "identical")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
