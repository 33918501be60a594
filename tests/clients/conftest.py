"""Client-compatibility tests: the reference-trained golden models, installed the way tests/inference does."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))  # _inference_golden (one home)
from _inference_golden import model_folder, safe_extract  # noqa: E402


@pytest.fixture(scope="module")
def golden_model_dir(shared_dir, tmp_path_factory):
    """Callable: golden_model_dir('Dataset903_SynthNatural2D') -> its trained model folder in a fresh
    nnUNet_results (nnUNet_* variables set for the test module)."""
    root = tmp_path_factory.mktemp("client_models")
    mp = pytest.MonkeyPatch()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir()
        mp.setenv(name, str(root / name))

    def install(dataset: str) -> Path:
        if not model_folder(root / "nnUNet_results", dataset).is_dir():
            safe_extract(next((shared_dir / "reference" / "models" / dataset).glob("*.zip")), root / "nnUNet_results")
        return model_folder(root / "nnUNet_results", dataset)

    yield install
    mp.undo()
