"""Multi-node DDP with a per-node nnUNet_results (not shared): each rank writes its share of the final validation
into its own folder, and rank 0's summary.json silently lacks the other ranks' cases (exit status 0). Rank 0 must
say which predictions are missing and why."""
from __future__ import annotations

from types import SimpleNamespace

from nnunetv2.training.nnUNetTrainer._validation import _warn_about_missing_predictions


def _trainer():
    logged = []
    return SimpleNamespace(dataset_json={"file_ending": ".nii.gz"},
                           print_to_log_file=lambda *a, **k: logged.append((" ".join(map(str, a)), k))), logged


def test_missing_predictions_of_other_ranks_are_reported(tmp_path):
    (tmp_path / "ct_003.nii.gz").write_bytes(b"")
    trainer, logged = _trainer()
    _warn_about_missing_predictions(trainer, str(tmp_path), ["ct_003", "ct_005"])
    assert len(logged) == 1
    text, kwargs = logged[0]
    assert "1 of 2 validation predictions are missing" in text and "ct_005" in text and "ct_003" not in text
    assert "nnUNet_results" in text and kwargs.get("also_print_to_console")


def test_complete_validation_folder_says_nothing(tmp_path):
    for k in ("ct_003", "ct_005"):
        (tmp_path / f"{k}.nii.gz").write_bytes(b"")
    trainer, logged = _trainer()
    _warn_about_missing_predictions(trainer, str(tmp_path), ["ct_003", "ct_005"])
    assert logged == []
