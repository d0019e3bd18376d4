"""From the object decoder's dense votes to 2D control points, and back (training targets).

The object decoder predicts, for each of the ``K = 21`` control points and each cell
``(row i, col j)`` of an ``R x R`` grid laid over the object box, a confidence logit and an
offset. Decoding (agreed in ``/tmp/interfaces.md``, as in the reference code)::

    point_norm = ((j + 0.5) / R, (i + 0.5) / R) + offset / 10        # box-normalised (u, v)
    point_px   = (box_x1 + point_norm_u * box_w, box_y1 + point_norm_v * box_h)

``offset[:, k, 0]`` is the u (x) component, ``offset[:, k, 1]`` the v (y) component. Box-normalised
units: the object box spans ``[0, 1]`` in both directions.

Two ways to turn the votes into correspondences:

* :func:`vote_topk` - the reference code's test-time rule: 10 rounds, each taking for every
  control point its most confident remaining cell if above 0.5 -> up to 210 correspondences;
* :func:`vote_mean` - one point per control point, the confidence-weighted mean of its votes.

:func:`solve_pose_from_votes` glues either of them to :func:`~hfl_lite.geometry.epnp.epnp` /
:func:`~hfl_lite.geometry.epnp.epnp_ransac`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .epnp import PoseResult, epnp, epnp_ransac

__all__ = [
    "OFFSET_SCALE",
    "Votes",
    "cell_centres",
    "decode_votes",
    "vote_topk",
    "vote_mean",
    "offset_targets",
    "confidence_targets",
    "solve_pose_from_votes",
]

OFFSET_SCALE = 10.0  # network offsets are 10x box-normalised units


class Votes(NamedTuple):
    """Correspondences from :func:`vote_topk`, ``M = K * rounds`` entries per sample, ordered
    round-major (entry ``r * K + k`` is round ``r`` of control point ``k``).

    ``points_2d [B, M, 2]`` crop pixels; ``weights [B, M]`` sigmoid confidence (0 where
    not valid); ``valid [B, M]`` bool (confidence above the threshold); ``point_index [B, M]``
    int64 index of the 3D control point each entry belongs to.
    """

    points_2d: torch.Tensor
    weights: torch.Tensor
    valid: torch.Tensor
    point_index: torch.Tensor


def _check_maps(conf_logits, offset, obj_box, name):
    if conf_logits.ndim != 4 or conf_logits.shape[-1] != conf_logits.shape[-2]:
        raise ValueError(f"{name}: conf_logits must be [B, K, R, R], got {tuple(conf_logits.shape)}")
    B, K, R, _ = conf_logits.shape
    if offset.shape != (B, K, 2, R, R):
        raise ValueError(f"{name}: offset must be [B, K, 2, R, R] = {(B, K, 2, R, R)}, got {tuple(offset.shape)}")
    if obj_box.shape != (B, 4):
        raise ValueError(f"{name}: obj_box must be [B, 4] = {(B, 4)}, got {tuple(obj_box.shape)}")


def cell_centres(R: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Box-normalised ``(u, v)`` centres of an ``R x R`` grid: ``[R, R, 2]``, entry ``[i, j]`` is
    ``((j + 0.5) / R, (i + 0.5) / R)``."""
    c = (torch.arange(R, dtype=dtype, device=device) + 0.5) / R
    v, u = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([u, v], -1)


def _box_origin_size(obj_box: torch.Tensor, eps: float = 1e-6):
    origin = obj_box[:, :2]
    size = (obj_box[:, 2:] - obj_box[:, :2]).clamp_min(eps)
    return origin, size


def _vote_points(centres: torch.Tensor, offset: torch.Tensor, obj_box: torch.Tensor) -> torch.Tensor:
    """Crop-pixel points ``[B, ..., 2]`` voted by cells with box-normalised ``centres`` and
    ``offset`` (10x box-normalised units), both ``[B, ..., 2]`` (or broadcasting to it), in the
    object boxes ``obj_box [B, 4]``."""
    origin, size = _box_origin_size(obj_box.to(offset.dtype))
    view = (-1,) + (1,) * (offset.dim() - 2) + (2,)
    return origin.view(view) + (centres + offset / OFFSET_SCALE) * size.view(view)


