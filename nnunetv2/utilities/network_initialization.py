"""Weight initialisation applied with ``network.apply(InitWeights_He(...))``."""
from __future__ import annotations

from torch import nn

_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class InitWeights_He(object):
    """Kaiming-normal weights (leaky-ReLU slope ``neg_slope``) and zero biases for (transposed) 2D/3D convs."""

    def __init__(self, neg_slope: float = 1e-2):
        self.neg_slope = neg_slope

    def __call__(self, module: nn.Module) -> None:
        if isinstance(module, _CONVS):
            module.weight = nn.init.kaiming_normal_(module.weight, a=self.neg_slope)
            if module.bias is not None:
                module.bias = nn.init.constant_(module.bias, 0)
