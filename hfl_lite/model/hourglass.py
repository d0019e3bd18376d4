"""Hourglass network (Newell et al., 2016) with pre-activation bottlenecks, one stack.

An hourglass of depth n on a map ``x [B,C,R,R]``:

    up   = block(x)                                   full resolution branch
    low  = block(maxpool2(x))                         half resolution
    low  = hourglass_{n-1}(low)   (or block(low) when n = 1)
    low  = block(low)
    out  = up + nearest_upsample2(low)

so depth 4 goes down to R/16 (2 x 2 for the paper's 32 x 32 ROIs) and back. Every activation
is a LeakyReLU with slope 0.01, as in the reference code (PyTorch's default slope).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Hourglass", "HourglassHead", "LEAKY_SLOPE", "PreActBottleneck"]

LEAKY_SLOPE = 0.01
"""Negative slope of the LeakyReLUs of the hand decoder (hourglass, encoder blocks, FC layers)."""


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: 3 x (BN, LeakyReLU, conv) with ``out/2`` inner channels, plus skip.

    ``[B,in,H,W] -> [B,out,H,W]``; the skip is a 1x1 conv when ``in != out``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.LeakyReLU(LEAKY_SLOPE, inplace=True), nn.Conv2d(in_channels, mid, 1),
            nn.BatchNorm2d(mid), nn.LeakyReLU(LEAKY_SLOPE, inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.LeakyReLU(LEAKY_SLOPE, inplace=True), nn.Conv2d(mid, out_channels, 1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """Recursive hourglass of ``depth`` levels, ``channels`` wide: ``[B,C,R,R] -> [B,C,R,R]``.

    R must be divisible by ``2**depth``.
    """

    def __init__(self, channels: int, depth: int = 4):
        super().__init__()
        self.depth = depth
        self.up = PreActBottleneck(channels, channels)
        self.down = PreActBottleneck(channels, channels)
        self.inner = Hourglass(channels, depth - 1) if depth > 1 else PreActBottleneck(channels, channels)
        self.after = PreActBottleneck(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % (2**self.depth) or x.shape[-2] % (2**self.depth):
            raise ValueError(
                f"Hourglass of depth {self.depth}: map size {tuple(x.shape[-2:])} is not divisible by {2**self.depth}"
            )
        low = self.after(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.up(x) + F.interpolate(low, scale_factor=2, mode="nearest")


class HourglassHead(nn.Module):
    """One hourglass stack and its outputs: ``x [B,C,R,R] -> (maps [B,J,R,R], features [B,C,R,R])``.

    ``maps`` are per-joint score maps (logits of the spatial softmax); ``features`` are the
    stack's feature maps passed on to the hand encoder.
    """

    def __init__(self, channels: int, joints: int = 21, depth: int = 4):
        super().__init__()
        self.hourglass = Hourglass(channels, depth)
        self.res = PreActBottleneck(channels, channels)
        self.fc = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels),
                                nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
        self.score = nn.Conv2d(channels, joints, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.fc(self.res(self.hourglass(x)))
        return self.score(features), features
