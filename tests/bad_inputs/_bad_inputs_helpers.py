"""What every bad-input case asserts: a non-zero exit, no traceback, one 'nnU-Net error:' line naming the file or
key, the inputs byte-identical afterwards, and no final output file that does not load."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np

from nnunetv2.file_io import TMP_PREFIX
from _kill9 import load_file  # one loader for "this file is complete" checks


BASE_ID = 771
BASE_NAME = "Dataset771_BadBase"

PLANS = {"dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "label_manager": "LabelManager", "configurations": {}, "transpose_forward": [0, 1, 2],
         "transpose_backward": [0, 1, 2]}
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 1,
                "file_ending": ".nii.gz"}
PROPS = {"sitk_stuff": {"spacing": (1.0, 1.0, 2.0), "origin": (0.0, 0.0, 0.0),
                        "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, "spacing": [2.0, 1.0, 1.0]}


def write_prediction_folder(folder: Path, seed: int, cases=("c0", "c1"), segmentations: bool = True) -> Path:
    """What ``nnUNetv2_predict --save_probabilities`` leaves: .npz + .pkl (+ segmentation) per case, plans.json,
    dataset.json and the predictor's marker file."""
    import SimpleITK as sitk
    folder.mkdir(parents=True)
    rs = np.random.RandomState(seed)
    for c in cases:
        p = rs.rand(3, 4, 5, 6).astype(np.float32)
        p /= p.sum(0, keepdims=True)
        np.savez_compressed(folder / f"{c}.npz", probabilities=p)
        (folder / f"{c}.pkl").write_bytes(pickle.dumps(PROPS))
        if segmentations:
            img = sitk.GetImageFromArray(p.argmax(0).astype(np.uint8))
            img.SetSpacing(PROPS["sitk_stuff"]["spacing"])
            sitk.WriteImage(img, str(folder / f"{c}.nii.gz"))
    (folder / "plans.json").write_text(json.dumps(PLANS))
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    (folder / "predict_from_raw_data_args.json").write_text("{}")
    return folder


def pp_pickle(path: Path) -> Path:
    from nnunetv2.postprocessing.remove_connected_components import \
        remove_all_but_largest_component_from_segmentation as fn
    path.write_bytes(pickle.dumps(([fn], [{"labels_or_regions": [1, 2]}])))
    return path


def run_entry(entry: Callable, argv: Sequence[str], capsys) -> Tuple[int, str]:
    """Call a console entry point in this process as the shell would (sys.argv); (exit status, stderr)."""
    old = sys.argv
    sys.argv = ["nnUNetv2_x", *map(str, argv)]
    capsys.readouterr()
    try:
        entry()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


def run_console(command: Sequence[str], env: Dict[str, str], timeout: int = 300) -> Tuple[int, str]:
    """Run an installed console script as a subprocess; (exit status, stdout + stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    full_env.update(env)
    p = subprocess.run(list(map(str, command)), env=full_env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("nnU-Net error:")]
    assert len(lines) == 1, f"expected exactly one 'nnU-Net error:' line, got:\n{output[-3000:]}"
    return lines[0]


def assert_clean_failure(code: int, output: str, *must_name: str) -> str:
    """Non-zero exit, no traceback, one error line that contains every string of ``must_name``."""
    assert code not in (0, None), f"the command succeeded:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-5000:]
    line = error_line(output)
    for s in must_name:
        assert str(s) in line, f"{s!r} not named in: {line}"
    return line


class Snapshot:
    """sha256 of every file (and link target) under some paths, to prove a failed command changed nothing."""

    def __init__(self, *roots: os.PathLike):
        self.roots = [Path(r) for r in roots]
        self.before = self._take()

    def _take(self) -> Dict[str, str]:
        out = {}
        for root in self.roots:
            paths = [root] if not root.is_dir() or root.is_symlink() else \
                [p for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()]
            for p in paths:
                if p.is_symlink():
                    out[str(p)] = "link:" + os.readlink(p)
                elif p.exists():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out

    def assert_unchanged(self) -> None:
        after = self._take()
        assert after == self.before, {k: (self.before.get(k), after.get(k)) for k in set(after) | set(self.before)
                                      if self.before.get(k) != after.get(k)}


def assert_outputs_load(*folders: os.PathLike) -> List[Path]:
    """Every file under the folders loads, and no temporary file of an atomic write is left."""
    files = []
    for folder in folders:
        if not os.path.exists(folder):
            continue
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                assert not p.name.startswith(TMP_PREFIX), f"temporary file left behind: {p}"
                load_file(p)
                files.append(p)
    return files


def names(paths: Iterable[Path]) -> List[str]:
    return sorted(p.name for p in paths)
