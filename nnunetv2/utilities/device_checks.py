"""Is the torch device a command or a predictor was asked for there at all? One line saying so instead of torch's
traceback from deep inside the first copy to it (e.g. "Found no NVIDIA driver" from pinning memory)."""
from __future__ import annotations

import torch

from nnunetv2.errors import UserError


def _mps_available() -> bool:
    return hasattr(torch.backends, 'mps') and torch.backends.mps.is_available()


def require_available(device: torch.device, requested_as: str, hint_cpu: str) -> None:
    """Raise a ``UserError`` if ``device`` (cuda or mps) is not available to this PyTorch. ``requested_as`` names how
    the user asked for it (``-device cuda``, ``nnUNetPredictor(device=cuda)``); ``hint_cpu`` how to ask for the CPU
    instead."""
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError(f"{requested_as} was requested but no CUDA GPU is available to PyTorch.",
                        f"{hint_cpu} (slow), or check the GPU driver, CUDA_VISIBLE_DEVICES and that the installed "
                        f"torch is a CUDA build.")
    if device.type == 'mps' and not _mps_available():
        raise UserError(f"{requested_as} was requested but Apple MPS is not available to PyTorch.",
                        f"{hint_cpu}, or use cuda on a machine with an NVIDIA GPU.")
