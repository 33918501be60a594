"""Ensembling into TIFF writes each case's spacing side-car CASE.json beside CASE.tif, as the reference does (it
was written under the temporary name of the segmentation and left behind as a hidden file)."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np

from nnunetv2.ensembling.ensemble import ensemble_folders
from _tiny_plans import tiff_label_plans_and_dataset

PLANS, DATASET = tiff_label_plans_and_dataset()


def test_sidecar_beside_each_tiff_and_nothing_hidden_left(tmp_path):
    rng = np.random.default_rng(0)
    inputs = []
    for k in range(2):
        folder = tmp_path / f"in{k}"
        folder.mkdir()
        probabilities = rng.random((2, 3, 4, 5)).astype(np.float32)
        np.savez_compressed(folder / "case.npz", probabilities=probabilities / probabilities.sum(0))
        with open(folder / "case.pkl", "wb") as f:
            pickle.dump({"spacing": [3.0, 1.5, 0.5]}, f)
        inputs.append(str(folder))
    out = tmp_path / "out"
    ensemble_folders(inputs, str(out), num_processes=1, dataset_json_file_or_dict=DATASET,
                     plans_json_file_or_dict=PLANS)
    assert json.loads((out / "case.json").read_text()) == {"spacing": [3.0, 1.5, 0.5]}
    assert os.path.isfile(out / "case.tif")
    leftovers = [n for n in os.listdir(out) if n.startswith(".nnunet_tmp")]
    assert leftovers == []
