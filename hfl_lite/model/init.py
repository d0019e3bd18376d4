"""The reference code's initialisation of HFL-Net's heads and attention blocks.

The backbone starts from ImageNet (or PyTorch's default initialisation for the narrow CPU
preset); everything after it is initialised as the reference code does:

    every convolution   weight ~ N(0, 0.001^2), bias 0
    every linear layer  weight ~ N(0, 0.01^2),  bias 0
    batch/layer norms   weight 1, bias 0 (PyTorch's default)

With such small weights the Q, K, V projections and the MLP of an attention block are nearly
zero, so each block starts close to the identity (``out = query + attention + MLP ~ query``),
and the heads start with small outputs; batch normalisation rescales what the heads compute
inside, so they still learn at the usual speed. The learnable soft-argmax inverse temperature
(``HandDecoder.beta``) starts at 1.
"""
from __future__ import annotations

from torch import nn

__all__ = ["CONV_STD", "LINEAR_STD", "reference_init_"]

CONV_STD = 0.001
LINEAR_STD = 0.01


def reference_init_(module: nn.Module) -> nn.Module:
    """Re-initialise every convolution, linear and normalisation layer inside ``module`` in
    place (see the module docstring) and return ``module``. Other parameters are untouched."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.normal_(m.weight, std=LINEAR_STD if isinstance(m, nn.Linear) else CONV_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module
