"""The training's error for a preprocessed folder without dataset.json names a command that writes it.

nnUNetv2_preprocess does not copy dataset.json (it needs it itself, and says to run nnUNetv2_plan_experiment), so
the training's hint must not send the user there. This happens after nnUNetv2_move_plans_between_datasets, which
writes only the plans."""
import json
import os

import pytest

from nnunetv2.errors import UserError
from nnunetv2.run.run_training import _load_plans_and_dataset_json


def test_missing_dataset_json_hint_names_plan_experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    folder = tmp_path / "Dataset006_Other"
    folder.mkdir()
    (folder / "nnUNetPlans_X.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}}))
    with pytest.raises(UserError) as e:
        _load_plans_and_dataset_json("Dataset006_Other", "nnUNetPlans_X", "3d_fullres")
    msg = str(e.value)
    assert os.path.join(str(folder), "dataset.json") in msg
    assert "nnUNetv2_plan_experiment" in msg
    assert "nnUNetv2_preprocess -d" not in msg
