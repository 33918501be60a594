"""Shared fixtures: isolated nnU-Net data folders, the optional ../shared reference outputs, CUDA skipping, a
deadline for tests of worker processes that could hang."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from golden_data import GOLDEN_DATASETS, generate_golden_raw  # noqa: F401 (tests/ is on sys.path)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("NNUNET_SHARED_DIR", REPO_ROOT.parent / "shared"))

# A suite started in the background by a non-interactive shell (`bash .ci/run &`, nohup in a script) inherits SIGINT
# ignored, and so would every process it starts; our commands then rightly leave Ctrl-C ignored, and the tests of
# Ctrl-C handling would see nothing. Run the tests as a foreground job would.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def deadline():
    """Fail with TimeoutError (instead of hanging the suite) if the test does not finish within 60 s: for tests of
    worker processes, where a defect shows as a wait that never ends. A signal, not a wall-clock assertion, so a
    loaded machine only makes the test slower."""
    def on_alarm(signum, frame):
        raise TimeoutError('hung: the test did not finish within 60 s')
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    """Point nnUNet_raw / nnUNet_preprocessed / nnUNet_results at fresh folders for one test."""
    dirs = {}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        d = tmp_path / name
        d.mkdir()
        monkeypatch.setenv(name, str(d))
        dirs[name] = d
    for v1 in ("nnUNet_raw_data_base", "RESULTS_FOLDER"):
        monkeypatch.delenv(v1, raising=False)
    return dirs


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The reference's golden outputs (../shared). Tests that need them skip cleanly where it is absent."""
    if not (SHARED_DIR / "reference").is_dir():
        pytest.skip(f"golden reference outputs not found at {SHARED_DIR} (set NNUNET_SHARED_DIR)")
    return SHARED_DIR


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing entirely
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def golden_raw(shared_dir):
    """Callable: golden_raw('Dataset901_SynthCT3D') -> Path of the regenerated raw dataset folder."""
    return lambda dataset: generate_golden_raw(shared_dir, dataset)
