"""Boxes and ROIAlign: the four pooled features of HFL-Net (paper Sec. 3.2).

Boxes are ``(x1, y1, x2, y2)`` in crop pixels, in the continuous convention where the image
covers ``[0, S] x [0, S]``. ROIAlign uses ``torchvision.ops.roi_align`` with
``spatial_scale = 1/4`` (stride-4 maps). The box is cut into an R x R grid of equal bins, and
the soft-argmax and the control-point decoding call bin (i, j)'s centre

    (x1 + (j + 0.5) w / R,  y1 + (i + 0.5) h / R)          w = x2 - x1, h = y2 - y1.

Two conventions (:data:`ROI_CONVENTIONS`, ``HFLNet(roi_convention=...)``):

``"reference"`` (default; the reference code)
    ``aligned=False`` and boxes used as given, even where they reach outside the crop
    (torchvision then reads the border value up to one feature cell outside, zeros beyond). ``aligned=False`` treats feature cell k as if it sat at
    pixel 4k, whereas it covers pixels [4k, 4k + 4) and is centred at 4k + 2: every sample is
    taken half a feature cell (2 crop pixels at stride 4) up and left of the bin centre above.
    The network learns to absorb this constant shift.
``"exact"``
    ``aligned=True`` (each sample at the bin centre above) and boxes clamped to the crop.

Both conventions refuse boxes that are not finite, empty, or entirely outside the crop.
"""
from __future__ import annotations

import torch
from torchvision.ops import roi_align

from ..geometry.camera import box_intersection

__all__ = ["ROI_CONVENTIONS", "clamp_boxes", "intersection_boxes", "pool", "pool_features", "validate_boxes"]

ROI_CONVENTIONS: dict[str, dict[str, bool]] = {
    "reference": {"aligned": False, "clamp": False},
    "exact": {"aligned": True, "clamp": True},
}
"""ROI conventions by name: torchvision's ``aligned`` flag and whether boxes are clamped."""


def validate_boxes(boxes: torch.Tensor, name: str, batch: int, image_size: int, clamp: bool = True) -> torch.Tensor:
    """Check ``boxes [B,4]`` and (``clamp``) clamp them to the image ``[0, image_size]``.

    Raises ``ValueError`` naming ``name`` when the shape is not ``[batch, 4]``, a value is not
    finite, a box has zero or negative width/height, or a box lies entirely outside the image.
    Returns the boxes (float, same device), clamped to the image if ``clamp``.
    """
    if not isinstance(boxes, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [{batch}, 4], got {type(boxes).__name__}")
    if boxes.shape != (batch, 4):
        raise ValueError(f"{name} must have shape [{batch}, 4] (x1, y1, x2, y2 per image), got {list(boxes.shape)}")
    boxes = boxes.float()
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{name} holds non-finite values (rows {_rows(~torch.isfinite(boxes).all(1))})")
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if empty.any():
        raise ValueError(f"{name} has boxes with zero or negative width/height (need x2 > x1, y2 > y1) at rows {_rows(empty)}")
    clamped = clamp_boxes(boxes, image_size)
    outside = (clamped[:, 2] <= clamped[:, 0]) | (clamped[:, 3] <= clamped[:, 1])
    if outside.any():
        raise ValueError(f"{name} has boxes entirely outside the {image_size}x{image_size} image at rows {_rows(outside)}")
    return clamped if clamp else boxes


def _rows(mask: torch.Tensor) -> list[int]:
    return mask.nonzero().flatten().tolist()


def clamp_boxes(boxes: torch.Tensor, image_size: int) -> torch.Tensor:
    """Clamp ``boxes [..., 4]`` to ``[0, image_size]`` on both axes."""
    return boxes.clamp(0.0, float(image_size))


def intersection_boxes(hand_boxes: torch.Tensor, obj_boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlap of hand and object boxes ``[B,4]``.

    Returns ``(boxes [B,4], valid [B] bool)`` from ``hfl_lite.geometry.camera.box_intersection``
    (top-left = max of the top-left corners, bottom-right = min of the bottom-right corners;
    ``valid`` is False unless width and height are positive). Invalid rows hold the hand box
    instead, so they can be pooled safely and then zeroed.
    """
    boxes, valid = box_intersection(hand_boxes, obj_boxes)
    return torch.where(valid[:, None], boxes, hand_boxes), valid


def pool(features: torch.Tensor, boxes: torch.Tensor, roi_size: int, stride: int = 4, aligned: bool = False) -> torch.Tensor:
    """ROIAlign of one box per image: ``features [B,C,H,W]``, ``boxes [B,4]`` (pixels) -> ``[B,C,R,R]``.

    ``aligned``: torchvision's flag (False in the reference code; see the module docstring).
    """
    index = torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype)[:, None]
    rois = torch.cat([index, boxes.to(features.dtype)], dim=1)
    return roi_align(features, rois, output_size=roi_size, spatial_scale=1.0 / stride, sampling_ratio=-1,
                     aligned=aligned)


def pool_features(
    p_h: torch.Tensor,
    p_o: torch.Tensor,
    hand_boxes: torch.Tensor,
    obj_boxes: torch.Tensor,
    roi_size: int,
    include_oo: bool = False,
    aligned: bool = False,
) -> dict[str, torch.Tensor]:
    """The four ROI features of HFL-Net, each ``[B,C,R,R]``, plus the intersection boxes.

    ``F_h``  = P_h over the hand box,   ``F_oh`` = P_o over the hand box,
    ``F_o``  = P_o over the object box, ``F_ho`` = P_h over the hand-object intersection
    (all zeros where the boxes do not overlap). Also returns ``inter_boxes [B,4]`` and
    ``inter_valid [B]``, and with ``include_oo`` ``F_oo`` = P_o over the intersection (zeros
    likewise), the key/value of the "O-to-O" ablation. ``aligned`` as in :func:`pool`.
    """
    inter, valid = intersection_boxes(hand_boxes, obj_boxes)
    keep = valid.to(p_h.dtype)[:, None, None, None]
    out = {
        "F_h": pool(p_h, hand_boxes, roi_size, aligned=aligned),
        "F_oh": pool(p_o, hand_boxes, roi_size, aligned=aligned),
        "F_o": pool(p_o, obj_boxes, roi_size, aligned=aligned),
        "F_ho": pool(p_h, inter, roi_size, aligned=aligned) * keep,
        "inter_boxes": inter,
        "inter_valid": valid,
    }
    if include_oo:
        out["F_oo"] = pool(p_o, inter, roi_size, aligned=aligned) * keep
    return out
