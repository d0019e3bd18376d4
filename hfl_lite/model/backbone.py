"""The three backbones compared in the paper's Table 5: single-stream, double-stream and HFL.

Every backbone maps ``images [B,3,S,S]`` (RGB in [0,1]) to ``(P_h, P_o)``, two stride-4 maps
``[B,C,S/4,S/4]`` (C = ``preset.fpn_channels``; 256 x 64 x 64 for the paper's 256 x 256 input).

Parameter counts with the paper's sizes (no classifier head; one ResNet-50 = 23,508,032,
one FPN = 1,574,144):

=========  ==============================================================  ==========  =========
kind       what is shared                                                  ours        paper
=========  ==============================================================  ==========  =========
single     everything: one ResNet-50 + one FPN, ``P_o`` is ``P_h``         25,082,176  25.08M
hfl        stem, layer1 and layer4 shared; layer2, layer3 and the FPN      34,974,272  34.97M
           per stream (object copies start from the same weights)
double     nothing: two ResNet-50s + two FPNs                              50,164,352  50.15M
=========  ==============================================================  ==========  =========

Two full streams have 50,164,352 parameters, which rounds to 50.16M, not the paper's 50.15M.
Two streams that share only ``conv1`` + ``bn1`` (9,408 + 128 parameters) have 50,154,816, which
rounds to 50.15M: that is the sharing the paper's number matches. We build the plain two-stream
version the text describes ("independent ResNet-50 models"), hence 50.16M.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..presets import Preset, get_preset
from .fpn import FPN
from .resnet import ResNetTrunk, imagenet_state_dict

__all__ = ["BACKBONE_KINDS", "DoubleStreamBackbone", "HFLBackbone", "SingleStreamBackbone", "build_backbone"]

BACKBONE_KINDS = ("hfl", "single", "double")


class _Backbone(nn.Module):
    """Common interface: ``forward(images) -> (P_h, P_o)``, ``load_imagenet``, ``parameter_groups``."""

    def load_imagenet(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by role: ``{"shared": ..., "hand": ..., "object": ...}`` (some may be empty)."""
        raise NotImplementedError


class SingleStreamBackbone(_Backbone):
    """One ResNet-50 and one FPN for both hand and object: returns ``(P, P)``."""

    def __init__(self, width: int = 64, fpn_channels: int = 256):
        super().__init__()
        self.resnet = ResNetTrunk(width)
        self.fpn = FPN(self.resnet.stage_channels, fpn_channels)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.fpn(*self.resnet(images))
        return p, p

    def load_imagenet(self, state_dict, source="state dict"):
        self.resnet.load_imagenet(state_dict, source)

    def parameter_groups(self):
        return {"shared": list(self.parameters()), "hand": [], "object": []}


class HFLBackbone(_Backbone):
    """HFL-Net's backbone (paper Sec. 3.1).

    ``resnet`` is the hand stream's ResNet-50: its stem, ``layer1`` and ``layer4`` are shared
    by both streams, its ``layer2``/``layer3`` are the hand's. ``obj_layer2``/``obj_layer3``
    are the object's own stage-2/3 (deep copies, so they start from the same weights).
    ``layer4`` runs twice, once per stream (separate BatchNorm batch statistics per call,
    as in the reference code). Each stream has its own FPN; the object FPN's finest lateral
    reads the shared C2.
    """

    def __init__(self, width: int = 64, fpn_channels: int = 256):
        super().__init__()
        self.resnet = ResNetTrunk(width)
        self.obj_layer2 = copy.deepcopy(self.resnet.layer2)
        self.obj_layer3 = copy.deepcopy(self.resnet.layer3)
        self.fpn_h = FPN(self.resnet.stage_channels, fpn_channels)
        self.fpn_o = FPN(self.resnet.stage_channels, fpn_channels)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.resnet
        c2 = r.layer1(r.stem(images))
        c3_h = r.layer2(c2)
        c4_h = r.layer3(c3_h)
        c3_o = self.obj_layer2(c2)
        c4_o = self.obj_layer3(c3_o)
        p_h = self.fpn_h(c2, c3_h, c4_h, r.layer4(c4_h))
        p_o = self.fpn_o(c2, c3_o, c4_o, r.layer4(c4_o))
        return p_h, p_o

    def load_imagenet(self, state_dict, source="state dict"):
        self.resnet.load_imagenet(state_dict, source)
        self.obj_layer2.load_state_dict(self.resnet.layer2.state_dict())
        self.obj_layer3.load_state_dict(self.resnet.layer3.state_dict())

    def parameter_groups(self):
        r = self.resnet
        shared = [*r.conv1.parameters(), *r.bn1.parameters(), *r.layer1.parameters(), *r.layer4.parameters()]
        hand = [*r.layer2.parameters(), *r.layer3.parameters(), *self.fpn_h.parameters()]
        obj = [*self.obj_layer2.parameters(), *self.obj_layer3.parameters(), *self.fpn_o.parameters()]
        return {"shared": shared, "hand": hand, "object": obj}


class DoubleStreamBackbone(_Backbone):
    """Two independent ResNet-50 + FPN streams (``hand``, ``obj``); nothing is shared."""

    def __init__(self, width: int = 64, fpn_channels: int = 256):
        super().__init__()
        self.hand = SingleStreamBackbone(width, fpn_channels)
        self.obj = SingleStreamBackbone(width, fpn_channels)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.hand(images)[0], self.obj(images)[0]

    def load_imagenet(self, state_dict, source="state dict"):
        self.hand.load_imagenet(state_dict, source)
        self.obj.load_imagenet(state_dict, source)

    def parameter_groups(self):
        return {"shared": [], "hand": list(self.hand.parameters()), "object": list(self.obj.parameters())}


_KINDS = {"hfl": HFLBackbone, "single": SingleStreamBackbone, "double": DoubleStreamBackbone}


def build_backbone(
    kind: str = "hfl",
    preset: str | Preset | None = "paper",
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    allow_random_init: bool = True,
) -> nn.Module:
    """Build the ``kind`` backbone ("hfl", "single" or "double") with ``preset``'s sizes.

    The returned module's ``forward(images [B,3,S,S]) -> (P_h, P_o)``, each ``[B,C,S/4,S/4]``.
    ImageNet initialisation (only for ``backbone_width == 64``, the paper preset): see
    :func:`hfl_lite.model.resnet.imagenet_state_dict` for ``pretrained``, ``weights_path`` and
    ``allow_random_init``. Every ResNet copy (both streams) starts from the same weights.
    """
    if kind not in _KINDS:
        raise ValueError(f"build_backbone: unknown kind {kind!r}; choices: {list(BACKBONE_KINDS)}")
    preset = get_preset(preset)
    wants_weights = pretrained or weights_path is not None
    if wants_weights and preset.backbone_width != 64:
        raise ValueError(
            f"ImageNet weights (pretrained/weights_path) fit ResNet-50 widths only; preset "
            f"{preset.name!r} has backbone_width {preset.backbone_width}. Use the 'paper' preset."
        )
    state = imagenet_state_dict(pretrained, weights_path, allow_random_init)
    backbone = _KINDS[kind](preset.backbone_width, preset.fpn_channels)
    if state is not None:
        backbone.load_imagenet(state, source=str(weights_path) if weights_path is not None else "ImageNet download")
    return backbone
