"""The environment of a training test on a tiny dataset (one home for the test folders that need it)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def one_process_training_env(monkeypatch, raw, preprocessed, results) -> Iterator[None]:
    """nnUNet_* folders set, augmentation in the main process, one export worker and one torch thread (the test
    machine's cores are shared), no extra trainer folders and no compilation; the thread count is restored after."""
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(preprocessed))
    monkeypatch.setenv("nnUNet_results", str(results))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    monkeypatch.delenv("nnUNet_compile", raising=False)
    import nnunetv2.configuration
    monkeypatch.setattr(nnunetv2.configuration, "default_num_processes", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
