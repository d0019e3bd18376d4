"""Feature Pyramid Network head as used by HFL-Net (one per stream).

Top-down path (Lin et al., 2017), kept to what the reference code of HFL-Net uses:

    P5 = top(C5)                          1x1 conv, 32w -> C
    P4 = up(P5) + lateral4(C4)            1x1 conv, 16w -> C
    P3 = up(P4) + lateral3(C3)            1x1 conv,  8w -> C
    P2 = up(P3) + lateral2(C2)            1x1 conv,  4w -> C
    P  = smooth(P2)                       3x3 conv,  C  -> C   (only the finest level is smoothed)

``up`` is bilinear resizing to the next level's size (``align_corners=False``). With the paper's
sizes (w = 64, C = 256) one FPN has 1,574,144 parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FPN"]


class FPN(nn.Module):
    """``forward(c2, c3, c4, c5) -> P [B,C,H/4,W/4]``.

    in_channels: channels of ``(C2, C3, C4, C5)``, e.g. ``(256, 512, 1024, 2048)``.
    out_channels: ``C`` (256 in the paper).
    """

    def __init__(self, in_channels: tuple[int, int, int, int], out_channels: int):
        super().__init__()
        c2, c3, c4, c5 = in_channels
        self.top = nn.Conv2d(c5, out_channels, kernel_size=1)
        self.lateral4 = nn.Conv2d(c4, out_channels, kernel_size=1)
        self.lateral3 = nn.Conv2d(c3, out_channels, kernel_size=1)
        self.lateral2 = nn.Conv2d(c2, out_channels, kernel_size=1)
        self.smooth = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)

    @staticmethod
    def _up_add(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False) + fine

    def forward(self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> torch.Tensor:
        p = self.top(c5)
        p = self._up_add(p, self.lateral4(c4))
        p = self._up_add(p, self.lateral3(c3))
        p = self._up_add(p, self.lateral2(c2))
        return self.smooth(p)