def decode_votes(conf_logits: torch.Tensor, offset: torch.Tensor, obj_box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every cell's vote for every control point.

    Args:
        conf_logits: ``[B, K, R, R]`` confidence logits.
        offset: ``[B, K, 2, R, R]`` offsets (10x box-normalised units).
        obj_box: ``[B, 4]`` object boxes ``(x1, y1, x2, y2)`` in crop pixels.

    Returns:
        ``points [B, K, R*R, 2]`` crop pixels and ``confidence [B, K, R*R]`` in ``[0, 1]``
        (cells in row-major order: index ``i * R + j``).
    """
    _check_maps(conf_logits, offset, obj_box, "decode_votes")
    B, K, R, _ = conf_logits.shape
    points = _vote_points(cell_centres(R, offset.dtype, offset.device), offset.permute(0, 1, 3, 4, 2), obj_box)
    return points.reshape(B, K, R * R, 2), torch.sigmoid(conf_logits).reshape(B, K, R * R)


def vote_topk(conf_logits: torch.Tensor, offset: torch.Tensor, obj_box: torch.Tensor,
              rounds: int = 10, threshold: float = 0.5) -> Votes:
    """The reference rule: per control point, its ``rounds`` most confident cells.

    Taking the most confident remaining cell ``rounds`` times is the same as taking the top
    ``rounds`` cells; entries whose confidence is not above ``threshold`` are marked invalid
    (weight 0). Only the chosen cells are decoded (the sigmoid is monotonic, so the top logits
    are the top confidences). Returns :class:`Votes` with ``K * rounds`` entries (210 for the
    paper).
    """
    _check_maps(conf_logits, offset, obj_box, "vote_topk")
    B, K, R, _ = conf_logits.shape
    if not 1 <= rounds <= R * R:
        raise ValueError(f"vote_topk: rounds must be in [1, R*R = {R * R}], got {rounds}")
    top, idx = conf_logits.reshape(B, K, R * R).topk(rounds, dim=-1)  # [B, K, rounds], descending
    top = torch.sigmoid(top)
    off = offset.reshape(B, K, 2, R * R).gather(3, idx.unsqueeze(2).expand(B, K, 2, rounds)).transpose(2, 3)
    col, row = idx % R, torch.div(idx, R, rounding_mode="floor")
    picked = _vote_points((torch.stack([col, row], -1).to(offset.dtype) + 0.5) / R, off, obj_box)  # [B, K, rounds, 2]
    valid = top > threshold
    weights = torch.where(valid, top, torch.zeros_like(top))
    point_index = torch.arange(K, device=offset.device).view(1, K, 1).expand(B, K, rounds)

    def round_major(x):
        return x.transpose(1, 2).reshape(B, K * rounds, *x.shape[3:])

    return Votes(round_major(picked), round_major(weights), round_major(valid), round_major(point_index))


def vote_mean(conf_logits: torch.Tensor, offset: torch.Tensor, obj_box: torch.Tensor,
              threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """One point per control point: the confidence-weighted mean of its votes.

    Cells with confidence below ``threshold`` do not vote. The weight of a control point is
    its highest cell confidence, or 0 when no cell reaches the threshold (its point is then the
    confidence-weighted mean of all cells, finite but not to be trusted).

    Returns:
        ``points [B, K, 2]`` crop pixels and ``weights [B, K]`` in ``[0, 1]``.
    """
    points, conf = decode_votes(conf_logits, offset, obj_box)
    keep = conf >= threshold
    w = torch.where(keep, conf, torch.zeros_like(conf))
    any_kept = keep.any(-1, keepdim=True)
    w = torch.where(any_kept, w, conf)
    mean = (w.unsqueeze(-1) * points).sum(-2) / w.sum(-1, keepdim=True).clamp_min(1e-12)
    best = conf.amax(-1)
    return mean, torch.where(any_kept.squeeze(-1), best, torch.zeros_like(best))


def offset_targets(ctrl2d: torch.Tensor, obj_box: torch.Tensor, R: int) -> torch.Tensor:
    """Training targets: the offsets that make every cell vote exactly for the true points.

    Args:
        ctrl2d: ``[B, K, 2]`` control points in crop pixels.
        obj_box: ``[B, 4]`` object boxes in crop pixels.
        R: grid size.

    Returns:
        ``[B, K, 2, R, R]``: ``10 * (point_norm - cell_centre)``, the inverse of
        :func:`decode_votes` (box sizes below 1e-6 px are clamped).
    """
    if ctrl2d.ndim != 3 or ctrl2d.shape[-1] != 2:
        raise ValueError(f"offset_targets: ctrl2d must be [B, K, 2], got {tuple(ctrl2d.shape)}")
    if obj_box.shape != (ctrl2d.shape[0], 4):
        raise ValueError(f"offset_targets: obj_box must be [B, 4] = {(ctrl2d.shape[0], 4)}, got {tuple(obj_box.shape)}")
    origin, size = _box_origin_size(obj_box.to(ctrl2d.dtype))
    norm = (ctrl2d - origin.unsqueeze(1)) / size.unsqueeze(1)  # [B, K, 2]
    off = OFFSET_SCALE * (norm[:, :, None, None, :] - cell_centres(R, ctrl2d.dtype, ctrl2d.device))  # [B,K,R,R,2]
    return off.permute(0, 1, 4, 2, 3).contiguous()


def confidence_targets(offset: torch.Tensor, ctrl2d: torch.Tensor, obj_box: torch.Tensor,
                       targets: torch.Tensor | None = None) -> torch.Tensor:
    """Confidence targets of the reference code: ``exp(-d)``, detached.

    ``d`` is the distance, in box-normalised units (the box spans [0, 1]), between each cell's
    decoded vote and the true control point: a perfect vote gets 1, a vote one box-width away
    ``exp(-1) = 0.37``.

    Args:
        offset: ``[B, K, 2, R, R]`` predicted offsets.
        ctrl2d: ``[B, K, 2]`` true control points (crop pixels).
        obj_box: ``[B, 4]`` object boxes (crop pixels).
        targets: ``offset_targets(ctrl2d, obj_box, R)`` when the caller already has them.

    Returns:
        ``[B, K, R, R]`` targets in ``(0, 1]``, without gradient.
    """
    B, K, _, R, _ = offset.shape
    if targets is None:
        targets = offset_targets(ctrl2d, obj_box, R)
    with torch.no_grad():
        diff = (offset - targets.to(offset.dtype)) / OFFSET_SCALE
        return torch.exp(-diff.norm(dim=2))


def solve_pose_from_votes(conf_logits: torch.Tensor, offset: torch.Tensor, obj_box: torch.Tensor, K: torch.Tensor,
                          ctrl3d: torch.Tensor, scheme: str = "topk", ransac: bool = True, rounds: int = 10,
                          threshold: float = 0.5, weighted: bool = True, min_points: int = 6, compiled: bool = False,
                          **ransac_kwargs) -> PoseResult:
    """Object pose from the object decoder's outputs.

    Args:
        conf_logits ``[B, 21, R, R]``, offset ``[B, 21, 2, R, R]``: decoder outputs.
        obj_box: ``[B, 4]`` object boxes (crop pixels) the grid was pooled over.
        K: ``[B, 3, 3]`` crop intrinsics.
        ctrl3d: ``[B, 21, 3]`` or ``[21, 3]`` control points in the object frame (metres).
        scheme: ``"topk"`` (reference: up to ``21 * rounds`` votes) or ``"mean"`` (21 points).
        ransac: use :func:`epnp_ransac` (the reference uses OpenCV's RANSAC EPnP) or plain
            :func:`epnp`; extra keyword arguments go to :func:`epnp_ransac`.
        threshold: confidence a vote needs.
        weighted: weight the correspondences by their confidence (else all equal).
        min_points: fewer usable votes (or RANSAC inliers) -> fallback pose, ``valid = False``
            (6 as in the reference code).
        compiled: solve through ``torch.compile`` (``compiled`` of :func:`epnp`).

    Returns:
        :class:`PoseResult` ``(R [B,3,3], t [B,3] metres, valid [B])``, ``X_cam = R X_obj + t``.
    """
    B = conf_logits.shape[0]
    if ctrl3d.ndim == 2:
        ctrl3d = ctrl3d.unsqueeze(0).expand(B, -1, -1)
    if ctrl3d.shape != (B, conf_logits.shape[1], 3):
        raise ValueError(f"solve_pose_from_votes: ctrl3d must be [B, K, 3] = {(B, conf_logits.shape[1], 3)} or [K, 3], "
                         f"got {tuple(ctrl3d.shape)}")
    if scheme == "topk":
        votes = vote_topk(conf_logits, offset, obj_box, rounds=rounds, threshold=threshold)
        pts2d, w = votes.points_2d, votes.weights
        pts3d = torch.gather(ctrl3d, 1, votes.point_index.unsqueeze(-1).expand(B, -1, 3))
    elif scheme == "mean":
        pts2d, w = vote_mean(conf_logits, offset, obj_box, threshold=threshold)
        pts3d = ctrl3d
    else:
        raise ValueError(f"solve_pose_from_votes: scheme must be 'topk' or 'mean', got {scheme!r}")
    if not weighted:
        w = (w > 0).to(w.dtype)
    pts3d = pts3d.to(pts2d.dtype)
    K = K.to(pts2d.dtype)
    if ransac:
        R, t, _, valid = epnp_ransac(pts3d, pts2d, K, w, min_inliers=min_points, compiled=compiled, **ransac_kwargs)
        return PoseResult(R, t, valid)
    return epnp(pts3d, pts2d, K, w, return_valid=True, min_points=min_points, compiled=compiled)
