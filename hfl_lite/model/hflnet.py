"""HFL-Net: backbone -> four ROI features -> interaction modules -> hand and object decoders.

    images [B,3,S,S], hand_boxes [B,4], obj_boxes [B,4]  (crop pixels, x1 y1 x2 y2)
      backbone                  P_h, P_o [B,C,S/4,S/4]
      ROIAlign (R x R)          F_h, F_oh (hand box), F_o (object box), F_ho (intersection)
      object-to-hand            F_he = first C channels of SA(concat(F_h, F_oh))
      hand-to-object            F_oe = CA(query F_o, key/value F_ho)
      hand decoder(F_he)        2D joints, MANO pose/shape, vertices and joints (m, root-relative)
      object decoder(F_oe)      control-point confidences and offsets per ROI cell
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..presets import Preset, get_preset
from .attention import HandInteraction, ObjectInteraction
from .backbone import build_backbone
from .hand_decoder import HandDecoder
from .init import reference_init_
from .object_decoder import ObjectDecoder
from .roi import ROI_CONVENTIONS, pool_features, validate_boxes

__all__ = ["HFLNet", "PAPER_VARIANTS", "build_model"]

# The paper's network, and HFLNet's defaults; every other variant is an ablation (Tables 5, 7, 8)
# whose unused modules DistributedDataParallel must be told about.
PAPER_VARIANTS = {"backbone": "hfl", "hand_interaction": "concat_sa", "object_interaction": "h2o"}


class HFLNet(nn.Module):
    """The full network.

    preset:              a ``Preset`` or its name ("paper", "cpu"; ``None`` = automatic)
    backbone:            "hfl" (the paper's), "single" or "double" (Table 5)
    hand_interaction:    "concat_sa" (the paper's), "none", "sa", "ca", "add_sa" (Table 8)
    object_interaction:  "h2o" (the paper's), "o2o", "none" (Table 7)
    roi_convention:      "reference" (the reference code's ROIAlign: ``aligned=False``, boxes not
                         clamped) or "exact" (``aligned=True``, boxes clamped to the crop); see
                         ``hfl_lite.model.roi``
    pretrained:          start the backbone from ImageNet weights. ``None`` (default) takes the
                         preset's ``imagenet_backbone``: the paper preset downloads torchvision's
                         ImageNet ResNet-50 (cached by torch.hub; offline, a warning and random
                         weights, see ``allow_random_init``), the cpu preset (narrow ResNet, for
                         which no ImageNet weights exist) starts from random weights. ``train``
                         uses the same default.
    weights_path, allow_random_init:  see ``hfl_lite.model.build_backbone``
    mano_root:           folder with MANO_RIGHT.pkl (``None``: hfl_lite's default asset)

    The interaction modules and both decoders are initialised as in the reference code
    (:func:`hfl_lite.model.init.reference_init_`).

    ``forward(images, hand_boxes, obj_boxes, return_intermediates=False)``:

    images      ``[B,3,S,S]`` float RGB in [0,1], S = ``preset.image_size``
    hand_boxes  ``[B,4]`` hand boxes in crop pixels ``(x1, y1, x2, y2)``
    obj_boxes   ``[B,4]`` object boxes likewise

    Boxes must be finite with positive width and height and not entirely outside the image;
    the "exact" convention clamps them to ``[0, S]``. Bad shapes or values raise ``ValueError``
    naming the argument.

    Returns a dict:
        hand_boxes, obj_boxes [B,4]  the boxes the ROIs used (clamped under "exact"); the
                                normalised outputs below and the losses refer to these
        joints2d_norm [B,21,2]  soft-argmax joints, hand-box-normalised ([0,1] across the box)
        joints2d      [B,21,2]  the same in crop pixels: ``x1 + u w, y1 + v h``
        mano_rot6d [B,16,6], mano_rotmat [B,16,3,3], mano_pose [B,48] (axis-angle),
        mano_shape [B,10]
        verts  [B,778,3], joints [B,21,3]  metres, root-relative, camera-aligned axes
        obj_conf_logits [B,21,R,R], obj_offset [B,21,2,R,R]
    With ``return_intermediates`` also: ``P_h, P_o`` ``[B,C,S/4,S/4]``; ``F_h, F_oh, F_o,
    F_ho, F_he, F_oe`` ``[B,C,R,R]``; ``heatmaps`` and ``heatmap_probs [B,21,R,R]`` (score
    maps and their spatial softmax); ``inter_boxes [B,4]`` and ``inter_valid [B]``; ``hand_attention`` and
    ``obj_attention`` ``[B,heads,R*R,R*R]`` (``None`` for the "none" variants).
    """

    def __init__(
        self,
        preset: str | Preset | None = None,
        backbone: str = "hfl",
        hand_interaction: str = "concat_sa",
        object_interaction: str = "h2o",
        roi_convention: str = "reference",
        pretrained: bool | None = None,
        weights_path: str | Path | None = None,
        mano_root: str | Path | None = None,
        allow_random_init: bool = True,
    ):
        super().__init__()
        self.preset = get_preset(preset)
        p = self.preset
        if roi_convention not in ROI_CONVENTIONS:
            raise ValueError(f"roi_convention: unknown {roi_convention!r}; choices: {list(ROI_CONVENTIONS)}")
        self.config = {
            "preset": p.name,
            "backbone": backbone,
            "hand_interaction": hand_interaction,
            "object_interaction": object_interaction,
            "roi_convention": roi_convention,
        }
        self._roi = ROI_CONVENTIONS[roi_convention]
        if pretrained is None:
            pretrained = p.imagenet_backbone
        self.backbone = build_backbone(backbone, p, pretrained, weights_path, allow_random_init)
        self.hand_interaction = HandInteraction(p.fpn_channels, hand_interaction, p.attention_heads)
        self.object_interaction = ObjectInteraction(p.fpn_channels, object_interaction, p.attention_heads)
        self.hand_decoder = HandDecoder(p.fpn_channels, p.roi_size, p.mano_hidden, mano_root=mano_root)
        self.object_decoder = ObjectDecoder(p.fpn_channels)
        for head in (self.hand_interaction, self.object_interaction, self.hand_decoder, self.object_decoder):
            reference_init_(head)

    def _check_images(self, images: torch.Tensor) -> None:
        s = self.preset.image_size
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a tensor [B,3,{s},{s}], got {shape}")
        if images.shape[1] != 3:
            raise ValueError(f"images must have 3 (RGB) channels, got {images.shape[1]} (shape {list(images.shape)})")
        if tuple(images.shape[2:]) != (s, s):
            raise ValueError(
                f"images must be {s}x{s} for preset {self.preset.name!r}, got {images.shape[2]}x{images.shape[3]}"
            )
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point RGB in [0,1], got dtype {images.dtype}")

    def forward(
        self,
        images: torch.Tensor,
        hand_boxes: torch.Tensor,
        obj_boxes: torch.Tensor,
        return_intermediates: bool = False,
    ) -> dict[str, torch.Tensor]:
        self._check_images(images)
        b, s, r = images.shape[0], self.preset.image_size, self.preset.roi_size
        clamp = self._roi["clamp"]
        hand_boxes = validate_boxes(hand_boxes, "hand_boxes", b, s, clamp).to(images.device)
        obj_boxes = validate_boxes(obj_boxes, "obj_boxes", b, s, clamp).to(images.device)

        p_h, p_o = self.backbone(images)
        rois = pool_features(p_h, p_o, hand_boxes, obj_boxes, r, include_oo=self.object_interaction.variant == "o2o",
                             aligned=self._roi["aligned"])
        f_he, hand_attn = self.hand_interaction(rois["F_h"], rois["F_oh"], rois["F_o"], return_intermediates)
        f_oe, obj_attn = self.object_interaction(rois["F_o"], rois["F_ho"], rois.get("F_oo"), return_intermediates)

        out = self.hand_decoder(f_he)
        maps = {name: out.pop(name) for name in ("heatmaps", "heatmap_probs")}
        size = hand_boxes[:, 2:] - hand_boxes[:, :2]
        out["joints2d"] = hand_boxes[:, None, :2] + out["joints2d_norm"] * size[:, None, :]
        out.update(self.object_decoder(f_oe), hand_boxes=hand_boxes, obj_boxes=obj_boxes)
        if return_intermediates:
            out.update(P_h=p_h, P_o=p_o, F_he=f_he, F_oe=f_oe, hand_attention=hand_attn, obj_attention=obj_attn,
                       **maps, **rois)
        return out


def build_model(preset: str | Preset | None = None, **kwargs) -> HFLNet:
    """``HFLNet(preset, **kwargs)``: the paper's configuration unless ``kwargs`` say otherwise."""
    return HFLNet(preset, **kwargs)
