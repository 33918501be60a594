"""A preprocessed dataset that exists only as plans, dataset.json and a hand-written splits_final.json, and a
run_training whose trainer only computes its split: for the tests of how nnUNetv2_train takes a fold from such a
file (tests/run is on sys.path while its tests run)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence

from _tiny_plans import tiny_unet_plans


def stub_dataset_class(cases: Sequence[str]):
    """Stands in for the preprocessed dataset: only the case identifiers matter for the split."""

    class StubDataset:
        def __init__(self, folder, identifiers=None, folder_with_segs_from_previous_stage=None):
            self.identifiers = sorted(identifiers if identifiers is not None else cases)

        @staticmethod
        def get_identifiers(folder):
            return list(cases)

    return StubDataset


def write_preprocessed(pre: Path, name: str, cases: Sequence[str], splits: List[dict]) -> Path:
    """Plans, dataset.json and ``splits`` as splits_final.json of dataset ``name``; returns the splits file."""
    d = pre / name
    d.mkdir(parents=True)
    (d / "nnUNetPlans.json").write_text(json.dumps(tiny_unet_plans(name)))
    (d / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MR"}, "labels": {"background": 0, "fg": 1},
                                                "numTraining": len(cases), "file_ending": ".nii.gz"}))
    (d / "splits_final.json").write_text(json.dumps(splits))
    return d / "splits_final.json"


def record_splits(monkeypatch, cases: Sequence[str]) -> dict:
    """run_training's trainer computes its split (into the returned dict: 'fold', 'split') instead of training."""
    import nnunetv2.run.run_training as rt
    seen = {}

    def fake_train(trainer, *args):
        trainer.dataset_class = stub_dataset_class(cases)
        seen["fold"] = trainer.fold
        seen["split"] = trainer.do_split()
        trainer.get_tr_and_val_datasets()  # what the training sets up from the split

    monkeypatch.setattr(rt, "_train_in_this_process", fake_train)
    return seen
