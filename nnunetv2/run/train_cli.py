"""The ``nnUNetv2_train`` console script: ``run_training.run_training_entry`` in a command's process (OpenMP
threads that sleep while waiting, see utilities.console_command), set up before ``run_training`` imports torch.
Called from Python, ``run_training.run_training_entry`` is the entry point, as in the reference."""
from __future__ import annotations

import argparse

from nnunetv2.errors import exit_on_user_error
from nnunetv2.utilities.console_command import as_command, import_with_ctrl_c_deferred


def run_training_entry_parser() -> argparse.ArgumentParser:
    from nnunetv2.run import run_training
    return run_training.run_training_entry_parser()


@exit_on_user_error
def _import_training() -> None:
    """torch, numpy and the trainer's augmentation libraries, with a Ctrl-C during them handled right after."""
    import_with_ctrl_c_deferred('nnunetv2.run.run_training', 'nnunetv2.training.nnUNetTrainer.nnUNetTrainer')


def run_training_entry():
    _import_training()
    from nnunetv2.run import run_training
    run_training.run_training_entry()


# training keeps the interpreter's normal exit: distributed ranks and their process groups shut down through it
run_training_entry = as_command(run_training_entry, quick_exit=False)
