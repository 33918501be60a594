"""generate_crossval_split: behaviour and conformance with the reference's splits_final.json."""
import json
import os

import numpy as np
import pytest

from nnunetv2.errors import UserError
from nnunetv2.utilities.crossval_split import generate_crossval_split

GOLDEN_WITH_SPLIT = ["Dataset901_SynthCT3D", "Dataset902_SynthMRRegions", "Dataset903_SynthNatural2D",
                     "Dataset904_SynthSparse3D"]


def _sorted_case_ids(raw_folder) -> list:
    with open(os.path.join(raw_folder, "dataset.json")) as f:
        ending = json.load(f)["file_ending"]
    return sorted(n[:-len(ending)] for n in os.listdir(os.path.join(raw_folder, "labelsTr")) if n.endswith(ending))


def test_split_partitions_every_case():
    ids = [f"c{i:02d}" for i in range(12)]
    splits = generate_crossval_split(ids, seed=1, n_splits=4)
    assert len(splits) == 4
    vals = [v for s in splits for v in s["val"]]
    assert sorted(vals) == ids  # every case validated exactly once
    for s in splits:
        assert sorted(s["train"] + s["val"]) == ids and len(s["val"]) == 3
        assert all(isinstance(v, np.str_) for v in s["train"])  # element type through a numpy array
    assert generate_crossval_split(ids, seed=1, n_splits=4) == splits  # deterministic
    assert generate_crossval_split(ids, seed=2, n_splits=4) != splits


def test_too_few_cases_is_a_clear_error():
    with pytest.raises(UserError) as e:
        generate_crossval_split(["a", "b", "c", "d"])
    msg = str(e.value)
    assert "5-fold" in msg and "4 training case" in msg and "'all'" in msg and "splits_final.json" in msg


@pytest.mark.parametrize("dataset", GOLDEN_WITH_SPLIT)
def test_conformance_with_reference_splits(dataset, shared_dir, golden_raw):
    with open(shared_dir / "reference" / dataset / "splits_final.json") as f:
        expected = json.load(f)
    splits = generate_crossval_split(_sorted_case_ids(golden_raw(dataset)), seed=12345, n_splits=5)
    assert json.loads(json.dumps(splits)) == expected


def test_conformance_dataset905_cannot_be_split(shared_dir, golden_raw):
    ids = _sorted_case_ids(golden_raw("Dataset905_SynthBig3D"))
    assert len(ids) == 4
    assert "4 training cases" in (shared_dir / "reference" / "Dataset905_SynthBig3D" / "splits_final.ERROR.txt").read_text()
    with pytest.raises(UserError, match="only 4 training case"):
        generate_crossval_split(ids, seed=12345, n_splits=5)
