"""The reference's synthetic raw datasets, regenerated on demand (import by name: tests/ is on sys.path).

Never import helpers from a ``conftest`` module: several folders have one and the name is ambiguous.
"""
from __future__ import annotations

import os
from pathlib import Path


GOLDEN_DATASETS = ("Dataset901_SynthCT3D", "Dataset902_SynthMRRegions", "Dataset903_SynthNatural2D",
                   "Dataset904_SynthSparse3D", "Dataset905_SynthBig3D")


def _golden_cache_root() -> Path:
    return Path(os.environ.get("NNUNET_TEST_CACHE", Path.home() / ".cache" / "nnunetv2_tests")) / "golden_raw"


def generate_golden_raw(shared: Path, dataset: str) -> Path:
    """Recreate one reference raw dataset with ../shared/tools (cached across test runs; file-locked)."""
    import fcntl
    import subprocess

    root = _golden_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / dataset
    done_marker = root / f".{dataset}.done"
    with open(root / f".{dataset}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done_marker.exists():
            import shutil
            shutil.rmtree(target, ignore_errors=True)
            ref = shared / "reference" / dataset
            subprocess.run(["bash", "generate.sh"], cwd=ref, check=True, env=dict(os.environ, nnUNet_raw=str(root)),
                           capture_output=True)
            done_marker.touch()
    return target
