"""The benchmark trainers record a crash as 'Not enough VRAM!' and log the exception that caused it."""
from __future__ import annotations

import pytest

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.benchmarking.nnUNetTrainerBenchmark_5epochs import \
    nnUNetTrainerBenchmark_5epochs
from nnunetv2.training.nnUNetTrainer.variants.benchmarking.nnUNetTrainerBenchmark_5epochs_noDataLoading import \
    nnUNetTrainerBenchmark_5epochs_noDataLoading


@pytest.mark.parametrize("cls", [nnUNetTrainerBenchmark_5epochs, nnUNetTrainerBenchmark_5epochs_noDataLoading])
def test_crash_is_logged_with_its_traceback(cls, monkeypatch):
    def fail(self):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED (not a memory problem)")

    # the benchmark trainers need CUDA to be constructed; only the crash handling is under test here
    monkeypatch.setattr(nnUNetTrainer, "run_training", fail)
    monkeypatch.setattr(nnUNetTrainer, "on_train_start", fail)
    trainer = object.__new__(cls)
    trainer.crashed_with_runtime_error = False
    logged, ended = [], []
    trainer.print_to_log_file = lambda *args, **kwargs: logged.append(" ".join(str(a) for a in args))
    trainer.on_train_end = lambda: ended.append(trainer.crashed_with_runtime_error)
    trainer.run_training()
    assert ended == [True]  # the result file says 'Not enough VRAM!'
    assert len(logged) == 1
    assert "Not enough VRAM!" in logged[0] and "CUDNN_STATUS_NOT_SUPPORTED" in logged[0]
    assert "Traceback" in logged[0] and "in fail" in logged[0]
