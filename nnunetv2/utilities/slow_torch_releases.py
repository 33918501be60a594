"""PyTorch releases under which nnU-Net's 3-D networks run far slower on CUDA than they should.

PyTorch 2.9.0 stopped using cuDNN for 3-D convolutions (a cuDNN bug), and 2.9.1 uses it again only beside
cuDNN >= 9.15. Without cuDNN a 3-D U-Net falls back to a generic kernel that is many times slower and needs much
more GPU memory, so a training run that should take a day takes a week, with nothing in the log to say why. Our
package metadata excludes torch 2.9 for this reason; this warning is for environments that have it anyway
(conda, --no-deps installs, images with torch preinstalled)."""
from __future__ import annotations

import logging
from typing import Optional

import torch

logger = logging.getLogger(__name__)

_CUDNN_WITH_WORKING_CONV3D = 91500  # torch.backends.cudnn.version() of cuDNN 9.15.0


def slow_conv3d_reason(torch_version: str, cudnn_version: Optional[int]) -> Optional[str]:
    """Why 3-D convolutions on CUDA are slow with this torch / cuDNN pair, or None where they are not."""
    release = torch_version.split('+')[0].split('.')
    if release[:2] != ['2', '9']:
        return None
    patch = release[2] if len(release) > 2 else '0'
    if patch != '0' and cudnn_version is not None and cudnn_version >= _CUDNN_WITH_WORKING_CONV3D:
        return None
    cudnn = 'no cuDNN' if cudnn_version is None else f'cuDNN {cudnn_version}'
    return (f'PyTorch {torch_version} with {cudnn} runs 3-D convolutions on the GPU without cuDNN: 3-D training and '
            f'prediction are several times slower and need more GPU memory. Install torch >= 2.10 (or 2.9.1 with '
            f'cuDNN >= 9.15); nnU-Net excludes torch 2.9 in its requirements for this reason.')


_warned = False


def warn_if_conv3d_is_slow(device: torch.device, spatial_dims: int) -> None:
    """Log the warning above once per process, for a 3-D network on a CUDA device."""
    global _warned
    if _warned or spatial_dims != 3 or torch.device(device).type != 'cuda':
        return
    cudnn_version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    reason = slow_conv3d_reason(torch.__version__, cudnn_version)
    if reason is not None:
        _warned = True
        logger.warning(reason)
