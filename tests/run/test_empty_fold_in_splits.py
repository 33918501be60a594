"""A hand-written splits_final.json whose fold to train has an empty 'val' (or 'train') list got as far as the data
loader and stopped with numpy's "ValueError: 'a' cannot be empty unless no samples are taken" (the reference too);
the split is refused up front, naming the file and the fold. Other folds of the same file are not judged."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _tiny_plans import tiny_unet_plans
from nnunetv2.errors import UserError

CASES = [f"case_{i:03d}" for i in range(4)]


class _StubDataset:
    def __init__(self, folder, identifiers=None, folder_with_segs_from_previous_stage=None):
        self.identifiers = sorted(identifiers if identifiers is not None else CASES)

    @staticmethod
    def get_identifiers(folder):
        return list(CASES)


def _write_preprocessed(pre: Path, name: str, splits) -> Path:
    d = pre / name
    d.mkdir(parents=True)
    (d / "nnUNetPlans.json").write_text(json.dumps(tiny_unet_plans(name)))
    (d / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MR"}, "labels": {"background": 0, "fg": 1},
                                                "numTraining": len(CASES), "file_ending": ".nii.gz"}))
    (d / "splits_final.json").write_text(json.dumps(splits))
    return d / "splits_final.json"


@pytest.mark.parametrize("fold, what", [(0, "no validation cases"), (1, "no training cases")])
def test_empty_list_of_the_fold_to_train_is_named(nnunet_dirs, monkeypatch, fold, what):
    import nnunetv2.run.run_training as rt
    name = "Dataset986_EmptyFold"
    splits_file = _write_preprocessed(nnunet_dirs["nnUNet_preprocessed"], name, [
        {"train": CASES, "val": []}, {"train": [], "val": CASES}, {"train": CASES[:3], "val": CASES[3:]}])
    seen = {}

    def fake_train(trainer, *args):
        trainer.dataset_class = _StubDataset
        seen["split"] = trainer.do_split()

    monkeypatch.setattr(rt, "_train_in_this_process", fake_train)
    with pytest.raises(UserError) as e:
        rt.run_training(name, "3d_fullres", fold, device="cpu")
    text = e.value.one_line()
    assert f"Fold {fold} has {what}" in text and str(splits_file) in text and "fold 'all'" in text
    # a sound fold of the same file trains
    rt.run_training(name, "3d_fullres", 2, device="cpu")
    assert seen["split"] == (CASES[:3], CASES[3:])
