"""Hand decoder (paper Sec. 3.3): hourglass -> 2D joints (soft-argmax) -> MANO pose and shape.

    F_he [B,C,R,R]
      -> hourglass (1 stack, depth 4)          score maps [B,21,R,R], features [B,C,R,R]
      -> spatial softmax with a learnable per-joint inverse temperature beta (1 at the start)
                                               probability maps [B,21,R,R], each summing to 1
      -> soft-argmax                           joints2d_norm [B,21,2]
      -> encoder: conv1x1(probability maps) + conv1x1(features);
         4 stages x (2 pre-activation bottlenecks, maxpool 2)   -> [B, C (R/16)^2]  (1024 for C=256, R=32)
      -> fully connected layers                -> 16 x 6D rotations (96 numbers) + 10 shape values
      -> 6D -> rotation matrices -> axis-angle [B,48]
      -> MANO (use_pca=False, flat_hand_mean=True, center_idx=0, right hand)
      -> verts [B,778,3], joints [B,21,3] in metres, root-relative (wrist at the origin)

This is the reference code's decoder: the encoder reads the *normalised* maps (the ones the
soft-argmax reads, at most 1 per cell), not the raw scores; every activation is a LeakyReLU with
slope 0.01 (:data:`hfl_lite.model.hourglass.LEAKY_SLOPE`); the 6D pose output has no offset, so
an untrained decoder (initialised by :func:`hfl_lite.model.init.reference_init_`) starts from
near-random rotations, as the reference does.
"""
from __future__ import annotations

import torch
from torch import nn

from ..geometry.rotations import matrix_to_axis_angle, rot6d_to_matrix
from ..mano import ManoLayer
from ..mano.constants import N_JOINTS as MANO_JOINTS, N_SHAPE
from .hourglass import LEAKY_SLOPE, HourglassHead, PreActBottleneck

__all__ = ["HandDecoder", "HandEncoder", "soft_argmax", "NUM_JOINTS"]

NUM_JOINTS = 21


def soft_argmax(maps: torch.Tensor, beta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial softmax and expected position of each map.

    maps: ``[B,J,H,W]`` score maps; beta: ``[J]`` inverse temperatures (``None`` = 1).
    Returns ``(coords [B,J,2], probs [B,J,H,W])``: ``probs = softmax over the H*W cells of
    beta_j * maps_j``; ``coords = (u, v) = sum probs * ((col + 0.5)/W, (row + 0.5)/H)``, i.e. in
    box-normalised coordinates where ``(0, 0)`` is the box's top-left corner and ``(1, 1)``
    its bottom-right corner.
    """
    b, j, h, w = maps.shape
    logits = maps if beta is None else maps * beta.view(1, j, 1, 1)
    probs = torch.softmax(logits.reshape(b, j, h * w), dim=-1).reshape(b, j, h, w)
    xs = (torch.arange(w, device=maps.device, dtype=maps.dtype) + 0.5) / w
    ys = (torch.arange(h, device=maps.device, dtype=maps.dtype) + 0.5) / h
    u = (probs.sum(dim=2) * xs).sum(dim=-1)
    v = (probs.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([u, v], dim=-1), probs


class HandEncoder(nn.Module):
    """Fuse heatmaps and features, then ``stages`` x (``blocks`` bottlenecks, 2x2 max-pool), flatten.

    ``forward(probs [B,J,R,R], features [B,C,R,R]) -> [B, C (R / 2^stages)^2]``. ``probs`` are
    the spatial-softmax maps (each sums to one). The reference has 4 stages of 2 blocks.
    """

    def __init__(self, channels: int, joints: int = NUM_JOINTS, stages: int = 4, blocks: int = 2):
        super().__init__()
        self.map_conv = nn.Conv2d(joints, channels, 1)
        self.feature_conv = nn.Conv2d(channels, channels, 1)
        self.stages = nn.Sequential(*[
            nn.Sequential(*[PreActBottleneck(channels, channels) for _ in range(blocks)], nn.MaxPool2d(2))
            for _ in range(stages)
        ])

    def forward(self, probs: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.stages(self.map_conv(probs) + self.feature_conv(features)).flatten(1)


class HandDecoder(nn.Module):
    """``forward(F_he [B,C,R,R]) -> dict`` with

    ``heatmaps [B,21,R,R]`` (score maps, the softmax's logits before beta),
    ``heatmap_probs [B,21,R,R]`` (the spatial-softmax maps, each summing to 1),
    ``joints2d_norm [B,21,2]`` (box-normalised),
    ``mano_rot6d [B,16,6]``, ``mano_rotmat [B,16,3,3]``, ``mano_pose [B,48]`` (axis-angle,
    flat-hand-mean convention), ``mano_shape [B,10]``, ``verts [B,778,3]`` and
    ``joints [B,21,3]`` (metres, root-relative; joints in manopth order).

    channels: C; roi_size: R (multiple of 16); hidden: widths of the FC layers before the
    pose/shape outputs (paper: (1024, 512)); mano_root: folder with MANO_RIGHT.pkl, or
    ``None`` for hfl_lite's default asset (see ``hfl_lite.mano.ManoLayer``).
    """

    def __init__(self, channels: int, roi_size: int, hidden: tuple[int, ...] = (1024, 512), mano_root=None):
        super().__init__()
        self.head = HourglassHead(channels, NUM_JOINTS, depth=4)
        self.beta = nn.Parameter(torch.ones(NUM_JOINTS))  # the reference's ``betas``, multiplying the scores
        self.encoder = HandEncoder(channels, NUM_JOINTS)
        sizes = (channels * (roi_size // 16) ** 2, *hidden)
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
        self.mlp = nn.Sequential(*layers)
        self.pose_fc = nn.Linear(sizes[-1], MANO_JOINTS * 6)
        self.shape_fc = nn.Linear(sizes[-1], N_SHAPE)
        self.mano = ManoLayer(mano_root=mano_root, side="right", use_pca=False, flat_hand_mean=True, center_idx=0)

    def forward(self, f_he: torch.Tensor) -> dict[str, torch.Tensor]:
        b = f_he.shape[0]
        maps, features = self.head(f_he)
        joints2d_norm, probs = soft_argmax(maps, self.beta)
        x = self.mlp(self.encoder(probs, features))
        rot6d = self.pose_fc(x).view(b, MANO_JOINTS, 6)
        rotmat = rot6d_to_matrix(rot6d)
        pose = matrix_to_axis_angle(rotmat).reshape(b, MANO_JOINTS * 3)
        shape = self.shape_fc(x)
        verts_mm, joints_mm = self.mano(pose, shape)
        return {
            "heatmaps": maps,
            "heatmap_probs": probs,
            "joints2d_norm": joints2d_norm,
            "mano_rot6d": rot6d,
            "mano_rotmat": rotmat,
            "mano_pose": pose,
            "mano_shape": shape,
            "verts": verts_mm / 1000.0,
            "joints": joints_mm / 1000.0,
        }
