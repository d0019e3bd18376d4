"""HFL-Net's training loss (paper Sec. 3.4, Eq. 1-3), term by term, as in the reference code.

The paper writes

    L = a_h L_H + a_3d L_3d + a_mano L_mano + a_p2d L_p2d + a_conf L_conf
    with a_h, a_3d, a_mano, a_p2d, a_conf = 100, 10000, 1, 500, 100.

The reference implementation (inherited from Liu et al., CVPR 2021) splits some terms and
fixes the details; :func:`hfl_losses` follows it. Each entry of :data:`LOSS_WEIGHTS` is one
separately weighted term:

==============  ======  =====================================================================
term            weight  definition (means over all elements unless said)
==============  ======  =====================================================================
``joints2d``    100     L_H: MSE between the soft-argmax 2D joints and the ground truth, both
                        in hand-box-normalised coordinates ([0, 1] across the hand box)
``verts3d``     1e4     L_3d, vertices: MSE in metres between predicted root-relative vertices
                        and the ground truth made root-relative (minus the GT wrist, joint 0)
``joints3d``    1e4     L_3d, joints: the same for the 21 joints
``mano_pose``   10      L_mano, pose: MSE between the 16 predicted rotation matrices and those
                        of the ground-truth axis-angle pose
``mano_shape``  0.1     L_mano, shape: MSE between predicted and ground-truth betas
``obj_offset``  500     L_p2d: L1 between each cell's voted location and the true control
                        point (box-normalised units, i.e. offset / 10), x and y summed, only on
                        cells inside the object mask, averaged over all 21 x R x R cells
``obj_conf``    100     L_conf: L1 between sigmoid(confidence) and exp(-d), d the distance (box-
                        normalised) between that cell's voted location and the true point, on
                        object cells, 0 elsewhere; the target is detached
==============  ======  =====================================================================

How this relates to the paper's a_mano = 1: the paper's L_mano is "an L2 loss on the MANO
parameters theta and beta" with weight 1. The code measures theta as rotation matrices rather
than axis-angle (the network regresses rotations in 6D form, and matrices avoid the 2 pi
ambiguity of axis-angle) and weights the pose and shape parts 10 and 0.1. With 16 x 9 matrix
entries against 10 betas these two weights balance the parts; the paper's single "1" is best
read as the weight of L_mano as a whole after this internal split. The 3D term likewise is the
sum of a vertex and a joint MSE, each weighted 1e4.

Per-sample masks: samples without a hand annotation (no ``joints3d`` in the batch, or
``hand_valid`` False) contribute no hand terms; samples without an object annotation
(``obj_id`` < 0, or no ``obj_mask``) contribute no object terms. Means are taken over the valid
samples (a term is 0 when no sample of the batch is valid).
"""
from __future__ import annotations

from typing import Mapping

import torch

from hfl_lite.geometry.rotations import axis_angle_to_matrix
from hfl_lite.geometry.voting import OFFSET_SCALE, confidence_targets, offset_targets
from hfl_lite.model.roi import clamp_boxes

__all__ = ["LOSS_WEIGHTS", "hand_loss_terms", "hfl_losses", "normalise_to_box", "object_loss_terms"]

LOSS_WEIGHTS: dict[str, float] = {
    "joints2d": 100.0,
    "verts3d": 1e4,
    "joints3d": 1e4,
    "mano_pose": 10.0,
    "mano_shape": 0.1,
    "obj_offset": 500.0,
    "obj_conf": 100.0,
}


def normalise_to_box(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Pixel points ``[B,N,2]`` -> coordinates normalised to ``boxes [B,4]`` (0 at x1/y1, 1 at x2/y2)."""
    size = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1e-6)
    return (points - boxes[:, None, :2]) / size[:, None, :]


def _masked_mean(per_sample: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_sample [B]`` over the samples where ``valid [B]`` holds (0 when none)."""
    w = valid.to(per_sample.dtype)
    return (per_sample * w).sum() / w.sum().clamp_min(1.0)


def _per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).flatten(1).mean(dim=1)


def _hand_valid(batch: Mapping[str, torch.Tensor], batch_size: int, device) -> torch.Tensor | None:
    if "joints3d" not in batch:
        return None
    valid = batch.get("hand_valid")
    if valid is None:
        return torch.ones(batch_size, dtype=torch.bool, device=device)
    return valid.to(device=device, dtype=torch.bool)


