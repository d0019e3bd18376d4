"""Object decoder (paper Sec. 3.3): per-cell confidences and offsets for 21 control points.

    F_oe [B,C,R,R]
      -> 3 x [conv1x1 C -> C/2, BN, LeakyReLU(0.1), conv3x3 C/2 -> C, BN, LeakyReLU(0.1)]
      -> conv1x1 C -> 3 x 21
      -> obj_conf_logits [B,21,R,R]      (sigmoid -> confidence)
         obj_offset      [B,21,2,R,R]    (x, y) offsets

Channel layout of the last conv: channels 0..20 are the confidences, 21..41 the x offsets and
42..62 the y offsets of control points 0..20. Decoding (``hfl_lite.geometry.voting``): cell
(row i, col j) predicts point k at box-normalised ``((j + 0.5)/R, (i + 0.5)/R) + offset / 10``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..geometry.control_points import NUM_CONTROL_POINTS

__all__ = ["ObjectDecoder", "NUM_CONTROL_POINTS"]


def _conv_bn_act(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    # the convolutions keep their biases, as in the reference code, although the batch norm
    # that follows makes them redundant (1,152 parameters with the paper's sizes)
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1, inplace=True)]


class ObjectDecoder(nn.Module):
    """``forward(F_oe [B,C,R,R]) -> {"obj_conf_logits": [B,21,R,R], "obj_offset": [B,21,2,R,R]}``."""

    def __init__(self, channels: int, points: int = NUM_CONTROL_POINTS):
        super().__init__()
        self.points = points
        layers = []
        for _ in range(3):
            layers += _conv_bn_act(channels, channels // 2, 1) + _conv_bn_act(channels // 2, channels, 3)
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, 3 * points, 1)

    def forward(self, f_oe: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = f_oe.shape
        out = self.out(self.body(f_oe)).view(b, 3, self.points, h, w)
        return {"obj_conf_logits": out[:, 0], "obj_offset": out[:, 1:].transpose(1, 2).contiguous()}
