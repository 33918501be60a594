"""A hand-written splits_final.json whose fold to train has an empty 'val' (or 'train') list got as far as the data
loader and stopped with numpy's "ValueError: 'a' cannot be empty unless no samples are taken" (the reference too);
the split is refused up front, naming the file and the fold. Other folds of the same file are not judged."""
from __future__ import annotations

import pytest

from _manual_split import record_splits, write_preprocessed
from nnunetv2.errors import UserError

CASES = [f"case_{i:03d}" for i in range(4)]


@pytest.mark.parametrize("fold, what", [(0, "no validation cases"), (1, "no training cases")])
def test_empty_list_of_the_fold_to_train_is_named(nnunet_dirs, monkeypatch, fold, what):
    import nnunetv2.run.run_training as rt
    name = "Dataset986_EmptyFold"
    splits_file = write_preprocessed(nnunet_dirs["nnUNet_preprocessed"], name, CASES, [
        {"train": CASES, "val": []}, {"train": [], "val": CASES}, {"train": CASES[:3], "val": CASES[3:]}])
    seen = record_splits(monkeypatch, CASES)
    with pytest.raises(UserError) as e:
        rt.run_training(name, "3d_fullres", fold, device="cpu")
    text = e.value.one_line()
    assert f"Fold {fold} has {what}" in text and str(splits_file) in text and "fold 'all'" in text
    # a sound fold of the same file trains
    rt.run_training(name, "3d_fullres", 2, device="cpu")
    assert seen["split"] == (CASES[:3], CASES[3:])


def test_validation_only_needs_no_training_cases(nnunet_dirs, monkeypatch):
    """nnUNetv2_train ... --val splits only to find the validation cases (perform_actual_validation calls do_split):
    a split with an empty 'train' list (a trained model validated on all cases of a dataset) still gives them, as in
    the reference; the training refuses it."""
    import nnunetv2.run.run_training as rt
    from _manual_split import stub_dataset_class
    name = "Dataset985_ValOnly"
    write_preprocessed(nnunet_dirs["nnUNet_preprocessed"], name, CASES, [{"train": [], "val": CASES}])
    seen = {}

    def fake_validation(trainer, *args):
        trainer.dataset_class = stub_dataset_class(CASES)
        seen["split"] = trainer.do_split()

    monkeypatch.setattr(rt, "_train_in_this_process", fake_validation)
    rt.run_training(name, "3d_fullres", 0, device="cpu")
    assert seen["split"] == ([], CASES)
