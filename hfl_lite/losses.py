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

One more term is not in the paper and is off (weight 0) unless a preset or ``--loss-weight``
turns it on:

``articulation3d``  0   MSE in metres between the ground-truth joints (root-relative) and the
                        joints of the *predicted finger rotations* posed with the *true* global
                        rotation and shape. Its gradient reaches the 15 finger rotations only,
                        and it does not mix the fingers' error with the global rotation's, as
                        the 3D terms do (there the fingers absorb part of a wrong global
                        rotation). Needs the network's MANO layer (``mano=`` of :func:`hfl_losses`).

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

from hfl_lite.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from hfl_lite.geometry.voting import OFFSET_SCALE, confidence_targets, offset_targets

__all__ = ["LOSS_WEIGHTS", "hand_loss_terms", "hfl_losses", "loss_weights", "normalise_to_box", "object_loss_terms"]

LOSS_WEIGHTS: dict[str, float] = {
    "joints2d": 100.0,
    "verts3d": 1e4,
    "joints3d": 1e4,
    "mano_pose": 10.0,
    "mano_shape": 0.1,
    "obj_offset": 500.0,
    "obj_conf": 100.0,
    "articulation3d": 0.0,
}


def loss_weights(*overrides: Mapping[str, float] | None) -> dict[str, float]:
    """The weight of every term: :data:`LOSS_WEIGHTS` updated by each mapping of ``overrides`` in
    turn (e.g. a preset's ``loss_weights``, then a command line's); unknown names raise ``KeyError``."""
    w = dict(LOSS_WEIGHTS)
    for mapping in overrides:
        for name, value in dict(mapping or {}).items():
            if name not in w:
                raise KeyError(f"unknown loss term {name!r} in weights; terms: {sorted(w)}")
            w[name] = float(value)
    return w


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
                    mano: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The unweighted hand terms ``joints2d``, ``verts3d``, ``joints3d``, ``mano_pose``, ``mano_shape``,
    and ``articulation3d`` when ``mano`` (the network's MANO layer) is given.

    outputs: HFLNet's dict (``joints2d_norm [B,21,2]``, ``hand_boxes [B,4]`` px: the boxes the
             network's ROI used, ``verts [B,778,3]`` m, ``joints [B,21,3]`` m,
             ``mano_rotmat [B,16,3,3]``, ``mano_shape [B,10]``)
    batch:   the collated samples (``joints2d`` px, ``joints3d``/``verts3d`` m, camera frame,
             ``mano_pose [B,48]`` axis-angle, ``mano_shape``)
    The 2D target is normalised to ``outputs["hand_boxes"]``, the frame the soft-argmax works in.
    Returns ``{}`` when the batch has no hand annotation.
    """
    b = outputs["joints2d_norm"].shape[0]
    device = outputs["joints2d_norm"].device
    valid = _hand_valid(batch, b, device)
    if valid is None:
        return {}
    target2d = normalise_to_box(batch["joints2d"].float(), outputs["hand_boxes"].float())
    root = batch["joints3d"][:, :1].float()
    gt_rot = axis_angle_to_matrix(batch["mano_pose"].float().reshape(b, 16, 3))
    pairs = {
        "joints2d": (outputs["joints2d_norm"], target2d),
        "verts3d": (outputs["verts"], batch["verts3d"].float() - root),
        "joints3d": (outputs["joints"], batch["joints3d"].float() - root),
        "mano_pose": (outputs["mano_rotmat"], gt_rot),
        "mano_shape": (outputs["mano_shape"], batch["mano_shape"].float()),
    }
    if mano is not None:
        mixed = torch.cat([gt_rot[:, :1], outputs["mano_rotmat"][:, 1:].float()], dim=1)
        _, joints_mm = mano(matrix_to_axis_angle(mixed).reshape(b, 48), batch["mano_shape"].float())
        pairs["articulation3d"] = (joints_mm / 1000.0, batch["joints3d"].float() - root)
    return {name: _masked_mean(_per_sample_mse(pred.float(), tgt), valid) for name, (pred, tgt) in pairs.items()}


def object_loss_terms(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The unweighted object terms ``obj_offset`` and ``obj_conf`` (see the module docstring).

    outputs: ``obj_offset [B,21,2,R,R]``, ``obj_conf_logits [B,21,R,R]``, ``obj_boxes [B,4]`` px
             (the boxes the network's ROI used)
    batch:   ``obj_ctrl2d [B,21,2]`` px, ``obj_mask [B,R,R]`` (0/1), optionally ``obj_id [B]``
             (negative: no object annotation)
    Targets come from :func:`hfl_lite.geometry.voting.offset_targets` over ``outputs["obj_boxes"]``.
    Returns ``{}`` without ``obj_mask``.
    """
    if "obj_mask" not in batch:
        return {}
    offset = outputs["obj_offset"].float()
    b, _, _, r, _ = offset.shape
    boxes = outputs["obj_boxes"].float()
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


def hfl_losses(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
               weights: Mapping[str, float] | None = None, mano: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """HFL-Net's loss: every term of :data:`LOSS_WEIGHTS` times its weight, and their sum.

    outputs:    ``HFLNet.forward``'s dict;  batch: the collated samples on the same device
    mano:       the network's MANO layer (``model.hand_decoder.mano``), needed only when
                ``articulation3d`` has a weight; that term is left out otherwise
    weights:    overrides of :data:`LOSS_WEIGHTS` by term name (unknown names raise ``KeyError``)
    Returns ``{term: weight x term}`` for the terms the batch supports, plus ``"total"``
    (float32 scalars). Terms with weight 0 are reported but do not enter the total's graph
    (``articulation3d`` is computed, and reported, only when it has a weight).
    """
    w = loss_weights(weights)
    if w["articulation3d"] and mano is None:
        raise ValueError("hfl_losses: the articulation3d term has a weight but no MANO layer was given (mano=)")
    terms = {**hand_loss_terms(outputs, batch, mano if w["articulation3d"] else None), **object_loss_terms(outputs, batch)}
    if not terms:
        raise ValueError("hfl_losses: the batch has neither a hand annotation ('joints3d') nor an object mask "
                         "('obj_mask'); nothing to train on")
    weighted = {name: w[name] * value for name, value in terms.items()}
    zero = torch.zeros((), device=next(iter(terms.values())).device)
    total = sum((v for k, v in weighted.items() if w[k] != 0.0), zero)
    return {**weighted, "total": total}
