"""Cases added to a dataset after splits_final.json was made are in no fold: no fold trains or validates on them,
which the reference never mentions. The training log names them (a warning: cases held out on purpose look the
same); the split itself is used as it is."""
from __future__ import annotations

from _manual_split import record_splits, write_preprocessed

CASES = [f"case_{i:03d}" for i in range(6)]
OLD_SPLIT = [{"train": CASES[:3], "val": CASES[3:4]}, {"train": CASES[1:4], "val": CASES[:1]}]


def test_cases_in_no_fold_are_named_in_the_log(nnunet_dirs, monkeypatch, capsys):
    import nnunetv2.run.run_training as rt
    name = "Dataset984_NewCases"
    splits_file = write_preprocessed(nnunet_dirs["nnUNet_preprocessed"], name, CASES, OLD_SPLIT)
    seen = record_splits(monkeypatch, CASES)
    rt.run_training(name, "3d_fullres", 0, device="cpu")
    assert seen["split"] == (CASES[:3], CASES[3:4])
    out = capsys.readouterr().out
    assert (f"WARNING: 2 preprocessed case(s) are in no fold of {splits_file}, so no fold trains or validates on "
            f"them: case_004, case_005.") in out


def test_no_warning_when_every_case_is_in_a_fold(nnunet_dirs, monkeypatch, capsys):
    import nnunetv2.run.run_training as rt
    name = "Dataset983_AllCases"
    write_preprocessed(nnunet_dirs["nnUNet_preprocessed"], name, CASES[:4], OLD_SPLIT)
    record_splits(monkeypatch, CASES[:4])
    rt.run_training(name, "3d_fullres", 1, device="cpu")
    assert "in no fold" not in capsys.readouterr().out


def test_cases_in_no_fold():
    from nnunetv2.utilities.crossval_split import cases_in_no_fold
    assert cases_in_no_fold(OLD_SPLIT, reversed(CASES)) == ["case_004", "case_005"]
    assert cases_in_no_fold(OLD_SPLIT, CASES[:4]) == []