def hand_loss_terms(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                    image_size: int) -> dict[str, torch.Tensor]:
    """The unweighted hand terms ``joints2d``, ``verts3d``, ``joints3d``, ``mano_pose``, ``mano_shape``.

    outputs: HFLNet's dict (``joints2d_norm [B,21,2]``, ``verts [B,778,3]`` m, ``joints [B,21,3]`` m,
             ``mano_rotmat [B,16,3,3]``, ``mano_shape [B,10]``)
    batch:   the collated samples (``joints2d`` px, ``hand_box`` px, ``joints3d``/``verts3d`` m,
             camera frame, ``mano_pose [B,48]`` axis-angle, ``mano_shape``)
    image_size: crop side S; the 2D target is normalised to the hand box clamped to ``[0, S]``,
             the box the network's ROI used.
    Returns ``{}`` when the batch has no hand annotation.
    """
    b = outputs["joints2d_norm"].shape[0]
    device = outputs["joints2d_norm"].device
    valid = _hand_valid(batch, b, device)
    if valid is None:
        return {}
    boxes = clamp_boxes(batch["hand_box"].float(), image_size)
    target2d = normalise_to_box(batch["joints2d"].float(), boxes)
    root = batch["joints3d"][:, :1].float()
    gt_rot = axis_angle_to_matrix(batch["mano_pose"].float().reshape(b, 16, 3))
    pairs = {
        "joints2d": (outputs["joints2d_norm"], target2d),
        "verts3d": (outputs["verts"], batch["verts3d"].float() - root),
        "joints3d": (outputs["joints"], batch["joints3d"].float() - root),
        "mano_pose": (outputs["mano_rotmat"], gt_rot),
        "mano_shape": (outputs["mano_shape"], batch["mano_shape"].float()),
    }
    return {name: _masked_mean(_per_sample_mse(pred.float(), tgt), valid) for name, (pred, tgt) in pairs.items()}


def object_loss_terms(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                      image_size: int) -> dict[str, torch.Tensor]:
    """The unweighted object terms ``obj_offset`` and ``obj_conf`` (see the module docstring).

    outputs: ``obj_offset [B,21,2,R,R]``, ``obj_conf_logits [B,21,R,R]``
    batch:   ``obj_ctrl2d [B,21,2]`` px, ``obj_box [B,4]`` px, ``obj_mask [B,R,R]`` (0/1),
             optionally ``obj_id [B]`` (negative: no object annotation)
    Targets come from :func:`hfl_lite.geometry.voting.offset_targets` over the object box
    clamped to ``[0, S]`` (the box the network's ROI used). Returns ``{}`` without ``obj_mask``.
    """
    if "obj_mask" not in batch:
        return {}
    offset = outputs["obj_offset"].float()
    b, _, _, r, _ = offset.shape
    boxes = clamp_boxes(batch["obj_box"].float(), image_size)
    target = offset_targets(batch["obj_ctrl2d"].float(), boxes, r)
    mask = batch["obj_mask"].float().reshape(b, 1, 1, r, r)
    if "obj_id" in batch:
        valid = batch["obj_id"].to(offset.device) >= 0
    else:
        valid = torch.ones(b, dtype=torch.bool, device=offset.device)

    error = (offset - target) / OFFSET_SCALE * mask  # voted-location error, box-normalised units
    cells = offset.shape[1] * r * r
    per_sample_offset = error.abs().flatten(1).sum(dim=1) / cells

    conf_target = confidence_targets(offset, batch["obj_ctrl2d"].float(), boxes, target) * mask[:, :, 0]
    conf = torch.sigmoid(outputs["obj_conf_logits"].float())
    per_sample_conf = (conf - conf_target).abs().flatten(1).mean(dim=1)
    return {"obj_offset": _masked_mean(per_sample_offset, valid), "obj_conf": _masked_mean(per_sample_conf, valid)}


def hfl_losses(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], image_size: int,
               weights: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """HFL-Net's loss: every term of :data:`LOSS_WEIGHTS` times its weight, and their sum.

    outputs:    ``HFLNet.forward``'s dict;  batch: the collated samples on the same device
    image_size: the crop side S (``preset.image_size``)
    weights:    overrides of :data:`LOSS_WEIGHTS` by term name (unknown names raise ``KeyError``)
    Returns ``{term: weight x term}`` for the terms the batch supports, plus ``"total"``
    (float32 scalars). Terms with weight 0 are reported but do not enter the total's graph.
    """
    w = dict(LOSS_WEIGHTS)
    for name, value in (weights or {}).items():
        if name not in w:
            raise KeyError(f"unknown loss term {name!r} in weights; terms: {sorted(w)}")
        w[name] = float(value)
    terms = {**hand_loss_terms(outputs, batch, image_size), **object_loss_terms(outputs, batch, image_size)}
    if not terms:
        raise ValueError("hfl_losses: the batch has neither a hand annotation ('joints3d') nor an object mask "
                         "('obj_mask'); nothing to train on")
    weighted = {name: w[name] * value for name, value in terms.items()}
    zero = torch.zeros((), device=next(iter(terms.values())).device)
    total = sum((v for k, v in weighted.items() if w[k] != 0.0), zero)
    return {**weighted, "total": total}
