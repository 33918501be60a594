"""documentation/manual_data_splits.md: a user writes their own splits_final.json (here 3 folds) and then runs
``nnUNetv2_train`` as usual. Asking for a fold the file does not have (the habitual 0-4 loop after switching to a
3-fold split, or fold 5 for a single hold-out model) makes the trainer train on a seeded random 80:20 split of
all cases, with a note; nnUNetv2_train must not stop with an error before the trainer is built."""
from __future__ import annotations

import numpy as np

from _manual_split import record_splits, write_preprocessed

CASES = [f"case_{i:03d}" for i in range(10)]
FOLDS = [CASES[0:4], CASES[4:7], CASES[7:10]]


def test_fold_beyond_manual_split_trains_on_seeded_80_20(nnunet_dirs, monkeypatch, capsys):
    import nnunetv2.run.run_training as rt
    name = "Dataset987_ManualSplit"
    write_preprocessed(nnunet_dirs["nnUNet_preprocessed"], name, CASES,
                       [{"train": [c for c in CASES if c not in v], "val": v} for v in FOLDS])
    seen = record_splits(monkeypatch, CASES)
    for fold in (3, 5):
        rt.run_training(name, "3d_fullres", fold, device="cpu")  # must not raise
        tr, val = seen["split"]
        assert seen["fold"] == fold
        assert len(tr) == 8 and len(val) == 2 and not set(tr) & set(val) and set(tr) | set(val) == set(CASES)
        # the seeded choice nnU-Net makes for this fold (the same on every run and machine)
        rnd = np.random.RandomState(seed=12345 + fold)
        idx_tr = rnd.choice(len(CASES), 8, replace=False)
        assert sorted(tr) == sorted(CASES[i] for i in idx_tr)
    # a fold that is in the file still uses the file's split
    rt.run_training(name, "3d_fullres", 1, device="cpu")
    assert sorted(seen["split"][1]) == CASES[4:7]
